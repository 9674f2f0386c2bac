package stepup

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

// newWallStoreSessions: the store expires entries by the wall clock, which
// stands still during a test, so that only the session's own checks (idle,
// lifetime) can end a session.
func newWallStoreSessions(t *testing.T, c *clock, cfg SessionConfig) (*Sessions, *store.Memory) {
	t.Helper()
	st := store.NewMemory(0, nil)
	m, err := NewSessions(cfg, st, testKeys(t), c.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, st
}

func TestSessionEndsExactlyAtItsIdleTimeout(t *testing.T) {
	c := newClock()
	m, _ := newWallStoreSessions(t, c, SessionConfig{IdleTimeout: time.Hour, Lifetime: 12 * time.Hour})
	s := m.New()
	s.User = "alice"
	r, _ := roundTrip(t, m, s, false)
	c.Advance(time.Hour - time.Nanosecond)
	if loadCached(t, m, r) == nil {
		t.Fatal("the session ended before its idle timeout")
	}
	// That load touched it: idle again from now.
	c.Advance(time.Hour)
	if got := m.Load(r); got != nil {
		t.Fatal("the session outlived its idle timeout")
	}
}

func TestSessionEndsExactlyAtItsLifetime(t *testing.T) {
	c := newClock()
	m, _ := newWallStoreSessions(t, c, SessionConfig{IdleTimeout: time.Hour, Lifetime: 2 * time.Hour})
	s := m.New()
	s.User = "alice"
	r, _ := roundTrip(t, m, s, false)
	c.Advance(50 * time.Minute)
	loadCached(t, m, r)
	c.Advance(50 * time.Minute)
	if loadCached(t, m, r) == nil {
		t.Fatal("the session ended before its lifetime")
	}
	// Not loaded in between: a touch this close to the end would store the
	// session for a nanosecond of the store's own (wall) clock.
	c.Advance(20 * time.Minute)
	if m.Load(r) != nil {
		t.Fatal("the session outlived its lifetime")
	}
}

// A session at the end of its lifetime cannot be stored again.
func TestCommitRefusesASessionAtItsLifetime(t *testing.T) {
	c := newClock()
	m, st := newWallStoreSessions(t, c, SessionConfig{IdleTimeout: time.Hour, Lifetime: 2 * time.Hour})
	s := m.New()
	s.User = "alice"
	c.Advance(2 * time.Hour)
	if err := m.Commit(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), s); err == nil {
		t.Fatal("a session at its lifetime was committed")
	}
	if st.Len() != 0 {
		t.Fatalf("%d records stored for an expired session", st.Len())
	}
}

// Seen is refreshed once it is touchEvery old (a quarter of the idle
// timeout when that is short), so a session in use never idles out.
func TestSessionInUseIsTouched(t *testing.T) {
	c := newClock()
	m, _ := newWallStoreSessions(t, c, SessionConfig{IdleTimeout: time.Hour, Lifetime: 12 * time.Hour})
	s := m.New()
	s.User = "alice"
	r, _ := roundTrip(t, m, s, false)
	c.Advance(maxTouchInterval - time.Nanosecond)
	if got := loadCached(t, m, r); got == nil || !got.Seen.Equal(s.Seen) {
		t.Fatalf("touched before touchEvery: %+v", got)
	}
	c.Advance(time.Nanosecond)
	got := m.Load(r)
	if got == nil || !got.Seen.Equal(c.Now()) {
		t.Fatalf("not touched at touchEvery: %+v", got)
	}
	if again := m.Load(r); again == nil || !again.Seen.Equal(c.Now()) {
		t.Fatalf("the touch was not stored: %+v", again)
	}

	short, _ := newWallStoreSessions(t, c, SessionConfig{IdleTimeout: 80 * time.Second, Lifetime: time.Hour})
	s = short.New()
	s.User = "bob"
	r, _ = roundTrip(t, short, s, false)
	for i := 0; i < 4; i++ {
		c.Advance(50 * time.Second)
		if loadCached(t, short, r) == nil {
			t.Fatalf("a session used every 50s idled out under an 80s idle timeout (use %d)", i+1)
		}
	}
}

// A touch refreshes only a live id: it never brings back one that was
// rotated or ended.
func TestTouchNeverRevivesARotatedID(t *testing.T) {
	c := newClock()
	m, _ := newTestSessions(t, c)
	ctx := context.Background()
	s := m.New()
	s.User = "alice"
	r1, _ := roundTrip(t, m, s, false)
	old := loadCached(t, m, r1)
	next := old.Clone()
	roundTrip(t, m, next, false)
	stale := old.Clone()
	stale.Seen = c.Now().Add(time.Minute)
	if err := m.touch(ctx, stale); !errors.Is(err, ErrSessionChanged) {
		t.Fatalf("touching a rotated id: %v", err)
	}
	if _, stored, err := m.read(ctx, keyRecord+old.Owner); err != nil || stored.ID != next.ID || !stored.Seen.Equal(next.Seen) {
		t.Fatalf("a touch of the rotated id changed the record: %+v %v", stored, err)
	}
	c.Advance(2 * time.Minute)
	if m.Load(r1) != nil {
		t.Fatal("the rotated cookie loads a session")
	}
}

