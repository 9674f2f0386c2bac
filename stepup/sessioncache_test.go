package stepup

import (
	"strconv"
	"sync"
	"testing"
)

func TestSessionCacheServesUntilExpiryAndOnlyTheSameKey(t *testing.T) {
	c := newSessionCache(16)
	s := &Session{User: "alice"}
	c.set("cookie-a", s, 100, 200)
	if got, ok := c.get("cookie-a", 199); !ok || got != s {
		t.Fatalf("get before expiry = %v, %v", got, ok)
	}
	if _, ok := c.get("cookie-a", 200); ok {
		t.Fatal("served at its expiry")
	}
	if _, ok := c.get("cookie-b", 150); ok {
		t.Fatal("served another key's session")
	}
	// A key that differs in its last byte (same prefix, same length) is
	// another key: the comparison is of the whole value.
	if _, ok := c.get("cookie-A", 150); ok {
		t.Fatal("served a near-identical key")
	}
	s2 := &Session{User: "alice"}
	c.set("cookie-a", s2, 150, 300)
	if got, _ := c.get("cookie-a", 160); got != s2 {
		t.Fatal("a second set of the same key did not replace the first")
	}
	c.clear()
	if _, ok := c.get("cookie-a", 160); ok {
		t.Fatal("served after clear")
	}
}

func TestSessionCacheIsBoundedAndForgetsByCollision(t *testing.T) {
	c := newSessionCache(100) // 128 slots
	if len(c.slots) != 128 {
		t.Fatalf("%d slots, want 128", len(c.slots))
	}
	sessions := make([]*Session, 10_000)
	for i := range sessions {
		sessions[i] = &Session{User: strconv.Itoa(i)}
		c.set("k"+strconv.Itoa(i), sessions[i], 0, 1000)
	}
	held := 0
	for i := range sessions {
		got, ok := c.get("k"+strconv.Itoa(i), 1)
		if ok {
			held++
			if got != sessions[i] {
				t.Fatalf("key %d served session %s", i, got.User)
			}
		}
	}
	if held == 0 || held > len(c.slots) {
		t.Fatalf("%d of 10000 sessions held in %d slots", held, len(c.slots))
	}
	// The most recent write is always served.
	if got, ok := c.get("k9999", 1); !ok || got != sessions[9999] {
		t.Fatal("the last session written is not served")
	}
}

func TestSessionCachePrefersAnExpiredSlotToEvictingALiveOne(t *testing.T) {
	c := newSessionCache(2) // one pair of slots: every key competes
	live := &Session{User: "live"}
	c.set("live", live, 0, 1000)
	c.set("old", &Session{}, 0, 10)
	c.set("new", &Session{}, 20, 1000) // "old" expired at 10: its slot is taken
	if got, ok := c.get("live", 30); !ok || got != live {
		t.Fatal("a live entry was evicted while an expired one was there")
	}
	if _, ok := c.get("new", 30); !ok {
		t.Fatal("the new entry is not served")
	}
}

// Readers and writers race on the same slots (go test -race): a reader
// sees a whole entry or none, and never another key's session.
func TestSessionCacheConcurrentReadersSeeWholeEntries(t *testing.T) {
	c := newSessionCache(4)
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	sessions := map[string]*Session{}
	for _, k := range keys {
		sessions[k] = &Session{User: k}
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				k := keys[(i+w)%len(keys)]
				if w%2 == 0 {
					c.set(k, sessions[k], 0, 1<<62)
				} else if s, ok := c.get(k, 1); ok && s.User != k {
					t.Errorf("key %s served %s's session", k, s.User)
					return
				}
			}
		}(w)
	}
	wg.Wait()
}

func TestSessionCacheReadDoesNotAllocate(t *testing.T) {
	c := newSessionCache(1024)
	c.set("cookie", &Session{}, 0, 1<<62)
	if n := testing.AllocsPerRun(1000, func() { c.get("cookie", 1) }); n != 0 {
		t.Fatalf("a cache hit allocates %v times", n)
	}
}
