package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucket holds every record of a local store.
var bucket = []byte("stepup")

// Local is a store in an embedded bbolt file: what one Caddy instance keeps
// survives its restart. Each record is its expiry (8 bytes, unix
// nanoseconds, 0 = none) followed by the value; expired records are
// invisible at once and removed by Sweep. Every read-modify-write is one
// bbolt write transaction, so it is atomic. The engine's session cache is
// in front of it: the hot path does not open a transaction.
type Local struct {
	db  *bolt.DB
	now func() time.Time
}

// OpenLocal opens (creating it and its directory if needed) the bbolt file
// at path. A file locked by another process (another Caddy using the same
// data directory) is an error after timeout, not a wait forever.
func OpenLocal(path string, timeout time.Duration, now func() time.Time) (*Local, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the directory of %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("%s is locked by another process (another Caddy using the same data directory?); give each instance its own file, or use store redis to share state", path)
	case err != nil:
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialising %s: %w", path, err)
	}
	return &Local{db: db, now: now}, nil
}

// Path is the file of the store.
func (l *Local) Path() string { return l.db.Path() }

// Close closes the file.
func (l *Local) Close() error { return l.db.Close() }

func (l *Local) expiry(ttl time.Duration) uint64 {
	if ttl <= 0 {
		return 0
	}
	return uint64(l.now().Add(ttl).UnixNano())
}

func encodeRecord(exp uint64, val []byte) []byte {
	rec := make([]byte, 8+len(val))
	binary.BigEndian.PutUint64(rec, exp)
	copy(rec[8:], val)
	return rec
}

// liveValue returns the value of a record that has not expired (a view
// into bbolt's memory: copy it before the transaction ends).
func (l *Local) liveValue(rec []byte, now uint64) ([]byte, bool) {
	if len(rec) < 8 {
		return nil, false
	}
	exp := binary.BigEndian.Uint64(rec)
	if exp != 0 && now >= exp {
		return nil, false
	}
	return rec[8:], true
}

func (l *Local) nowNanos() uint64 { return uint64(l.now().UnixNano()) }

