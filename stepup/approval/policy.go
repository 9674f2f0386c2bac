// Package approval is the just-in-time action approval of caddy-stepup:
// after the tier check, a request of a transaction set that names an
// approval policy passes only when the policy's conditions hold at that
// moment and the action was approved (by people who step up to decide, by
// a RADIUS server, by the policy itself for low risk, or by the requester
// breaking glass). The unit is one action: one user's exact request
// (method, URL, body digest) in one session, used once; a policy may
// instead grant a duration. Every state lives in the session store, so
// several instances share it.
package approval

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/radius"
)

// Policy is one approval policy.
type Policy struct {
	Name string
	// Conditions, all of which must hold at the moment of the action.
	Roles    []string
	Networks []netip.Prefix
	Hours    []Window
	Rate     *Rate
	MaxRisk  string
	// Approvers: people who may decide ("user:NAME" or "role:NAME").
	Approvers []Approver
	// Require distinct approvals (default 1).
	Require int
	// ApproverTier must be held, fresh, by an approver when deciding
	// (default: the tier of the set that asked).
	ApproverTier string
	// AutoApproveMaxRisk: sets at or below this risk need no human.
	AutoApproveMaxRisk string
	// Justification: "required", "optional" (the default) or "none".
	Justification string
	// Expire bounds a pending request (default 15m); ExecuteWithin an
	// approved once-grant (default 5m).
	Expire, ExecuteWithin time.Duration
	// Grant is 0 for a once-grant, else how long the approval covers every
	// request of the set by that user.
	Grant time.Duration
	// BreakGlass, when set, lets a requester approve their own action.
	BreakGlass *BreakGlass
	// LinkBase is the scheme and host of the approval pages' links in
	// notifications ("": the request's own).
	LinkBase string
	// Radius, when set, asks a RADIUS server to approve.
	Radius *Radius
	// Notifiers are told of every event (signed webhooks).
	Notifiers []stepup.Notifier
}

// Approver is one entry of a policy's approvers.
type Approver struct {
	// Kind is "user" or "role".
	Kind, Name string
}

func (a Approver) String() string { return a.Kind + ":" + a.Name }

// BreakGlass configures self-approval.
type BreakGlass struct {
	// Cooldown: the same user cannot break glass again within it
	// (default 1h).
	Cooldown time.Duration
}

// Radius configures RADIUS approval.
type Radius struct {
	Client *radius.Client
	// Timeout is how long the server may hold an Access-Request (a push
	// approval) before the request shows as unavailable (default 60s).
	Timeout time.Duration
	// NASIdentifier sent in every Access-Request (default caddy-stepup).
	NASIdentifier string
}

// Window is one weekly time window of the hours condition: on the given
// weekdays, from From to To (minutes after midnight, wall clock in Loc).
// A window whose To is not after From runs past midnight into the next day.
type Window struct {
	Days     [7]bool // indexed by time.Weekday
	From, To int
	Loc      *time.Location
	// Text is the window as configured, for audit records and pages.
	Text string
}

// Open reports whether t falls in the window.
func (w Window) Open(t time.Time) bool {
	l := t.In(w.Loc)
	m := l.Hour()*60 + l.Minute()
	day := l.Weekday()
	if w.From < w.To {
		return w.Days[day] && m >= w.From && m < w.To
	}
	prev := (day + 6) % 7
	return (w.Days[day] && m >= w.From) || (w.Days[prev] && m < w.To)
}

// Rate is the rate condition: at most N actions per Per per user.
type Rate struct {
	N   int
	Per time.Duration
}

