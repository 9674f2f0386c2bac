package caddymodule

import (
	"bytes"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

type explainResult struct {
	Sites []struct {
		Site     string `json:"site"`
		Decision string `json:"decision"`
		Detail   string `json:"detail"`
		Held     []string
		Sets     []struct {
			Name      string `json:"name"`
			Matched   bool   `json:"matched"`
			MatchedBy string `json:"matched_by"`
			Held      bool   `json:"held"`
			Missing   string `json:"missing"`
		} `json:"sets"`
		Approvals []struct {
			Policy     string `json:"policy"`
			Outcome    string `json:"outcome"`
			Conditions []struct {
				Condition string `json:"condition"`
				OK        bool   `json:"ok"`
			} `json:"conditions"`
		} `json:"approvals"`
	} `json:"sites"`
}

func TestExplainOnATableOfRequests(t *testing.T) {
	o := startOps(t, opsGlobal(t), opsSite)
	o.clock.Advance(24 * time.Hour) // Monday 10:00 in Berlin: office hours
	bob := signedIn(o.server, "bob")
	var bobs sessionList
	o.apiJSON("GET", "/stepup/sessions?user=bob", nil, 200, &bobs)

	for _, c := range []struct {
		name     string
		req      ExplainRequest
		decision string
		matched  string // the sets that match, comma-separated
		how      string // in matched_by
		detail   string // in detail
		conds    string // condition=ok|fail of the approval, in order
	}{
		{name: "public", req: ExplainRequest{Method: "GET", URI: "/"}, decision: "allowed", detail: "default is public"},
		{name: "anonymous report", req: ExplainRequest{Method: "GET", URI: "/reports/q"}, decision: "step_up_required", matched: "reports", detail: "needs tier login"},
		{name: "bob's report", req: ExplainRequest{Method: "GET", URI: "/reports/q?x=1", User: "bob", Tiers: []string{"login"}}, decision: "allowed", matched: "reports"},
		{name: "admin GET is not in the set", req: ExplainRequest{Method: "GET", URI: "/admin/x", User: "bob", Tiers: []string{"login"}}, decision: "allowed"},
		{name: "admin POST needs otp", req: ExplainRequest{Method: "POST", URI: "/admin/x", User: "bob", Tiers: []string{"login"}}, decision: "step_up_required", matched: "admin", detail: "needs tier otp, reached within 5m0s"},
		{name: "an override header is a reading", req: ExplainRequest{Method: "GET", URI: "/admin/x", User: "bob", Tiers: []string{"login"}, Headers: map[string]string{"X-HTTP-Method-Override": "DELETE"}},
			decision: "step_up_required", matched: "admin", how: "override header X-Http-Method-Override"},
		{name: "a _method query is a reading", req: ExplainRequest{Method: "GET", URI: "/admin/x?_method=PUT", User: "bob", Tiers: []string{"login"}}, decision: "step_up_required", matched: "admin", how: "_method query"},
		{name: "a lenient path is a reading", req: ExplainRequest{Method: "POST", URI: "/admin;v=1/x", User: "bob", Tiers: []string{"login"}}, decision: "step_up_required", matched: "admin", how: "lenient server"},
		{name: "alice holds otp (base implied)", req: ExplainRequest{Method: "POST", URI: "/admin/x", User: "alice", Tiers: []string{"otp"}}, decision: "allowed", matched: "admin"},
		{name: "payment needs an approver", req: ExplainRequest{Method: "POST", URI: "/pay", User: "bob", Tiers: []string{"login"}}, decision: "approval_required", matched: "pay", detail: "anyone with the role security"},
		{name: "change: not an admin", req: ExplainRequest{Method: "POST", URI: "/change", User: "bob", Tiers: []string{"login"}, ClientIP: "10.1.2.3"},
			decision: "refused", matched: "change", detail: "roles", conds: "roles=fail,networks=ok,hours=ok,rate=ok"},
		{name: "change: outside the networks", req: ExplainRequest{Method: "POST", URI: "/change", User: "alice", Tiers: []string{"login"}, ClientIP: "192.0.2.7"},
			decision: "refused", matched: "change", detail: "networks", conds: "roles=ok,networks=fail,hours=ok,rate=ok"},
		{name: "change: every condition holds", req: ExplainRequest{Method: "POST", URI: "/change", User: "alice", Tiers: []string{"login"}, ClientIP: "10.1.2.3"},
			decision: "approval_required", matched: "change", detail: "carol", conds: "roles=ok,networks=ok,hours=ok,rate=ok"},
		{name: "bob's live session", req: ExplainRequest{Method: "POST", URI: "/admin/x", Session: bobs.Sessions[0].Handle}, decision: "step_up_required", matched: "admin"},
		{name: "an absolute URL names the host", req: ExplainRequest{Method: "GET", URI: "http://localhost/reports/", User: "bob", Tiers: []string{"login"}}, decision: "allowed", matched: "reports"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var x explainResult
			raw := o.apiJSON("POST", "/stepup/explain", c.req, 200, &x)
			if len(x.Sites) != 1 {
				t.Fatalf("sites: %s", raw)
			}
			site := x.Sites[0]
			if site.Decision != c.decision || !strings.Contains(site.Detail, c.detail) {
				t.Errorf("decision %s (%s), want %s (%s)", site.Decision, site.Detail, c.decision, c.detail)
			}
			var matched, how []string
			for _, s := range site.Sets {
				if s.Matched {
					matched = append(matched, s.Name)
					how = append(how, s.MatchedBy)
				}
			}
			if strings.Join(matched, ",") != c.matched {
				t.Errorf("matched %v, want %s", matched, c.matched)
			}
			if c.how != "" && !strings.Contains(strings.Join(how, ";"), c.how) {
				t.Errorf("matched by %v, want %q", how, c.how)
			}
			if c.conds != "" {
				var got []string
				for _, a := range site.Approvals {
					for _, cd := range a.Conditions {
						got = append(got, cd.Condition+map[bool]string{true: "=ok", false: "=fail"}[cd.OK])
					}
				}
				if strings.Join(got, ",") != c.conds {
					t.Errorf("conditions %v, want %s", got, c.conds)
				}
			}
			noSecrets(t, raw, secretsOf(bob)...)
		})
	}

	// Explaining spends nothing: the rate (2 per hour) is never used up,
	// and no approval request is made.
	for range 3 {
		o.apiJSON("POST", "/stepup/explain", ExplainRequest{Method: "POST", URI: "/change", User: "alice", Tiers: []string{"login"}, ClientIP: "10.1.2.3"}, 200, nil)
	}
	var x explainResult
	o.apiJSON("POST", "/stepup/explain", ExplainRequest{Method: "POST", URI: "/change", User: "alice", Tiers: []string{"login"}, ClientIP: "10.1.2.3"}, 200, &x)
	if x.Sites[0].Decision != "approval_required" {
		t.Fatalf("explaining spent the rate: %+v", x.Sites[0])
	}
	var list approvalList
	o.apiJSON("GET", "/stepup/approvals", nil, 200, &list)
	if len(list.Approvals) != 0 {
		t.Fatalf("explaining made approval requests: %+v", list)
	}

	// On Sunday, the hours fail.
	o.clock.Advance(-24 * time.Hour)
	o.apiJSON("POST", "/stepup/explain", ExplainRequest{Method: "POST", URI: "/change", User: "alice", Tiers: []string{"login"}, ClientIP: "10.1.2.3"}, 200, &x)
	if x.Sites[0].Decision != "refused" || !strings.Contains(x.Sites[0].Detail, "hours") {
		t.Fatalf("on Sunday: %+v", x.Sites[0])
	}

	o.apiError("POST", "/stepup/explain", ExplainRequest{Method: "GET"}, 400, "uri is required")
	o.apiError("POST", "/stepup/explain", ExplainRequest{URI: "/", ClientIP: "nope"}, 400, "client_ip")
	o.apiError("POST", "/stepup/explain", ExplainRequest{URI: "/", Tiers: []string{"login"}}, 400, "give user")
	o.apiError("POST", "/stepup/explain", ExplainRequest{URI: "/", User: "bob", Tiers: []string{"gold"}}, 400, "unknown tier")
	o.apiError("POST", "/stepup/explain", ExplainRequest{URI: "/", Session: "nope"}, 404, "no session")
	o.apiError("POST", "/stepup/explain", ExplainRequest{URI: "/", Host: "elsewhere.example"}, 404, "no stepup handler")
	o.apiError("GET", "/stepup/explain", nil, 405, "no such route")
}

