package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/store"
	"github.com/caddy-stepup/caddy-stepup/tiers"
)

// slowStore answers after a delay, as a network store does: the window in
// which two requests can both have read a record before either deletes it.
type slowStore struct{ *store.Memory }

func (s slowStore) Get(ctx context.Context, key string) ([]byte, error) {
	defer time.Sleep(20 * time.Millisecond)
	return s.Memory.Get(ctx, key)
}

func (s slowStore) Take(ctx context.Context, key string) ([]byte, error) {
	defer time.Sleep(20 * time.Millisecond)
	return s.Memory.Take(ctx, key)
}

// TestOneTimeGrantPassesOneRequest: a max_age 0 grant read and then
// deleted let every request that read it before the delete pass; taken
// atomically, it passes one.
func TestOneTimeGrantPassesOneRequest(t *testing.T) {
	h, err := tiers.New([]tiers.Tier{{Name: "login", Method: "password", MaxAge: time.Hour}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := stepup.DeriveKeys([]byte("0123456789abcdef0123456789abcdef-web"))
	st := slowStore{store.NewMemory(0, nil)}
	e, err := stepup.NewEngine(stepup.EngineConfig{Hierarchy: h, Keys: keys, Store: st,
		Methods: map[string]stepup.Method{"login": stepup.NewPassword(nil, true)}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	policy, err := stepup.NewPolicy(h, []stepup.TransactionSet{{Name: "pay", Tier: "login", HasMaxAge: true,
		Match: func(r *http.Request) (bool, error) { return r.URL.Path == "/pay", nil }}}, "")
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{Engine: e, Policy: policy}

	// A session holding login, and a grant for GET /pay from a step-up
	// performed for it.
	rec := httptest.NewRecorder()
	s := e.Sessions.New()
	s.User = "alice"
	now := time.Now()
	s.Stack, _ = s.Stack.Push(h, tiers.Level{Tier: "login", Method: "password", At: now}, now)
	if err := e.Sessions.Commit(rec, httptest.NewRequest(http.MethodGet, "/", nil), s); err != nil {
		t.Fatal(err)
	}
	cookie := rec.Result().Cookies()[0]
	if err := e.Grant(context.Background(), s, http.MethodGet, "/pay", now); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := httptest.NewRequest(http.MethodGet, "/pay", nil)
			r.Header.Set("Accept", "text/html")
			r.AddCookie(cookie)
			w := httptest.NewRecorder()
			if err := g.ServeHTTP(w, r, okNext{}); err != nil {
				t.Error(err)
			}
			if w.Code == http.StatusOK && strings.Contains(w.Body.String(), "upstream") {
				mu.Lock()
				passed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if passed != 1 {
		t.Fatalf("%d requests passed on one grant", passed)
	}
}
