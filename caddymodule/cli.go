package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// The `caddy stepup` command: the admin API (admin.api.stepup) from a
// shell, as `caddy reload` talks to the admin endpoint. Human output by
// default, aligned in columns; --json prints the API's answer as it is.

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "stepup",
		Usage: "sessions|revoke|approvals|approve|deny|enroll-link|credentials|reset-credentials|explain …",
		Short: "Operates caddy-stepup through the admin API (sessions, approvals, enrolment links, explain)",
		Long: `
Talks to the admin API of a running Caddy (the admin.api.stepup routes under
/stepup/) to see and end sessions, decide approvals, hand out one-time
enrolment links, see and reset a user's credentials, and explain what a
request needs.

Every subcommand takes --address (default: the admin address of the
configuration given with --config and --adapter, else localhost:2019, as
'caddy reload' finds it) and --json (print the API's JSON answer).

  caddy stepup sessions [--user U]
  caddy stepup revoke HANDLE | --user U
  caddy stepup approvals [--pending]
  caddy stepup approve|deny ID --as APPROVER [--comment TEXT]
  caddy stepup enroll-link USER TIER [--method M] [--expires 24h] [--base-url URL]
  caddy stepup credentials USER
  caddy stepup reset-credentials USER TIER [--end-sessions]
  caddy stepup explain METHOD URI [--user U] [--tiers a,b] [--host H]
                                  [--client-ip IP] [--session HANDLE]
                                  [--header 'Name: value']...

Sessions are named by their handle (the 'session' field of audit records);
no answer carries a cookie, a session id or a secret.
`,
		CobraFunc: func(cmd *cobra.Command) {
			for _, sc := range stepupCommands() {
				cmd.AddCommand(sc)
			}
		},
	})
}

// cliContext is what a subcommand needs: where the admin endpoint is,
// where to print, and the output format.
type cliContext struct {
	address string
	out     io.Writer
	json    bool
}

func commonFlags(c *cobra.Command) {
	c.Flags().String("address", "", "The address of Caddy's admin endpoint (default: from --config, else localhost:2019)")
	c.Flags().StringP("config", "c", "", "Configuration file whose admin address to use")
	c.Flags().StringP("adapter", "a", "", "Name of config adapter to apply (when --config is used)")
	c.Flags().Bool("json", false, "Print the admin API's JSON answer")
}

func cliContextOf(c *cobra.Command) (*cliContext, error) {
	addr, _ := c.Flags().GetString("address")
	cfg, _ := c.Flags().GetString("config")
	adapter, _ := c.Flags().GetString("adapter")
	asJSON, _ := c.Flags().GetBool("json")
	address, err := caddycmd.DetermineAdminAPIAddress(addr, nil, cfg, adapter)
	if err != nil {
		return nil, fmt.Errorf("finding the admin address: %v", err)
	}
	return &cliContext{address: address, out: c.OutOrStdout(), json: asJSON}, nil
}

// apiErrorBody pulls the admin API's message out of caddycmd's error.
var apiErrorBody = regexp.MustCompile(`HTTP (\d+): (\{.*\})\s*$`)

// call sends one request to the admin API and decodes the answer into v
// (and keeps the raw answer for --json).
func (cc *cliContext) call(method, uri string, body any, v any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	h := http.Header{}
	if u := os.Getenv("USER"); u != "" {
		h.Set("X-Stepup-Admin", u)
	}
	resp, err := caddycmd.AdminAPIRequest(cc.address, method, uri, h, rd)
	if err != nil {
		if m := apiErrorBody.FindStringSubmatch(err.Error()); m != nil {
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal([]byte(m[2]), &e) == nil && e.Error != "" {
				return nil, fmt.Errorf("%s (HTTP %s)", e.Error, m[1])
			}
		}
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			return nil, fmt.Errorf("decoding the answer: %v", err)
		}
	}
	return raw, nil
}

// emit prints the raw answer for --json, else runs the human printer.
func (cc *cliContext) emit(raw []byte, human func(w *tabwriter.Writer)) error {
	if cc.json {
		_, err := cc.out.Write(raw)
		return err
	}
	tw := tabwriter.NewWriter(cc.out, 0, 4, 2, ' ', 0)
	human(tw)
	return tw.Flush()
}

