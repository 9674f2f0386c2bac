package stepup

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

// TestNamespacedStoresShareNothing: two engines on one store, each in its
// namespace, see none of each other's records, and list their own keys
// without the prefix.
func TestNamespacedStoresShareNothing(t *testing.T) {
	ctx := context.Background()
	base := store.NewMemory(0, nil)
	defer base.Close()
	a, b := Namespaced(base, "ia:"), Namespaced(base, "ib:")
	_ = a.Set(ctx, "s:1", []byte("alice"), time.Minute)
	if _, err := b.Get(ctx, "s:1"); err == nil {
		t.Fatal("b reads a's record")
	}
	if ok, _ := b.SetIfAbsent(ctx, "s:1", []byte("mallory"), time.Minute); !ok {
		t.Fatal("b's claim collided with a's record")
	}
	keys, _ := a.Keys(ctx, "s:", 10)
	if len(keys) != 1 || keys[0] != "s:1" {
		t.Fatalf("a's keys: %v", keys)
	}
	if got, _ := a.Get(ctx, "s:1"); string(got) != "alice" {
		t.Fatalf("a's record: %q", got)
	}
	if Namespaced(base, "") != Store(base) {
		t.Fatal("an empty namespace should be the store itself")
	}
}
