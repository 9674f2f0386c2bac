// Package store holds the session-store back ends of caddy-stepup. Memory is
// the single-instance default; every back end speaks bytes under string keys
// with a time to live, so that a network store can replace memory without the
// engine assuming that records are local or shared by pointer.
package store

import (
	"context"
	"errors"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNotFound is returned for a key that does not exist or has expired.
var ErrNotFound = errors.New("not found")

// ErrUnavailable is wrapped by the errors of a store that could not be
// reached or could not answer: never to be read as ErrNotFound.
var ErrUnavailable = errors.New("session store unavailable")

const shardCount = 32

// entry is a value and its expiry: a string rather than a byte slice, so
// that each of a million sessions' records costs eight bytes less. Key and
// value stay two allocations: making them one (the key a head of it, the
// value its tail), or putting the expiry in the value's string to shrink
// the map slot, saved 6 to 8 heap bytes a session in
// BenchmarkMillionSessions but grew the resident size by 10 to 40 MiB a
// million (likely the records then share size classes with the garbage
// that sign-ins leave, and pin its spans).
type entry struct {
	val string
	exp int64 // unix nanoseconds; 0 = no expiry
}

type shard struct {
	mu sync.Mutex
	m  map[string]entry
}

// Memory is an in-process store. Expired entries are invisible at once and
// swept periodically. Safe for concurrent use.
type Memory struct {
	seed   maphash.Seed
	shards [shardCount]shard
	now    func() time.Time
	stop   chan struct{}
	once   sync.Once
}

// NewMemory returns a memory store that sweeps expired entries every sweep
// interval until Close. now may be nil (time.Now).
func NewMemory(sweep time.Duration, now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	m := &Memory{seed: maphash.MakeSeed(), now: now, stop: make(chan struct{})}
	for i := range m.shards {
		m.shards[i].m = make(map[string]entry)
	}
	if sweep > 0 {
		go m.sweepEvery(sweep)
	}
	return m
}

func (m *Memory) shard(key string) *shard {
	return &m.shards[maphash.String(m.seed, key)%shardCount]
}

func (m *Memory) expiry(ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	return m.now().Add(ttl).UnixNano()
}

func (e entry) live(now int64) bool { return e.exp == 0 || now < e.exp }

// Get returns a copy of the value stored under key.
func (m *Memory) Get(_ context.Context, key string) ([]byte, error) {
	s := m.shard(key)
	s.mu.Lock()
	e, ok := s.m[key]
	s.mu.Unlock()
	if !ok || !e.live(m.now().UnixNano()) {
		return nil, ErrNotFound
	}
	return []byte(e.val), nil
}

// Set stores a copy of val under key for ttl (0 = until deleted).
func (m *Memory) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	s := m.shard(key)
	e := entry{val: string(val), exp: m.expiry(ttl)}
	s.mu.Lock()
	s.m[key] = e
	s.mu.Unlock()
	return nil
}

// Delete removes key; deleting a missing key is not an error.
func (m *Memory) Delete(_ context.Context, key string) error {
	s := m.shard(key)
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
	return nil
}

// Take returns the value under key and deletes it atomically, so that
// single-use records (pending requests, grants, challenges) are used once.
func (m *Memory) Take(_ context.Context, key string) ([]byte, error) {
	s := m.shard(key)
	s.mu.Lock()
	e, ok := s.m[key]
	delete(s.m, key)
	s.mu.Unlock()
	if !ok || !e.live(m.now().UnixNano()) {
		return nil, ErrNotFound
	}
	return []byte(e.val), nil
}

// SetIfAbsent stores a copy of val under key for ttl unless a live value is
// there; it reports whether it stored.
func (m *Memory) SetIfAbsent(_ context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	s := m.shard(key)
	now := m.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok && e.live(now) {
		return false, nil
	}
	s.m[key] = entry{val: string(val), exp: m.expiry(ttl)}
	return true, nil
}

// Incr adds one to the counter under key and returns the new value. A new
// counter expires ttl after its creation (a fixed window); incrementing does
// not extend it.
func (m *Memory) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	return m.Add(ctx, key, 1, ttl)
}

// Add adds delta (which may be negative) to the counter under key and
// returns the new value. A new counter expires ttl after its creation;
// changing it does not extend it.
func (m *Memory) Add(_ context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	s := m.shard(key)
	now := m.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	var n int64
	if ok && e.live(now) {
		var err error
		if n, err = strconv.ParseInt(e.val, 10, 64); err != nil {
			return 0, errors.New("value is not a counter")
		}
	} else {
		e = entry{exp: m.expiry(ttl)}
	}
	n += delta
	e.val = strconv.FormatInt(n, 10)
	s.m[key] = e
	return n, nil
}

// Replace stores a copy of val under key for ttl only if a live value is
// there, atomically, and reports whether it did: a record that was deleted
// meanwhile (an ended session) is never brought back.
func (m *Memory) Replace(_ context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	s := m.shard(key)
	now := m.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; !ok || !e.live(now) {
		return false, nil
	}
	s.m[key] = entry{val: string(val), exp: m.expiry(ttl)}
	return true, nil
}

// CompareAndSwap stores a copy of val under key for ttl only if the live
// value there equals old, and reports whether it did.
func (m *Memory) CompareAndSwap(_ context.Context, key string, old, val []byte, ttl time.Duration) (bool, error) {
	s := m.shard(key)
	now := m.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; !ok || !e.live(now) || e.val != string(old) {
		return false, nil
	}
	s.m[key] = entry{val: string(val), exp: m.expiry(ttl)}
	return true, nil
}

// Keys lists up to limit live keys that start with prefix.
func (m *Memory) Keys(_ context.Context, prefix string, limit int) ([]string, error) {
	now := m.now().UnixNano()
	var out []string
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if len(out) < limit && strings.HasPrefix(k, prefix) && e.live(now) {
				out = append(out, k)
			}
		}
		s.mu.Unlock()
	}
	return out, nil
}

// Len counts the live entries (for metrics and tests).
func (m *Memory) Len() int {
	now := m.now().UnixNano()
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for _, e := range s.m {
			if e.live(now) {
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// Sweep deletes expired entries now.
func (m *Memory) Sweep() {
	now := m.now().UnixNano()
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if !e.live(now) {
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
	}
}

func (m *Memory) sweepEvery(d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			m.Sweep()
		case <-m.stop:
			return
		}
	}
}

// Close stops the sweeper. The data stays readable.
func (m *Memory) Close() error {
	m.once.Do(func() { close(m.stop) })
	return nil
}