// run wraps a subcommand's function for cobra.
func run(f func(cc *cliContext, c *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		cc, err := cliContextOf(c)
		if err != nil {
			return err
		}
		c.SilenceUsage = true
		return f(cc, c, args)
	}
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

type cliSession struct {
	Handle   string   `json:"handle"`
	User     string   `json:"user"`
	Roles    []string `json:"roles"`
	External bool     `json:"external"`
	Tiers    []struct {
		Tier    string    `json:"tier"`
		Method  string    `json:"method"`
		At      time.Time `json:"at"`
		Expires time.Time `json:"expires"`
	} `json:"tiers"`
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
}

func printSessions(tw *tabwriter.Writer, list []cliSession) {
	fmt.Fprintln(tw, "HANDLE\tUSER\tTIERS (UNTIL)\tSIGNED IN\tLAST SEEN")
	for _, s := range list {
		var ts []string
		for _, t := range s.Tiers {
			ts = append(ts, fmt.Sprintf("%s (%s)", t.Tier, t.Expires.Local().Format("15:04")))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Handle, s.User, strings.Join(ts, ", "), when(s.Created), when(s.LastSeen))
	}
}

type cliApproval struct {
	ID, Status, Policy, Set, Risk, Requester, Method, URI, Host string
	ClientIP                                                    string `json:"client_ip"`
	Justification                                               string
	Approvers                                                   []string
	Require                                                     int
	ApproverTier                                                string `json:"approver_tier"`
	Votes                                                       []struct {
		User, Decision, Comment, Via string
	}
	Expires time.Time
}

func (q cliApproval) votes() string {
	n := 0
	var by []string
	for _, v := range q.Votes {
		if v.Decision == "approve" {
			n++
		}
		by = append(by, v.User+":"+v.Decision)
	}
	s := fmt.Sprintf("%d/%d", n, max(q.Require, 1))
	if len(by) > 0 {
		s += " (" + strings.Join(by, ", ") + ")"
	}
	return s
}

func stepupCommands() []*cobra.Command {
	sessions := &cobra.Command{
		Use:   "sessions [--user U]",
		Short: "Lists signed-in sessions: handle, user, tiers held and until when",
		Args:  cobra.NoArgs,
		RunE: run(func(cc *cliContext, c *cobra.Command, _ []string) error {
			user, _ := c.Flags().GetString("user")
			uri := "/stepup/sessions"
			if user != "" {
				uri += "?" + url.Values{"user": {user}}.Encode()
			}
			var ans struct{ Sessions []cliSession }
			raw, err := cc.call(http.MethodGet, uri, nil, &ans)
			if err != nil {
				return err
			}
			return cc.emit(raw, func(tw *tabwriter.Writer) { printSessions(tw, ans.Sessions) })
		}),
	}
	sessions.Flags().String("user", "", "Only this user's sessions")

	revoke := &cobra.Command{
		Use:   "revoke HANDLE | --user U",
		Short: "Ends a session, or every session of a user (on every instance sharing the store)",
		Args:  cobra.MaximumNArgs(1),
		RunE: run(func(cc *cliContext, c *cobra.Command, args []string) error {
			user, _ := c.Flags().GetString("user")
			var uri string
			switch {
			case len(args) == 1 && user == "":
				uri = "/stepup/sessions/" + url.PathEscape(args[0])
			case len(args) == 0 && user != "":
				uri = "/stepup/sessions?" + url.Values{"user": {user}}.Encode()
			default:
				return fmt.Errorf("give a session HANDLE or --user U (one of them)")
			}
			var ans struct{ Revoked []cliSession }
			raw, err := cc.call(http.MethodDelete, uri, nil, &ans)
			if err != nil {
				return err
			}
			return cc.emit(raw, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "Ended %d session(s).\n", len(ans.Revoked))
				if len(ans.Revoked) > 0 {
					printSessions(tw, ans.Revoked)
				}
			})
		}),
	}
	revoke.Flags().String("user", "", "End every session of this user")

	approvals := &cobra.Command{
		Use:   "approvals [--pending]",
		Short: "Lists approval requests, newest first",
		Args:  cobra.NoArgs,
		RunE: run(func(cc *cliContext, c *cobra.Command, _ []string) error {
			pending, _ := c.Flags().GetBool("pending")
			uri := "/stepup/approvals"
			if pending {
				uri += "?status=pending"
			}
			var ans struct{ Approvals []cliApproval }
			raw, err := cc.call(http.MethodGet, uri, nil, &ans)
			if err != nil {
				return err
			}
			return cc.emit(raw, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tSTATUS\tPOLICY\tSET\tREQUESTER\tACTION\tAPPROVALS\tEXPIRES")
				for _, q := range ans.Approvals {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s %s\t%s\t%s\n", q.ID, q.Status, q.Policy, q.Set, q.Requester, q.Method, q.URI, q.votes(), when(q.Expires))
				}
			})
		}),
	}
	approvals.Flags().Bool("pending", false, "Only requests waiting for a decision")

	decideCmd := func(decision string) *cobra.Command {
		c := &cobra.Command{
			Use:   decision + " ID --as APPROVER [--comment TEXT]",
			Short: "Records an approver's decision to " + decision + " a request (the admin acts in the approver's name)",
			Args:  cobra.ExactArgs(1),
			RunE: run(func(cc *cliContext, c *cobra.Command, args []string) error {
				as, _ := c.Flags().GetString("as")
				comment, _ := c.Flags().GetString("comment")
				if as == "" {
					return fmt.Errorf("--as APPROVER is required: the approver in whose name the decision is made")
				}
				var q cliApproval
				raw, err := cc.call(http.MethodPost, "/stepup/approvals/"+url.PathEscape(args[0]),
					DecisionRequest{Decision: decision, Comment: comment, Approver: as}, &q)
				if err != nil {
					return err
				}
				return cc.emit(raw, func(tw *tabwriter.Writer) {
					fmt.Fprintf(tw, "Approval %s: %s\t(approvals %s)\n", q.ID, q.Status, q.votes())
					fmt.Fprintf(tw, "Action:\t%s %s by %s (set %s, policy %s)\n", q.Method, q.URI, q.Requester, q.Set, q.Policy)
				})
			}),
		}
		c.Flags().String("as", "", "The approver in whose name the decision is made (required)")
		c.Flags().String("comment", "", "A comment for the requester and the audit trail")
		return c
	}

	enrol := &cobra.Command{
		Use:   "enroll-link USER TIER [--method M] [--expires 24h] [--base-url URL]",
		Short: "Makes a one-time link for USER to set up TIER's credential (a TOTP app, a security key)",
		Args:  cobra.ExactArgs(2),
		RunE: run(func(cc *cliContext, c *cobra.Command, args []string) error {
			method, _ := c.Flags().GetString("method")
			expires, _ := c.Flags().GetString("expires")
			base, _ := c.Flags().GetString("base-url")
			var ans struct {
				URL, User, Tier, Method string
				Expires                 time.Time
			}
			raw, err := cc.call(http.MethodPost, "/stepup/enrollments",
				EnrollmentRequest{User: args[0], Tier: args[1], Method: method, Expires: expires, BaseURL: base}, &ans)
			if err != nil {
				return err
			}
			return cc.emit(raw, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "Link:\t%s\n", ans.URL)
				fmt.Fprintf(tw, "For:\t%s, tier %s (%s)\n", ans.User, ans.Tier, ans.Method)
				fmt.Fprintf(tw, "Expires:\t%s\n", when(ans.Expires))
				fmt.Fprintln(tw, "Works once, only for that user signed in.")
			})
		}),
	}
	enrol.Flags().String("method", "", "The method to set up, when the tier has several")
	enrol.Flags().String("expires", "", "How long the link works (default 24h)")
	enrol.Flags().String("base-url", "", "Scheme and host of the site, e.g. https://app.example.com, for an absolute link")

	credentials := &cobra.Command{
		Use:   "credentials USER",
		Short: "Lists a user's credentials per tier (names and dates, never secrets)",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(cc *cliContext, c *cobra.Command, args []string) error {
			raw, err := cc.call(http.MethodGet, "/stepup/users/"+url.PathEscape(args[0]), nil, nil)
			if err != nil {
				return err
			}
			var full struct {
				Tiers []struct {
					Tier    string `json:"tier"`
					Methods []struct {
						Method      string `json:"method"`
						Kind        string `json:"kind"`
						Enrolls     bool   `json:"enrolls"`
						Enrolled    bool   `json:"enrolled"`
						SelfEnroll  bool   `json:"self_enroll"`
						Provisioned bool   `json:"provisioned"`
						Credentials []struct {
							Name     string    `json:"name"`
							Created  time.Time `json:"created"`
							LastUsed time.Time `json:"last_used"`
						} `json:"credentials"`
					} `json:"methods"`
				} `json:"tiers"`
			}
			_ = json.Unmarshal(raw, &full)
			return cc.emit(raw, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "TIER\tMETHOD\tSET UP\tSELF ENROL\tCREDENTIALS")
				for _, t := range full.Tiers {
					for _, m := range t.Methods {
						state := "n/a (kept elsewhere)"
						if m.Enrolls {
							state = yesNo(m.Enrolled)
							if m.Provisioned {
								state += " (provisioned)"
							}
						}
						var cs []string
						for _, cr := range m.Credentials {
							cs = append(cs, fmt.Sprintf("%q created %s, last used %s", cr.Name, when(cr.Created), when(cr.LastUsed)))
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Tier, m.Method, state, yesNo(m.SelfEnroll), orDash(strings.Join(cs, "; ")))
					}
				}
			})
		}),
	}

	reset := &cobra.Command{
		Use:   "reset-credentials USER TIER",
		Short: "Removes USER's credentials for TIER's methods (a lost phone or key), and with --end-sessions ends USER's sessions",
		Args:  cobra.ExactArgs(2),
		RunE: run(func(cc *cliContext, c *cobra.Command, args []string) error {
			var ans struct {
				Tier          string            `json:"tier"`
				Removed       map[string]int    `json:"removed"`
				Provisioned   []string          `json:"provisioned"`
				AlsoAffects   []string          `json:"also_affects"`
				EndedSessions []json.RawMessage `json:"ended_sessions"`
			}
			path := "/stepup/users/" + url.PathEscape(args[0]) + "/credentials/" + url.PathEscape(args[1])
			if end, _ := c.Flags().GetBool("end-sessions"); end {
				path += "?end_sessions=true"
			}
			raw, err := cc.call(http.MethodDelete, path, nil, &ans)
			if err != nil {
				return err
			}
			return cc.emit(raw, func(tw *tabwriter.Writer) {
				for m, n := range ans.Removed {
					fmt.Fprintf(tw, "%s:\tremoved %d credential(s)\n", m, n)
				}
				if len(ans.Provisioned) > 0 {
					fmt.Fprintf(tw, "Kept:\t%s (given in the configuration: remove it there)\n", strings.Join(ans.Provisioned, ", "))
				}
				if len(ans.AlsoAffects) > 0 {
					fmt.Fprintf(tw, "Also affects:\t%s (same method)\n", strings.Join(ans.AlsoAffects, ", "))
				}
				if ans.EndedSessions != nil {
					fmt.Fprintf(tw, "Sessions ended:\t%d\n", len(ans.EndedSessions))
				}
			})
		}),
	}
	reset.Flags().Bool("end-sessions", false, "also end every session of the user (a stolen device)")

	explain := &cobra.Command{
		Use:   "explain METHOD URI [--user U] [--tiers a,b] [--host H] [--client-ip IP] [--session HANDLE] [--header 'Name: value']",
		Short: "Explains what a request needs: the sets it matches and why, what is missing, each approval condition",
		Args:  cobra.ExactArgs(2),
		RunE: run(func(cc *cliContext, c *cobra.Command, args []string) error {
			req := ExplainRequest{Method: args[0], URI: args[1]}
			req.User, _ = c.Flags().GetString("user")
			req.Host, _ = c.Flags().GetString("host")
			req.ClientIP, _ = c.Flags().GetString("client-ip")
			req.Session, _ = c.Flags().GetString("session")
			if tiers, _ := c.Flags().GetString("tiers"); tiers != "" {
				req.Tiers = strings.Split(tiers, ",")
			}
			headers, _ := c.Flags().GetStringArray("header")
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return fmt.Errorf("--header: want 'Name: value', not %q", h)
				}
				if req.Headers == nil {
					req.Headers = map[string]string{}
				}
				req.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
			var ans explainAnswer
			raw, err := cc.call(http.MethodPost, "/stepup/explain", req, &ans)
			if err != nil {
				return err
			}
			return cc.emit(raw, func(tw *tabwriter.Writer) { printExplain(tw, &req, &ans) })
		}),
	}
	explain.Flags().String("user", "", "The user making the request")
	explain.Flags().String("tiers", "", "Tiers the user holds, reached just now (comma-separated; bases implied)")
	explain.Flags().String("host", "", "Host of the request (default: each site's)")
	explain.Flags().String("client-ip", "", "Client IP of the request (default 127.0.0.1)")
	explain.Flags().String("session", "", "Explain for a live session (its handle) instead of --user/--tiers")
	explain.Flags().StringArray("header", nil, "A request header, 'Name: value' (repeatable)")

	all := []*cobra.Command{sessions, revoke, approvals, decideCmd("approve"), decideCmd("deny"), enrol, credentials, reset, explain}
	for _, c := range all {
		commonFlags(c)
	}
	return all
}

