package stepup

import (
	"context"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

// Store is where sessions, pending requests, one-time grants and counters
// live. Values are bytes under string keys with a time to live, so that a
// network store (Redis) can replace the in-process one: nothing may assume
// that a stored value is shared by pointer.
type Store interface {
	// Get returns the value under key, or store.ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores val under key for ttl.
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// Delete removes key.
	Delete(ctx context.Context, key string) error
	// Take returns the value under key and deletes it, atomically.
	Take(ctx context.Context, key string) ([]byte, error)
	// Incr increments a counter that expires ttl after it was created.
	Incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
	// Add adds delta (possibly negative) to such a counter, atomically.
	Add(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error)
	// Replace stores val under key for ttl only if key exists, atomically,
	// and reports whether it did (a record deleted meanwhile stays deleted).
	Replace(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	// SetIfAbsent stores val under key for ttl only if key does not exist,
	// atomically, and reports whether it did (one-time claims).
	SetIfAbsent(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	// CompareAndSwap stores val under key for ttl only if the live value
	// there is exactly old, atomically, and reports whether it did: a
	// read-modify-write (an approval's votes) that loses no concurrent
	// update, on one instance or several.
	CompareAndSwap(ctx context.Context, key string, old, val []byte, ttl time.Duration) (bool, error)
	// Keys lists the live keys that start with prefix, in no order, at
	// most limit of them (an approver's inbox; never on the hot path).
	Keys(ctx context.Context, prefix string, limit int) ([]string, error)
}

// Blobs is where credentials live (enrolled TOTP secrets, WebAuthn keys):
// Caddy storage (the file system by default, any storage module in a
// cluster) has exactly these methods, and answers fs.ErrNotExist for a
// missing key.
type Blobs interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Store(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
}

// ErrNotFound is the store's answer for a missing or expired key.
var ErrNotFound = store.ErrNotFound

// Key prefixes of the records in the store.
const (
	// keyRecord: owner -> the session, with its current id (one record
	// per session).
	keyRecord = "v:"
	// keySession and keyOwner are the previous version's layout, still
	// read until its sessions move (at their next Commit) or expire: id ->
	// the session, and owner -> the current id.
	keySession = "s:"
	keyOwner   = "o:"
	// keyRotated: an id rotated away a moment ago -> its owner.
	keyRotated = "rot:"
	keyPending = "p:"
	keyGrant   = "g:"
	keyLimit   = "l:"
	keyRound   = "r:"
)

// ErrStoreUnavailable is wrapped by a store's answer when it could not
// answer at all (a network store down). It is never "not found": whatever
// needed the answer fails closed.
var ErrStoreUnavailable = store.ErrUnavailable

// SharedStore is a Store that several Caddy instances use at once (Redis).
// What one instance caches of it must be dropped when any instance changes
// it, so the store reports every change, and says when it cannot. Sessions
// keeps its cache coherent through it; a store used by one instance only
// need not implement it.
type SharedStore interface {
	Store
	// Watch calls changed with the key of each record written or deleted
	// by any instance (this one included), and reset whenever reports may
	// have been missed (the notification channel went down, or came back):
	// a cache must then forget everything it holds. It returns a function
	// that stops the calls.
	Watch(changed func(key string), reset func()) (stop func())
	// Coherent reports whether changes are being reported now. While it is
	// false, caches must not serve what they hold: every read goes to the
	// store.
	Coherent() bool
}
