package stepup

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

func TestLimiterCountsPerUserAndPerClient(t *testing.T) {
	c := newClock()
	l := NewLimiter(Limits{PerUser: 2, PerClient: 3, Window: time.Minute}, store.NewMemory(0, c.Now))
	ctx := context.Background()
	l.Failed(ctx, "login", "alice", "10.0.0.1")
	if l.Blocked(ctx, "login", "alice", "10.0.0.1") {
		t.Fatal("blocked after one failure")
	}
	l.Failed(ctx, "login", "alice", "10.0.0.2")
	if !l.Blocked(ctx, "login", "alice", "10.0.0.9") {
		t.Fatal("user limit not applied across clients")
	}
	if l.Blocked(ctx, "sudo", "alice", "10.0.0.9") {
		t.Fatal("user limit leaked to another tier")
	}
	l.Failed(ctx, "login", "bob", "10.0.0.1")
	l.Failed(ctx, "login", "carol", "10.0.0.1")
	if !l.Blocked(ctx, "login", "dave", "10.0.0.1") {
		t.Fatal("client limit not applied across users")
	}
	l.Succeeded(ctx, "login", "alice")
	if l.Blocked(ctx, "login", "alice", "10.0.0.2") {
		t.Fatal("success did not clear the user's failures")
	}
	c.Advance(time.Minute)
	if l.Blocked(ctx, "login", "dave", "10.0.0.1") {
		t.Fatal("window did not end")
	}
}

type brokenStore struct{ Store }

func (brokenStore) Get(context.Context, string) ([]byte, error) { return nil, context.DeadlineExceeded }

func TestLimiterFailsClosed(t *testing.T) {
	l := NewLimiter(Limits{}, brokenStore{store.NewMemory(0, nil)})
	if !l.Blocked(context.Background(), "login", "alice", "10.0.0.1") {
		t.Fatal("a store failure let attempts through")
	}
}

func TestCSRFTokens(t *testing.T) {
	c := NewCSRF(testKeys(t), "")
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "http://app.example/", nil)
	tok := c.Token(w, r)
	if tok2 := c.Token(httptest.NewRecorder(), r); tok2 != tok {
		t.Fatal("token changed within one request")
	}
	ck := w.Result().Cookies()[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
		t.Fatalf("csrf cookie %+v", ck)
	}
	post := func(token, origin string, withCookie bool) bool {
		p := httptest.NewRequest(http.MethodPost, "http://app.example/x", nil)
		if withCookie {
			p.AddCookie(ck)
		}
		if origin != "" {
			p.Header.Set("Origin", origin)
		}
		return c.Valid(p, token)
	}
	if !post(tok, "", true) || !post(tok, "http://app.example", true) {
		t.Fatal("valid token refused")
	}
	for name, ok := range map[string]bool{
		"no cookie":    post(tok, "", false),
		"empty token":  post("", "", true),
		"other origin": post(tok, "https://evil.example", true),
		"null origin":  post(tok, "null", true),
		"other token":  post(c.mac("another-nonce-another-nonce-another"), "", true),
	} {
		if ok {
			t.Errorf("%s accepted", name)
		}
	}
	other := NewCSRF(Keys{CSRF: []byte("other")}, "")
	p := httptest.NewRequest(http.MethodPost, "http://app.example/x", nil)
	p.AddCookie(ck)
	if other.Valid(p, tok) {
		t.Fatal("token valid under another key")
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
	id, err := e.KeepRound(ctx, "owner", &Round{Prompt: "next", State: []byte("s"), Expires: c.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.TakeRound(ctx, "other-owner", id); err == nil {
		t.Fatal("another session took the round")
	}
	if rd, err := e.TakeRound(ctx, "owner", id); err != nil || string(rd.State) != "s" {
		t.Fatalf("TakeRound = %+v, %v", rd, err)
	}
	if _, err := e.TakeRound(ctx, "owner", id); err == nil {
		t.Fatal("a round was taken twice")
	}
	id, _ = e.KeepRound(ctx, "owner", &Round{Prompt: "next", Expires: c.Now().Add(time.Minute)})
	c.Advance(time.Minute)
	if _, err := e.TakeRound(ctx, "owner", id); err == nil {
		t.Fatal("an expired round was taken")
	}
}
