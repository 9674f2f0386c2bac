package stepup

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddy-stepup/caddy-stepup/tiers"
)

// MaxTransactionSets is the most sets one policy may hold (they are tracked
// in a bit set so that deciding a request does not allocate).
const MaxTransactionSets = 64

// TransactionSet is a named group of requests and what they require.
type TransactionSet struct {
	// Name identifies the set in audit records and challenges.
	Name string
	// Label names the set for people ("Admin area") on the pages.
	Label string
	// Match reports whether a request belongs to the set (Caddy's request
	// matchers, adapted by the caller). An error fails the request closed.
	Match func(*http.Request) (bool, error)
	// Tier that must be held.
	Tier string
	// MaxAge, when HasMaxAge, is a stricter freshness for this set; 0 means
	// the step-up must be performed for this very request.
	MaxAge    time.Duration
	HasMaxAge bool
	// Risk is the set's risk level (low, medium, high, critical), recorded
	// in audit records and used by approval policies.
	Risk string
	// Approval names the approval policy the set's requests need, after
	// the tier ("" for none); a Stage enforces it.
	Approval string
}

// PerRequest reports whether the set needs a step-up for each request.
func (t *TransactionSet) PerRequest() bool { return t.HasMaxAge && t.MaxAge == 0 }

// Missing describes what a request lacks.
type Missing struct {
	// Set is the transaction set whose requirement failed ("default" for
	// the default requirement).
	Set string
	// Tier is the tier required, ACR its challenge name.
	Tier, ACR string
	// MaxAge is the effective freshness required.
	MaxAge time.Duration
	// PerRequest: the step-up must happen for this very request.
	PerRequest bool
	// Risk of the set.
	Risk string
}

// Decision is the outcome of evaluating a request.
type Decision struct {
	// Allowed: every requirement holds.
	Allowed bool
	// Missing is set when a tier requirement failed.
	Missing *Missing
	// Denial is set when a later stage (approval) refused the request.
	Denial *Denial
	// Matched is the bit set of the transaction sets the request matched
	// (bit i = Sets[i]).
	Matched uint64
	// UsedFreshStepUp: a per-request requirement was satisfied by a step-up
	// performed for this request; the caller consumes the one-time grant.
	UsedFreshStepUp bool
}

// Denial is a refusal by a stage after the tier check.
type Denial struct {
	Set    string
	Reason string // machine-readable
	Detail string // safe to show
	Status int
	// Message is Detail's message ID in the pages' catalogues (web/locales)
	// and Args its template arguments as name, value pairs: a page says it
	// in the user's language, while Detail stays the English words for API
	// clients. "" when there is none.
	Message string
	Args    []any
	// Approval is the id of the approval the request waits for (an
	// approval stage's answer: 202 for API clients, the approval page for
	// browsers).
	Approval string
	// Condition names the approval condition that failed.
	Condition string
}

// Evaluation is the state a decision is computed on; stages read it.
type Evaluation struct {
	Request *http.Request
	Session *Session
	Now     time.Time
	// FreshSince is when the step-up performed for this very request
	// started (a replayed pending request, or a one-time grant); zero if
	// none. A per-request requirement holds only for a level reached after it.
	FreshSince time.Time
	Policy     *Policy
	Decision   Decision
	// Readings are the other ways the upstream may read the request
	// (ReadingsOf): a set matches when any reading matches it.
	Readings Readings
	// HaveReadings says Readings were computed for this request already
	// (by a caller that scanned its headers on the way in).
	HaveReadings bool
	// Cookies are the request's cookies as Engine.ScanCookies found them
	// on the way in (zero: not scanned, as for a replayed request).
	Cookies RequestCookies
}

// Stage is one step of the decision pipeline after the tier check (the
// just-in-time approval joins here). A stage that refuses sets Denial.
type Stage interface {
	Evaluate(ev *Evaluation) error
}

// Policy is the requirement of one site: its transaction sets, the default
// requirement, and the stages that follow the tier check.
type Policy struct {
	Hierarchy *tiers.Hierarchy
	Sets      []TransactionSet
	// Default is the tier required by requests that match no set; "" means
	// public.
	Default string
	// Stages run, in order, once every tier requirement holds.
	Stages []Stage

	// highRisk is the bit set of the sets of risk high or critical, whose
	// passes get an audit record of their own.
	highRisk uint64
}

// ErrMatcher wraps a matcher failure: the request is refused.
var ErrMatcher = errors.New("transaction set matcher failed")

// NewPolicy validates the sets against the hierarchy.
func NewPolicy(h *tiers.Hierarchy, sets []TransactionSet, def string, stages ...Stage) (*Policy, error) {
	if len(sets) > MaxTransactionSets {
		return nil, fmt.Errorf("%d transaction sets: at most %d per handler", len(sets), MaxTransactionSets)
	}
	p := &Policy{Hierarchy: h, Sets: sets, Default: def, Stages: stages}
	if def != "" && def != "public" && !h.Has(def) {
		return nil, fmt.Errorf("default: unknown tier %q", def)
	}
	if def == "public" {
		p.Default = ""
	}
	seen := map[string]bool{}
	for i := range sets {
		s := &sets[i]
		switch {
		case s.Name == "":
			return nil, fmt.Errorf("transaction set #%d: missing name", i+1)
		case seen[s.Name]:
			return nil, fmt.Errorf("transaction set %q: defined more than once", s.Name)
		case s.Tier == "":
			return nil, fmt.Errorf("transaction set %q: missing tier", s.Name)
		case !h.Has(s.Tier):
			return nil, fmt.Errorf("transaction set %q: unknown tier %q", s.Name, s.Tier)
		case s.Match == nil:
			return nil, fmt.Errorf("transaction set %q: no matcher", s.Name)
		case s.MaxAge < 0:
			return nil, fmt.Errorf("transaction set %q: negative max_age", s.Name)
		}
		switch s.Risk {
		case "", "low", "medium", "high", "critical":
		default:
			return nil, fmt.Errorf("transaction set %q: risk must be low, medium, high or critical, not %q", s.Name, s.Risk)
		}
		seen[s.Name] = true
		if s.Risk == "high" || s.Risk == "critical" {
			p.highRisk |= 1 << uint(i)
		}
	}
	return p, nil
}

