package stepup

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup/store"
	"github.com/caddy-stepup/caddy-stepup/tiers"
)

func TestLimitsDefaultOnlyWhatIsUnset(t *testing.T) {
	st := store.NewMemory(0, nil)
	want := Limits{PerUser: 5, PerClient: 20, Window: 15 * time.Minute}
	for _, l := range []Limits{{}, {PerUser: -1, PerClient: -1, Window: -1}} {
		if got := NewLimiter(l, st); got.limits != want || got.Window() != 15*time.Minute {
			t.Errorf("NewLimiter(%+v) limits %+v, want %+v", l, got.limits, want)
		}
	}
	given := Limits{PerUser: 1, PerClient: 2, Window: time.Second}
	if got := NewLimiter(given, st); got.limits != given || got.Window() != time.Second {
		t.Errorf("configured limits replaced: %+v", got.limits)
	}
}

// A success clears the user's failures; an undecided attempt gives back
// only itself.
func TestSettleClearsOnSuccessAndRefundsTheUndecided(t *testing.T) {
	c := newClock()
	l := NewLimiter(Limits{PerUser: 5, PerClient: 50, Window: time.Minute}, store.NewMemory(0, c.Now))
	ctx := context.Background()
	settle := func(result Result) {
		t.Helper()
		rs, err := l.Reserve(ctx, "otp", "alice", "10.0.0.1", true)
		if err != nil {
			t.Fatal(err)
		}
		rs.Settle(ctx, result)
	}
	settle(Rejected)
	settle(Rejected)
	settle(Unavailable)
	settle(Challenged)
	if n := l.count(ctx, userKey("otp", "alice")); n != 2 {
		t.Fatalf("user counter %d after two failures and two undecided attempts, want 2", n)
	}
	if n := l.count(ctx, clientKey("10.0.0.1")); n != 2 {
		t.Fatalf("client counter %d, want 2", n)
	}
	settle(Accepted)
	if n := l.count(ctx, userKey("otp", "alice")); n != 0 {
		t.Fatalf("user counter %d after a success, want 0", n)
	}
	if n := l.count(ctx, clientKey("10.0.0.1")); n != 2 {
		t.Fatalf("client counter %d after a success, want its failures (2)", n)
	}
}

// Giving an attempt back inside the window keeps the window: the count
// still ends when the window that counted it ends.
func TestRefundDoesNotRestartTheWindow(t *testing.T) {
	c := newClock()
	l := NewLimiter(Limits{PerUser: 1, PerClient: 1, Window: time.Minute}, store.NewMemory(0, c.Now))
	ctx := context.Background()
	rs, err := l.Reserve(ctx, "otp", "alice", "10.0.0.1", true)
	if err != nil {
		t.Fatal(err)
	}
	rs.Settle(ctx, Unavailable) // counted at 09:00:00, given back
	c.Advance(50 * time.Second)
	fail(t, l, "otp", "alice", "10.0.0.1")
	c.Advance(11 * time.Second) // the window of 09:00:00 ended
	if l.Blocked(ctx, "otp", "alice", "10.0.0.1") {
		t.Fatal("a refund restarted the counting window")
	}
}

