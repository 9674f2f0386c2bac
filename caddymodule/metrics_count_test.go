package caddymodule

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

// listingStore counts the listings of keys made through it.
type listingStore struct {
	*store.Memory
	listings atomic.Int64
}

func (s *listingStore) Keys(ctx context.Context, prefix string, limit int) ([]string, error) {
	s.listings.Add(1)
	return s.Memory.Keys(ctx, prefix, limit)
}

// Counting sessions lists every session key: with many sessions a scrape
// reuses a recent count instead of listing a million keys (or scanning a
// shared Redis) again, and a few sessions are counted fresh every time.
func TestSessionsGaugeCountsALargeStoreAtMostEveryRecount(t *testing.T) {
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		sessions int
		reused   bool
	}{
		{"few sessions, counted every scrape", 3, false},
		{"many sessions, a recent count reused", sessionsCheapCount, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &listingStore{Memory: store.NewMemory(0, nil)}
			for i := 0; i < tc.sessions; i++ {
				_ = st.Set(context.Background(), "v:owner"+strconv.Itoa(i), []byte("x"), time.Hour)
			}
			now := clock
			c := &sessionsCollector{stores: map[*built]stepup.Store{}, now: func() time.Time { return now }}
			c.add(&built{}, st)
			if got := c.count(); got != tc.sessions {
				t.Fatalf("count = %d, want %d", got, tc.sessions)
			}
			first := st.listings.Load()
			_ = st.Set(context.Background(), "v:one-more", []byte("x"), time.Hour)
			now = now.Add(sessionsRecount / 2)
			got := c.count()
			if reused := st.listings.Load() == first; reused != tc.reused {
				t.Fatalf("second scrape within %v listed keys again: %v (want reused %v)", sessionsRecount, !reused, tc.reused)
			}
			if !tc.reused && got != tc.sessions+1 {
				t.Fatalf("fresh count = %d, want %d", got, tc.sessions+1)
			}
			// After the recount interval, or when the stores change, the
			// count is made again.
			now = now.Add(sessionsRecount)
			if got := c.count(); got != tc.sessions+1 {
				t.Fatalf("count after the interval = %d, want %d", got, tc.sessions+1)
			}
			c.add(&built{}, st)
			before := st.listings.Load()
			c.count()
			if st.listings.Load() == before {
				t.Fatal("a change of the running stores did not count again")
			}
		})
	}
}