func (l *Local) update(fn func(b *bolt.Bucket, now uint64) error) error {
	if err := l.db.Update(func(tx *bolt.Tx) error { return fn(tx.Bucket(bucket), l.nowNanos()) }); err != nil {
		if errors.Is(err, errNotCounter) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Get returns a copy of the live value under key.
func (l *Local) Get(_ context.Context, key string) ([]byte, error) {
	var out []byte
	found := false
	err := l.db.View(func(tx *bolt.Tx) error {
		if v, ok := l.liveValue(tx.Bucket(bucket).Get([]byte(key)), l.nowNanos()); ok {
			out, found = append([]byte{}, v...), true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !found {
		return nil, ErrNotFound
	}
	return out, nil
}

// Set stores val under key for ttl (0 = until deleted).
func (l *Local) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	return l.update(func(b *bolt.Bucket, _ uint64) error {
		return b.Put([]byte(key), encodeRecord(l.expiry(ttl), val))
	})
}

// Delete removes key; deleting a missing key is not an error.
func (l *Local) Delete(_ context.Context, key string) error {
	return l.update(func(b *bolt.Bucket, _ uint64) error { return b.Delete([]byte(key)) })
}

// Take returns the live value under key and deletes it, in one transaction.
func (l *Local) Take(_ context.Context, key string) ([]byte, error) {
	var out []byte
	found := false
	err := l.update(func(b *bolt.Bucket, now uint64) error {
		rec := b.Get([]byte(key))
		if rec == nil {
			return nil
		}
		if v, ok := l.liveValue(rec, now); ok {
			out, found = append([]byte{}, v...), true
		}
		return b.Delete([]byte(key))
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, ErrNotFound
	}
	return out, nil
}

// Incr adds one to the counter under key (see Add).
func (l *Local) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	return l.Add(ctx, key, 1, ttl)
}

var errNotCounter = errors.New("value is not a counter")

// Add adds delta to the counter under key and returns the new value. A new
// counter expires ttl after its creation; changing it does not extend it.
func (l *Local) Add(_ context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	var n int64
	err := l.update(func(b *bolt.Bucket, now uint64) error {
		rec := b.Get([]byte(key))
		exp := l.expiry(ttl)
		if v, ok := l.liveValue(rec, now); ok {
			var err error
			if n, err = strconv.ParseInt(string(v), 10, 64); err != nil {
				return errNotCounter
			}
			exp = binary.BigEndian.Uint64(rec)
		}
		n += delta
		return b.Put([]byte(key), encodeRecord(exp, strconv.AppendInt(nil, n, 10)))
	})
	return n, err
}

// Replace stores val under key for ttl only if a live value is there.
func (l *Local) Replace(_ context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	done := false
	err := l.update(func(b *bolt.Bucket, now uint64) error {
		if _, ok := l.liveValue(b.Get([]byte(key)), now); !ok {
			return nil
		}
		done = true
		return b.Put([]byte(key), encodeRecord(l.expiry(ttl), val))
	})
	return done && err == nil, err
}

// SetIfAbsent stores val under key for ttl unless a live value is there.
func (l *Local) SetIfAbsent(_ context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	done := false
	err := l.update(func(b *bolt.Bucket, now uint64) error {
		if _, ok := l.liveValue(b.Get([]byte(key)), now); ok {
			return nil
		}
		done = true
		return b.Put([]byte(key), encodeRecord(l.expiry(ttl), val))
	})
	return done && err == nil, err
}

// CompareAndSwap stores val under key for ttl only if the live value there
// equals old.
func (l *Local) CompareAndSwap(_ context.Context, key string, old, val []byte, ttl time.Duration) (bool, error) {
	done := false
	err := l.update(func(b *bolt.Bucket, now uint64) error {
		if v, ok := l.liveValue(b.Get([]byte(key)), now); !ok || !bytes.Equal(v, old) {
			return nil
		}
		done = true
		return b.Put([]byte(key), encodeRecord(l.expiry(ttl), val))
	})
	return done && err == nil, err
}

// Keys lists up to limit live keys that start with prefix (bbolt keeps
// keys sorted: a seek, not a scan of everything).
func (l *Local) Keys(_ context.Context, prefix string, limit int) ([]string, error) {
	var out []string
	err := l.db.View(func(tx *bolt.Tx) error {
		now := l.nowNanos()
		c := tx.Bucket(bucket).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p) && len(out) < limit; k, v = c.Next() {
			if _, ok := l.liveValue(v, now); ok {
				out = append(out, string(k))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return out, nil
}

// sweepBatch bounds the deletions of one write transaction, so that a
// sweep never holds the writer lock for long (a variable for tests).
var sweepBatch = 1000

// Sweep deletes expired records and returns how many.
func (l *Local) Sweep() (int, error) {
	total := 0
	var from []byte
	for {
		var expired [][]byte
		var next []byte
		if err := l.db.View(func(tx *bolt.Tx) error {
			now := l.nowNanos()
			c := tx.Bucket(bucket).Cursor()
			k, v := c.First()
			if from != nil {
				k, v = c.Seek(from)
			}
			for ; k != nil; k, v = c.Next() {
				if len(expired) == sweepBatch {
					next = append([]byte{}, k...)
					break
				}
				if _, ok := l.liveValue(v, now); !ok {
					expired = append(expired, append([]byte{}, k...))
				}
			}
			return nil
		}); err != nil {
			return total, err
		}
		if len(expired) > 0 {
			// Each record is checked again under the write lock: one
			// written meanwhile is live.
			if err := l.db.Update(func(tx *bolt.Tx) error {
				b, now := tx.Bucket(bucket), l.nowNanos()
				for _, k := range expired {
					if _, ok := l.liveValue(b.Get(k), now); !ok {
						if err := b.Delete(k); err != nil {
							return err
						}
						total++
					}
				}
				return nil
			}); err != nil {
				return total, err
			}
		}
		if next == nil {
			return total, nil
		}
		from = next
	}
}

// SweepEvery sweeps expired records every interval until done is closed.
func (l *Local) SweepEvery(done <-chan struct{}, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			_, _ = l.Sweep()
		}
	}
}
