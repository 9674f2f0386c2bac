package stepup

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup/store"
	"github.com/caddy-stepup/caddy-stepup/tiers"
)

// One record per session, keyed by its owner, holding the current id; the
// cookie names both. These tests attack that layout and check that the
// previous one (an id's record and an owner's index, a cookie with the id
// alone) still works until it moves.

// cookieWith returns a request carrying a session cookie with the given
// payload, signed and encrypted with m's keys: what a cookie could say if
// this instance had issued it.
func cookieWith(t testing.TB, m *Sessions, payload []byte) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	v, err := m.codec.Encode(m.CookieName(r), payload)
	if err != nil {
		t.Fatal(err)
	}
	r.AddCookie(&http.Cookie{Name: m.CookieName(r), Value: v})
	return r
}

// storeLegacy stores s as the previous version did (its id's record in
// that version's form, and the owner's index) and returns a request with
// that version's cookie, the id alone.
func storeLegacy(t testing.TB, m *Sessions, st Store, s *Session) *http.Request {
	t.Helper()
	ctx := context.Background()
	s.ID = randomToken(sessionIDBytes)
	raw, err := encodeLegacySession(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Set(ctx, keySession+s.ID, raw, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := st.Set(ctx, keyOwner+s.Owner, []byte(s.ID), 12*time.Hour); err != nil {
		t.Fatal(err)
	}
	return cookieWith(t, m, []byte(s.ID))
}

// storedRecord reads the owner's record.
func storedRecord(t testing.TB, m *Sessions, owner string) *Session {
	t.Helper()
	_, s, err := m.read(context.Background(), keyRecord+owner)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestACookieWithTheOwnerButAnotherIDIsRefusedAndChangesNothing(t *testing.T) {
	c := newClock()
	m, _ := newTestSessions(t, c)
	s := m.New()
	s.User = "alice"
	r1, _ := roundTrip(t, m, s, false)
	old := s.ID
	next := s.Clone()
	r2, _ := roundTrip(t, m, next, false)
	before := storedRecord(t, m, s.Owner)

	c.Advance(maxTouchInterval) // a load now would touch the session
	for name, payload := range map[string]string{
		"rotated id":   s.Owner + "." + old,
		"forged id":    s.Owner + "." + randomToken(sessionIDBytes),
		"empty id":     s.Owner + ".",
		"owner only":   s.Owner,
		"no owner":     "." + next.ID,
		"extra part":   s.Owner + "." + next.ID + "." + next.ID,
		"id as owner":  next.ID + "." + next.ID,
		"swapped":      next.ID + "." + s.Owner,
		"current, cut": s.Owner + "." + next.ID[:len(next.ID)-1],
	} {
		if got := m.Load(cookieWith(t, m, []byte(payload))); got != nil {
			t.Errorf("%s: a cookie the record does not hold loaded %+v", name, got)
		}
		if got, err := m.LoadChecked(cookieWith(t, m, []byte(payload))); got != nil || err != nil {
			t.Errorf("%s: LoadChecked = %v, %v", name, got, err)
		}
	}
	if m.Load(r1) != nil {
		t.Error("the rotated cookie loads")
	}
	if after := storedRecord(t, m, s.Owner); after == nil || after.ID != before.ID || !after.Seen.Equal(before.Seen) {
		t.Fatalf("refused cookies changed the record: %+v, was %+v", after, before)
	}
	if got := m.Load(r2); got == nil || got.ID != next.ID {
		t.Fatal("refused cookies ended the session")
	}
	if after := storedRecord(t, m, s.Owner); !after.Seen.Equal(c.Now()) {
		t.Fatal("the current cookie did not touch the session")
	}
}

func TestACookieNamingAnotherOwnersSessionIsRefused(t *testing.T) {
	c := newClock()
	m, _ := newTestSessions(t, c)
	alice, mallory := m.New(), m.New()
	alice.User, mallory.User = "alice", "mallory"
	aliceReq, _ := roundTrip(t, m, alice, false)
	roundTrip(t, m, mallory, false)
	loadCached(t, m, aliceReq) // a cached copy of alice's session is no way in either

	for name, payload := range map[string]string{
		"alice's owner, mallory's id":        alice.Owner + "." + mallory.ID,
		"mallory's owner, alice's id":        mallory.Owner + "." + alice.ID,
		"alice's id as a previous cookie":    alice.ID,
		"alice's owner as a previous cookie": alice.Owner,
	} {
		if got := m.Load(cookieWith(t, m, []byte(payload))); got != nil {
			t.Errorf("%s: loaded %s's session", name, got.User)
		}
	}
	if got := m.Load(aliceReq); got == nil || got.User != "alice" {
		t.Fatal("alice's own cookie stopped working")
	}
}

// A rotation makes the old cookie useless at once, on this instance and,
// through the shared store's report of the owner's record, on another that
// cached it.
func TestARotatedCookieStopsWorkingAtOnceEverywhere(t *testing.T) {
	mem := store.NewMemory(0, nil)
	fa, fb := &fakeShared{Memory: mem}, &fakeShared{Memory: mem} // one store, a report channel each
	fa.up.Store(true)
	fb.up.Store(true)
	keys := testKeys(t)
	a, err := NewSessions(SessionConfig{}, fa, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewSessions(SessionConfig{}, fb, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	s, r := committed(t, a)
	cached(t, a, r)
	cached(t, b, r)
	next := s.Clone()
	w := httptest.NewRecorder()
	if err := a.Commit(w, httptest.NewRequest(http.MethodGet, "/", nil), next); err != nil {
		t.Fatal(err)
	}
	if a.Load(r) != nil {
		t.Fatal("the rotating instance serves the old cookie")
	}
	if b.Load(r) == nil {
		t.Fatal("negative control: b should still serve its cached copy before the report")
	}
	fb.changed(keyRecord + s.Owner)
	if b.Load(r) != nil {
		t.Fatal("the report of the owner's record did not drop the old cookie's copy")
	}
	r2 := httptest.NewRequest(http.MethodGet, "/", nil)
	r2.AddCookie(w.Result().Cookies()[0])
	if got := b.Load(r2); got == nil || got.ID != next.ID {
		t.Fatal("the new cookie does not load on the other instance")
	}
}

func TestParallelRotationsOfOneSessionExactlyOneWins(t *testing.T) {
	c := newClock()
	m, st := newTestSessions(t, c)
	s := m.New()
	s.User = "alice"
	r, _ := roundTrip(t, m, s, false)
	loaded := m.Load(r)
	const n = 16
	var wins, lost atomic.Int32
	var winner atomic.Pointer[Session]
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := loaded.Clone()
			next.Stack = tiers.Stack{{Tier: "login", Method: "password", At: c.Now()}}
			<-start
			err := m.Commit(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), next)
			switch {
			case err == nil:
				wins.Add(1)
				winner.Store(next)
			case errors.Is(err, ErrSessionChanged):
				lost.Add(1)
				if next.ID != loaded.ID {
					t.Errorf("a losing Commit left the session with id %q", next.ID)
				}
			default:
				t.Errorf("Commit: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 || lost.Load() != n-1 {
		t.Fatalf("%d of %d parallel rotations won, %d lost; want exactly one", wins.Load(), n, lost.Load())
	}
	if got := storedRecord(t, m, s.Owner); got == nil || got.ID != winner.Load().ID {
		t.Fatalf("the record holds %+v, not the winner's id", got)
	}
	if keys, _ := st.Keys(context.Background(), keyRecord, 10); len(keys) != 1 {
		t.Fatalf("records after the race: %v", keys)
	}
}

// hookStore runs a function once, just before the next compare-and-swap:
// a concurrent request that lands between a read and its swap.
type hookStore struct {
	Store
	mu     sync.Mutex
	before func()
}

func (h *hookStore) CompareAndSwap(ctx context.Context, key string, old, val []byte, ttl time.Duration) (bool, error) {
	h.mu.Lock()
	f := h.before
	h.before = nil
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return h.Store.CompareAndSwap(ctx, key, old, val, ttl)
}

func (h *hookStore) hook(f func()) { h.mu.Lock(); h.before = f; h.mu.Unlock() }

func newHookSessions(t *testing.T, c *clock) (*Sessions, *hookStore) {
	t.Helper()
	h := &hookStore{Store: store.NewMemory(0, c.Now)}
	m, err := NewSessions(SessionConfig{IdleTimeout: time.Hour, Lifetime: 12 * time.Hour}, h, testKeys(t), c.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, h
}

// A touch that races a rotation or an end (they land between its read and
// its swap) changes nothing: no revert of the rotation, no resurrection.
func TestATouchRacingARotationOrAnEndChangesNothing(t *testing.T) {
	c := newClock()
	m, h := newHookSessions(t, c)
	ctx := context.Background()
	s := m.New()
	s.User = "alice"
	roundTrip(t, m, s, false)

	c.Advance(2 * time.Minute)
	next := s.Clone()
	next.Stack = tiers.Stack{{Tier: "login", Method: "password", At: c.Now()}}
	stale := s.Clone()
	stale.Seen = c.Now().Add(time.Second)
	h.hook(func() {
		if err := m.Commit(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), next); err != nil {
			t.Error(err)
		}
	})
	if err := m.touch(ctx, stale); !errors.Is(err, ErrSessionChanged) {
		t.Fatalf("a touch that lost to a rotation: %v", err)
	}
	if got := storedRecord(t, m, s.Owner); got == nil || got.ID != next.ID || len(got.Stack) != 1 || !got.Seen.Equal(next.Seen) {
		t.Fatalf("the touch reverted the rotation: %+v", got)
	}

	current := next.Clone()
	current.Seen = c.Now().Add(time.Second)
	h.hook(func() {
		if err := m.EndOwner(ctx, s.Owner); err != nil {
			t.Error(err)
		}
	})
	if err := m.touch(ctx, current); !errors.Is(err, ErrSessionChanged) {
		t.Fatalf("a touch that lost to an end: %v", err)
	}
	if got := storedRecord(t, m, s.Owner); got != nil {
		t.Fatalf("the touch brought back an ended session: %+v", got)
	}
}

// Two rotations of one session, the second landing between the first's
// read and its swap: the second wins, the first changes nothing.
func TestARotationOvertakenByAnotherLoses(t *testing.T) {
	c := newClock()
	m, h := newHookSessions(t, c)
	s := m.New()
	s.User = "alice"
	roundTrip(t, m, s, false)
	first, second := s.Clone(), s.Clone()
	first.Stack = tiers.Stack{{Tier: "login", Method: "password", At: c.Now()}}
	h.hook(func() {
		if err := m.Commit(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), second); err != nil {
			t.Error(err)
		}
	})
	w := httptest.NewRecorder()
	if err := m.Commit(w, httptest.NewRequest(http.MethodGet, "/", nil), first); !errors.Is(err, ErrSessionChanged) {
		t.Fatalf("the overtaken rotation: %v", err)
	}
	if len(w.Result().Cookies()) != 0 || first.ID != s.ID {
		t.Fatal("the overtaken rotation issued a cookie or kept a new id")
	}
	if got := storedRecord(t, m, s.Owner); got == nil || got.ID != second.ID || len(got.Stack) != 0 {
		t.Fatalf("record %+v, want the overtaking rotation's", got)
	}
}

// A rotation whose read is followed by a touch (same id, new Seen) reads
// again and wins: a refreshed idle time does not fail a step-up.
func TestARotationRacingATouchStillWins(t *testing.T) {
	c := newClock()
	m, h := newHookSessions(t, c)
	s := m.New()
	s.User = "alice"
	roundTrip(t, m, s, false)
	c.Advance(2 * time.Minute)
	touched := s.Clone()
	touched.Seen = c.Now()
	h.hook(func() {
		if err := m.touch(context.Background(), touched); err != nil {
			t.Error(err)
		}
	})
	next := s.Clone()
	if err := m.Commit(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), next); err != nil {
		t.Fatalf("a rotation lost to a touch: %v", err)
	}
	if got := storedRecord(t, m, s.Owner); got == nil || got.ID != next.ID {
		t.Fatalf("record %+v, want the rotation's id", got)
	}
}

// A session the previous version stored loads from its cookie, is touched
// in its own form, and moves to the owner's record at its next Commit:
// the old records go, the old cookie stops working, the owner stays.
func TestALegacySessionLoadsAndMovesAtItsNextCommit(t *testing.T) {
	c := newClock()
	m, st := newTestSessions(t, c)
	ctx := context.Background()
	s := m.New()
	s.User, s.Roles = "alice", []string{"staff"}
	s.Stack = tiers.Stack{{Tier: "login", Method: "password", Credential: "alice", At: c.Now()}}
	r := storeLegacy(t, m, st, s)

	got := loadCached(t, m, r)
	if got == nil || got.User != "alice" || got.Owner != s.Owner || got.ID != s.ID || len(got.Stack) != 1 || !got.legacy() {
		t.Fatalf("legacy session loaded as %+v", got)
	}
	c.Advance(maxTouchInterval)
	if m.Load(r) == nil {
		t.Fatal("the legacy session did not load at its touch")
	}
	raw, err := st.Get(ctx, keySession+s.ID)
	var touched Session
	if err != nil || raw[0] != wireVersion1 || decodeSession(raw, &touched) != nil || !touched.Seen.Equal(c.Now()) {
		t.Fatalf("legacy record after a touch: %v %v %+v", raw, err, &touched)
	}

	next := m.Load(r).Clone()
	next.Stack = append(next.Stack, tiers.Level{Tier: "otp", Base: "login", Method: "totp", At: c.Now()})
	w := httptest.NewRecorder()
	if err := m.Commit(w, r, next); err != nil {
		t.Fatal(err)
	}
	if next.Owner != s.Owner || next.ID == s.ID || next.legacy() {
		t.Fatalf("moved session: %+v", next)
	}
	for _, k := range []string{keySession + s.ID, keyOwner + s.Owner} {
		if _, err := st.Get(ctx, k); err == nil {
			t.Errorf("%s outlived the move", k)
		}
	}
	if m.Load(r) != nil {
		t.Fatal("the previous version's cookie loads after the move")
	}
	if got := m.RotatedOwner(r); got != s.Owner {
		t.Fatalf("the moved id does not name its owner for the grace: %q", got)
	}
	r2 := httptest.NewRequest(http.MethodGet, "/", nil)
	r2.AddCookie(w.Result().Cookies()[0])
	if got := m.Load(r2); got == nil || got.ID != next.ID || len(got.Stack) != 2 || got.legacy() {
		t.Fatalf("the new cookie loads %+v", got)
	}
	if keys, _ := st.Keys(ctx, keyRecord, 10); len(keys) != 1 {
		t.Fatalf("records: %v", keys)
	}
}

// Of several requests that move one legacy session at once, exactly one
// wins; a move that finds the old record gone (ended meanwhile) leaves
// nothing behind.
func TestALegacySessionMovesOnceAndNotAfterItsEnd(t *testing.T) {
	c := newClock()
	m, st := newTestSessions(t, c)
	ctx := context.Background()
	s := m.New()
	s.User = "alice"
	loaded := m.Load(storeLegacy(t, m, st, s))
	const n = 8
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := m.Commit(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), loaded.Clone())
			if err == nil {
				wins.Add(1)
			} else if !errors.Is(err, ErrSessionChanged) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d of %d parallel moves won", wins.Load(), n)
	}
	if got := storedRecord(t, m, s.Owner); got == nil {
		t.Fatal("the losers of the move removed the winner's record")
	}

	other := m.New()
	other.User = "bob"
	loaded = m.Load(storeLegacy(t, m, st, other))
	if err := m.EndOwner(ctx, other.Owner); err != nil {
		t.Fatal(err)
	}
	if err := m.Commit(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), loaded.Clone()); !errors.Is(err, ErrSessionChanged) {
		t.Fatalf("moving an ended legacy session: %v", err)
	}
	if storedRecord(t, m, other.Owner) != nil {
		t.Fatal("moving an ended legacy session left a record")
	}
}

