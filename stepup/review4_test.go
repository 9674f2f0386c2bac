package stepup

import (
	"context"
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
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, m *Sessions, s *Session)
	}{
		{"ended", func(t *testing.T, m *Sessions, s *Session) {
			if err := m.EndOwner(context.Background(), s.Owner); err != nil {
				t.Fatal(err)
			}
		}},
		{"logged off at a tier", func(t *testing.T, m *Sessions, s *Session) {
			next := s.Clone()
			next.Stack = next.Stack[:1]
			if err := m.Commit(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), next); err != nil {
				t.Fatal(err)
			}
		}},
	} {
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