// metricValue reads a sample of the Prometheus text format (0 if absent).
func metricValue(body, name string, labels ...string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if ok {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			return v
		}
	}
	return 0
}

func TestMetricsOnTheAdminEndpointAfterScriptedStepUps(t *testing.T) {
	o := startOps(t, opsGlobal(t), opsSite)
	scrape := func() string {
		t.Helper()
		status, body := o.api("GET", "/metrics", nil)
		if status != 200 {
			t.Fatalf("/metrics: %d", status)
		}
		return body
	}
	before := scrape()
	bob := o.browser()
	bob.login("login", "/", creds("bob", "wrong"))               // a failure
	bob.login("login", "/", creds("bob", "bob-pw"))              // a success
	bob.get("/reports/q")                                        // allowed
	o.browser().get("/reports/q")                                // step_up_required
	approvalID(t, bob.post("/pay", url.Values{"amount": {"1"}})) // approval_pending, requested
	after := scrape()

	for _, c := range []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"caddy_stepup_challenges_total", []string{`tier="login"`, `method="password"`, `result="success"`}, 1},
		{"caddy_stepup_challenges_total", []string{`tier="login"`, `method="password"`, `result="failure"`}, 1},
		{"caddy_stepup_decisions_total", []string{`result="allowed"`}, 1},
		{"caddy_stepup_decisions_total", []string{`result="step_up_required"`}, 1},
		{"caddy_stepup_decisions_total", []string{`result="approval_pending"`}, 1},
		{"caddy_stepup_approvals_total", []string{`policy="payments"`, `decision="requested"`}, 1},
		{"caddy_stepup_decision_duration_seconds_count", nil, 3},
	} {
		if d := metricValue(after, c.name, c.labels...) - metricValue(before, c.name, c.labels...); d < c.delta {
			t.Errorf("%s%v grew by %v, want at least %v", c.name, c.labels, d, c.delta)
		}
	}
	if metricValue(after, "caddy_stepup_sessions_active") < 1 {
		t.Errorf("sessions_active: %v", metricValue(after, "caddy_stepup_sessions_active"))
	}
	if strings.Contains(after, `user="`) || strings.Contains(after, "bob") || strings.Contains(after, "/reports") {
		t.Error("a metric carries a user or a path")
	}
	// A reload registers nothing twice, and the counters go on.
	if err := o.load(opsGlobal(t), opsSite); err != nil {
		t.Fatalf("reload: %v", err)
	}
	bob.get("/reports/q")
	again := scrape()
	if metricValue(again, "caddy_stepup_decisions_total", `result="allowed"`) <= metricValue(after, "caddy_stepup_decisions_total", `result="allowed"`) {
		t.Error("after a reload, decisions are not counted on")
	}
}

