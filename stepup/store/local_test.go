package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLocalKeepsRecordsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "store.db")
	l, err := OpenLocal(path, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_ = l.Set(ctx, "s:1", []byte("session"), time.Hour)
	_, _ = l.Incr(ctx, "l:c", time.Hour)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("store file: %v, mode %v; want 0600", err, fi.Mode())
	}
	l, err = OpenLocal(path, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if v, err := l.Get(ctx, "s:1"); err != nil || string(v) != "session" {
		t.Fatalf("after reopening: %q, %v", v, err)
	}
	if n, _ := l.Incr(ctx, "l:c", time.Hour); n != 2 {
		t.Fatalf("counter after reopening = %d, want 2", n)
	}
}

func TestLocalLockedFileIsAClearError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	l, err := OpenLocal(path, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = OpenLocal(path, 200*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("opening a locked file: %v", err)
	}
}

func TestLocalUnwritablePathIsAClearError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := OpenLocal(filepath.Join(file, "store.db"), time.Second, nil)
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("opening under a file: %v", err)
	}
}

func TestLocalSweepRemovesOnlyExpired(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l, err := OpenLocal(filepath.Join(t.TempDir(), "store.db"), time.Second, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	defer func(n int) { sweepBatch = n }(sweepBatch)
	sweepBatch = 100 // several batches
	for i := range 500 {
		ttl := time.Minute
		if i%2 == 0 {
			ttl = time.Hour
		}
		_ = l.Set(ctx, "k:"+string(rune('a'+i%26))+":"+time.Duration(i).String(), []byte("x"), ttl)
	}
	_ = l.Set(ctx, "forever", []byte("x"), 0)
	now = now.Add(2 * time.Minute)
	n, err := l.Sweep()
	if err != nil || n != 250 {
		t.Fatalf("Sweep = %d, %v; want 250 expired records removed", n, err)
	}
	keys, _ := l.Keys(ctx, "", 10000)
	if len(keys) != 251 {
		t.Fatalf("%d keys left, want 251", len(keys))
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() { l.SweepEvery(done, time.Millisecond); close(stopped) }()
	close(done)
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("SweepEvery did not stop when done closed")
	}
}