func TestReserveBoundsConcurrentVerifications(t *testing.T) {
	l := NewLimiter(Limits{PerUser: 100, PerClient: 100, Window: time.Minute}, store.NewMemory(0, nil))
	ctx := context.Background()
	var held []*Reservation
	for i := 0; i < MaxConcurrentPerClient; i++ {
		rs, err := l.Reserve(ctx, "otp", "user"+strconv.Itoa(i), "10.0.0.1", true)
		if err != nil {
			t.Fatalf("verification %d of one client: %v", i, err)
		}
		held = append(held, rs)
	}
	if _, err := l.Reserve(ctx, "otp", "another", "10.0.0.1", true); !errors.Is(err, ErrBusy) {
		t.Fatalf("verification %d of one client at once: %v", MaxConcurrentPerClient+1, err)
	}
	if _, err := l.Reserve(ctx, "otp", "", "10.0.0.1", false); !errors.Is(err, ErrBusy) {
		t.Fatalf("a user-less attempt over the client bound: %v", err)
	}
	held[0].Settle(ctx, Rejected)
	rs, err := l.Reserve(ctx, "otp", "another", "10.0.0.1", true)
	if err != nil {
		t.Fatalf("a settled verification did not free its place: %v", err)
	}
	held = append(held[1:], rs)

	// Per user: two at once, across clients; settling one frees one place.
	first, err := l.Reserve(ctx, "login", "alice", "10.0.1.1", true)
	if err != nil {
		t.Fatal(err)
	}
	second, err := l.Reserve(ctx, "login", "alice", "10.0.1.2", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, "login", "alice", "10.0.1.3", true); !errors.Is(err, ErrBusy) {
		t.Fatalf("a third verification of one user at once: %v", err)
	}
	first.Settle(ctx, Rejected)
	third, err := l.Reserve(ctx, "login", "alice", "10.0.1.3", true)
	if err != nil {
		t.Fatalf("a settled verification did not free the user's place: %v", err)
	}
	if _, err := l.Reserve(ctx, "login", "alice", "10.0.1.4", true); !errors.Is(err, ErrBusy) {
		t.Fatalf("settling one verification freed both places of the user: %v", err)
	}
	second.Settle(ctx, Rejected)
	third.Settle(ctx, Rejected)
	for _, rs := range held {
		rs.Settle(ctx, Rejected)
	}
	// Nothing is left behind once every verification is settled.
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.inflight) != 0 {
		t.Fatalf("in-flight entries left after every attempt settled: %v", l.inflight)
	}
}

// An IPv6 address starting with "::" is an IPv6 client too, counted by
// its /64 like any other.
func TestClientPrefixOfCompressedIPv6(t *testing.T) {
	for ip, want := range map[string]string{"::1": "::/64", "::ffff:192.0.2.1": "192.0.2.1", "::": "::/64", ":x": ":x"} {
		if got := clientPrefix(ip); got != want {
			t.Errorf("clientPrefix(%q) = %q, want %q", ip, got, want)
		}
	}
}

func TestSpendCountsTheClientsBudget(t *testing.T) {
	l := NewLimiter(Limits{PerClient: 2, Window: time.Minute}, store.NewMemory(0, nil))
	ctx := context.Background()
	for i, want := range []bool{true, true, false, false} {
		if got := l.Spend(ctx, "10.0.0.1"); got != want {
			t.Errorf("spend %d: %v, want %v", i+1, got, want)
		}
	}
	if !l.Spend(ctx, "10.0.0.2") {
		t.Error("another client's budget was spent")
	}
	if NewLimiter(Limits{}, brokenStore{store.NewMemory(0, nil)}).Spend(ctx, "10.0.0.1") {
		t.Error("a store failure was within the budget")
	}
}

