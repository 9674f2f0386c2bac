package caddymodule

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-stepup/caddy-stepup/internal/testenv"
	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/tiers"
	"github.com/caddy-stepup/caddy-stepup/web"
)

// noopNext is the rest of the chain: the baseline costs nothing but the call.
type noopNext struct{}

func (noopNext) ServeHTTP(w http.ResponseWriter, _ *http.Request) error { return nil }

// benchHandler provisions the real handler (inline configuration, real Caddy
// path matchers) with an audit logger that encodes JSON to io.Discard, so the
// cost of auditing is measured too.
func benchHandler(b *testing.B) (*Handler, func()) {
	return benchHandlerWithStore(b, `{"store": "memory"}`)
}

// benchHandlerWithStore is benchHandler with the given store module.
func benchHandlerWithStore(b *testing.B, store string) (*Handler, func()) {
	b.Helper()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	raw := `{
		"store": ` + store + `,
		"secret": "` + testSecret + `",
		"users": {"alice": {"password": "` + string(hash) + `", "roles": ["admin"]}},
		"tiers": [
			{"name": "login", "method": {"method": "password"}, "max_age": 28800000000000},
			{"name": "sudo", "base": "login", "method": {"method": "password"}, "max_age": 300000000000}
		],
		"transactions": [
			{"name": "reports", "match": [{"path": ["/reports/*"]}], "tier": "login"},
			{"name": "admin", "match": [{"path": ["/admin/*"], "method": ["POST"]}], "tier": "sudo"}
		]
	}`
	var h Handler
	if err := json.Unmarshal([]byte(raw), &h); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	h.gateway.Engine.Audit = stepup.NewAudit(zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zap.InfoLevel)).Named(stepup.AuditLoggerName))
	return &h, func() { _ = h.Cleanup(); cancel() }
}

// sessionCookie stores a session holding login and returns its cookie.
func sessionCookie(b *testing.B, h *Handler) *http.Cookie {
	e := h.gateway.Engine
	s := e.Sessions.New()
	s.User, s.Roles = "alice", []string{"admin"}
	s.Stack = tiers.Stack{{Tier: "login", Method: "password", Credential: "alice", At: time.Now()}}
	w := httptest.NewRecorder()
	if err := e.Sessions.Commit(w, httptest.NewRequest("GET", "/", nil), s); err != nil {
		b.Fatal(err)
	}
	return w.Result().Cookies()[0]
}

// caddyRequest prepares a request as Caddy's server does: a replacer and
// the vars map in its context.
func caddyRequest(method, target string, c *http.Cookie) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	// What a browser sends besides the cookie (the handler looks at every
	// header for X-Stepup-* ones).
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0")
	r.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	r.Header.Set("Accept-Language", "en-GB,en;q=0.5")
	r.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd")
	if c != nil {
		r.AddCookie(c)
	}
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "127.0.0.1"})
	return r.WithContext(ctx)
}

// replacerCtx is a request context whose replacer the benchmark swaps
// between iterations without building a new request.
type replacerCtx struct {
	context.Context
	repl *caddy.Replacer
}

func (c *replacerCtx) Value(key any) any {
	if key == caddy.ReplacerCtxKey {
		return c.repl
	}
	return c.Context.Value(key)
}

// httpVars stands for the HTTP placeholders Caddy's server maps into every
// request's replacer before any handler runs.
var httpVars = func(string) (any, bool) { return nil, false }

// serverReplacer is a request's replacer as Caddy's server hands it to
// handlers: the defaults plus the HTTP placeholders.
func serverReplacer() *caddy.Replacer {
	repl := caddy.NewReplacer()
	repl.Map(httpVars)
	return repl
}

// BenchmarkHotPath measures what the handler adds to a request that passes:
// compare each case with "baseline" (calling next directly).
func BenchmarkHotPath(b *testing.B) {
	h, done := benchHandler(b)
	defer done()
	cookie := sessionCookie(b, h)
	// The same handler without its decision metrics (a counter and the
	// duration histogram, whose clock reads are a fair part of the cost).
	quiet := *h
	g := h.gateway
	quiet.gateway = &web.Gateway{Engine: g.Engine, Policy: g.Policy, Approvals: g.Approvals, Branding: g.Branding, SetVars: g.SetVars, LogFields: g.LogFields}
	w := httptest.NewRecorder()
	cases := []struct {
		name string
		r    *http.Request
		call func(*http.Request) error
	}{
		{"baseline", caddyRequest("GET", "/reports/q1", cookie), func(r *http.Request) error { return noopNext{}.ServeHTTP(w, r) }},
		{"no_set_anonymous", caddyRequest("GET", "/index.html", nil), nil},
		{"no_set_with_session", caddyRequest("GET", "/index.html", cookie), nil},
		{"set_matched_tier_held", caddyRequest("GET", "/reports/q1", cookie), nil},
		{"set_matched_tier_held_no_metrics", caddyRequest("GET", "/reports/q1", cookie), func(r *http.Request) error { return quiet.ServeHTTP(w, r, noopNext{}) }},
	}
	for _, c := range cases {
		call := c.call
		if call == nil {
			call = func(r *http.Request) error { return h.ServeHTTP(w, r, noopNext{}) }
		}
		// The handler strips its own cookies from the request it passes on;
		// every real request arrives with its Cookie line, so each iteration
		// puts it back (an assignment to an existing key: no allocation).
		cookieLine := c.r.Header["Cookie"]
		// Warm the caches, and check the case passes rather than measuring
		// a redirect.
		for i := 0; i < 3; i++ {
			c.r.Header["Cookie"] = cookieLine
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, c.r, noopNext{}); err != nil || rec.Code != 200 {
				b.Fatalf("%s: %v %d", c.name, err, rec.Code)
			}
		}
		b.Run(c.name, func(b *testing.B) { measureHotPath(b, c.r, cookieLine, call) })
	}
}

