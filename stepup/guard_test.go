package stepup

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

// fail reserves an attempt and settles it as a failure.
func fail(t *testing.T, l *Limiter, tier, user, ip string) {
	t.Helper()
	rs, err := l.Reserve(context.Background(), tier, user, ip, true)
	if err != nil {
		t.Fatalf("Reserve(%s, %s, %s) = %v", tier, user, ip, err)
	}
	rs.Settle(context.Background(), Rejected)
}

func TestLimiterCountsPerUserAndPerClient(t *testing.T) {
	c := newClock()
	l := NewLimiter(Limits{PerUser: 2, PerClient: 3, Window: time.Minute}, store.NewMemory(0, c.Now))
	ctx := context.Background()
	fail(t, l, "login", "alice", "10.0.0.1")
	if l.Blocked(ctx, "login", "alice", "10.0.0.1") {
		t.Fatal("blocked after one failure")
	}
	fail(t, l, "login", "alice", "10.0.0.2")
	if !l.Blocked(ctx, "login", "alice", "10.0.0.9") {
		t.Fatal("user limit not applied across clients")
	}
	if _, err := l.Reserve(ctx, "login", "alice", "10.0.0.9", true); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("third attempt for alice: %v, want ErrRateLimited", err)
	}
	if l.Blocked(ctx, "sudo", "alice", "10.0.0.8") {
		t.Fatal("user limit leaked to another tier")
	}
	fail(t, l, "login", "bob", "10.0.0.1")
	fail(t, l, "login", "carol", "10.0.0.1")
	if !l.Blocked(ctx, "login", "dave", "10.0.0.1") {
		t.Fatal("client limit not applied across users")
	}
	rs, err := l.Reserve(ctx, "login", "alice", "10.0.0.7", false)
	if err != nil {
		t.Fatal(err)
	}
	rs.Settle(ctx, Accepted)
	if !l.Blocked(ctx, "login", "alice", "10.0.0.2") {
		t.Fatal("a success counted only for the client cleared the user's failures")
	}
	rs, err = NewLimiter(Limits{PerUser: 2, PerClient: 3, Window: time.Minute}, l.store).Reserve(ctx, "sudo", "erin", "10.0.0.5", true)
	if err != nil {
		t.Fatal(err)
	}
	rs.Settle(ctx, Accepted)
	if l.count(ctx, userKey("sudo", "erin")) != 0 || l.count(ctx, clientKey("10.0.0.5")) != 0 {
		t.Fatal("a success stayed counted")
	}
	c.Advance(time.Minute)
	if l.Blocked(ctx, "login", "dave", "10.0.0.1") {
		t.Fatal("window did not end")
	}
}

func TestLimiterUndecidedAttemptsCountNothing(t *testing.T) {
	l := NewLimiter(Limits{PerUser: 1, PerClient: 1, Window: time.Minute}, store.NewMemory(0, nil))
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		rs, err := l.Reserve(ctx, "otp", "alice", "10.0.0.1", true)
		if err != nil {
			t.Fatalf("attempt %d after undecided ones: %v", i, err)
		}
		rs.Settle(ctx, Unavailable)
		rs.Settle(ctx, Rejected) // a second settle changes nothing
	}
}

func TestLimiterReservesBeforeVerifying(t *testing.T) {
	l := NewLimiter(Limits{PerUser: 5, PerClient: 1000, Window: time.Minute}, store.NewMemory(0, nil))
	ctx := context.Background()
	var mu sync.Mutex
	var held []*Reservation
	busy, limited := 0, 0
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs, err := l.Reserve(ctx, "login", "alice", "10.0.0."+strconv.Itoa(i), true)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, ErrBusy):
				busy++
			case errors.Is(err, ErrRateLimited):
				limited++
			case err == nil:
				held = append(held, rs) // still "verifying"
			}
		}()
	}
	wg.Wait()
	granted := len(held)
	if granted != MaxConcurrentPerUser {
		t.Fatalf("%d attempts verified at once (busy %d, limited %d), want %d", granted, busy, limited, MaxConcurrentPerUser)
	}
	for _, rs := range held {
		rs.Settle(ctx, Rejected)
	}
	// Sequentially, exactly PerUser failures are verified in all.
	total := granted
	for i := 0; i < 30; i++ {
		rs, err := l.Reserve(ctx, "login", "alice", "10.1.0.1", true)
		if err == nil {
			total++
			rs.Settle(ctx, Rejected)
		}
	}
	if total != 5 {
		t.Fatalf("%d failures verified, want 5", total)
	}
}

