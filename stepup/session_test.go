package stepup

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup/store"
	"github.com/caddy-stepup/caddy-stepup/tiers"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func testKeys(t testing.TB) Keys {
	k, err := DeriveKeys([]byte("0123456789abcdef0123456789abcdef-test"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newTestSessions(t testing.TB, c *clock) (*Sessions, *store.Memory) {
	st := store.NewMemory(0, c.Now)
	m, err := NewSessions(SessionConfig{IdleTimeout: time.Hour, Lifetime: 12 * time.Hour}, st, testKeys(t), c.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, st
}

// roundTrip commits s and returns a request that carries the cookie.
func roundTrip(t *testing.T, m *Sessions, s *Session, tlsOn bool) (*http.Request, *http.Cookie) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if tlsOn {
		r.TLS = &tls.ConnectionState{}
	}
	w := httptest.NewRecorder()
	if err := m.Commit(w, r, s); err != nil {
		t.Fatal(err)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies: %v", cookies)
	}
	next := httptest.NewRequest(http.MethodGet, "/", nil)
	if tlsOn {
		next.TLS = &tls.ConnectionState{}
	}
	next.AddCookie(cookies[0])
	return next, cookies[0]
}

// loadCached loads the request's session and checks that the cache holds
// it: a test of what the cache may serve must not pass because the entry
// is not there.
func loadCached(t *testing.T, m *Sessions, r *http.Request) *Session {
	t.Helper()
	s := m.Load(r)
	if _, ok := m.sessions.get(cookieValue(r, m.CookieName(r)), m.now().UnixNano()); s != nil && !ok {
		t.Fatal("the session did not reach the cache")
	}
	return s
}

func TestSessionCommitLoadAndCookieAttributes(t *testing.T) {
	c := newClock()
	m, _ := newTestSessions(t, c)
	s := m.New()
	s.User = "alice"
	s.Stack = tiers.Stack{{Tier: "login", Method: "password", At: c.Now()}}
	r, ck := roundTrip(t, m, s, false)
	if ck.Name != "stepup_session" || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure || ck.Path != "/" {
		t.Fatalf("cookie %+v", ck)
	}
	if strings.Contains(ck.Value, s.ID) || strings.Contains(ck.Value, "alice") {
		t.Fatal("cookie value is not encrypted")
	}
	got := m.Load(r)
	if got == nil || got.User != "alice" || got.Owner != s.Owner || len(got.Stack) != 1 {
		t.Fatalf("loaded %+v", got)
	}

	_, tlsCookie := roundTrip(t, m, s.Clone(), true)
	if tlsCookie.Name != "__Host-stepup_session" || !tlsCookie.Secure || tlsCookie.Domain != "" || tlsCookie.Path != "/" {
		t.Fatalf("HTTPS cookie %+v", tlsCookie)
	}
}

func TestSessionIDRotatesOnCommitAndTheOldIDDies(t *testing.T) {
	c := newClock()
	m, st := newTestSessions(t, c)
	s := m.New()
	s.User = "alice"
	r1, _ := roundTrip(t, m, s, false)
	first := loadCached(t, m, r1)
	next := first.Clone()
	next.Stack = tiers.Stack{{Tier: "login", At: c.Now()}}
	r2, _ := roundTrip(t, m, next, false)
	if next.ID == first.ID {
		t.Fatal("id did not rotate")
	}
	if m.Load(r1) != nil {
		t.Fatal("old cookie still loads a session")
	}
	if got := m.Load(r2); got == nil || got.Owner != first.Owner {
		t.Fatal("the owner must follow the session across rotations")
	}
	if _, stored, err := m.read(context.Background(), keyRecord+first.Owner); err != nil || stored.ID != next.ID {
		t.Fatalf("the owner's record does not hold the new id: %+v %v", stored, err)
	}
	if n := st.Len(); n != 2 { // the record and the rotated id's note
		t.Fatalf("%d records for one session", n)
	}
}

func TestSessionEndsAtItsLifetimeHoweverOftenUsed(t *testing.T) {
	c := newClock()
	// The store expires entries by the wall clock, not the session's: it
	// never drops this session during the test, so only the lifetime check
	// can end it.
	st := store.NewMemory(0, nil)
	m, err := NewSessions(SessionConfig{IdleTimeout: time.Hour, Lifetime: 12 * time.Hour}, st, testKeys(t), c.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	s := m.New()
	s.User = "alice"
	r, _ := roundTrip(t, m, s, false)
	// Used every 50 minutes, each use served from the cache when it may be:
	// the session lives until its lifetime ends, and not beyond.
	for c.Now().Sub(s.Created) < 13*time.Hour {
		c.Advance(50 * time.Minute)
		got := loadCached(t, m, r)
		age := c.Now().Sub(s.Created)
		if age < 12*time.Hour && got == nil {
			t.Fatalf("session ended after %v of regular use", age)
		}
		if age >= 12*time.Hour && got != nil {
			t.Fatalf("session outlived its lifetime (%v)", age)
		}
	}
}

func TestSessionEndsWhenIdle(t *testing.T) {
	c := newClock()
	m, _ := newTestSessions(t, c)
	s := m.New()
	s.User = "bob"
	r, _ := roundTrip(t, m, s, false)
	c.Advance(59 * time.Minute)
	if loadCached(t, m, r) == nil {
		t.Fatal("session ended before its idle timeout")
	}
	c.Advance(time.Hour)
	if m.Load(r) != nil {
		t.Fatal("idle session still loads")
	}
}

func TestSessionEndRevokesAtOnce(t *testing.T) {
	c := newClock()
	m, _ := newTestSessions(t, c)
	s := m.New()
	s.User = "alice"
	r, _ := roundTrip(t, m, s, false)
	loaded := loadCached(t, m, r)
	w := httptest.NewRecorder()
	m.End(w, r, loaded)
	if m.Load(r) != nil {
		t.Fatal("ended session served from the cache")
	}
	if ck := w.Result().Cookies(); len(ck) != 1 || ck[0].MaxAge >= 0 {
		t.Fatalf("cookie not cleared: %v", ck)
	}
}

func TestSessionCookiesFromAnotherKeyAreRejected(t *testing.T) {
	c := newClock()
	m, st := newTestSessions(t, c)
	other, err := NewSessions(SessionConfig{}, st, Keys{CookieHash: make([]byte, 32), CookieBlock: make([]byte, 32)}, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	s := other.New()
	s.User = "mallory"
	r, _ := roundTrip(t, other, s, false)
	if m.Load(r) != nil {
		t.Fatal("a cookie made with another key was accepted")
	}
}

func TestGorillaStoreAdapter(t *testing.T) {
	c := newClock()
	m, _ := newTestSessions(t, c)
	gs := m.GorillaStore()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	sess, err := gs.Get(r, "stepup")
	if err != nil || !sess.IsNew {
		t.Fatalf("new session: %v %v", sess, err)
	}
	sess.Values["stepup"].(*Session).User = "alice"
	w := httptest.NewRecorder()
	if err := sess.Save(r, w); err != nil {
		t.Fatal(err)
	}
	r2 := httptest.NewRequest(http.MethodGet, "/", nil)
	r2.AddCookie(w.Result().Cookies()[0])
	again, err := gs.New(r2, "stepup")
	if err != nil || again.IsNew || again.Values["stepup"].(*Session).User != "alice" {
		t.Fatalf("reloaded: %+v %v", again, err)
	}
}

func TestCookieValueParsing(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Add("Cookie", `a=1; stepup_session="quoted"; b=2`)
	r.Header.Add("Cookie", "stepup_x=3")
	if got := cookieValue(r, "stepup_session"); got != "quoted" {
		t.Fatalf("got %q", got)
	}
	if got := cookieValue(r, "stepup_x"); got != "3" {
		t.Fatalf("got %q", got)
	}
	if got := cookieValue(r, "missing"); got != "" {
		t.Fatalf("got %q", got)
	}
}

// FuzzSessionCookie: no cookie value, however malformed, yields a session
// or a panic.
func FuzzSessionCookie(f *testing.F) {
	c := newClock()
	st := store.NewMemory(0, c.Now)
	m, err := NewSessions(SessionConfig{}, st, testKeys(f), c.Now)
	if err != nil {
		f.Fatal(err)
	}
	s := m.New()
	s.User = "alice"
	w := httptest.NewRecorder()
	if err := m.Commit(w, httptest.NewRequest(http.MethodGet, "/", nil), s); err != nil {
		f.Fatal(err)
	}
	valid := w.Result().Cookies()[0].Value
	f.Add(valid)
	f.Add(valid[:len(valid)-1] + "A")
	f.Add("")
	f.Add("MTY=|a|b")
	f.Add(strings.Repeat("A", 5000))
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", "stepup_session="+v)
		got := m.Load(r)
		if got != nil && v != valid && strings.Trim(v, `"`) != valid {
			t.Fatalf("forged cookie %q loaded a session", v)
		}
	})
}

// BenchmarkIdleSessionMemory reports the memory an idle session takes in the
// memory store (the bound is 1 KiB).
func BenchmarkIdleSessionMemory(b *testing.B) {
	const n = 100_000
	c := newClock()
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		st := store.NewMemory(0, c.Now)
		for j := 0; j < n; j++ {
			// A session as a password login leaves it.
			s := &Session{ID: randomToken(32), Owner: randomToken(18), User: "user" + strings.Repeat("x", j%8),
				Roles: []string{"staff"}, Created: c.Now(), Seen: c.Now(),
				Stack: tiers.Stack{{Tier: "login", Method: "password", Credential: "user", At: c.Now()}}}
			raw, _ := encodeSession(s)
			_ = st.Set(ctx, keyRecord+s.Owner, raw, time.Hour)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/session")
		runtime.KeepAlive(st)
	}
}

// BenchmarkLoadOverHTTPS: the hot path of a request with a session cookie
// over HTTPS (the __Host- cookie), served from the cache.
func BenchmarkLoadOverHTTPS(b *testing.B) {
	c := newClock()
	st := store.NewMemory(0, c.Now)
	m, err := NewSessions(SessionConfig{}, st, testKeys(b), c.Now)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	s := m.New()
	s.User = "alice"
	r := httptest.NewRequest(http.MethodGet, "https://app.example/", nil)
	r.TLS = &tls.ConnectionState{}
	w := httptest.NewRecorder()
	if err := m.Commit(w, r, s); err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "https://app.example/", nil)
	req.TLS = &tls.ConnectionState{}
	req.AddCookie(w.Result().Cookies()[0])
	m.Load(req)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if m.Load(req) == nil {
			b.Fatal("no session")
		}
	}
}

// BenchmarkMillionSessions stores a million sessions as sign-ins leave them
// (one record each, keyed by the owner, through Sessions.Commit) in the
// memory store, and reports the heap and the resident memory they add per
// session and in all (issue 13: Caddy with 1 M sessions within plain Caddy
// + 400 MiB).
func BenchmarkMillionSessions(b *testing.B) {
	const n = 1_000_000
	c := newClock()
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rssBefore := residentBytes()
		st := store.NewMemory(0, c.Now)
		m, err := NewSessions(SessionConfig{}, st, testKeys(b), c.Now)
		if err != nil {
			b.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodGet, "http://app.example/", nil)
		w := discardCookies{}
		for j := 0; j < n; j++ {
			s := m.New()
			s.User, s.Roles = "user"+strings.Repeat("x", j%8), []string{"staff"}
			s.Stack = tiers.Stack{{Tier: "login", Method: "password", Credential: s.User, At: c.Now()}}
			if err := m.Commit(w, r, s); err != nil {
				b.Fatal(err)
			}
		}
		m.Close() // the decoded-session cache is bounded apart; this measures the store
		runtime.GC()
		debug.FreeOSMemory() // what is garbage goes back to the system, as it does over time
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/session")
		b.ReportMetric(float64(residentBytes()-rssBefore)/(1<<20), "RSS-MiB/1M")
		runtime.KeepAlive(st)
	}
}

// discardCookies is a ResponseWriter that drops what is written (the
// cookies of a million sign-ins).
type discardCookies struct{}

func (discardCookies) Header() http.Header         { return http.Header{} }
func (discardCookies) Write(p []byte) (int, error) { return len(p), nil }
func (discardCookies) WriteHeader(int)             {}

// residentBytes is the process's resident set size (Linux), 0 elsewhere.
func residentBytes() uint64 {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(raw))
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(fields[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
