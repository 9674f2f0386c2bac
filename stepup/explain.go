package stepup

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddy-stepup/caddy-stepup/tiers"
)

// Explain is the dry run of Decide an operator asks for: which
// transaction sets a request matches and how, what each requires, and
// what the session lacks. It runs no stage (an approval stage would spend
// a rate counter or create a request): the caller explains approvals
// apart. ev.Readings must be filled (ReadingsOf) as the gateway does.

// SetExplanation is one transaction set (or the default requirement) for
// one request.
type SetExplanation struct {
	Name    string `json:"name"`
	Matched bool   `json:"matched"`
	// MatchedBy says how: "the request as sent", or the other reading of
	// it that the upstream may act on (a method override, HEAD run as GET,
	// a path as a lenient server reads it).
	MatchedBy string `json:"matched_by,omitempty"`
	// MatchError is a matcher's failure: the gateway answers 500.
	MatchError string `json:"match_error,omitempty"`
	Tier       string `json:"tier"`
	// MaxAge is the freshness required of the tier (its own max_age, or
	// the set's stricter one); PerRequest: a step-up for each request.
	MaxAge     string `json:"max_age,omitempty"`
	PerRequest bool   `json:"per_request,omitempty"`
	Risk       string `json:"risk,omitempty"`
	Approval   string `json:"approval,omitempty"`
	// Held: the session meets the tier requirement; else Missing says what
	// it lacks.
	Held    bool   `json:"held"`
	Missing string `json:"missing,omitempty"`
}

// Explanation is the tier part of a decision, set by set.
type Explanation struct {
	Sets []SetExplanation `json:"sets"`
	// Default is the default requirement, when no set matched.
	Default *SetExplanation `json:"default,omitempty"`
	// TiersOK: every tier requirement holds (approvals aside).
	TiersOK bool `json:"tiers_ok"`
	// Missing is what the gateway would ask for first (nil if nothing).
	Missing *Missing `json:"-"`
	// Error: a matcher failed; the gateway would answer 500.
	Error bool `json:"-"`
}

// Explain evaluates every set against the request without side effects.
func (p *Policy) Explain(ev *Evaluation) *Explanation {
	ev.Policy = p
	ev.Decision = Decision{}
	stack := tiers.Stack(nil)
	if ev.Session != nil {
		stack = ev.Session.Stack
	}
	out := &Explanation{TiersOK: true}
	for i := range p.Sets {
		s := &p.Sets[i]
		se := SetExplanation{Name: s.Name, Tier: s.Tier, Risk: s.Risk, Approval: s.Approval, PerRequest: s.PerRequest()}
		ok, how, err := p.explainMatch(s, ev)
		switch {
		case err != nil:
			se.MatchError = err.Error()
			out.Error, out.TiersOK = true, false
		case ok:
			se.Matched, se.MatchedBy = true, how
			ev.Decision.Matched |= 1 << uint(i)
			p.explainTier(ev, stack, &se, s.MaxAge, s.HasMaxAge && s.MaxAge > 0, out)
		}
		out.Sets = append(out.Sets, se)
	}
	if ev.Decision.Matched == 0 && p.Default != "" && !out.Error {
		se := SetExplanation{Name: "default", Tier: p.Default, Matched: true, MatchedBy: "no transaction set matched"}
		p.explainTier(ev, stack, &se, 0, false, out)
		out.Default = &se
	}
	return out
}

func (p *Policy) explainTier(ev *Evaluation, stack tiers.Stack, se *SetExplanation, maxAge time.Duration, stricter bool, out *Explanation) {
	m := p.check(ev, stack, se.Name, se.Tier, maxAge, se.PerRequest, se.Risk)
	t, _ := p.Hierarchy.Get(se.Tier)
	eff := t.MaxAge
	if stricter && maxAge < eff {
		eff = maxAge
	}
	se.MaxAge = eff.String()
	if se.PerRequest {
		se.MaxAge = "0s"
	}
	if m == nil {
		se.Held = true
		return
	}
	out.TiersOK = false
	if out.Missing == nil {
		out.Missing = m
	}
	_, held := stack.Level(se.Tier)
	switch {
	case se.PerRequest:
		se.Missing = "a step-up to " + se.Tier + " for this very request"
	case held && stack.Holds(p.Hierarchy, se.Tier, ev.Now, 0):
		se.Missing = fmt.Sprintf("a fresher %s: reached within the last %s", se.Tier, eff)
	default:
		se.Missing = "tier " + se.Tier
		if chain, err := stack.Next(p.Hierarchy, se.Tier, ev.Now, maxAge); err == nil && chain != se.Tier {
			se.Missing += " (next step: " + chain + ")"
		}
	}
}

// explainMatch is Policy.match, saying which reading matched.
func (p *Policy) explainMatch(s *TransactionSet, ev *Evaluation) (bool, string, error) {
	r := ev.Request
	method, path := r.Method, r.URL.Path
	ok, m, pth, err := p.matchReading(s, ev)
	if err != nil || !ok {
		return false, "", err
	}
	var how []string
	if m != method {
		how = append(how, methodSource(r, method, m))
	}
	if pth != path {
		how = append(how, fmt.Sprintf("path %s, as a lenient server reads %s", pth, path))
	}
	if len(how) == 0 {
		return true, "the request as sent", nil
	}
	return true, strings.Join(how, "; "), nil
}

// methodSource says where the method m that a request may run as comes
// from.
func methodSource(r *http.Request, actual, m string) string {
	for _, h := range overrideHeaders {
		for _, v := range r.Header[h] {
			if strings.EqualFold(strings.TrimSpace(v), m) {
				return fmt.Sprintf("method %s from the override header %s (frameworks honour it)", m, h)
			}
		}
	}
	for _, v := range overrideFields(r.URL.RawQuery) {
		if strings.EqualFold(strings.TrimSpace(v), m) {
			return fmt.Sprintf("method %s from a _method query parameter (frameworks honour it)", m)
		}
	}
	if actual == http.MethodHead && m == http.MethodGet {
		return "method GET: servers run GET handlers for HEAD"
	}
	return fmt.Sprintf("method %s from a _method form field (frameworks honour it)", m)
}