type brokenStore struct{ Store }

func (brokenStore) Get(context.Context, string) ([]byte, error) { return nil, context.DeadlineExceeded }
func (brokenStore) Incr(context.Context, string, time.Duration) (int64, error) {
	return 0, context.DeadlineExceeded
}

func TestLimiterFailsClosed(t *testing.T) {
	l := NewLimiter(Limits{}, brokenStore{store.NewMemory(0, nil)})
	if !l.Blocked(context.Background(), "login", "alice", "10.0.0.1") {
		t.Fatal("a store failure let attempts through")
	}
	if _, err := l.Reserve(context.Background(), "login", "alice", "10.0.0.1", true); err == nil {
		t.Fatal("a store failure let an attempt be reserved")
	}
}

func TestCSRFTokens(t *testing.T) {
	c := NewCSRF(testKeys(t), "")
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "http://app.example/", nil)
	tok := c.Token(w, r, "owner-1")
	if tok2 := c.Token(httptest.NewRecorder(), r, "owner-1"); tok2 != tok {
		t.Fatal("token changed within one request")
	}
	ck := w.Result().Cookies()[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
		t.Fatalf("csrf cookie %+v", ck)
	}
	post := func(token, origin, owner string, withCookie bool) bool {
		p := httptest.NewRequest(http.MethodPost, "http://app.example/x", nil)
		if withCookie {
			p.AddCookie(ck)
		}
		if origin != "" {
			p.Header.Set("Origin", origin)
		}
		return c.Valid(p, token, owner)
	}
	if !post(tok, "", "owner-1", true) || !post(tok, "http://app.example", "owner-1", true) {
		t.Fatal("valid token refused")
	}
	for name, ok := range map[string]bool{
		"no cookie":           post(tok, "", "owner-1", false),
		"empty token":         post("", "", "owner-1", true),
		"other origin":        post(tok, "https://evil.example", "owner-1", true),
		"other scheme":        post(tok, "https://app.example", "owner-1", true),
		"other port":          post(tok, "http://app.example:8080", "owner-1", true),
		"null origin":         post(tok, "null", "owner-1", true),
		"other token":         post(c.mac("another-nonce-another-nonce-another", "owner-1"), "", "owner-1", true),
		"another session":     post(tok, "", "owner-2", true),
		"signed-out token":    post(c.Token(httptest.NewRecorder(), r, ""), "", "owner-1", true),
		"signed-in elsewhere": post(tok, "", "", true),
	} {
		if ok {
			t.Errorf("%s accepted", name)
		}
	}
	other := NewCSRF(Keys{CSRF: []byte("other")}, "")
	p := httptest.NewRequest(http.MethodPost, "http://app.example/x", nil)
	p.AddCookie(ck)
	if other.Valid(p, tok, "owner-1") {
		t.Fatal("token valid under another key")
	}
}

func TestCrossSiteRequests(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string]string
		cross   bool
	}{
		{"no headers (old browser, typed URL)", nil, false},
		{"same-origin fetch metadata", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://app.example"}, false},
		{"user-initiated", map[string]string{"Sec-Fetch-Site": "none"}, false},
		{"cross-site form", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, true},
		{"sibling subdomain", map[string]string{"Sec-Fetch-Site": "same-site"}, true},
		{"foreign origin, no fetch metadata", map[string]string{"Origin": "https://evil.example"}, true},
		{"origin of another scheme", map[string]string{"Origin": "https://app.example"}, true},
		{"null origin", map[string]string{"Origin": "null"}, true},
		{"foreign referer", map[string]string{"Referer": "https://evil.example/page"}, true},
		{"own referer", map[string]string{"Referer": "http://app.example/form"}, false},
	} {
		r := httptest.NewRequest(http.MethodPost, "http://app.example/wire", nil)
		for k, v := range tc.headers {
			r.Header.Set(k, v)
		}
		if got := CrossSite(r, "http"); got != tc.cross {
			t.Errorf("%s: CrossSite = %v, want %v", tc.name, got, tc.cross)
		}
	}
}