var weekdays = map[string]time.Weekday{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

// ParseWindow reads `DAYS HH:MM-HH:MM [ZONE]`: DAYS is a day (Mon), a range
// (Mon-Fri) or a comma list of either (Mon-Wed,Sat); ZONE is an IANA time
// zone (default UTC).
func ParseWindow(args []string) (Window, error) {
	w := Window{Loc: time.UTC, Text: strings.Join(args, " ")}
	if len(args) < 2 || len(args) > 3 {
		return w, errors.New("want DAYS HH:MM-HH:MM [ZONE], e.g. Mon-Fri 08:00-18:00 Europe/Berlin")
	}
	for _, part := range strings.Split(args[0], ",") {
		a, b, isRange := strings.Cut(part, "-")
		from, ok := weekdays[strings.ToLower(a)]
		if !ok {
			return w, fmt.Errorf("unknown weekday %q (Mon, Tue, ... Sun)", a)
		}
		to := from
		if isRange {
			if to, ok = weekdays[strings.ToLower(b)]; !ok {
				return w, fmt.Errorf("unknown weekday %q (Mon, Tue, ... Sun)", b)
			}
		}
		for d := from; ; d = (d + 1) % 7 {
			w.Days[d] = true
			if d == to {
				break
			}
		}
	}
	a, b, ok := strings.Cut(args[1], "-")
	if !ok {
		return w, fmt.Errorf("time range %q: want HH:MM-HH:MM", args[1])
	}
	var err error
	if w.From, err = clock(a, false); err != nil {
		return w, err
	}
	if w.To, err = clock(b, true); err != nil {
		return w, err
	}
	if w.From == w.To {
		return w, fmt.Errorf("time range %q is empty", args[1])
	}
	if len(args) == 3 {
		if w.Loc, err = time.LoadLocation(args[2]); err != nil {
			return w, fmt.Errorf("unknown time zone %q", args[2])
		}
	}
	return w, nil
}

func clock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && (mm != 0 || !end)) {
		return 0, fmt.Errorf("time %q: want HH:MM (00:00 to 24:00)", s)
	}
	return hh*60 + mm, nil
}

// ParseRate reads `N/DURATION`, e.g. 10/1h.
func ParseRate(s string) (*Rate, error) {
	n, d, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(n)
	if !ok || err != nil || count < 1 {
		return nil, fmt.Errorf("rate %q: want N/DURATION, e.g. 10/1h", s)
	}
	per, err := time.ParseDuration(d)
	if err != nil || per <= 0 {
		return nil, fmt.Errorf("rate %q: want N/DURATION, e.g. 10/1h", s)
	}
	return &Rate{N: count, Per: per}, nil
}

// ParseApprover reads `user:NAME` or `role:NAME`.
func ParseApprover(s string) (Approver, error) {
	kind, name, ok := strings.Cut(s, ":")
	if !ok || name == "" || (kind != "user" && kind != "role") {
		return Approver{}, fmt.Errorf("approver %q: want user:NAME or role:NAME", s)
	}
	return Approver{Kind: kind, Name: name}, nil
}

// riskRank orders risk levels; an unset risk ranks 0.
func riskRank(r string) int {
	switch r {
	case "low":
		return 1
	case "medium":
		return 2
	case "high":
		return 3
	case "critical":
		return 4
	}
	return 0
}

// ValidRisk reports whether r names a risk level.
func ValidRisk(r string) bool { return riskRank(r) > 0 }

// Validate checks the policy and fills its defaults. Tiers are checked by
// the caller (hasTier).
func (p *Policy) Validate(hasTier func(string) bool) error {
	if p.Expire <= 0 {
		p.Expire = 15 * time.Minute
	}
	if p.ExecuteWithin <= 0 {
		p.ExecuteWithin = 5 * time.Minute
	}
	if p.Require == 0 {
		p.Require = 1
	}
	if p.Justification == "" {
		p.Justification = "optional"
	}
	if p.BreakGlass != nil && p.BreakGlass.Cooldown <= 0 {
		p.BreakGlass.Cooldown = time.Hour
	}
	if p.Radius != nil {
		if p.Radius.Timeout <= 0 {
			p.Radius.Timeout = 60 * time.Second
		}
		if p.Radius.NASIdentifier == "" {
			p.Radius.NASIdentifier = "caddy-stepup"
		}
	}
	users, roles := 0, 0
	seen := map[Approver]bool{}
	for _, a := range p.Approvers {
		if seen[a] {
			return fmt.Errorf("approver %s given twice", a)
		}
		seen[a] = true
		if a.Kind == "user" {
			users++
		} else {
			roles++
		}
	}
	switch {
	case p.Require < 1:
		return fmt.Errorf("require must be at least 1, not %d", p.Require)
	case p.Require > 1 && roles == 0 && p.Require > users:
		return fmt.Errorf("require %d: only %d approvers are listed, so it could never be met", p.Require, users)
	case p.Justification != "required" && p.Justification != "optional" && p.Justification != "none":
		return fmt.Errorf("justification must be required, optional or none, not %q", p.Justification)
	case p.MaxRisk != "" && !ValidRisk(p.MaxRisk):
		return fmt.Errorf("max_risk must be low, medium, high or critical, not %q", p.MaxRisk)
	case p.AutoApproveMaxRisk != "" && !ValidRisk(p.AutoApproveMaxRisk):
		return fmt.Errorf("auto_approve_max_risk must be low, medium, high or critical, not %q", p.AutoApproveMaxRisk)
	case p.ApproverTier != "" && !hasTier(p.ApproverTier):
		return fmt.Errorf("approver_tier: unknown tier %q", p.ApproverTier)
	case p.Grant < 0:
		return errors.New("grant: want once or a positive duration")
	case len(p.Approvers) == 0 && p.Radius == nil && p.AutoApproveMaxRisk == "" && p.BreakGlass == nil:
		return errors.New("nobody can approve: give approvers, radius, auto_approve_max_risk or break_glass")
	}
	return nil
}