type explainAnswer struct {
	Request struct {
		Method   string `json:"method"`
		URI      string `json:"uri"`
		Host     string `json:"host"`
		ClientIP string `json:"client_ip"`
	} `json:"request"`
	Sites []struct {
		Site     string            `json:"site"`
		Decision string            `json:"decision"`
		Detail   string            `json:"detail"`
		Held     []string          `json:"held"`
		Sets     []explainSetLine  `json:"sets"`
		Default  *explainSetLine   `json:"default"`
		Approval []explainApproval `json:"approvals"`
	} `json:"sites"`
}

type explainSetLine struct {
	Name       string `json:"name"`
	Matched    bool   `json:"matched"`
	MatchedBy  string `json:"matched_by"`
	MatchError string `json:"match_error"`
	Tier       string `json:"tier"`
	MaxAge     string `json:"max_age"`
	PerRequest bool   `json:"per_request"`
	Risk       string `json:"risk"`
	Approval   string `json:"approval"`
	Held       bool   `json:"held"`
	Missing    string `json:"missing"`
}

type explainApproval struct {
	Policy     string `json:"policy"`
	Set        string `json:"set"`
	Outcome    string `json:"outcome"`
	Detail     string `json:"detail"`
	Conditions []struct {
		Condition string `json:"condition"`
		OK        bool   `json:"ok"`
		Detail    string `json:"detail"`
	} `json:"conditions"`
}