// The CSRF nonce cookie: __Host- and Secure over HTTPS; a nonce of a
// plausible length is kept, anything else replaced.
func TestCSRFNonceCookie(t *testing.T) {
	c := NewCSRF(testKeys(t), "")
	for _, tlsOn := range []bool{false, true} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if tlsOn {
			r.TLS = &tls.ConnectionState{}
		}
		w := httptest.NewRecorder()
		tok := c.Token(w, r, "o")
		cks := w.Result().Cookies()
		wantName := "stepup_csrf"
		if tlsOn {
			wantName = "__Host-stepup_csrf"
		}
		if len(cks) != 1 || cks[0].Name != wantName || cks[0].Secure != tlsOn || cks[0].Path != "/" || !cks[0].HttpOnly {
			t.Fatalf("tls %v: cookies %+v", tlsOn, cks)
		}
		if tok != c.mac(cks[0].Value, "o") || cookieValue(r, wantName) != cks[0].Value {
			t.Fatalf("tls %v: the token is not for the nonce set", tlsOn)
		}
	}
	for _, n := range []int{32, 64} {
		nonce := strings.Repeat("n", n)
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: "stepup_csrf", Value: nonce})
		w := httptest.NewRecorder()
		if tok := c.Token(w, r, "o"); tok != c.mac(nonce, "o") || len(w.Result().Cookies()) != 0 {
			t.Errorf("a %d-byte nonce was replaced", n)
		}
	}
	for _, n := range []int{0, 31, 65} {
		nonce := strings.Repeat("n", n)
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: "stepup_csrf", Value: nonce})
		w := httptest.NewRecorder()
		if tok := c.Token(w, r, "o"); tok == c.mac(nonce, "o") || len(w.Result().Cookies()) != 1 {
			t.Errorf("a %d-byte nonce was kept", n)
		}
	}
	// Over HTTPS only the __Host- cookie counts.
	r := httptest.NewRequest(http.MethodPost, "https://app.example/", nil)
	r.TLS = &tls.ConnectionState{}
	plain := strings.Repeat("p", 40)
	r.AddCookie(&http.Cookie{Name: "stepup_csrf", Value: plain})
	c.Scheme = func(*http.Request) string { return "https" }
	if c.Valid(r, c.mac(plain, "o"), "o") {
		t.Error("an HTTPS request was checked against the plain-HTTP cookie")
	}
	r.AddCookie(&http.Cookie{Name: "__Host-stepup_csrf", Value: plain})
	if !c.Valid(r, c.mac(plain, "o"), "o") {
		t.Error("the __Host- cookie was not used over HTTPS")
	}
	r.Header.Set("Origin", "http://app.example")
	if c.Valid(r, c.mac(plain, "o"), "o") {
		t.Error("an http Origin passed for an https request")
	}
}

func TestNewPolicyAcceptsTheMostSets(t *testing.T) {
	sets := make([]TransactionSet, MaxTransactionSets)
	for i := range sets {
		sets[i] = TransactionSet{Name: "s" + strconv.Itoa(i), Match: prefix("/"), Tier: "login"}
	}
	p, err := NewPolicy(testHierarchy(t), sets, "")
	if err != nil {
		t.Fatalf("%d sets refused: %v", MaxTransactionSets, err)
	}
	now := time.Now()
	s := &Session{User: "alice", Stack: tiers.Stack{{Tier: "login", Method: "password", At: now}}}
	ev := &Evaluation{Request: httptest.NewRequest(http.MethodGet, "/x", nil), Session: s, Now: now}
	if err := p.Decide(ev); err != nil || !ev.Decision.Allowed || ev.Decision.Matched != ^uint64(0) || len(p.MatchedSets(ev.Decision.Matched)) != MaxTransactionSets {
		t.Fatalf("decide over %d sets: %+v %v", MaxTransactionSets, ev.Decision, err)
	}
	if _, err := NewPolicy(testHierarchy(t), []TransactionSet{{Name: "a", Match: prefix("/"), Tier: "login", MaxAge: -time.Second, HasMaxAge: true}}, ""); err == nil {
		t.Error("a negative max_age accepted")
	}
}

