package store

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestMemoryStore(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	m := NewMemory(0, clock)
	defer m.Close()
	ctx := context.Background()

	val := []byte("v1")
	if err := m.Set(ctx, "k", val, time.Minute); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the store keeps its own copy
	got, err := m.Get(ctx, "k")
	if err != nil || string(got) != "v1" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	got[0] = 'Y'
	if again, _ := m.Get(ctx, "k"); string(again) != "v1" {
		t.Fatal("Get returned the store's own slice")
	}
	advance(time.Minute)
	if _, err := m.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired key: %v", err)
	}

	_ = m.Set(ctx, "once", []byte("x"), 0)
	if v, err := m.Take(ctx, "once"); err != nil || string(v) != "x" {
		t.Fatalf("Take = %q, %v", v, err)
	}
	if _, err := m.Take(ctx, "once"); !errors.Is(err, ErrNotFound) {
		t.Fatal("Take returned a value twice")
	}

	for i := 1; i <= 3; i++ {
		if n, err := m.Incr(ctx, "c", time.Minute); err != nil || n != int64(i) {
			t.Fatalf("Incr = %d, %v", n, err)
		}
		advance(10 * time.Second) // increments do not extend the window
	}
	advance(31 * time.Second)
	if n, _ := m.Incr(ctx, "c", time.Minute); n != 1 {
		t.Fatalf("window did not restart: %d", n)
	}
	_ = m.Set(ctx, "s", []byte("text"), 0)
	if _, err := m.Incr(ctx, "s", time.Minute); err == nil {
		t.Fatal("Incr on a non-counter")
	}

	if ok, _ := m.SetIfAbsent(ctx, "claim", []byte("1"), time.Minute); !ok {
		t.Fatal("first claim refused")
	}
	if ok, _ := m.SetIfAbsent(ctx, "claim", []byte("2"), time.Minute); ok {
		t.Fatal("second claim accepted")
	}
	advance(time.Minute)
	if ok, _ := m.SetIfAbsent(ctx, "claim", []byte("3"), time.Second); !ok {
		t.Fatal("claim on an expired key refused")
	}
	_ = m.Set(ctx, "gone", []byte("x"), time.Second)
	_ = m.Delete(ctx, "s")
	advance(2 * time.Second)
	_ = m.Set(ctx, "kept", []byte("x"), time.Hour)
	m.Sweep()
	raw := 0
	for i := range m.shards {
		raw += len(m.shards[i].m)
	}
	if m.Len() != 1 || raw != 1 { // only "kept": the sweep removed the expired entries
		t.Fatalf("Len = %d, entries = %d", m.Len(), raw)
	}
}

func TestMemoryStoreTakeIsAtomic(t *testing.T) {
	m := NewMemory(0, nil)
	ctx := context.Background()
	_ = m.Set(ctx, "k", []byte("x"), 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.Take(ctx, "k"); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d takers got the value", wins)
	}
}

func TestMemoryStoreCompareAndSwapLosesNoUpdate(t *testing.T) {
	m := NewMemory(0, nil)
	defer m.Close()
	ctx := context.Background()
	if ok, _ := m.CompareAndSwap(ctx, "votes", nil, []byte("x"), time.Minute); ok {
		t.Fatal("swapped a missing key")
	}
	_ = m.Set(ctx, "votes", []byte("0"), time.Minute)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				old, _ := m.Get(ctx, "votes")
				n := 0
				for _, c := range string(old) {
					n = n*10 + int(c-'0')
				}
				next := []byte(strconv.Itoa(n + 1))
				if ok, _ := m.CompareAndSwap(ctx, "votes", old, next, time.Minute); ok {
					return
				}
			}
		}()
	}
	wg.Wait()
	if got, _ := m.Get(ctx, "votes"); string(got) != "50" {
		t.Fatalf("after 50 concurrent read-modify-writes: %s", got)
	}
}

func TestMemoryStoreKeysListsLiveKeysOfAPrefix(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := NewMemory(0, func() time.Time { return now })
	defer m.Close()
	ctx := context.Background()
	_ = m.Set(ctx, "a:1", nil, time.Minute)
	_ = m.Set(ctx, "a:2", nil, time.Second)
	_ = m.Set(ctx, "b:1", nil, time.Minute)
	now = now.Add(2 * time.Second)
	keys, _ := m.Keys(ctx, "a:", 10)
	if len(keys) != 1 || keys[0] != "a:1" {
		t.Fatalf("Keys(a:) = %v, want [a:1] (a:2 expired, b:1 another prefix)", keys)
	}
}