func printExplain(tw *tabwriter.Writer, req *ExplainRequest, ans *explainAnswer) {
	who := "an anonymous visitor"
	switch {
	case req.Session != "":
		who = "session " + req.Session
	case req.User != "":
		who = req.User
		if len(req.Tiers) > 0 {
			who += " holding " + strings.Join(req.Tiers, ", ")
		}
	}
	host := ans.Request.Host
	if host == "" {
		host = "each site's host"
	}
	fmt.Fprintf(tw, "%s %s on %s from %s, as %s\n", ans.Request.Method, ans.Request.URI, host, ans.Request.ClientIP, who)
	for _, s := range ans.Sites {
		fmt.Fprintf(tw, "\nsite %s\n", s.Site)
		fmt.Fprintf(tw, "decision:\t%s: %s\n", s.Decision, s.Detail)
		fmt.Fprintf(tw, "held:\t%s\n", orDash(strings.Join(s.Held, ", ")))
		fmt.Fprintln(tw, "\nSET\tMATCHED\tTIER\tMAX AGE\tRISK\tAPPROVAL\tHELD\tMISSING")
		lines := s.Sets
		if s.Default != nil {
			lines = append(lines, *s.Default)
		}
		for _, l := range lines {
			matched := yesNo(l.Matched)
			if l.MatchError != "" {
				matched = "error: " + l.MatchError
			}
			if !l.Matched {
				fmt.Fprintf(tw, "%s\t%s\t%s\t\t%s\t%s\t\t\n", l.Name, matched, l.Tier, orDash(l.Risk), orDash(l.Approval))
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Name, matched, l.Tier, l.MaxAge, orDash(l.Risk), orDash(l.Approval), yesNo(l.Held), orDash(l.Missing))
		}
		for _, l := range lines {
			if l.Matched && l.MatchedBy != "" && l.MatchedBy != "the request as sent" {
				fmt.Fprintf(tw, "  %s matched by %s\n", l.Name, l.MatchedBy)
			}
		}
		for _, a := range s.Approval {
			fmt.Fprintf(tw, "\napproval %s (set %s):\t%s: %s\n", a.Policy, a.Set, a.Outcome, a.Detail)
			for _, c := range a.Conditions {
				res := "ok"
				if !c.OK {
					res = "FAIL"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.Condition, res, c.Detail)
			}
		}
	}
}
