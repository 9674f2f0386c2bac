package stepup

import (
	"context"
	"strings"
	"time"
)

// Namespaced returns the store as seen by one engine among several that
// share it (site handlers with inline configurations in one Caddy, which
// open the same default store): every key is prefixed, so that no session,
// kept request, approval, link or counter of one is a record of another.
// An empty prefix returns the store itself.
func Namespaced(st Store, prefix string) Store {
	if prefix == "" {
		return st
	}
	n := namespaced{st: st, p: prefix}
	if shared, ok := st.(SharedStore); ok {
		return sharedNamespaced{namespaced: n, shared: shared}
	}
	return n
}

type namespaced struct {
	st Store
	p  string
}

func (n namespaced) Get(ctx context.Context, key string) ([]byte, error) {
	return n.st.Get(ctx, n.p+key)
}
func (n namespaced) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	return n.st.Set(ctx, n.p+key, val, ttl)
}
func (n namespaced) Delete(ctx context.Context, key string) error { return n.st.Delete(ctx, n.p+key) }
func (n namespaced) Take(ctx context.Context, key string) ([]byte, error) {
	return n.st.Take(ctx, n.p+key)
}
func (n namespaced) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	return n.st.Incr(ctx, n.p+key, ttl)
}
func (n namespaced) Add(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	return n.st.Add(ctx, n.p+key, delta, ttl)
}
func (n namespaced) Replace(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	return n.st.Replace(ctx, n.p+key, val, ttl)
}
func (n namespaced) SetIfAbsent(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	return n.st.SetIfAbsent(ctx, n.p+key, val, ttl)
}
func (n namespaced) CompareAndSwap(ctx context.Context, key string, old, val []byte, ttl time.Duration) (bool, error) {
	return n.st.CompareAndSwap(ctx, n.p+key, old, val, ttl)
}
func (n namespaced) Keys(ctx context.Context, prefix string, limit int) ([]string, error) {
	keys, err := n.st.Keys(ctx, n.p+prefix, limit)
	for i, k := range keys {
		keys[i] = strings.TrimPrefix(k, n.p)
	}
	return keys, err
}

// sharedNamespaced passes on the changes of its own namespace only.
type sharedNamespaced struct {
	namespaced
	shared SharedStore
}

func (n sharedNamespaced) Watch(changed func(key string), reset func()) (stop func()) {
	return n.shared.Watch(func(key string) {
		if rest, ok := strings.CutPrefix(key, n.p); ok {
			changed(rest)
		}
	}, reset)
}

func (n sharedNamespaced) Coherent() bool { return n.shared.Coherent() }

var (
	_ Store       = namespaced{}
	_ SharedStore = sharedNamespaced{}
)
