package stepup

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-stepup/caddy-stepup/internal/testenv"
	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

// fakeShared is a memory store that reports changes only when the test says
// so, and whose change channel the test takes up and down.
type fakeShared struct {
	*store.Memory
	up       atomic.Bool
	mu       sync.Mutex
	changed  func(string)
	resetAll func()
}

func (f *fakeShared) Watch(changed func(string), reset func()) func() {
	f.mu.Lock()
	f.changed, f.resetAll = changed, reset
	f.mu.Unlock()
	return func() {}
}

func (f *fakeShared) Coherent() bool { return f.up.Load() }

// committed stores a new session for alice and returns a request carrying
// its cookie.
func committed(t *testing.T, m *Sessions) (*Session, *http.Request) {
	t.Helper()
	s := m.New()
	s.User = "alice"
	w := httptest.NewRecorder()
	if err := m.Commit(w, httptest.NewRequest("GET", "/", nil), s); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(w.Result().Cookies()[0])
	return s, r
}

// cached loads the session and checks that the cache holds it.
func cached(t *testing.T, m *Sessions, r *http.Request) {
	t.Helper()
	if m.Load(r) == nil {
		t.Fatal("session not found")
	}
	if _, ok := m.sessions.get(cookieValue(r, m.CookieName(r)), m.now().UnixNano()); !ok {
		t.Fatal("the session did not reach the cache")
	}
}

func TestSessionCacheFollowsTheSharedStoresReports(t *testing.T) {
	f := &fakeShared{Memory: store.NewMemory(0, nil)}
	f.up.Store(true)
	m, err := NewSessions(SessionConfig{}, f, testKeys(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.cfg.CacheTTL > sharedCacheTTL {
		t.Fatalf("cache TTL %v in front of a shared store, want at most %v", m.cfg.CacheTTL, sharedCacheTTL)
	}
	ctx := context.Background()

	// While the channel is up, a cached copy is served even if the record
	// went (another instance's write not yet reported)...
	s, r := committed(t, m)
	cached(t, m, r)
	raw, _ := f.Get(ctx, keyRecord+s.Owner)
	_ = f.Delete(ctx, keyRecord+s.Owner)
	if m.Load(r) == nil {
		t.Fatal("the cache was not used while the channel was up")
	}
	// ...until the change is reported: then the store is asked again.
	f.changed(keyRecord + s.Owner)
	if m.Load(r) != nil {
		t.Fatal("a reported change did not drop the cached copy")
	}

	// A reset of the channel (reports missed) drops everything cached.
	_ = f.Set(ctx, keyRecord+s.Owner, raw, time.Hour)
	cached(t, m, r)
	_ = f.Delete(ctx, keyRecord+s.Owner)
	f.resetAll()
	if m.Load(r) != nil {
		t.Fatal("a reset did not drop the cached copy")
	}

	// While the channel is down, nothing is served from the cache, and
	// nothing read meanwhile is served once it is back (a reset comes
	// first, see store.Redis).
	_ = f.Set(ctx, keyRecord+s.Owner, raw, time.Hour)
	cached(t, m, r)
	f.up.Store(false)
	_ = f.Delete(ctx, keyRecord+s.Owner)
	if m.Load(r) != nil {
		t.Fatal("the cache was served while the channel was down")
	}
	_ = f.Set(ctx, keyRecord+s.Owner, raw, time.Hour)
	cached(t, m, r) // read while down: must not be served later
	_ = f.Delete(ctx, keyRecord+s.Owner)
	f.resetAll()
	f.up.Store(true)
	if m.Load(r) != nil {
		t.Fatal("a copy read while the channel was down was served after it came back")
	}
}

// failingStore is a store whose every operation fails, as a Redis down.
type failingStore struct{ Store }

func (failingStore) Get(context.Context, string) ([]byte, error) {
	return nil, store.ErrUnavailable
}

func TestAStoreThatCannotAnswerIsNotNoSession(t *testing.T) {
	mem := store.NewMemory(0, nil)
	m, _ := NewSessions(SessionConfig{}, mem, testKeys(t), nil)
	_, r := committed(t, m)
	m.Close()
	down, _ := NewSessions(SessionConfig{}, failingStore{mem}, testKeys(t), nil)
	defer down.Close()
	s, err := down.LoadChecked(r)
	if s != nil || err == nil || !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("LoadChecked with the store down = %v, %v; want no session and ErrStoreUnavailable", s, err)
	}
	if s, err := down.LoadChecked(httptest.NewRequest("GET", "/", nil)); s != nil || err != nil {
		t.Fatalf("no cookie with the store down = %v, %v; want no session, no error (nothing to ask)", s, err)
	}
}

// hidden hides that a store is shared: the cache in front of it gets no
// reports (the negative control of the test below).
type hidden struct{ Store }

func TestLogoffOnOneInstanceIsRefusedOnTheOtherThroughRedis(t *testing.T) {
	srv := testenv.StartRedis(t)
	open := func() *store.Redis {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr})
		r := store.NewRedis(c, "sess:")
		t.Cleanup(func() { _ = r.Close(); _ = c.Close() })
		for deadline := time.Now().Add(5 * time.Second); !r.Coherent(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("change channel not up")
			}
		}
		return r
	}
	keys := testKeys(t)
	a, _ := NewSessions(SessionConfig{}, open(), keys, nil)
	b, _ := NewSessions(SessionConfig{}, open(), keys, nil)
	blind, _ := NewSessions(SessionConfig{}, hidden{open()}, keys, nil)
	for _, m := range []*Sessions{a, b, blind} {
		defer m.Close()
	}

	s, r := committed(t, a)
	cached(t, b, r)
	cached(t, blind, r)
	a.End(httptest.NewRecorder(), r, s)
	ended := time.Now()
	for b.Load(r) != nil {
		if time.Since(ended) > 5*time.Second {
			t.Fatal("B still serves the session ended on A after 5 s")
		}
	}
	t.Logf("session ended on A refused on B after %v", time.Since(ended))
	// Without the reports, the same cache serves the ended session: the
	// reports, not luck, made B refuse it.
	if blind.Load(r) == nil {
		t.Fatal("negative control: a cache without reports did not serve the stale copy; the test above proves nothing")
	}
}