// A rotated id names its owner for a minute, so that a request sent with
// it meanwhile (a logoff) still finds whose session it was.
func TestARotatedIDNamesItsOwnerForAMinute(t *testing.T) {
	c := newClock()
	m, _ := newTestSessions(t, c)
	s := m.New()
	s.User = "alice"
	r1, _ := roundTrip(t, m, s, false)
	if got := m.RotatedOwner(r1); got != "" {
		t.Fatalf("a current id is reported rotated (owner %q)", got)
	}
	next := s.Clone()
	r2, _ := roundTrip(t, m, next, false)
	if got := m.RotatedOwner(r1); got != s.Owner {
		t.Fatalf("RotatedOwner = %q, want %q", got, s.Owner)
	}
	if got := m.RotatedOwner(r2); got != "" {
		t.Fatalf("the new id is reported rotated (owner %q)", got)
	}
	if got := m.RotatedOwner(httptest.NewRequest(http.MethodGet, "/", nil)); got != "" {
		t.Fatalf("no cookie: owner %q", got)
	}
	forged := httptest.NewRequest(http.MethodGet, "/", nil)
	forged.AddCookie(&http.Cookie{Name: "stepup_session", Value: "forged"})
	if got := m.RotatedOwner(forged); got != "" {
		t.Fatalf("a forged cookie: owner %q", got)
	}
	// Only for the owner the cookie names: a cookie of another owner
	// presenting this rotated id names no one.
	if got := m.RotatedOwner(cookieWith(t, m, cookiePayload(randomToken(ownerBytes), s.ID))); got != "" {
		t.Fatalf("a rotated id named its owner for a cookie of another (%q)", got)
	}
	c.Advance(rotatedGrace)
	if got := m.RotatedOwner(r1); got != "" {
		t.Fatalf("a rotated id named its owner after the grace (%q)", got)
	}
}

// EndOwner ends whatever id the owner holds now, not only the one a
// request presented: every cookie of the owner stops working.
func TestEndOwnerEndsTheCurrentID(t *testing.T) {
	c := newClock()
	m, st := newTestSessions(t, c)
	ctx := context.Background()
	s := m.New()
	s.User = "alice"
	r1, _ := roundTrip(t, m, s, false)
	loadCached(t, m, r1)
	first := s.ID
	next := s.Clone()
	r2, _ := roundTrip(t, m, next, false)
	loadCached(t, m, r2)
	if err := m.EndOwner(ctx, s.Owner); err != nil {
		t.Fatal(err)
	}
	if m.Load(r2) != nil || m.Load(r1) != nil || next.ID == first {
		t.Fatal("a cookie of the owner survived EndOwner")
	}
	if _, err := st.Get(ctx, keyRecord+s.Owner); err == nil {
		t.Fatal("the owner's record outlived EndOwner")
	}
	if err := m.EndOwner(ctx, ""); err != nil { // no owner: nothing to end
		t.Fatal(err)
	}
}

func TestAOneEntrySessionCacheWorks(t *testing.T) {
	c := newClock()
	m, err := NewSessions(SessionConfig{CacheEntries: 1}, store.NewMemory(0, c.Now), testKeys(t), c.Now)
	if err != nil {
		t.Fatalf("a one-entry cache: %v", err)
	}
	defer m.Close()
	s := m.New()
	s.User = "alice"
	r, _ := roundTrip(t, m, s, false)
	if got := m.Load(r); got == nil || got.User != "alice" {
		t.Fatalf("loaded %+v", got)
	}
}

// Through the gorilla adapter, saving with MaxAge < 0 ends the session;
// saving otherwise stores it and reports its id.
func TestGorillaSaveStoresOrEnds(t *testing.T) {
	c := newClock()
	m, _ := newTestSessions(t, c)
	gs := m.GorillaStore()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	sess, err := gs.New(r, "stepup")
	if err != nil {
		t.Fatal(err)
	}
	sess.Values["stepup"].(*Session).User = "alice"
	w := httptest.NewRecorder()
	if err := gs.Save(r, w, sess); err != nil {
		t.Fatal(err)
	}
	stored := sess.Values["stepup"].(*Session)
	if sess.ID == "" || sess.ID != stored.ID {
		t.Fatalf("saved under %q, session id %q", sess.ID, stored.ID)
	}
	r2 := httptest.NewRequest(http.MethodGet, "/", nil)
	r2.AddCookie(w.Result().Cookies()[0])
	again, err := gs.New(r2, "stepup")
	if err != nil || again.IsNew {
		t.Fatalf("reloaded: %+v %v", again, err)
	}
	again.Options.MaxAge = -1
	w = httptest.NewRecorder()
	if err := gs.Save(r2, w, again); err != nil {
		t.Fatal(err)
	}
	if m.Load(r2) != nil {
		t.Fatal("saving with MaxAge -1 did not end the session")
	}
	if ck := w.Result().Cookies(); len(ck) != 1 || ck[0].MaxAge >= 0 {
		t.Fatalf("cookie not cleared: %v", ck)
	}
	sess.Values["stepup"] = "not a session"
	if err := gs.Save(r, httptest.NewRecorder(), sess); err == nil {
		t.Fatal("a session without a *Session was saved")
	}
}