// Condition names, as they appear in answers and audit records.
const (
	CondRoles    = "roles"
	CondNetworks = "networks"
	CondHours    = "hours"
	CondRate     = "rate"
	CondMaxRisk  = "max_risk"
)

// ConditionResult is one condition evaluated for one action.
type ConditionResult struct {
	Name string `json:"condition"`
	OK   bool   `json:"ok"`
	// Detail says why, in words safe to show the requester.
	Detail string `json:"detail"`
	// Message and Args say the refusal in the pages' catalogues (see
	// stepup.Denial).
	Message string `json:"-"`
	Args    []any  `json:"-"`
}

// Summary formats condition results for an audit record: roles=ok,hours=fail.
func Summary(rs []ConditionResult) string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.Name)
		if r.OK {
			b.WriteString("=ok")
		} else {
			b.WriteString("=fail")
		}
	}
	return b.String()
}

// staticConditions evaluates every condition but rate (which spends from
// a counter, so it is checked last, only when the others hold).
func (p *Policy) staticConditions(roles []string, clientIP string, now time.Time, risk string) []ConditionResult {
	var out []ConditionResult
	if len(p.Roles) > 0 {
		ok := false
		for _, want := range p.Roles {
			for _, have := range roles {
				ok = ok || want == have
			}
		}
		out = append(out, ConditionResult{CondRoles, ok, "requires one of the roles " + strings.Join(p.Roles, ", "),
			"denial.condition.roles", []any{"Roles", strings.Join(p.Roles, ", ")}})
	}
	if len(p.Networks) > 0 {
		ok := false
		if ip, err := netip.ParseAddr(clientIP); err == nil {
			ip = ip.Unmap()
			for _, n := range p.Networks {
				ok = ok || n.Contains(ip)
			}
		}
		out = append(out, ConditionResult{CondNetworks, ok, "allowed only from the organisation's networks", "denial.condition.networks", nil})
	}
	if len(p.Hours) > 0 {
		ok := false
		texts := make([]string, len(p.Hours))
		for i, w := range p.Hours {
			ok = ok || w.Open(now)
			texts[i] = w.Text
		}
		out = append(out, ConditionResult{CondHours, ok, "allowed only " + strings.Join(texts, "; "),
			"denial.condition.hours", []any{"Hours", strings.Join(texts, "; ")}})
	}
	if p.MaxRisk != "" {
		out = append(out, ConditionResult{CondMaxRisk, riskRank(risk) <= riskRank(p.MaxRisk), "this action's risk is above what the policy allows",
			"denial.condition.max_risk", nil})
	}
	return out
}

// autoApproves reports whether a set of this risk needs no human: a set
// without a risk level is never approved automatically.
func (p *Policy) autoApproves(risk string) bool {
	return p.AutoApproveMaxRisk != "" && riskRank(risk) > 0 && riskRank(risk) <= riskRank(p.AutoApproveMaxRisk)
}

// MayApprove reports whether a user with these roles is one of the
// policy's approvers. Whether they are the requester is checked apart.
func (p *Policy) MayApprove(user string, roles []string) bool {
	if user == "" {
		return false
	}
	for _, a := range p.Approvers {
		if a.Kind == "user" && a.Name == user {
			return true
		}
		if a.Kind == "role" {
			for _, r := range roles {
				if r == a.Name {
					return true
				}
			}
		}
	}
	return false
}

// ApproverNames lists the approvers for the requester's page.
func (p *Policy) ApproverNames() []string {
	out := make([]string, 0, len(p.Approvers)+1)
	for _, a := range p.Approvers {
		if a.Kind == "user" {
			out = append(out, a.Name)
		} else {
			out = append(out, "anyone with the role "+a.Name)
		}
	}
	if p.Radius != nil {
		out = append(out, "the approval service (RADIUS)")
	}
	return out
}