// Decide evaluates a request: every matching set's requirement must hold
// (a conjunction); a request matching none gets the default requirement.
// Then the stages run. The first unmet requirement is reported.
func (p *Policy) Decide(ev *Evaluation) error {
	ev.Policy = p
	ev.Decision = Decision{}
	stack := tiers.Stack(nil)
	if ev.Session != nil {
		stack = ev.Session.Stack
	}
	for i := range p.Sets {
		s := &p.Sets[i]
		ok, err := p.match(s, ev)
		if err != nil {
			return fmt.Errorf("%w: set %q: %v", ErrMatcher, s.Name, err)
		}
		if !ok {
			continue
		}
		ev.Decision.Matched |= 1 << uint(i)
		if m := p.check(ev, stack, s.Name, s.Tier, s.MaxAge, s.PerRequest(), s.Risk); m != nil {
			ev.Decision.Missing = m
			return nil
		}
	}
	if ev.Decision.Matched == 0 && p.Default != "" {
		if m := p.check(ev, stack, "default", p.Default, 0, false, ""); m != nil {
			ev.Decision.Missing = m
			return nil
		}
	}
	for _, st := range p.Stages {
		if err := st.Evaluate(ev); err != nil {
			return err
		}
		if ev.Decision.Denial != nil {
			return nil
		}
	}
	ev.Decision.Allowed = true
	return nil
}

// match reports whether any reading of the request matches the set.
func (p *Policy) match(s *TransactionSet, ev *Evaluation) (bool, error) {
	ok, _, _, err := p.matchReading(s, ev)
	return ok, err
}

// matchReading reports whether any reading of the request matches the
// set, and which: the method and path it was matched as (the request's
// own when it matched as sent).
func (p *Policy) matchReading(s *TransactionSet, ev *Evaluation) (ok bool, asMethod, asPath string, err error) {
	r := ev.Request
	method, path, rawPath := r.Method, r.URL.Path, r.URL.RawPath
	ok, err = s.Match(r)
	if err != nil || ok || ev.Readings.Empty() {
		return ok, method, path, err
	}
	defer func() { r.Method, r.URL.Path, r.URL.RawPath = method, path, rawPath }()
	paths := []string{path}
	if ev.Readings.Path != "" {
		paths = append(paths, ev.Readings.Path)
	}
	methods := append([]string{method}, ev.Readings.Methods...)
	for _, m := range methods {
		for _, pth := range paths {
			if m == method && pth == path {
				continue
			}
			r.Method, r.URL.Path, r.URL.RawPath = m, pth, ""
			if ok, err := s.Match(r); ok || err != nil {
				return ok, m, pth, err
			}
		}
	}
	return false, "", "", nil
}

func (p *Policy) check(ev *Evaluation, stack tiers.Stack, set, tier string, maxAge time.Duration, perRequest bool, risk string) *Missing {
	h := p.Hierarchy
	held := stack.Holds(h, tier, ev.Now, maxAge)
	if perRequest {
		l, ok := stack.Level(tier)
		held = ok && stack.Holds(h, tier, ev.Now, 0) && !ev.FreshSince.IsZero() && !l.At.Before(ev.FreshSince)
		if held {
			ev.Decision.UsedFreshStepUp = true
		}
	}
	if held {
		return nil
	}
	t, _ := h.Get(tier)
	eff := t.MaxAge
	if maxAge > 0 && maxAge < eff {
		eff = maxAge
	}
	if perRequest {
		eff = 0
	}
	return &Missing{Set: set, Tier: tier, ACR: t.ACR, MaxAge: eff, PerRequest: perRequest, Risk: risk}
}

// HighRisk reports whether any of the matched sets is of risk high or
// critical.
func (p *Policy) HighRisk(bits uint64) bool { return bits&p.highRisk != 0 }

// MatchedNames names the sets of a decision's bit set, comma-separated,
// without allocating in the common case of a single set.
func (p *Policy) MatchedNames(bits uint64) string {
	if bits&(bits-1) == 0 {
		for i := range p.Sets {
			if bits == 1<<uint(i) {
				return p.Sets[i].Name
			}
		}
		return ""
	}
	return strings.Join(p.MatchedSets(bits), ",")
}

// MatchedSets names the sets of a decision's bit set.
func (p *Policy) MatchedSets(bits uint64) []string {
	var out []string
	for i := range p.Sets {
		if bits&(1<<uint(i)) != 0 {
			out = append(out, p.Sets[i].Name)
		}
	}
	return out
}
