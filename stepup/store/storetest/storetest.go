// Package storetest is the conformance suite of the session-store back ends:
// every back end (memory, local, Redis single and cluster, a third party's)
// must answer the same way, expire the same way and lose no concurrent
// update, on one client or on two clients sharing the data.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

// Backend opens the store under test.
type Backend struct {
	// Open returns a client of the store. Two calls within one test must
	// return clients of the same data (two instances sharing Redis), or the
	// same client where there can be only one (an embedded file).
	Open func(t *testing.T) stepup.Store
}

// tick is the time to live used by the expiry tests: long enough for a
// network round trip on a loaded machine, short enough to keep the suite
// fast.
const tick = 300 * time.Millisecond

// Run runs the suite. Each subtest works under its own key prefix, so the
// back end may be shared by every subtest.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		run  func(t *testing.T, a, b stepup.Store, k func(string) string)
	}{
		{"MissingKeyIsNotFound", missingKeyIsNotFound},
		{"SetGetCopies", setGetCopies},
		{"SetOverwritesAndExpires", setOverwritesAndExpires},
		{"ZeroTTLNeverExpires", zeroTTLNeverExpires},
		{"Delete", deleteKey},
		{"TakeOnce", takeOnce},
		{"IncrFixedWindow", incrFixedWindow},
		{"AddNegativeAndNotACounter", addNegative},
		{"ReplaceOnlyLive", replaceOnlyLive},
		{"SetIfAbsent", setIfAbsent},
		{"CompareAndSwap", compareAndSwap},
		{"KeysByPrefix", keysByPrefix},
		{"ConcurrentIncrAcrossClients", concurrentIncr},
		{"ConcurrentCASAcrossClients", concurrentCAS},
		{"ConcurrentTakeAcrossClients", concurrentTake},
		{"ConcurrentClaimAcrossClients", concurrentClaim},
		{"ReplaceNeverRevivesDeleted", replaceNeverRevives},
		{"WritesSeenByOtherClient", writesSeenByOther},
		{"ChangesReportedToOtherClient", changesReported},
	}
	stA, stB := b.Open(t), b.Open(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prefix := fmt.Sprintf("st:%s:%d:", tc.name, time.Now().UnixNano())
			tc.run(t, stA, stB, func(s string) string { return prefix + s })
		})
	}
}

func ctx() context.Context { return context.Background() }