// End ends the presented legacy id even when the owner's index is already
// gone (an EndOwner that ran meanwhile).
func TestEndEndsThePresentedLegacyID(t *testing.T) {
	c := newClock()
	m, st := newTestSessions(t, c)
	ctx := context.Background()
	s := m.New()
	s.User = "alice"
	r := storeLegacy(t, m, st, s)
	loaded := loadCached(t, m, r)
	if err := st.Delete(ctx, keyOwner+s.Owner); err != nil {
		t.Fatal(err)
	}
	if err := m.End(httptest.NewRecorder(), r, loaded); err != nil {
		t.Fatal(err)
	}
	if m.Load(r) != nil {
		t.Fatal("the presented id survived End")
	}
	if _, err := st.Get(ctx, keySession+s.ID); err == nil {
		t.Fatal("the presented id is still stored")
	}
	w := httptest.NewRecorder()
	m.End(w, r, nil) // no session: the cookie is cleared all the same
	if ck := w.Result().Cookies(); len(ck) != 1 || ck[0].MaxAge >= 0 {
		t.Fatalf("cookie not cleared: %v", ck)
	}
}

// The admin API lists and revokes sessions of both layouts, and a sign-in
// as someone else ends a legacy visitor's session.
func TestLegacySessionsAreListedRevokedAndSuperseded(t *testing.T) {
	c := newClock()
	e, st := newTestEngine(t, c, PendingLimits{})
	ctx := context.Background()
	m := e.Sessions

	legacy := m.New()
	legacy.User = "alice"
	legacy.Stack = tiers.Stack{{Tier: "login", Method: "password", At: c.Now()}}
	legacyReq := storeLegacy(t, m, st, legacy)
	current := signIn(t, e, &browser{}, "alice")

	list, err := e.ListSessions(ctx, "alice")
	if err != nil || len(list) != 2 {
		t.Fatalf("listed %+v, %v; want both of alice's sessions", list, err)
	}
	if n, err := CountSessions(ctx, st, 100); err != nil || n != 2 {
		t.Fatalf("CountSessions = %d, %v", n, err)
	}
	ended, err := e.RevokeUser(ctx, "alice", "admin:test")
	if err != nil || len(ended) != 2 {
		t.Fatalf("RevokeUser ended %+v, %v", ended, err)
	}
	if m.Load(legacyReq) != nil {
		t.Fatal("the legacy session survived its revocation")
	}
	if _, err := e.SessionByHandle(ctx, current.Owner); !errors.Is(err, ErrNoSession) {
		t.Fatalf("the current session survived its revocation: %v", err)
	}
	if keys, _ := st.Keys(ctx, "", 100); len(keys) != 0 {
		t.Fatalf("records left after revoking everything: %v", keys)
	}

	visitor := m.New()
	b := &browser{}
	b.cookie = storeLegacy(t, m, st, visitor).Cookies()[0]
	loaded := b.session(t, e, b.request(http.MethodGet, "/"))
	if loaded == nil || !loaded.legacy() {
		t.Fatalf("legacy visitor: %+v", loaded)
	}
	bob, err := b.complete(t, e, loaded, "login", "bob", "")
	if err != nil || bob.Owner == visitor.Owner {
		t.Fatalf("bob's sign-in over a legacy visitor: %+v, %v", bob, err)
	}
	for _, k := range []string{keySession + visitor.ID, keyOwner + visitor.Owner} {
		if _, err := st.Get(ctx, k); err == nil {
			t.Errorf("%s outlived the sign-in that replaced it", k)
		}
	}
}

