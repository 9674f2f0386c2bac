package stepup

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup/store"
	"github.com/caddy-stepup/caddy-stepup/tiers"
)

// fakeMethod is a method that never verifies anything: the engine tests
// drive Complete directly with the outcome a method would have returned.
type fakeMethod struct {
	name       string
	identifies bool
}

func (m fakeMethod) Name() string         { return m.name }
func (m fakeMethod) Identifies() bool     { return m.identifies }
func (m fakeMethod) Prompt(string) Prompt { return Prompt{} }
func (m fakeMethod) Verify(context.Context, *Attempt) (*Outcome, error) {
	return &Outcome{Result: Rejected}, nil
}

// headerIdentity is an external method: the identity comes from a header
// set earlier in the route.
type headerIdentity struct{ fakeMethod }

func (headerIdentity) Identify(r *http.Request) (string, []string, bool) {
	u := r.Header.Get("Remote-User")
	return u, []string{"sso"}, u != ""
}

// engineHierarchy: a password root (login) with otp above it, and an
// external root (sso).
func engineHierarchy(t testing.TB) *tiers.Hierarchy {
	h, err := tiers.New([]tiers.Tier{
		{Name: "login", Method: "password", MaxAge: 8 * time.Hour},
		{Name: "otp", Base: "login", Method: "totp", MaxAge: 30 * time.Minute},
		{Name: "sso", Method: "external", MaxAge: 8 * time.Hour},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func engineMethods() map[string]Method {
	return map[string]Method{
		"login": fakeMethod{name: "password", identifies: true},
		"otp":   fakeMethod{name: "totp"},
		"sso":   headerIdentity{fakeMethod{name: "external", identifies: true}},
	}
}

// newTestEngine builds an engine on a memory store that runs on the clock;
// sessions idle out after a day, so that tier lapses can be observed.
func newTestEngine(t testing.TB, c *clock, pending PendingLimits) (*Engine, *store.Memory) {
	t.Helper()
	st := store.NewMemory(0, c.Now)
	return newTestEngineOn(t, c, st, pending), st
}

func newTestEngineOn(t testing.TB, c *clock, st Store, pending PendingLimits) *Engine {
	t.Helper()
	e, err := NewEngine(EngineConfig{
		Hierarchy: engineHierarchy(t), Methods: engineMethods(), Store: st, Keys: testKeys(t),
		Session: SessionConfig{IdleTimeout: 24 * time.Hour, Lifetime: 48 * time.Hour},
		Pending: pending, Now: c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// browser carries the session cookie from one response to the next request.
type browser struct{ cookie *http.Cookie }

func (b *browser) request(method, target string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	if b.cookie != nil {
		r.AddCookie(b.cookie)
	}
	return r
}

// keep takes the session cookie a response set, if any.
func (b *browser) keep(t testing.TB, w *httptest.ResponseRecorder) {
	t.Helper()
	for _, ck := range w.Result().Cookies() {
		if ck.Name == "stepup_session" {
			if ck.MaxAge < 0 {
				b.cookie = nil
			} else {
				b.cookie = ck
			}
		}
	}
}

// complete runs e.Complete for the browser and keeps the new cookie.
func (b *browser) complete(t testing.TB, e *Engine, s *Session, tier, user, pending string) (*Session, error) {
	t.Helper()
	w := httptest.NewRecorder()
	next, err := e.Complete(w, b.request(http.MethodPost, "/_stepup/step"), s, tier, &Outcome{Result: Accepted, User: user, Credential: user}, pending)
	if err == nil {
		b.keep(t, w)
	}
	return next, err
}

// session runs e.Session for the browser and keeps whatever cookie it sets.
func (b *browser) session(t testing.TB, e *Engine, r *http.Request) *Session {
	t.Helper()
	w := httptest.NewRecorder()
	s := e.Session(w, r)
	b.keep(t, w)
	return s
}

func signIn(t testing.TB, e *Engine, b *browser, user string) *Session {
	t.Helper()
	s, err := b.complete(t, e, nil, "login", user, "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewEngineDefaultsAndKeepsWhatIsGiven(t *testing.T) {
	c := newClock()
	st := store.NewMemory(0, c.Now)
	e := newTestEngineOn(t, c, st, PendingLimits{})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "[2001:db8::7]:4711"
	if e.Prefix != "/_stepup" {
		t.Errorf("default prefix %q", e.Prefix)
	}
	if got := e.ClientIP(r); got != "2001:db8::7" {
		t.Errorf("default client IP %q", got)
	}
	if got := e.RequestID(r); got != "" {
		t.Errorf("default request id %q", got)
	}
	if e.Scheme(r) != "http" || e.CSRF.Scheme(r) != "http" {
		t.Errorf("default scheme %q", e.Scheme(r))
	}
	if e.Pending.PerSession != 5 || e.Pending.TTL != 10*time.Minute {
		t.Errorf("pending limits not defaulted: %+v", e.Pending)
	}

	given, err := NewEngine(EngineConfig{
		Hierarchy: engineHierarchy(t), Methods: engineMethods(), Store: st, Keys: testKeys(t), Now: c.Now,
		Prefix:    "/auth",
		ClientIP:  func(*http.Request) string { return "192.0.2.1" },
		RequestID: func(*http.Request) string { return "req-1" },
		Scheme:    func(*http.Request) string { return "https" },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer given.Close()
	if given.Prefix != "/auth" || given.ClientIP(r) != "192.0.2.1" || given.RequestID(r) != "req-1" ||
		given.Scheme(r) != "https" || given.CSRF.Scheme(r) != "https" {
		t.Errorf("configured functions replaced: prefix %q ip %q id %q scheme %q", given.Prefix, given.ClientIP(r), given.RequestID(r), given.Scheme(r))
	}
}

func TestNewEngineRefusesMisplacedMethods(t *testing.T) {
	h := engineHierarchy(t)
	keys := testKeys(t)
	st := store.NewMemory(0, nil)
	with := func(tier string, m Method) map[string]Method {
		ms := engineMethods()
		if m == nil {
			delete(ms, tier)
		} else {
			ms[tier] = m
		}
		return ms
	}
	twoExternal, err := tiers.New([]tiers.Tier{{Name: "sso", Method: "external", MaxAge: time.Hour}, {Name: "sso2", Method: "external", MaxAge: time.Hour}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ext := headerIdentity{fakeMethod{name: "external", identifies: true}}
	for _, tc := range []struct {
		name    string
		h       *tiers.Hierarchy
		methods map[string]Method
		want    string
	}{
		{"a tier without a method", h, with("otp", nil), `tier "otp": no method`},
		{"a root tier that does not identify", h, with("login", fakeMethod{name: "totp"}), "a root tier needs a method that identifies"},
		{"an identifying method above a root", h, with("otp", fakeMethod{name: "password", identifies: true}), "must be a root tier"},
		{"two external tiers", twoExternal, map[string]Method{"sso": ext, "sso2": ext}, "only one tier may use the external method"},
	} {
		e, err := NewEngine(EngineConfig{Hierarchy: tc.h, Methods: tc.methods, Store: st, Keys: keys})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if e != nil {
			e.Close()
		}
	}
	// One external tier is fine.
	one, err := tiers.New([]tiers.Tier{{Name: "sso", Method: "external", MaxAge: time.Hour}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(EngineConfig{Hierarchy: one, Methods: map[string]Method{"sso": ext}, Store: st, Keys: keys})
	if err != nil {
		t.Fatalf("a single external tier refused: %v", err)
	}
	e.Close()
}

func TestClientIPIsTheHostOfTheRemoteAddress(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:1234":    "192.0.2.1",
		"[2001:db8::1]:443": "2001:db8::1",
		"[::1]:80":          "::1",
		"host":              "host",
		":80":               "",
		"[]:80":             "",
		"a:b:c":             "a:b",
		"":                  "",
	} {
		if got := hostOnly(in); got != want {
			t.Errorf("hostOnly(%q) = %q, want %q", in, got, want)
		}
	}
}

// The session and CSRF cookies are credentials of this module: the
// upstream never sees them, and every other cookie reaches it unchanged.
func TestStripCookiesRemovesOnlyTheModulesCookies(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	for _, tc := range []struct {
		name  string
		tls   bool
		lines []string
		want  []string // nil: no Cookie header left
	}{
		{"no cookies", false, nil, nil},
		{"foreign only", false, []string{"a=1; b=2"}, []string{"a=1; b=2"}},
		{"own only", false, []string{"stepup_session=s; stepup_csrf=c"}, nil},
		{"mixed", false, []string{"a=1; stepup_session=s; stepup_csrf=c; b=2"}, []string{"a=1; b=2"}},
		{"own first", false, []string{"stepup_session=s; a=1"}, []string{"a=1"}},
		{"empty parts go", false, []string{"a=1;; stepup_csrf=c;b=2"}, []string{"a=1; b=2"}},
		{"several lines", false, []string{"a=1; stepup_session=s", "stepup_csrf=c", "b=2"}, []string{"a=1; b=2"}},
		{"https names", true, []string{"__Host-stepup_session=s; __Host-stepup_csrf=c; stepup_session=app"}, []string{"stepup_session=app"}},
		{"look-alike names stay", false, []string{"stepup_session2=x; xstepup_csrf=y; stepup_session=s"}, []string{"stepup_session2=x; xstepup_csrf=y"}},
	} {
		// Both ways: StripCookies alone, and the gateway's one scan
		// (ScanCookies) followed by StripScanned.
		for _, scanned := range []bool{false, true} {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for _, l := range tc.lines {
				r.Header.Add("Cookie", l)
			}
			if scanned {
				e.StripScanned(r, e.ScanCookies(r))
			} else {
				e.StripCookies(r)
			}
			if got := r.Header["Cookie"]; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s (scanned first: %v): Cookie %q, want %q", tc.name, scanned, got, tc.want)
			}
		}
	}
}

// The gateway reads a request's cookies once (ScanCookies) for both the
// session lookup and the stripping: the session value must be what the
// session lookup (cookieValue) reads on its own, and what is stripped must
// be what a plain reading of the Cookie lines says (every module cookie
// gone, every other part kept in order), for any lines, or a session
// cookie could be read one way and left upstream the other.
func FuzzScanCookiesAgreesWithTheSeparateReads(f *testing.F) {
	for _, seed := range []string{
		"", "a=1", "stepup_session=s", "stepup_session=s; stepup_csrf=c", "a=1;; stepup_csrf=c;b=2",
		"stepup_session=\"q\"; a", "stepup_session; stepup_session=second", "stepup_session=; stepup_session=x",
		" stepup_session = x ; __Host-stepup_session=y", "=; ;", "stepup_page=p; b=2", "stepup_session2=x; xstepup_csrf=y",
	} {
		f.Add(seed, "", false)
		f.Add(seed, "z=9; stepup_session=late", true)
	}
	c := newClock()
	e, _ := newTestEngine(f, c, PendingLimits{})
	e.PageCookie = "stepup_page"
	f.Fuzz(func(t *testing.T, line1, line2 string, tlsOn bool) {
		var lines []string
		for _, l := range []string{line1, line2} {
			if l != "" {
				lines = append(lines, l)
			}
		}
		build := func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tlsOn {
				r.TLS = &tls.ConnectionState{}
			}
			for _, l := range lines {
				r.Header.Add("Cookie", l)
			}
			return r
		}
		// What stripping must leave, read plainly from the lines.
		prefix := ""
		if tlsOn {
			prefix = "__Host-"
		}
		var kept []string
		mine := false
		for _, l := range lines {
			// A line's parts are what its semicolons separate; one that
			// ends in ";" has no empty part after it.
			for _, part := range strings.Split(strings.TrimSuffix(l, ";"), ";") {
				part = strings.TrimSpace(part)
				switch name, _, _ := strings.Cut(part, "="); name {
				case "", prefix + "stepup_session", prefix + "stepup_csrf", "stepup_page":
					mine = true
				default:
					kept = append(kept, part)
				}
			}
		}
		want := lines
		switch {
		case mine && len(kept) == 0:
			want = nil
		case mine:
			want = []string{strings.Join(kept, "; ")}
		}

		alone, scanned := build(), build()
		found := e.ScanCookies(scanned)
		if v := cookieValue(alone, e.Sessions.CookieName(alone)); found.Session != v {
			t.Fatalf("session cookie %q, the session lookup reads %q", found.Session, v)
		}
		e.StripScanned(scanned, found)
		e.StripCookies(alone)
		for _, got := range [][]string{scanned.Header["Cookie"], alone.Header["Cookie"]} {
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("stripped %q, want %q", got, want)
			}
		}
	})
}

func TestAuditRecordsCarryTheRequestAndSession(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	e.ClientIP = func(*http.Request) string { return "192.0.2.9" }
	e.RequestID = func(*http.Request) string { return "rid" }
	r := httptest.NewRequest(http.MethodDelete, "/admin/x", nil)
	s := &Session{Owner: "owner-1", User: "alice"}

	got := e.record(r, s, Record{Event: EventDenied})
	want := Record{Event: EventDenied, Method: "DELETE", Path: "/admin/x", ClientIP: "192.0.2.9", RequestID: "rid", User: "alice", Session: "owner-1"}
	if got != want {
		t.Errorf("record %+v, want %+v", got, want)
	}
	if got := e.record(r, s, Record{Event: EventIdentityChange, User: "bob"}); got.User != "bob" || got.Session != "owner-1" {
		t.Errorf("a record's own user was replaced: %+v", got)
	}
	if got := e.record(r, nil, Record{Event: EventDenied}); got.User != "" || got.Session != "" || got.Path != "/admin/x" {
		t.Errorf("anonymous record %+v", got)
	}
	e.Log(r, nil, Record{Event: EventDenied}) // nil audit and nil session: no panic
}

func TestSessionIsNilForAnonymousRequestsAndStableWhileNothingLapses(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	b := &browser{}
	if s := b.session(t, e, b.request(http.MethodGet, "/")); s != nil {
		t.Fatalf("an anonymous request has session %+v", s)
	}
	alice := signIn(t, e, b, "alice")
	c.Advance(time.Hour)
	w := httptest.NewRecorder()
	s := e.Session(w, b.request(http.MethodGet, "/"))
	if s == nil || s.ID != alice.ID || s.User != "alice" {
		t.Fatalf("session %+v, want alice's under the same id", s)
	}
	for _, ck := range w.Result().Cookies() {
		if ck.Name == "stepup_session" {
			t.Fatal("the id rotated although no level lapsed")
		}
	}
}

// A lapsed root leaves an anonymous session that remembers who it was
// for (LastUser); a lapsed upper tier leaves the user signed in.
func TestSessionDropsLapsedLevels(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	b := &browser{}
	alice := signIn(t, e, b, "alice")
	alice, err := b.complete(t, e, alice, "otp", "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	before := alice.ID

	c.Advance(31 * time.Minute) // otp lapses, login holds
	s := b.session(t, e, b.request(http.MethodGet, "/"))
	if s == nil || s.User != "alice" || s.LastUser != "" || !reflect.DeepEqual(s.Stack.Names(), []string{"login"}) {
		t.Fatalf("after the otp lapse: %+v", s)
	}
	if s.ID == before || s.Owner != alice.Owner {
		t.Fatalf("the reduced stack must rotate the id (%q) and keep the owner", s.ID)
	}
	if got := e.Sessions.Load(b.request(http.MethodGet, "/")); got == nil || got.ID != s.ID {
		t.Fatalf("the reduced session was not stored under the new cookie: %+v", got)
	}

	c.Advance(8 * time.Hour) // login lapses
	s = b.session(t, e, b.request(http.MethodGet, "/"))
	if s == nil || s.User != "" || s.Roles != nil || s.External || len(s.Stack) != 0 {
		t.Fatalf("after the root lapsed: %+v", s)
	}
	if s.LastUser != "alice" || s.Owner != alice.Owner {
		t.Fatalf("the anonymous session forgot its user or owner: %+v", s)
	}
	if got := e.Sessions.Load(b.request(http.MethodGet, "/")); got == nil || got.LastUser != "alice" {
		t.Fatalf("the anonymous session was not stored: %+v", got)
	}
}

// An external identity (from earlier in the route) is applied on every
// request; a session whose identity is not the route's ends.
func TestSessionFollowsTheExternalIdentity(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	as := func(b *browser, user string) *http.Request {
		r := b.request(http.MethodGet, "/")
		if user != "" {
			r.Header.Set("Remote-User", user)
		}
		return r
	}

	// No cookie, an identity: a session for this request only.
	b := &browser{}
	s := b.session(t, e, as(b, "carol"))
	if s == nil || s.User != "carol" || !s.External || s.Stored() || !reflect.DeepEqual(s.Stack.Names(), []string{"sso"}) {
		t.Fatalf("external session %+v", s)
	}
	if b.cookie != nil {
		t.Fatal("an ephemeral session set a cookie")
	}

	// The same external user with a stored session keeps it.
	b2 := &browser{}
	w := httptest.NewRecorder()
	kept, err := e.Persist(w, as(b2, "carol"), b2.session(t, e, as(b2, "carol")))
	if err != nil {
		t.Fatal(err)
	}
	b2.keep(t, w)
	if got := b2.session(t, e, as(b2, "carol")); got == nil || got.Owner != kept.Owner || got.User != "carol" {
		t.Fatalf("the same external user lost the session: %+v (owner %q)", got, kept.Owner)
	}
	// Another identity behind the cookie: the session ends.
	if got := b2.session(t, e, as(b2, "dave")); got == nil || got.User != "dave" || got.Owner == kept.Owner || got.Stored() {
		t.Fatalf("another external user took over the session: %+v", got)
	}
	if e.Sessions.Load(as(&browser{cookie: cookieFor(t, e, kept)}, "")) != nil {
		t.Fatal("the session of the previous identity still loads")
	}

	// A session signed in by the external method ends when the identity
	// is gone.
	b3 := &browser{}
	w = httptest.NewRecorder()
	ext, err := e.Persist(w, as(b3, "erin"), b3.session(t, e, as(b3, "erin")))
	if err != nil {
		t.Fatal(err)
	}
	b3.keep(t, w)
	if got := b3.session(t, e, as(b3, "")); got != nil {
		t.Fatalf("an external session outlived its identity: %+v", got)
	}
	if e.Sessions.Load(b3.request(http.MethodGet, "/")) != nil || ext.Owner == "" {
		t.Fatal("the external session was not ended")
	}

	// A password user is not signed out by a route without an identity,
	// but is by a route that names someone else.
	b4 := &browser{}
	alice := signIn(t, e, b4, "alice")
	if got := b4.session(t, e, as(b4, "")); got == nil || got.ID != alice.ID {
		t.Fatalf("a password session ended without an external identity: %+v", got)
	}
	if got := b4.session(t, e, as(b4, "mallory")); got == nil || got.User != "mallory" || got.Owner == alice.Owner {
		t.Fatalf("alice's session carried over to another external identity: %+v", got)
	}
	if e.Sessions.Load((&browser{cookie: cookieFor(t, e, alice)}).request(http.MethodGet, "/")) != nil {
		t.Fatal("alice's session survived another identity")
	}

	// A visitor's stored session (no user yet) is kept and gets the
	// external identity.
	b5 := &browser{}
	w = httptest.NewRecorder()
	visitor, err := e.Persist(w, b5.request(http.MethodGet, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b5.keep(t, w)
	if got := b5.session(t, e, as(b5, "frank")); got == nil || got.Owner != visitor.Owner || got.User != "frank" || !got.External {
		t.Fatalf("a visitor's session was not kept for the external identity: %+v (owner %q)", got, visitor.Owner)
	}
}

// cookieFor encodes a session cookie for s's owner and id, as the browser
// holding it would send it.
func cookieFor(t testing.TB, e *Engine, s *Session) *http.Cookie {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	v, err := e.Sessions.codec.Encode(e.Sessions.CookieName(r), cookiePayload(s.Owner, s.ID))
	if err != nil {
		t.Fatal(err)
	}
	return &http.Cookie{Name: e.Sessions.CookieName(r), Value: v}
}

func TestCompleteStartsANewOwnerForANewIdentity(t *testing.T) {
	c := newClock()
	e, st := newTestEngine(t, c, PendingLimits{})
	ctx := context.Background()
	b := &browser{}
	w := httptest.NewRecorder()
	visitor, err := e.Persist(w, b.request(http.MethodGet, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b.keep(t, w)

	alice, err := b.complete(t, e, visitor, "login", "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	if alice.Owner == visitor.Owner || alice.User != "alice" || !reflect.DeepEqual(alice.Stack.Names(), []string{"login"}) {
		t.Fatalf("sign-in from a visitor session: %+v", alice)
	}
	if _, err := st.Get(ctx, keyRecord+visitor.Owner); err == nil {
		t.Fatal("the visitor's session outlived the sign-in")
	}
	if e.Sessions.Load((&browser{cookie: cookieFor(t, e, visitor)}).request(http.MethodGet, "/")) != nil {
		t.Fatal("the visitor's cookie still loads a session")
	}
	if got := e.Sessions.Load(b.request(http.MethodGet, "/")); got == nil || got.ID != alice.ID {
		t.Fatal("the new session does not load from the new cookie")
	}

	// A step-up of the same user keeps the owner and rotates the id.
	up, err := b.complete(t, e, alice, "otp", "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	if up.Owner != alice.Owner || up.ID == alice.ID || !reflect.DeepEqual(up.Stack.Names(), []string{"login", "otp"}) {
		t.Fatalf("step-up: %+v", up)
	}

	// Another user signing in on this browser starts afresh.
	bob, err := b.complete(t, e, up, "login", "bob", "")
	if err != nil {
		t.Fatal(err)
	}
	if bob.Owner == up.Owner || bob.User != "bob" || !reflect.DeepEqual(bob.Stack.Names(), []string{"login"}) {
		t.Fatalf("another user's sign-in: %+v", bob)
	}
	if e.Sessions.Load((&browser{cookie: cookieFor(t, e, up)}).request(http.MethodGet, "/")) != nil {
		t.Fatal("alice's session survived bob's sign-in")
	}
}

func TestCompleteKeepsTheOwnerForTheSameUserAfterALapse(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	b := &browser{}
	alice := signIn(t, e, b, "alice")
	c.Advance(9 * time.Hour)
	lapsed := b.session(t, e, b.request(http.MethodGet, "/"))
	if lapsed == nil || lapsed.LastUser != "alice" {
		t.Fatalf("lapsed session %+v", lapsed)
	}
	again, err := b.complete(t, e, lapsed, "login", "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	if again.Owner != alice.Owner || again.User != "alice" || again.LastUser != "" {
		t.Fatalf("alice again after a lapse: %+v, want owner %q", again, alice.Owner)
	}

	// Someone else after a lapse gets a new owner.
	c.Advance(9 * time.Hour)
	lapsed = b.session(t, e, b.request(http.MethodGet, "/"))
	bob, err := b.complete(t, e, lapsed, "login", "bob", "")
	if err != nil {
		t.Fatal(err)
	}
	if bob.Owner == alice.Owner || bob.LastUser != "" {
		t.Fatalf("bob inherited alice's owner after her lapse: %+v", bob)
	}
}

func TestCompleteRefusesWhatIsNotAllowed(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	b := &browser{}
	if _, err := b.complete(t, e, nil, "otp", "alice", ""); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("a step-up without a session: %v", err)
	}
	w := httptest.NewRecorder()
	visitor, err := e.Persist(w, b.request(http.MethodGet, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b.keep(t, w)
	if _, err := b.complete(t, e, visitor, "otp", "alice", ""); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("a step-up for a visitor nobody signed in: %v", err)
	}
	// A user whose base tier is not held (here: a session not holding login).
	noBase := &Session{Owner: visitor.Owner, ID: visitor.ID, User: "alice", Created: c.Now(), Seen: c.Now()}
	if _, err := b.complete(t, e, noBase, "otp", "alice", ""); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("a step-up without its base tier: %v", err)
	}
}

// Of a step-up and a concurrent change of the same session, one wins: the
// loser gets ErrSessionChanged and no session.
func TestCompleteLosesToAConcurrentRotation(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	b := &browser{}
	w := httptest.NewRecorder()
	visitor, err := e.Persist(w, b.request(http.MethodGet, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b.keep(t, w)
	other := visitor.Clone()
	if err := e.Sessions.Commit(httptest.NewRecorder(), b.request(http.MethodGet, "/"), other); err != nil {
		t.Fatal(err)
	}
	if s, err := b.complete(t, e, visitor, "login", "alice", ""); !errors.Is(err, ErrSessionChanged) || s != nil {
		t.Fatalf("a sign-in over a rotated session: %+v, %v", s, err)
	}

	alice := signIn(t, e, b, "alice")
	rotated := alice.Clone()
	if err := e.Sessions.Commit(httptest.NewRecorder(), b.request(http.MethodGet, "/"), rotated); err != nil {
		t.Fatal(err)
	}
	if s, err := b.complete(t, e, alice, "otp", "alice", ""); !errors.Is(err, ErrSessionChanged) || s != nil {
		t.Fatalf("a step-up over a rotated session: %+v, %v", s, err)
	}
}

func TestLogOffClosesTiersAndEndsAtTheRoot(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	b := &browser{}
	alice := signIn(t, e, b, "alice")

	w := httptest.NewRecorder()
	same, closed, err := e.LogOff(w, b.request(http.MethodPost, "/"), alice, "otp")
	if err != nil || same != alice || closed != nil || len(w.Result().Cookies()) != 0 {
		t.Fatalf("logging off a tier not held changed the session: %+v %v %v", same, closed, err)
	}

	up, err := b.complete(t, e, alice, "otp", "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	w = httptest.NewRecorder()
	down, closed, err := e.LogOff(w, b.request(http.MethodPost, "/"), up, "otp")
	if err != nil || down == nil || !reflect.DeepEqual(closed, []string{"otp"}) || !reflect.DeepEqual(down.Stack.Names(), []string{"login"}) {
		t.Fatalf("log off otp: %+v %v %v", down, closed, err)
	}
	if down.ID == up.ID || down.Owner != up.Owner {
		t.Fatal("logging off must rotate the id and keep the owner")
	}
	b.keep(t, w)
	if e.Sessions.Load((&browser{cookie: cookieFor(t, e, up)}).request(http.MethodGet, "/")) != nil {
		t.Fatal("the id that held otp still loads")
	}

	w = httptest.NewRecorder()
	gone, closed, err := e.LogOff(w, b.request(http.MethodPost, "/"), down, "login")
	if err != nil || gone != nil || !reflect.DeepEqual(closed, []string{"login"}) {
		t.Fatalf("log off the root: %+v %v %v", gone, closed, err)
	}
	b.keep(t, w)
	if b.cookie != nil || e.Sessions.Load((&browser{cookie: cookieFor(t, e, down)}).request(http.MethodGet, "/")) != nil {
		t.Fatal("the session outlived a log-off at its root")
	}

	// A log-off that loses to a concurrent rotation reports it.
	alice = signIn(t, e, b, "alice")
	up, _ = b.complete(t, e, alice, "otp", "alice", "")
	if err := e.Sessions.Commit(httptest.NewRecorder(), b.request(http.MethodGet, "/"), up.Clone()); err != nil {
		t.Fatal(err)
	}
	if s, closed, err := e.LogOff(httptest.NewRecorder(), b.request(http.MethodPost, "/"), up, "otp"); err == nil || s != up || closed != nil {
		t.Fatalf("a log-off over a rotated session: %+v %v %v", s, closed, err)
	}
}

func TestPersistStoresOnlyWhatIsNotStored(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	b := &browser{}
	alice := signIn(t, e, b, "alice")
	w := httptest.NewRecorder()
	if got, err := e.Persist(w, b.request(http.MethodGet, "/"), alice); err != nil || got != alice || len(w.Result().Cookies()) != 0 {
		t.Fatalf("a stored session was stored again: %+v %v", got, err)
	}

	w = httptest.NewRecorder()
	visitor, err := e.Persist(w, httptest.NewRequest(http.MethodGet, "/", nil), nil)
	if err != nil || visitor == nil || visitor.Owner == "" || visitor.User != "" || !visitor.Stored() {
		t.Fatalf("a visitor's session: %+v %v", visitor, err)
	}
	b2 := &browser{}
	b2.keep(t, w)
	if got := e.Sessions.Load(b2.request(http.MethodGet, "/")); got == nil || got.Owner != visitor.Owner {
		t.Fatal("the visitor's session was not stored")
	}

	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Remote-User", "carol")
	eph := e.Session(httptest.NewRecorder(), r)
	w = httptest.NewRecorder()
	carol, err := e.Persist(w, r, eph)
	if err != nil || carol.User != "carol" || !carol.External || !carol.Stored() || carol.Owner == "" || !reflect.DeepEqual(carol.Stack.Names(), []string{"sso"}) {
		t.Fatalf("an external identity stored: %+v %v", carol, err)
	}
	if eph.Stored() {
		t.Fatal("Persist changed the ephemeral session it was given")
	}
}

// A tier's alternatives: any one reaches it, each is found by its name,
// and the level records the one used.
func TestAlternativesReachTheTierAndNameTheMethodUsed(t *testing.T) {
	c := newClock()
	e, err := NewEngine(EngineConfig{
		Hierarchy: engineHierarchy(t), Methods: engineMethods(), Store: store.NewMemory(0, c.Now), Keys: testKeys(t), Now: c.Now,
		Alternatives: map[string][]Method{"otp": {fakeMethod{name: "code"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, tc := range []struct{ name, want string }{{"", "totp"}, {"totp", "totp"}, {"code", "code"}} {
		if m, ok := e.Method("otp", tc.name); !ok || m.Name() != tc.want {
			t.Errorf("Method(otp, %q) = %v, %v; want %s", tc.name, m, ok, tc.want)
		}
	}
	if m, ok := e.Method("otp", "password"); ok {
		t.Errorf("another tier's method found for otp: %v", m)
	}
	if m, ok := e.Method("nope", ""); ok {
		t.Errorf("a method found for an unknown tier: %v", m)
	}

	b := &browser{}
	alice := signIn(t, e, b, "alice")
	w := httptest.NewRecorder()
	if _, err := e.Complete(w, b.request(http.MethodPost, "/"), alice, "otp", &Outcome{Result: Accepted, User: "alice", Method: "nope"}, ""); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("a step-up by a method the tier does not have: %v", err)
	}
	w = httptest.NewRecorder()
	up, err := e.Complete(w, b.request(http.MethodPost, "/"), alice, "otp", &Outcome{Result: Accepted, User: "alice", Method: "code"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := up.Stack.Level("otp"); !ok || l.Method != "code" {
		t.Fatalf("the level names %+v, want the method used (code)", l)
	}
}

func TestNewEngineRefusesBadAlternatives(t *testing.T) {
	ext := headerIdentity{fakeMethod{name: "external", identifies: true}}
	for _, tc := range []struct {
		name string
		alts map[string][]Method
		want string
	}{
		{"a reserved name", map[string][]Method{"otp": {fakeMethod{name: "verify"}}}, "cannot name a method"},
		{"an empty name", map[string][]Method{"otp": {fakeMethod{name: ""}}}, "cannot name a method"},
		{"a name with a slash", map[string][]Method{"otp": {fakeMethod{name: "a/b"}}}, "cannot name a method"},
		{"the same method twice", map[string][]Method{"otp": {fakeMethod{name: "totp"}}}, "given more than once"},
		{"an identifying alternative", map[string][]Method{"otp": {fakeMethod{name: "sso2", identifies: true}}}, "are not alternatives"},
		{"an alternative to the external method", map[string][]Method{"sso": {headerIdentity{fakeMethod{name: "other", identifies: true}}}}, "has no alternatives"},
		{"the external method as an alternative", map[string][]Method{"login": {ext}}, "has no alternatives"},
	} {
		e, err := NewEngine(EngineConfig{Hierarchy: engineHierarchy(t), Methods: engineMethods(), Alternatives: tc.alts, Store: store.NewMemory(0, nil), Keys: testKeys(t)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if e != nil {
			e.Close()
		}
	}
}

// The directory holds only the users it identifies: a session whose root
// level a password reached follows it, one identified by another method
// (a third party's, whose users are its own) is left alone.
func TestApplyDirectoryFollowsOnlyPasswordSessions(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	e.setDirectory(map[string]directoryEntry{"alice": {roles: []string{"ops"}, mark: "new"}})
	for _, tc := range []struct {
		name, user, method, mark string
		roles                    []string
		gone                     bool
		wantRoles                []string
	}{
		{"unchanged", "alice", "password", "new", []string{"ops"}, false, []string{"ops"}},
		{"from before password marks", "alice", "password", "", []string{"ops"}, false, []string{"ops"}},
		{"roles changed", "alice", "password", "new", []string{"ops", "admin"}, false, []string{"ops"}},
		{"password changed", "alice", "password", "old", []string{"ops"}, true, nil},
		{"removed", "zed", "password", "", nil, true, nil},
		{"another method's user", "zed", "email", "", []string{"x"}, false, []string{"x"}},
	} {
		s := &Session{User: tc.user, Roles: tc.roles, PasswordMark: tc.mark, ephemeral: true,
			Stack: tiers.Stack{{Tier: "login", Method: tc.method, At: c.Now()}}}
		got := e.applyDirectory(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), s)
		if (got == nil) != tc.gone {
			t.Errorf("%s: session %v, want ended %v", tc.name, got, tc.gone)
			continue
		}
		if got != nil && !reflect.DeepEqual(got.Roles, tc.wantRoles) {
			t.Errorf("%s: roles %v, want %v", tc.name, got.Roles, tc.wantRoles)
		}
	}
	// A copy that agreed with one directory is checked again against the
	// next one (a reload), however often it agreed before.
	s := &Session{User: "alice", Roles: []string{"ops"}, PasswordMark: "new", ephemeral: true,
		Stack: tiers.Stack{{Tier: "login", Method: "password", At: c.Now()}}}
	w, r := httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil)
	for range 2 {
		if e.applyDirectory(w, r, s) != s {
			t.Fatal("an agreeing session was not served as it is")
		}
	}
	e.setDirectory(map[string]directoryEntry{"bob": {}})
	if e.applyDirectory(w, r, s) != nil {
		t.Error("a session checked against the previous directory was not checked against the new one")
	}
}

// Requests racing in on a session whose roles a reload took away: each is
// judged with the new roles (one of them stores them, the others lose the
// rotation to it), none with the old ones, and the stored session ends
// up with the new roles.
func TestParallelRequestsAfterARoleIsTakenAwayNeverSeeIt(t *testing.T) {
	c := newClock()
	e, _ := newTestEngine(t, c, PendingLimits{})
	s := e.Sessions.New()
	s.User, s.Roles = "alice", []string{"ops", "approver"}
	s.Stack = tiers.Stack{{Tier: "login", Method: "password", At: c.Now()}}
	r0, _ := roundTrip(t, e.Sessions, s, false)
	e.setDirectory(map[string]directoryEntry{"alice": {roles: []string{"ops"}}}) // the reload
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := r0.Clone(r0.Context())
			got, err := e.SessionChecked(httptest.NewRecorder(), r)
			if err != nil {
				t.Error(err)
				return
			}
			if got != nil && slices.Contains(got.Roles, "approver") {
				t.Error("a request was judged with the role taken away")
			}
		}()
	}
	wg.Wait()
	if got := storedRecord(t, e.Sessions, s.Owner); got == nil || !slices.Equal(got.Roles, []string{"ops"}) {
		t.Fatalf("stored session %+v, want roles [ops]", got)
	}
}
