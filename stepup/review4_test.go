package stepup

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup/store"
	"github.com/caddy-stepup/caddy-stepup/tiers"
)

// Review 4: the one-record session layout and the slot cache attacked.

// forgetTicks lets the background forgetting of change marks run a few
// times (every CacheTTL of real time).
func forgetTicks(ttl time.Duration) { time.Sleep(10 * ttl) }

// The wall clock steps back (an NTP step, a VM restored from a snapshot)
// after a session was cached, and the session is then ended, or rotated
// away by a logoff at a tier. The cached copy expired at a wall time that
// was now an hour ahead, while its change mark was forgotten after twice
// CacheTTL of real time: the ended session, or the old cookie with the
// tiers just logged off, was served from the cache again, for as long as
// the step. A mark must outlive the copies it supersedes on the same
// clock, whichever way that clock moves (here a test's, without the
// monotonic reading that time.Now carries in production).
func TestReview4ACachedCopyOutlivesNoMarkWhenTheClockStepsBack(t *testing.T) {
	for _, tc := range sessionChanges {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			const ttl = 20 * time.Millisecond
			m, err := NewSessions(SessionConfig{CacheTTL: ttl}, store.NewMemory(0, c.Now), testKeys(t), c.Now)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m.Close)
			s := m.New()
			s.User = "alice"
			s.Stack = tiers.Stack{{Tier: "login", Method: "password", At: c.Now()}, {Tier: "otp", Base: "login", Method: "totp", At: c.Now()}}
			r, _ := roundTrip(t, m, s, false)
			loadCached(t, m, r)

			c.Advance(-time.Hour) // the clock steps back
			tc.change(t, m, s)
			for _, step := range []struct {
				name string
				by   time.Duration
			}{
				{"before the copy was read", time.Minute},
				{"just after the copy was read", time.Hour - time.Minute + ttl/4},
			} {
				c.Advance(step.by) // the clock runs on
				forgetTicks(ttl)
				if got := m.Load(r); got != nil {
					t.Fatalf("%s: the cookie's cached copy is served after its session was %s: user %q, tiers %v", step.name, tc.name, got.User, got.Stack.Names())
				}
			}
		})
	}
}

// Two instances share a store that sends no change reports (or whose
// report is still on its way). Instance B serves a session from its cache
// after A ended it; when B's request is due to refresh the session's idle
// time, the refresh finds the record gone (or holding another id): that
// request must be refused then, not served from the copy the store has
// just disowned.
func TestATouchThatFindsTheSessionGoneRefusesTheRequest(t *testing.T) {
	for _, tc := range sessionChanges {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			st := store.NewMemory(0, c.Now)
			cfg := SessionConfig{IdleTimeout: time.Minute, Lifetime: time.Hour} // touched every 15 s, cached 30 s
			// Two instances: one store, reached through two clients (not
			// one process's peers, which mark each other's changes).
			a, b, r := twoManagers(t, c, cfg, instanceOf{st, 1}, instanceOf{st, 2})
			held := b.Load(r)
			if held == nil {
				t.Fatal("instance B does not load the session")
			}
			tc.change(t, a, held)
			c.Advance(20 * time.Second) // past the touch interval, within the cache's life
			if got := b.Load(r); got != nil {
				t.Fatalf("instance B served the session its own touch found %s", tc.name)
			}
		})
	}
}

// twoManagers are session managers over stA and stB, closed when the test
// ends, and a request carrying the cookie of alice's session, signed in at
// login through the first.
func twoManagers(t *testing.T, c *clock, cfg SessionConfig, stA, stB Store) (a, b *Sessions, r *http.Request) {
	t.Helper()
	open := func(st Store) *Sessions {
		m, err := NewSessions(cfg, st, testKeys(t), c.Now)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	a, b = open(stA), open(stB)
	s := a.New()
	s.User = "alice"
	s.Stack = tiers.Stack{{Tier: "login", Method: "password", At: c.Now()}}
	r, _ = roundTrip(t, a, s, false)
	return a, b, r
}

// instanceOf is a store as one instance reaches it: instances do not
// share a process, so their session managers are not peers.
type instanceOf struct {
	*store.Memory
	instance int
}

// Site handlers with the same inline configuration in one Caddy share the
// default store (and namespace) but each has its own session manager and
// cache: a logoff, rotation or revocation through one must hold on the
// others at once, not after their caches' 30 s, as a shared store's
// reports make it hold across instances.
func TestSessionManagersOfOneStoreInOneProcessSeeEachOthersChanges(t *testing.T) {
	for _, tc := range sessionChanges {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			st := store.NewMemory(0, c.Now)
			shared := Namespaced(st, "site:") // as two inline sites get it
			cfg := SessionConfig{IdleTimeout: time.Hour, Lifetime: 12 * time.Hour}
			a, b, r := twoManagers(t, c, cfg, shared, Namespaced(st, "site:"))
			held := loadCached(t, b, r)
			if held == nil {
				t.Fatal("the second site does not load the session")
			}
			tc.change(t, a, held)
			if b.Load(r) != nil {
				t.Fatalf("the second site still serves the session %s through the first", tc.name)
			}
		})
	}
	// A manager that has closed is told nothing more.
	st := store.NewMemory(0, nil)
	a, _ := NewSessions(SessionConfig{}, st, testKeys(t), nil)
	b, _ := NewSessions(SessionConfig{}, st, testKeys(t), nil)
	b.Close()
	a.Close()
	peers.mu.Lock()
	left := len(peers.m[Store(st)])
	peers.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d closed managers still registered", left)
	}
}

// A legacy owner index that names another owner's session (a store
// written by hand, or corrupted) must not let a revocation of one handle
// end another user's session, nor report it done.
func TestARevocationByHandleEndsOnlyThatHandlesLegacySession(t *testing.T) {
	c := newClock()
	e, st := newTestEngine(t, c, PendingLimits{})
	ctx := context.Background()
	m := e.Sessions
	bob := m.New()
	bob.User = "bob"
	bob.Stack = tiers.Stack{{Tier: "login", Method: "password", At: c.Now()}}
	bobReq := storeLegacy(t, m, st, bob)
	// Handle A's index points at bob's record.
	const handleA = "AAAAAAAAAAAAAAAAAAAAAAAA"
	if err := st.Set(ctx, keyOwner+handleA, []byte(bob.ID), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := e.RevokeSession(ctx, handleA, "admin:test"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("revoking handle A: %v, want ErrNoSession", err)
	}
	if m.Load(bobReq) == nil {
		t.Fatal("revoking handle A ended bob's session")
	}
}

// sessionChanges are the changes that make every cached copy of a session
// stale: its end, and a rotation by a logoff at its top tier.
var sessionChanges = []struct {
	name   string
	change func(t *testing.T, m *Sessions, s *Session)
}{
	{"ended", func(t *testing.T, m *Sessions, s *Session) {
		if err := m.EndOwner(context.Background(), s.Owner); err != nil {
			t.Fatal(err)
		}
	}},
	{"rotated by a logoff at a tier", func(t *testing.T, m *Sessions, s *Session) {
		next := s.Clone()
		next.Stack = next.Stack[:len(next.Stack)-1]
		if err := m.Commit(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), next); err != nil {
			t.Fatal(err)
		}
	}},
}
