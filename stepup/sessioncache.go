package stepup

import (
	"hash/maphash"
	"math/bits"
	"sync/atomic"
)

// sessionCache holds decoded sessions in front of the store, keyed by the
// cookie value (a hit saves both the cookie's decryption and the store).
//
// It is a fixed table of slots, each an atomic pointer to an immutable
// entry, two candidate slots per key. A read is two atomic loads and a
// string comparison: no lock, and no write to memory other requests read
// (a cache that counts hits for its admission policy, as ristretto does,
// puts a lock and a channel send on every request). A write replaces an
// empty, expired or same-key slot, else one of the two at random: the
// cache forgets by collision, which costs one store read, and its size is
// bounded by construction.
//
// The cache is an optimisation only: Sessions decides, from the change
// marks and epochs, whether a cached copy may be served.
type sessionCache struct {
	seed  maphash.Seed
	mask  uint64
	slots []atomic.Pointer[cacheEntry]
}

type cacheEntry struct {
	key     string
	s       *Session
	expires int64 // the engine's clock, as Sessions.tick counts it
}

// newSessionCache returns a cache of at least entries slots (a power of
// two, at least two).
func newSessionCache(entries int64) *sessionCache {
	n := uint64(2)
	if entries > 2 {
		n = 1 << bits.Len64(uint64(entries-1))
	}
	return &sessionCache{seed: maphash.MakeSeed(), mask: n - 1, slots: make([]atomic.Pointer[cacheEntry], n)}
}

// candidates are the two slots a key may occupy, and a bit that picks the
// one to evict when both hold other keys.
func (c *sessionCache) candidates(key string) (a, b uint64, pick bool) {
	h := maphash.String(c.seed, key)
	a = h & c.mask
	return a, a ^ 1, h>>63 == 1
}

// get returns the session cached under key, if it has not expired at now.
func (c *sessionCache) get(key string, now int64) (*Session, bool) {
	a, b, _ := c.candidates(key)
	for _, i := range [2]uint64{a, b} {
		if e := c.slots[i].Load(); e != nil && e.key == key {
			if now >= e.expires {
				return nil, false
			}
			return e.s, true
		}
	}
	return nil, false
}

// set caches s under key from now until expires.
func (c *sessionCache) set(key string, s *Session, now, expires int64) {
	e := &cacheEntry{key: key, s: s, expires: expires}
	a, b, pick := c.candidates(key)
	ea, eb := c.slots[a].Load(), c.slots[b].Load()
	free := func(o *cacheEntry) bool { return o == nil || now >= o.expires }
	switch {
	case ea != nil && ea.key == key:
		c.slots[a].Store(e)
	case eb != nil && eb.key == key:
		c.slots[b].Store(e)
	case free(ea):
		c.slots[a].Store(e)
	case free(eb) || pick:
		c.slots[b].Store(e)
	default:
		c.slots[a].Store(e)
	}
}

// clear empties the cache.
func (c *sessionCache) clear() {
	for i := range c.slots {
		c.slots[i].Store(nil)
	}
}