// measureHotPath calls call with r (its Cookie line put back each time, as
// every real request brings it) for b.N iterations.
func measureHotPath(b *testing.B, r0 *http.Request, cookieLine []string, call func(*http.Request) error) {
	b.ReportAllocs()
	// One request serves every iteration. Caddy's server gives each
	// request a fresh replacer (the handler maps its placeholders
	// into it); those are built in batches outside the timer, so
	// what is measured, allocations included, is the handler's own
	// work, not building requests, whose garbage would make each
	// case pay for collections in proportion to the heap.
	ctx := &replacerCtx{Context: r0.Context()}
	r := r0.WithContext(ctx)
	var batch [1024]*caddy.Replacer
	n := len(batch)
	for b.Loop() {
		if n == len(batch) {
			b.StopTimer()
			for i := range batch {
				batch[i] = serverReplacer()
			}
			n = 0
			b.StartTimer()
		}
		ctx.repl, n = batch[n], n+1
		if cookieLine != nil {
			r.Header["Cookie"] = cookieLine
		}
		if err := call(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHotPathStores measures a request whose session holds the tier
// (served from the session cache) with each store: the shared Redis store
// must cost the hot path no more than memory, since a cache hit asks Redis
// nothing (only whether its change channel is up, an atomic load).
func BenchmarkHotPathStores(b *testing.B) {
	srv := testenv.StartRedis(b)
	stores := []struct{ name, json string }{
		{"memory", `{"store": "memory"}`},
		{"local", `{"store": "local", "path": "` + filepath.Join(b.TempDir(), "store.db") + `"}`},
		{"redis", `{"store": "redis", "addresses": ["` + srv.Addr + `"], "key_prefix": "bench:"}`},
	}
	for _, st := range stores {
		h, done := benchHandlerWithStore(b, st.json)
		h.gateway.Engine.Audit = stepup.NewAudit(zap.NewNop())
		cookie := sessionCookie(b, h)
		r0 := caddyRequest("GET", "/reports/q1", cookie)
		cookieLine := r0.Header["Cookie"]
		w := httptest.NewRecorder()
		for deadline := time.Now().Add(5 * time.Second); ; {
			// Warm the cache (and, for Redis, wait for its change channel:
			// until it is up, the cache is bypassed).
			r0.Header["Cookie"] = cookieLine
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, r0, noopNext{}); err != nil || rec.Code != 200 {
				b.Fatalf("%s: %v %d", st.name, err, rec.Code)
			}
			time.Sleep(10 * time.Millisecond)
			if shared, ok := h.gateway.Engine.Store.(stepup.SharedStore); !ok || shared.Coherent() || time.Now().After(deadline) {
				break
			}
		}
		b.Run(st.name, func(b *testing.B) {
			measureHotPath(b, r0, cookieLine, func(r *http.Request) error { return h.ServeHTTP(w, r, noopNext{}) })
		})
		done()
	}
}

// BenchmarkTransactionSetMatch measures matching a request against the
// transaction sets of benchHandler (/reports/*; /admin/* with POST), as
// Policy.Decide does, with Caddy's matchers and with their compiled form
// (fastmatch.go): for a request in neither set and one in the second (both
// sets are tried).
func BenchmarkTransactionSetMatch(b *testing.B) {
	h, done := benchHandler(b)
	defer done()
	var caddySets, compiledSets []func(*http.Request) (bool, error)
	for _, t := range h.Transactions {
		match, compiled := compileMatcherSets(t.matcherSets)
		if !compiled {
			b.Fatalf("set %q is not compiled", t.Name)
		}
		caddySets = append(caddySets, t.matcherSets.AnyMatchWithError)
		compiledSets = append(compiledSets, match)
	}
	for _, impl := range []struct {
		name string
		sets []func(*http.Request) (bool, error)
	}{{"caddy", caddySets}, {"compiled", compiledSets}} {
		for _, c := range []struct {
			name    string
			r       *http.Request
			matches int
		}{
			{"no_set", caddyRequest("GET", "/index.html", nil), 0},
			{"set_matched", caddyRequest("POST", "/admin/users", nil), 1},
		} {
			b.Run(impl.name+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					n := 0
					for _, match := range impl.sets {
						if ok, _ := match(c.r); ok {
							n++
						}
					}
					if n != c.matches {
						b.Fatalf("%d sets matched, want %d", n, c.matches)
					}
				}
			})
		}
	}
}