func TestStepupEventsReachCaddysEventsApp(t *testing.T) {
	takeEvents()
	events := `
	events {
		on stepup.succeeded stepup_test_recorder
		on stepup.failed stepup_test_recorder
		on stepup.logoff stepup_test_recorder
		on stepup.lapsed stepup_test_recorder
	}`
	o := startOps(t, opsGlobal(t)+events, opsSite)
	b := o.browser()
	b.login("login", "/", creds("bob", "wrong"))
	b.login("login", "/", creds("bob", "bob-pw"))
	b.get("/_stepup/")
	b.post("/_stepup/logout", url.Values{"tier": {"login"}})
	a := o.browser()
	a.login("otp", "/", creds("alice", "alice-pw"), url.Values{"code": {oathtool(t, o.clock.Now(), "--totp", "-b", aliceTOTP)}})
	o.clock.Advance(31 * time.Minute)
	a.get("/reports/q") // otp lapsed
	d := signedIn(o.server, "dave")
	var ds sessionList
	o.apiJSON("DELETE", "/stepup/sessions?user=dave", nil, 200, &ds)
	_ = d

	var got []string
	for _, e := range takeEvents() {
		got = append(got, e.Name()+":"+e.Data["user"].(string))
		for k, v := range e.Data {
			if s, ok := v.(string); ok && (strings.Contains(s, "pw") || k == "password") {
				t.Errorf("event %s carries %s=%v", e.Name(), k, v)
			}
		}
		if e.Name() == "stepup.succeeded" && e.Data["user"] == "bob" && (e.Data["tier"] != "login" || e.Data["method"] != "password" || e.Data["session"] == nil) {
			t.Errorf("succeeded event data: %v", e.Data)
		}
	}
	want := "stepup.failed:bob stepup.succeeded:bob stepup.logoff:bob stepup.succeeded:alice stepup.succeeded:alice stepup.lapsed:alice stepup.succeeded:dave stepup.logoff:dave"
	if strings.Join(got, " ") != want {
		t.Fatalf("events:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

// realHome is the user's home before TestMain replaced it.
var realHome = os.Getenv("HOME")

// runCLI runs `caddy stepup ARGS` in-process, as the binary does.
func runCLI(t *testing.T, o *opsServer, args ...string) (string, error) {
	t.Helper()
	for _, c := range stepupCommands() {
		if c.Name() != args[0] {
			continue
		}
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetErr(&out)
		c.SetArgs(append(args[1:], "--address", o.admin))
		err := c.Execute()
		return out.String(), err
	}
	t.Fatalf("no subcommand %s", args[0])
	return "", nil
}

func TestCLIAgainstTheAdminAPI(t *testing.T) {
	o := startOps(t, opsGlobal(t), opsSite)
	bob := signedIn(o.server, "bob")
	alice := signedIn(o.server, "alice")
	id := approvalID(t, bob.post("/pay", url.Values{"amount": {"7"}}))

	out, err := runCLI(t, o, "sessions")
	if err != nil || !regexp.MustCompile(`(?m)^HANDLE\s+USER\s+TIERS \(UNTIL\)\s+SIGNED IN\s+LAST SEEN$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^\S+\s+bob\s+login \(`).MatchString(out) || !strings.Contains(out, "alice") {
		t.Fatalf("sessions: %v\n%s", err, out)
	}
	noSecrets(t, out, secretsOf(bob)...)
	if out, err = runCLI(t, o, "sessions", "--user", "bob", "--json"); err != nil || !strings.Contains(out, `"sessions"`) || strings.Contains(out, "alice") {
		t.Fatalf("sessions --json: %v\n%s", err, out)
	}
	if out, err = runCLI(t, o, "approvals", "--pending"); err != nil || !regexp.MustCompile(id+`\s+pending\s+payments\s+pay\s+bob\s+POST /pay\s+0/1`).MatchString(out) {
		t.Fatalf("approvals: %v\n%s", err, out)
	}
	if _, err = runCLI(t, o, "approve", id, "--as", "bob"); err == nil || !strings.Contains(err.Error(), "cannot decide it (HTTP 403)") {
		t.Fatalf("self-approval through the CLI: %v", err)
	}
	if out, err = runCLI(t, o, "approve", id, "--as", "carol", "--comment", "ok"); err != nil || !strings.Contains(out, "Approval "+id+": approved") {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	if out, err = runCLI(t, o, "enroll-link", "bob", "code8"); err != nil || !regexp.MustCompile(`Link:\s+/_stepup/enroll\?link=`).MatchString(out) {
		t.Fatalf("enroll-link: %v\n%s", err, out)
	}
	out, err = runCLI(t, o, "explain", "POST", "/admin/x", "--user", "bob", "--tiers", "login")
	if err != nil || !strings.Contains(out, "decision:  step_up_required: set admin needs tier otp") ||
		!regexp.MustCompile(`(?m)^admin\s+yes\s+otp\s+5m0s\s+high\s+-\s+no\s+tier otp$`).MatchString(out) {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	if out, err = runCLI(t, o, "credentials", "bob"); err != nil || !regexp.MustCompile(`(?m)^code8\s+totp\s+no\s+no\s+-$`).MatchString(out) {
		t.Fatalf("credentials: %v\n%s", err, out)
	}
	if out, err = runCLI(t, o, "reset-credentials", "alice", "otp", "--end-sessions"); err != nil || !regexp.MustCompile(`(?m)^Sessions ended:\s+1$`).MatchString(out) {
		t.Fatalf("reset-credentials --end-sessions: %v\n%s", err, out)
	}
	if r := alice.get("/reports/q"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("alice still passes after reset-credentials --end-sessions: %d", r.StatusCode)
	}
	if out, err = runCLI(t, o, "revoke", "--user", "bob"); err != nil || !strings.Contains(out, "Ended 1 session(s).") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	if r := bob.get("/reports/q"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("bob still passes after revoke: %d", r.StatusCode)
	}
	if _, err = runCLI(t, o, "revoke", "nope"); err == nil || !strings.Contains(err.Error(), "no session") {
		t.Fatalf("revoking an unknown handle: %v", err)
	}
	if _, err = runCLI(t, o, "revoke"); err == nil {
		t.Fatal("revoke without a handle or user succeeded")
	}

	// The real binary, once: `caddy stepup` is registered and talks to
	// the same endpoint.
	bin := filepath.Join(t.TempDir(), "caddy")
	build := exec.Command("go", "build", "-o", bin, "../cmd/caddy")
	// TestMain gave the tests a home of their own; the go command needs
	// the real one for its caches.
	build.Env = append(os.Environ(), "HOME="+realHome)
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building cmd/caddy: %v\n%s", err, msg)
	}
	help, err := exec.Command(bin, "help", "stepup").CombinedOutput()
	if err != nil || !strings.Contains(string(help), "caddy stepup explain METHOD URI") {
		t.Fatalf("caddy help stepup: %v\n%s", err, help)
	}
	cmd := exec.Command(bin, "stepup", "explain", "GET", "/reports/q", "--address", o.admin)
	cmd.Env = append(os.Environ(), "USER=ops-test")
	got, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(got), "step_up_required: set reports needs tier login") {
		t.Fatalf("caddy stepup explain: %v\n%s", err, got)
	}
	got, err = exec.Command(bin, "stepup", "revoke", "nope", "--address", o.admin).CombinedOutput()
	if err == nil || !strings.Contains(string(got), "no session with handle") {
		t.Fatalf("the binary's error: %v\n%s", err, got)
	}
}