func mustGet(t *testing.T, st stepup.Store, key string, want string) {
	t.Helper()
	got, err := st.Get(ctx(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v, want %q", key, err, want)
	}
	if string(got) != want {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
}

func mustMiss(t *testing.T, st stepup.Store, key string) {
	t.Helper()
	got, err := st.Get(ctx(), key)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, got, err)
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func missingKeyIsNotFound(t *testing.T, a, _ stepup.Store, k func(string) string) {
	mustMiss(t, a, k("none"))
	if _, err := a.Take(ctx(), k("none")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Take of a missing key: %v, want ErrNotFound", err)
	}
	if errors.Is(store.ErrNotFound, store.ErrUnavailable) || errors.Is(store.ErrUnavailable, store.ErrNotFound) {
		t.Fatal("an unavailable store must never read as not found")
	}
}

func setGetCopies(t *testing.T, a, _ stepup.Store, k func(string) string) {
	val := []byte("v\x00\xffbinary")
	check(t, a.Set(ctx(), k("a"), val, time.Minute))
	val[0] = 'X' // the store keeps its own copy
	got, err := a.Get(ctx(), k("a"))
	check(t, err)
	if !bytes.Equal(got, []byte("v\x00\xffbinary")) {
		t.Fatalf("Get = %q", got)
	}
	got[0] = 'Y'
	mustGet(t, a, k("a"), "v\x00\xffbinary")
	check(t, a.Set(ctx(), k("empty"), nil, time.Minute))
	mustGet(t, a, k("empty"), "")
}

func setOverwritesAndExpires(t *testing.T, a, _ stepup.Store, k func(string) string) {
	check(t, a.Set(ctx(), k("a"), []byte("1"), time.Minute))
	check(t, a.Set(ctx(), k("a"), []byte("2"), tick))
	mustGet(t, a, k("a"), "2")
	time.Sleep(tick + tick/2)
	mustMiss(t, a, k("a"))
}

func zeroTTLNeverExpires(t *testing.T, a, _ stepup.Store, k func(string) string) {
	check(t, a.Set(ctx(), k("a"), []byte("1"), 0))
	n, err := a.Incr(ctx(), k("n"), 0)
	check(t, err)
	if n != 1 {
		t.Fatalf("Incr = %d", n)
	}
	time.Sleep(tick + tick/2)
	mustGet(t, a, k("a"), "1")
	mustGet(t, a, k("n"), "1")
}

func deleteKey(t *testing.T, a, _ stepup.Store, k func(string) string) {
	check(t, a.Set(ctx(), k("a"), []byte("1"), time.Minute))
	check(t, a.Delete(ctx(), k("a")))
	mustMiss(t, a, k("a"))
	check(t, a.Delete(ctx(), k("a"))) // deleting a missing key is no error
}

func takeOnce(t *testing.T, a, _ stepup.Store, k func(string) string) {
	check(t, a.Set(ctx(), k("a"), []byte("once"), time.Minute))
	got, err := a.Take(ctx(), k("a"))
	check(t, err)
	if string(got) != "once" {
		t.Fatalf("Take = %q", got)
	}
	if _, err := a.Take(ctx(), k("a")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Take: %v", err)
	}
	check(t, a.Set(ctx(), k("b"), []byte("x"), tick))
	time.Sleep(tick + tick/2)
	if _, err := a.Take(ctx(), k("b")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Take of an expired key: %v", err)
	}
}

func incrFixedWindow(t *testing.T, a, b stepup.Store, k func(string) string) {
	for want := int64(1); want <= 3; want++ {
		st := a
		if want == 2 {
			st = b
		}
		n, err := st.Incr(ctx(), k("c"), 2*tick)
		check(t, err)
		if n != want {
			t.Fatalf("Incr = %d, want %d", n, want)
		}
	}
	// Incrementing does not extend the window: it ends 2 ticks after the
	// counter was created, however often it was incremented since.
	time.Sleep(tick + tick/2)
	n, err := a.Incr(ctx(), k("c"), 2*tick)
	check(t, err)
	if n != 4 {
		t.Fatalf("Incr within the window = %d, want 4", n)
	}
	time.Sleep(tick)
	n, err = a.Incr(ctx(), k("c"), 2*tick)
	check(t, err)
	if n != 1 {
		t.Fatalf("Incr after the window = %d, want a new counter at 1", n)
	}
}

func addNegative(t *testing.T, a, _ stepup.Store, k func(string) string) {
	n, err := a.Add(ctx(), k("c"), 5, time.Minute)
	check(t, err)
	if n != 5 {
		t.Fatalf("Add = %d", n)
	}
	if n, err = a.Add(ctx(), k("c"), -7, time.Minute); err != nil || n != -2 {
		t.Fatalf("Add(-7) = %d, %v", n, err)
	}
	n, err = a.Add(ctx(), k("fresh"), -1, time.Minute)
	check(t, err)
	if n != -1 {
		t.Fatalf("Add(-1) to a new counter = %d", n)
	}
	mustGet(t, a, k("c"), "-2")
	check(t, a.Set(ctx(), k("text"), []byte("abc"), time.Minute))
	if _, err := a.Incr(ctx(), k("text"), time.Minute); err == nil {
		t.Fatal("Incr of a value that is not a counter succeeded")
	}
	mustGet(t, a, k("text"), "abc")
}

func replaceOnlyLive(t *testing.T, a, _ stepup.Store, k func(string) string) {
	ok, err := a.Replace(ctx(), k("a"), []byte("x"), time.Minute)
	check(t, err)
	if ok {
		t.Fatal("Replace of a missing key reported success")
	}
	mustMiss(t, a, k("a"))
	check(t, a.Set(ctx(), k("a"), []byte("1"), time.Minute))
	ok, err = a.Replace(ctx(), k("a"), []byte("2"), tick)
	check(t, err)
	if !ok {
		t.Fatal("Replace of a live key failed")
	}
	mustGet(t, a, k("a"), "2")
	time.Sleep(tick + tick/2) // Replace set the new time to live
	ok, err = a.Replace(ctx(), k("a"), []byte("3"), time.Minute)
	check(t, err)
	if ok {
		t.Fatal("Replace of an expired key reported success")
	}
	mustMiss(t, a, k("a"))
}

func setIfAbsent(t *testing.T, a, b stepup.Store, k func(string) string) {
	ok, err := a.SetIfAbsent(ctx(), k("a"), []byte("first"), tick)
	check(t, err)
	if !ok {
		t.Fatal("SetIfAbsent of a new key failed")
	}
	ok, err = b.SetIfAbsent(ctx(), k("a"), []byte("second"), tick)
	check(t, err)
	if ok {
		t.Fatal("SetIfAbsent of a live key reported success")
	}
	mustGet(t, a, k("a"), "first")
	time.Sleep(tick + tick/2)
	ok, err = b.SetIfAbsent(ctx(), k("a"), []byte("third"), time.Minute)
	check(t, err)
	if !ok {
		t.Fatal("SetIfAbsent of an expired key failed")
	}
	mustGet(t, a, k("a"), "third")
}

func compareAndSwap(t *testing.T, a, _ stepup.Store, k func(string) string) {
	ok, err := a.CompareAndSwap(ctx(), k("a"), nil, []byte("x"), time.Minute)
	check(t, err)
	if ok {
		t.Fatal("CompareAndSwap of a missing key reported success")
	}
	mustMiss(t, a, k("a"))
	check(t, a.Set(ctx(), k("a"), []byte("v1"), time.Minute))
	if ok, _ = a.CompareAndSwap(ctx(), k("a"), []byte("v0"), []byte("x"), time.Minute); ok {
		t.Fatal("CompareAndSwap with a wrong old value reported success")
	}
	if ok, err = a.CompareAndSwap(ctx(), k("a"), []byte("v1"), []byte("v2"), tick); err != nil || !ok {
		t.Fatalf("CompareAndSwap = %v, %v", ok, err)
	}
	mustGet(t, a, k("a"), "v2")
	time.Sleep(tick + tick/2)
	if ok, _ = a.CompareAndSwap(ctx(), k("a"), []byte("v2"), []byte("v3"), time.Minute); ok {
		t.Fatal("CompareAndSwap of an expired key reported success")
	}
	check(t, a.Set(ctx(), k("empty"), nil, time.Minute))
	if ok, err = a.CompareAndSwap(ctx(), k("empty"), nil, []byte("now"), time.Minute); err != nil || !ok {
		t.Fatalf("CompareAndSwap of an empty value = %v, %v", ok, err)
	}
}

func keysByPrefix(t *testing.T, a, b stepup.Store, k func(string) string) {
	for i := range 5 {
		check(t, a.Set(ctx(), k(fmt.Sprintf("ap:%d", i)), []byte("x"), time.Minute))
	}
	check(t, a.Set(ctx(), k("ap:gone"), []byte("x"), tick))
	check(t, a.Set(ctx(), k("other:1"), []byte("x"), time.Minute))
	// Glob characters in a prefix are literal.
	check(t, a.Set(ctx(), k("g*[x]?:1"), []byte("x"), time.Minute))
	check(t, a.Set(ctx(), k("gZxZZ:1"), []byte("x"), time.Minute))
	time.Sleep(tick + tick/2)
	got, err := b.Keys(ctx(), k("ap:"), 100)
	check(t, err)
	slices.Sort(got)
	want := []string{k("ap:0"), k("ap:1"), k("ap:2"), k("ap:3"), k("ap:4")}
	if !slices.Equal(got, want) {
		t.Fatalf("Keys = %q, want %q", got, want)
	}
	if got, _ = a.Keys(ctx(), k("ap:"), 2); len(got) != 2 {
		t.Fatalf("Keys with limit 2 = %q", got)
	}
	if got, _ = a.Keys(ctx(), k("g*[x]?"), 100); !slices.Equal(got, []string{k("g*[x]?:1")}) {
		t.Fatalf("Keys with glob characters = %q", got)
	}
}

// clients alternates between the two clients.
func clients(a, b stepup.Store, i int) stepup.Store {
	if i%2 == 0 {
		return a
	}
	return b
}

func concurrentIncr(t *testing.T, a, b stepup.Store, k func(string) string) {
	const workers, each = 8, 25
	var wg sync.WaitGroup
	seen := make([]atomic.Bool, workers*each+1)
	for w := range workers {
		wg.Go(func() {
			st := clients(a, b, w)
			for range each {
				n, err := st.Incr(ctx(), k("c"), time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if n < 1 || n > workers*each || seen[n].Swap(true) {
					t.Errorf("Incr returned %d twice or out of range", n)
				}
			}
		})
	}
	wg.Wait()
	mustGet(t, a, k("c"), strconv.Itoa(workers*each))
}

func concurrentCAS(t *testing.T, a, b stepup.Store, k func(string) string) {
	check(t, a.Set(ctx(), k("v"), []byte("0"), time.Minute))
	const workers, each = 6, 15
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			st := clients(a, b, w)
			for range each {
				for { // read, modify, write: retried until it wins
					old, err := st.Get(ctx(), k("v"))
					if err != nil {
						t.Error(err)
						return
					}
					n, _ := strconv.Atoi(string(old))
					ok, err := st.CompareAndSwap(ctx(), k("v"), old, []byte(strconv.Itoa(n+1)), time.Minute)
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	mustGet(t, b, k("v"), strconv.Itoa(workers*each))
}

func concurrentTake(t *testing.T, a, b stepup.Store, k func(string) string) {
	for round := range 10 {
		key := k(fmt.Sprintf("grant:%d", round))
		check(t, a.Set(ctx(), key, []byte("g"), time.Minute))
		var won atomic.Int32
		var wg sync.WaitGroup
		for w := range 6 {
			wg.Go(func() {
				if _, err := clients(a, b, w).Take(ctx(), key); err == nil {
					won.Add(1)
				} else if !errors.Is(err, store.ErrNotFound) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("round %d: %d Takes won, want exactly 1", round, won.Load())
		}
	}
}

func concurrentClaim(t *testing.T, a, b stepup.Store, k func(string) string) {
	for round := range 10 {
		key := k(fmt.Sprintf("step:%d", round))
		var won atomic.Int32
		var wg sync.WaitGroup
		for w := range 6 {
			wg.Go(func() {
				ok, err := clients(a, b, w).SetIfAbsent(ctx(), key, []byte{byte(w)}, time.Minute)
				if err != nil {
					t.Error(err)
				}
				if ok {
					won.Add(1)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("round %d: %d claims won, want exactly 1", round, won.Load())
		}
	}
}

func replaceNeverRevives(t *testing.T, a, b stepup.Store, k func(string) string) {
	for round := range 10 {
		key := k(fmt.Sprintf("s:%d", round))
		check(t, a.Set(ctx(), key, []byte("live"), time.Minute))
		var wg sync.WaitGroup
		wg.Go(func() { check(t, b.Delete(ctx(), key)) })
		wg.Go(func() { _, _ = a.Replace(ctx(), key, []byte("touched"), time.Minute) })
		wg.Wait()
		// Whatever the order, the deletion holds once it has returned.
		mustMiss(t, a, key)
		if ok, _ := a.Replace(ctx(), key, []byte("touched"), time.Minute); ok {
			t.Fatal("Replace brought a deleted key back")
		}
	}
}

func writesSeenByOther(t *testing.T, a, b stepup.Store, k func(string) string) {
	check(t, a.Set(ctx(), k("a"), []byte("1"), time.Minute))
	mustGet(t, b, k("a"), "1")
	check(t, b.Delete(ctx(), k("a")))
	mustMiss(t, a, k("a"))
}

// changesReported checks a shared store's change reports: a write through
// one client is reported to the other's watcher.
func changesReported(t *testing.T, a, b stepup.Store, k func(string) string) {
	sa, okA := a.(stepup.SharedStore)
	sb, okB := b.(stepup.SharedStore)
	if !okA || !okB {
		t.Skip("not a shared store: nothing to report")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !sb.Coherent() {
		if time.Now().After(deadline) {
			t.Fatal("the watching client never became coherent")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := make(chan string, 64)
	stop := sb.Watch(func(key string) {
		select {
		case got <- key:
		default:
		}
	}, func() {})
	defer stop()
	ops := []struct {
		name string
		do   func() error
	}{
		{"Set", func() error { return sa.Set(ctx(), k("set"), []byte("1"), time.Minute) }},
		{"Replace", func() error { _, err := sa.Replace(ctx(), k("set"), []byte("2"), time.Minute); return err }},
		{"CompareAndSwap", func() error {
			_, err := sa.CompareAndSwap(ctx(), k("set"), []byte("2"), []byte("3"), time.Minute)
			return err
		}},
		{"Take", func() error { _, err := sa.Take(ctx(), k("set")); return err }},
		{"SetIfAbsent", func() error { _, err := sa.SetIfAbsent(ctx(), k("claim"), []byte("1"), time.Minute); return err }},
		{"Delete", func() error { return sa.Delete(ctx(), k("claim")) }},
		{"Incr", func() error { _, err := sa.Incr(ctx(), k("n"), time.Minute); return err }},
	}
	for _, op := range ops {
		check(t, op.do())
		want := map[string]string{"Set": "set", "Replace": "set", "CompareAndSwap": "set", "Take": "set", "SetIfAbsent": "claim", "Delete": "claim", "Incr": "n"}[op.name]
		timeout := time.After(5 * time.Second)
	wait:
		for {
			select {
			case key := <-got:
				if key == k(want) {
					break wait
				}
			case <-timeout:
				t.Fatalf("%s of %q was not reported to the other client", op.name, k(want))
			}
		}
	}
}
