package stepup

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/tiers"
)

func testHierarchy(t testing.TB) *tiers.Hierarchy {
	h, err := tiers.New([]tiers.Tier{
		{Name: "login", Method: "password", MaxAge: 8 * time.Hour},
		{Name: "otp", Base: "login", Method: "totp", MaxAge: 30 * time.Minute},
		{Name: "key", Base: "otp", Method: "webauthn", MaxAge: 5 * time.Minute},
		{Name: "token", Base: "login", Method: "radius", MaxAge: 15 * time.Minute},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func prefix(p string) func(*http.Request) (bool, error) {
	return func(r *http.Request) (bool, error) { return strings.HasPrefix(r.URL.Path, p), nil }
}

func method(m string) func(*http.Request) (bool, error) {
	return func(r *http.Request) (bool, error) { return r.Method == m, nil }
}

type denyStage struct{}

func (denyStage) Evaluate(ev *Evaluation) error {
	if ev.Request.URL.Query().Get("deny") != "" {
		ev.Decision.Denial = &Denial{Set: "x", Reason: "outside_hours", Status: 403}
	}
	return nil
}

func TestPolicyDecisions(t *testing.T) {
	h := testHierarchy(t)
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	sets := []TransactionSet{
		{Name: "reports", Match: prefix("/reports/"), Tier: "login"},
		{Name: "admin", Match: prefix("/admin/"), Tier: "otp", Risk: "high"},
		{Name: "deletes", Match: method(http.MethodDelete), Tier: "token"},
		{Name: "keys", Match: prefix("/admin/keys/"), Tier: "key", MaxAge: time.Minute, HasMaxAge: true},
		{Name: "wire", Match: prefix("/wire"), Tier: "otp", HasMaxAge: true},
	}
	p, err := NewPolicy(h, sets, "public", denyStage{})
	if err != nil {
		t.Fatal(err)
	}
	stack := func(levels map[string]time.Duration) tiers.Stack {
		var s tiers.Stack
		for _, n := range []string{"login", "otp", "key", "token"} {
			if ago, ok := levels[n]; ok {
				l := tiers.Level{Tier: n, At: now.Add(-ago)}
				tier, _ := h.Get(n)
				l.Base, l.Method = tier.Base, tier.Method
				s = append(s, l)
			}
		}
		return s
	}
	all := map[string]time.Duration{"login": time.Hour, "otp": 10 * time.Minute, "key": 2 * time.Minute, "token": time.Minute}
	tests := []struct {
		name       string
		method     string
		path       string
		held       map[string]time.Duration
		freshSince time.Time
		allowed    bool
		missing    string
		missingSet string
		maxAge     time.Duration
		denied     string
	}{
		{"public", "GET", "/", nil, time.Time{}, true, "", "", 0, ""},
		{"login required", "GET", "/reports/1", nil, time.Time{}, false, "login", "reports", 8 * time.Hour, ""},
		{"login held", "GET", "/reports/1", map[string]time.Duration{"login": time.Hour}, time.Time{}, true, "", "", 0, ""},
		{"conjunction: both sets", "DELETE", "/admin/x", map[string]time.Duration{"login": time.Hour, "otp": time.Minute}, time.Time{}, false, "token", "deletes", 15 * time.Minute, ""},
		{"conjunction satisfied", "DELETE", "/admin/x", all, time.Time{}, true, "", "", 0, ""},
		{"stricter set max age", "GET", "/admin/keys/1", all, time.Time{}, false, "key", "keys", time.Minute, ""},
		{"per request: no fresh step-up", "POST", "/wire", all, time.Time{}, false, "otp", "wire", 0, ""},
		{"per request: step-up before", "POST", "/wire", all, now.Add(-5 * time.Minute), false, "otp", "wire", 0, ""},
		{"per request: step-up for it", "POST", "/wire", all, now.Add(-10 * time.Minute), true, "", "", 0, ""},
		{"stage denies after tiers hold", "GET", "/reports/1?deny=1", all, time.Time{}, false, "", "", 0, "outside_hours"},
		{"stage not reached while a tier is missing", "GET", "/reports/1?deny=1", nil, time.Time{}, false, "login", "reports", 8 * time.Hour, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.path, nil)
			var s *Session
			if tt.held != nil {
				s = &Session{User: "alice", Stack: stack(tt.held)}
			}
			ev := &Evaluation{Request: r, Session: s, Now: now, FreshSince: tt.freshSince}
			if err := p.Decide(ev); err != nil {
				t.Fatal(err)
			}
			d := ev.Decision
			if d.Allowed != tt.allowed {
				t.Fatalf("allowed = %v (%+v %+v)", d.Allowed, d.Missing, d.Denial)
			}
			if tt.missing != "" {
				if d.Missing == nil || d.Missing.Tier != tt.missing || d.Missing.Set != tt.missingSet || d.Missing.MaxAge != tt.maxAge {
					t.Fatalf("missing = %+v", d.Missing)
				}
			} else if d.Missing != nil {
				t.Fatalf("unexpected missing %+v", d.Missing)
			}
			if tt.denied != "" && (d.Denial == nil || d.Denial.Reason != tt.denied) {
				t.Fatalf("denial = %+v", d.Denial)
			}
		})
	}
}

func TestPolicyDefaultTier(t *testing.T) {
	h := testHierarchy(t)
	p, err := NewPolicy(h, []TransactionSet{{Name: "open", Match: prefix("/open"), Tier: "login"}}, "otp")
	if err != nil {
		t.Fatal(err)
	}
	ev := &Evaluation{Request: httptest.NewRequest("GET", "/x", nil), Now: time.Now()}
	if err := p.Decide(ev); err != nil || ev.Decision.Missing == nil || ev.Decision.Missing.Set != "default" || ev.Decision.Missing.Tier != "otp" {
		t.Fatalf("default: %+v %v", ev.Decision.Missing, err)
	}
	// A request matching a set gets that set's requirement, not the default.
	s := &Session{Stack: tiers.Stack{{Tier: "login", Method: "password", At: time.Now()}}}
	ev = &Evaluation{Request: httptest.NewRequest("GET", "/open", nil), Session: s, Now: time.Now()}
	if err := p.Decide(ev); err != nil || !ev.Decision.Allowed || p.MatchedSets(ev.Decision.Matched)[0] != "open" {
		t.Fatalf("set instead of default: %+v %v", ev.Decision, err)
	}
}

func TestPolicyFailsClosedOnMatcherError(t *testing.T) {
	h := testHierarchy(t)
	boom := func(*http.Request) (bool, error) { return false, errors.New("boom") }
	p, _ := NewPolicy(h, []TransactionSet{{Name: "x", Match: boom, Tier: "login"}}, "")
	ev := &Evaluation{Request: httptest.NewRequest("GET", "/", nil), Now: time.Now()}
	if err := p.Decide(ev); !errors.Is(err, ErrMatcher) || ev.Decision.Allowed {
		t.Fatalf("err %v allowed %v", err, ev.Decision.Allowed)
	}
}

func TestNewPolicyValidates(t *testing.T) {
	h := testHierarchy(t)
	m := prefix("/")
	tests := []struct {
		sets []TransactionSet
		def  string
		want string
	}{
		{nil, "nope", `default: unknown tier "nope"`},
		{[]TransactionSet{{Match: m, Tier: "login"}}, "", "#1: missing name"},
		{[]TransactionSet{{Name: "a", Match: m, Tier: "login"}, {Name: "a", Match: m, Tier: "login"}}, "", `"a": defined more than once`},
		{[]TransactionSet{{Name: "a", Match: m}}, "", `"a": missing tier`},
		{[]TransactionSet{{Name: "a", Match: m, Tier: "nope"}}, "", `"a": unknown tier "nope"`},
		{[]TransactionSet{{Name: "a", Tier: "login"}}, "", `"a": no matcher`},
		{[]TransactionSet{{Name: "a", Match: m, Tier: "login", Risk: "extreme"}}, "", "risk must be"},
		{make([]TransactionSet, MaxTransactionSets+1), "", "at most 64"},
	}
	for _, tt := range tests {
		if _, err := NewPolicy(h, tt.sets, tt.def); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("got %v, want %q", err, tt.want)
		}
	}
}
