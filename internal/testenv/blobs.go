package testenv

import (
	"context"
	"io/fs"
	"sync"
)

// Blobs is an in-memory stand-in for Caddy storage (a fake, for unit tests
// of packages that keep credentials there; the integration tests use the
// real file-system storage). Like Caddy storage it answers fs.ErrNotExist
// for a missing key.
type Blobs struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewBlobs returns an empty store.
func NewBlobs() *Blobs { return &Blobs{m: map[string][]byte{}} }

// Load returns a copy of the value under key.
func (b *Blobs) Load(_ context.Context, key string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[key]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return append([]byte(nil), v...), nil
}

// Store keeps a copy of value under key.
func (b *Blobs) Store(_ context.Context, key string, value []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[key] = append([]byte(nil), value...)
	return nil
}

// Delete removes key.
func (b *Blobs) Delete(_ context.Context, key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, key)
	return nil
}

// Snapshot returns a copy of everything stored, for tests that inspect
// what is at rest.
func (b *Blobs) Snapshot() map[string][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string][]byte, len(b.m))
	for k, v := range b.m {
		out[k] = append([]byte(nil), v...)
	}
	return out
}

// Put sets a raw value, for tests that tamper with what is at rest.
func (b *Blobs) Put(key string, value []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[key] = value
}