// A user signed in before the upgrade steps up: the session keeps its
// owner and moves to the owner's record; its old cookie and records go.
func TestALegacySignedInSessionStepsUpAndMoves(t *testing.T) {
	c := newClock()
	e, st := newTestEngine(t, c, PendingLimits{})
	ctx := context.Background()
	s := e.Sessions.New()
	s.User = "alice"
	s.Stack = tiers.Stack{{Tier: "login", Method: "password", Credential: "alice", At: c.Now()}}
	b := &browser{cookie: storeLegacy(t, e.Sessions, st, s).Cookies()[0]}
	old := *b.cookie
	loaded := b.session(t, e, b.request(http.MethodGet, "/"))
	if loaded == nil || loaded.User != "alice" || !loaded.legacy() {
		t.Fatalf("the legacy session did not survive the upgrade: %+v", loaded)
	}
	up, err := b.complete(t, e, loaded, "otp", "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	if up.Owner != s.Owner || up.legacy() || len(up.Stack) != 2 {
		t.Fatalf("stepped up: %+v", up)
	}
	if got := b.session(t, e, b.request(http.MethodGet, "/")); got == nil || got.ID != up.ID || len(got.Stack) != 2 {
		t.Fatalf("the new cookie loads %+v", got)
	}
	if e.Sessions.Load((&browser{cookie: &old}).request(http.MethodGet, "/")) != nil {
		t.Fatal("the pre-upgrade cookie still loads after the step-up")
	}
	for _, k := range []string{keySession + s.ID, keyOwner + s.Owner} {
		if _, err := st.Get(ctx, k); err == nil {
			t.Errorf("%s outlived the move", k)
		}
	}
}

// A legacy session moved on one instance is no longer served from another
// instance's cache once the report of its old record arrives.
func TestALegacySessionMovedOnOneInstanceDropsFromAnothersCache(t *testing.T) {
	mem := store.NewMemory(0, nil)
	fa, fb := &fakeShared{Memory: mem}, &fakeShared{Memory: mem}
	fa.up.Store(true)
	fb.up.Store(true)
	keys := testKeys(t)
	a, _ := NewSessions(SessionConfig{}, fa, keys, nil)
	defer a.Close()
	b, _ := NewSessions(SessionConfig{}, fb, keys, nil)
	defer b.Close()
	s := a.New()
	s.User = "alice"
	r := storeLegacy(t, a, mem, s)
	cached(t, b, r)
	loaded := a.Load(r)
	if err := a.Commit(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), loaded.Clone()); err != nil {
		t.Fatal(err)
	}
	if b.Load(r) == nil {
		t.Fatal("negative control: b should serve its cached copy before the report")
	}
	fb.changed(keySession + s.ID)
	if b.Load(r) != nil {
		t.Fatal("the report of the old record did not drop the legacy cookie's copy")
	}
}