func TestDeriveKeys(t *testing.T) {
	if _, err := DeriveKeys([]byte("short")); err == nil {
		t.Fatal("short secret accepted")
	}
	k := testKeys(t)
	seen := map[string]bool{}
	for _, b := range [][]byte{k.CookieHash, k.CookieBlock, k.CSRF, k.Records} {
		if len(b) != 32 || seen[string(b)] {
			t.Fatal("keys not independent 32-byte keys")
		}
		seen[string(b)] = true
	}
	if len(NewSecret()) < MinSecretLength {
		t.Fatal("generated secret too short")
	}
}

func TestChallengeRoundsExpireAndAreUsedOnce(t *testing.T) {
	c := newClock()
	h := testHierarchy(t)
	methods := map[string]Method{}
	for _, n := range h.Names() {
		methods[n] = NewPassword(map[string]*User{"alice": {Name: "alice"}}, n == "login")
	}
	e, err := NewEngine(EngineConfig{Hierarchy: h, Methods: methods, Store: store.NewMemory(0, c.Now), Keys: testKeys(t), Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	alice := &Session{Owner: "owner", User: "alice"}
	id, err := e.KeepRound(ctx, alice, &Round{Prompt: "next", State: []byte("s"), Expires: c.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.TakeRound(ctx, &Session{Owner: "other-owner", User: "alice"}, id); err == nil {
		t.Fatal("another session took the round")
	}
	if _, err := e.TakeRound(ctx, &Session{Owner: "owner", User: "bob"}, id); err == nil {
		t.Fatal("another user of the same browser took the round")
	}
	id, _ = e.KeepRound(ctx, alice, &Round{Prompt: "next", State: []byte("s"), Expires: c.Now().Add(time.Minute)})
	if rd, err := e.TakeRound(ctx, alice, id); err != nil || string(rd.State) != "s" {
		t.Fatalf("TakeRound = %+v, %v", rd, err)
	}
	if _, err := e.TakeRound(ctx, alice, id); err == nil {
		t.Fatal("a round was taken twice")
	}
	id, _ = e.KeepRound(ctx, alice, &Round{Prompt: "next", Expires: c.Now().Add(time.Minute)})
	c.Advance(time.Minute)
	if _, err := e.TakeRound(ctx, alice, id); err == nil {
		t.Fatal("an expired round was taken")
	}
}

// A refund after the counting window rolled over must not leave a counter
// below zero (an extra attempt in the next window).
func TestLimiterRefundAfterTheWindowLeavesNoCredit(t *testing.T) {
	c := newClock()
	l := NewLimiter(Limits{PerUser: 1, PerClient: 1, Window: time.Minute}, store.NewMemory(0, c.Now))
	ctx := context.Background()
	rs, err := l.Reserve(ctx, "password", "alice", "10.0.0.1", true)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Minute) // the check outlived the window
	rs.Settle(ctx, Unavailable)
	if n := l.count(ctx, clientKey("10.0.0.1")); n != 0 {
		t.Fatalf("client counter %d after a refund across windows", n)
	}
	if n := l.count(ctx, userKey("password", "alice")); n != 0 {
		t.Fatalf("user counter %d after a refund across windows", n)
	}
}

// IPv6 clients are counted by their /64: a host holding a /64 does not get
// a budget per address.
func TestLimiterCountsIPv6ClientsByTheirSlash64(t *testing.T) {
	l := NewLimiter(Limits{PerUser: 100, PerClient: 2, Window: time.Minute}, store.NewMemory(0, nil))
	ctx := context.Background()
	fail(t, l, "password", "a", "2001:db8:1:2::1")
	fail(t, l, "password", "b", "2001:db8:1:2:ffff::9")
	if _, err := l.Reserve(ctx, "password", "c", "2001:db8:1:2:abcd::", true); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("a third address of the same /64: %v", err)
	}
	if _, err := l.Reserve(ctx, "password", "c", "2001:db8:1:3::1", true); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	for ip, want := range map[string]string{"10.0.0.1": "10.0.0.1", "::ffff:10.0.0.1": "10.0.0.1", "2001:db8::1": "2001:db8::/64", "not an ip": "not an ip"} {
		if got := clientPrefix(ip); got != want {
			t.Errorf("clientPrefix(%q) = %q, want %q", ip, got, want)
		}
	}
}