// A set matches when any reading of the request matches it (a method
// override, a lenient path); the request itself is left as it was.
func TestPolicyMatchesEveryReading(t *testing.T) {
	h := testHierarchy(t)
	boom := errors.New("boom")
	sets := []TransactionSet{
		{Name: "deletes", Match: method(http.MethodDelete), Tier: "otp"},
		{Name: "admin", Match: prefix("/admin"), Tier: "token"},
		{Name: "fragile", Match: func(r *http.Request) (bool, error) {
			if r.Method == http.MethodPatch {
				return false, boom
			}
			return false, nil
		}, Tier: "login"},
	}
	p, err := NewPolicy(h, sets, "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		method   string
		path     string
		readings Readings
		missing  string // the set reported missing, "" for allowed
		err      error
	}{
		{"plain reading", http.MethodGet, "/x", Readings{}, "", nil},
		{"an override to the set's method", http.MethodPost, "/x", Readings{Methods: []string{http.MethodDelete}}, "deletes", nil},
		{"the override after another", http.MethodPost, "/x", Readings{Methods: []string{http.MethodPut, http.MethodDelete}}, "deletes", nil},
		{"overrides that match nothing", http.MethodPost, "/x", Readings{Methods: []string{http.MethodPut}}, "", nil},
		{"a lenient path", http.MethodGet, "/adm;x/in/y", Readings{Path: "/admin/y"}, "admin", nil},
		{"a lenient path with an override", http.MethodPost, "/x;y", Readings{Methods: []string{http.MethodPut}, Path: "/admin"}, "admin", nil},
		{"a matcher failing on a reading", http.MethodPost, "/x", Readings{Methods: []string{http.MethodPatch}}, "", boom},
	} {
		r := httptest.NewRequest(tc.method, "http://app.example"+tc.path, nil)
		ev := &Evaluation{Request: r, Now: now, Readings: tc.readings}
		err := p.Decide(ev)
		if tc.err != nil {
			if !errors.Is(err, ErrMatcher) || !strings.Contains(err.Error(), tc.err.Error()) || ev.Decision.Allowed {
				t.Errorf("%s: %v, allowed %v", tc.name, err, ev.Decision.Allowed)
			}
		} else if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		} else if tc.missing == "" && !ev.Decision.Allowed {
			t.Errorf("%s: refused (%+v)", tc.name, ev.Decision.Missing)
		} else if tc.missing != "" && (ev.Decision.Missing == nil || ev.Decision.Missing.Set != tc.missing) {
			t.Errorf("%s: missing %+v, want set %q", tc.name, ev.Decision.Missing, tc.missing)
		}
		if r.Method != tc.method || r.URL.Path != tc.path {
			t.Errorf("%s: the request was left as %s %s", tc.name, r.Method, r.URL.Path)
		}
	}
}

// A per-request set holds only with a level reached after the step-up for
// this request started, and the decision says it used it.
func TestPerRequestFreshness(t *testing.T) {
	h := testHierarchy(t)
	p, err := NewPolicy(h, []TransactionSet{{Name: "wire", Match: prefix("/wire"), Tier: "otp", HasMaxAge: true}}, "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	reached := now.Add(-time.Minute)
	s := &Session{User: "alice", Stack: tiers.Stack{
		{Tier: "login", Method: "password", At: now.Add(-time.Hour)},
		{Tier: "otp", Base: "login", Method: "totp", At: reached},
	}}
	for _, tc := range []struct {
		name  string
		fresh time.Time
		ok    bool
	}{
		{"no step-up for it", time.Time{}, false},
		{"step-up started before the level", reached.Add(-time.Second), true},
		{"step-up started as the level was reached", reached, true},
		{"step-up started after the level", reached.Add(time.Nanosecond), false},
	} {
		ev := &Evaluation{Request: httptest.NewRequest(http.MethodPost, "/wire", nil), Session: s, Now: now, FreshSince: tc.fresh}
		if err := p.Decide(ev); err != nil {
			t.Fatal(err)
		}
		if ev.Decision.Allowed != tc.ok || ev.Decision.UsedFreshStepUp != tc.ok {
			t.Errorf("%s: allowed %v used %v", tc.name, ev.Decision.Allowed, ev.Decision.UsedFreshStepUp)
		}
		if !tc.ok && (ev.Decision.Missing == nil || !ev.Decision.Missing.PerRequest || ev.Decision.Missing.MaxAge != 0) {
			t.Errorf("%s: missing %+v", tc.name, ev.Decision.Missing)
		}
	}
	// A lapsed level does not hold even for a fresh step-up.
	ev := &Evaluation{Request: httptest.NewRequest(http.MethodPost, "/wire", nil), Session: s, Now: reached.Add(31 * time.Minute), FreshSince: reached}
	if err := p.Decide(ev); err != nil || ev.Decision.Allowed || ev.Decision.UsedFreshStepUp {
		t.Errorf("a lapsed level held: %+v %v", ev.Decision, err)
	}
}
