package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// loadMatcherSets loads and provisions raw JSON matcher sets as the
// handler does (ctx.LoadModule on a Transaction, then FromInterface), and
// returns Caddy's sets and the compiled form of the same sets.
func loadMatcherSets(tb testing.TB, raw string) (caddyhttp.MatcherSets, func(*http.Request) (bool, error), bool) {
	tb.Helper()
	var t Transaction
	if err := json.Unmarshal([]byte(`{"match": `+raw+`}`), &t); err != nil {
		tb.Fatalf("%s: %v", raw, err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	mods, err := ctx.LoadModule(&t, "MatcherSetsRaw")
	if err != nil {
		tb.Fatalf("%s: %v", raw, err)
	}
	var ms caddyhttp.MatcherSets
	if err := ms.FromInterface(mods); err != nil {
		tb.Fatalf("%s: %v", raw, err)
	}
	match, compiled := compileMatcherSets(ms)
	return ms, match, compiled
}

// matcherRequest is a request with the given method and decoded path (as
// r.URL.Path holds it), with the replacer Caddy's server gives every
// request.
func matcherRequest(method, p string) *http.Request {
	r := &http.Request{Method: method, URL: &url.URL{Path: p}, Header: http.Header{}}
	return r.WithContext(context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
}

// agree fails the test when the compiled matcher and Caddy's disagree on r.
func agree(tb testing.TB, raw string, ms caddyhttp.MatcherSets, compiled func(*http.Request) (bool, error), r *http.Request) bool {
	tb.Helper()
	want, wantErr := ms.AnyMatchWithError(r)
	got, gotErr := compiled(r)
	if got != want || (gotErr == nil) != (wantErr == nil) {
		direction := "compiled matches, Caddy does not"
		if want {
			direction = "BYPASS: Caddy matches, compiled does not"
		}
		tb.Errorf("%s: %s %q: compiled %v (%v), Caddy %v (%v): %s", raw, r.Method, r.URL.Path, got, gotErr, want, wantErr, direction)
	}
	return want
}

// compilablePatterns are path patterns of every branch of Caddy's path
// matcher that the compiled form takes over, written as a Caddyfile would
// have them (Provision lower-cases them).
var compilablePatterns = []string{
	"/admin/*", "/admin*", "*.php", "*/secret/*", "/a/*/b", "/exact", "/x?y", "/[ab]x", "*",
	"/Admin/Secret*", "/ADMIN", "*.PHP", "/İx", "/ı*",
	"**", "***", "*a*b*", "/a*b*", "*/", "/admin/", "/admin/.", "/admin/..", ".", "*.", "", "/",
	"/[", "/[^a]x", "/[a-", `/a\*`, `\/exact`, `*\`, "/a]", "/\x00", "/\xff*", "admin/*", "/x/*/", "/*/*",
}

// nastyPaths are request paths (decoded, as r.URL.Path holds them) that
// a normaliser could get wrong.
var nastyPaths = []string{
	"/admin/x", "/ADMIN/x", "/Admin/Secret/x", "/admin/../admin/x", "//admin//x", "/admin/./x",
	"/admin", "/admin/", "/ADMIN/", "/admin/.", "/admin/..", "/admin/x.", "/admin./x", "/admin/x/..",
	"/admin/../x", "/x/../admin/y", "/../admin/x", "/admin/.%2e/x", "/admin/x%2Fy", "/admin/x?y",
	"/İadmin/x", "/ADMİN/x", "/İx", "/i̇x", "/ıx", "/Ix", "/ı", "/KADMIN", "/\u212aelvin",
	"/admin/\x00", "\x00", "/\x00", "", "*", ".", "..", "/", "//", "///", "admin/x", "./admin/x",
	"/a/x/b", "/a/x/y/b", "/A/X/B", "/a//b", "/a/b", "/exact", "/EXACT", "/exact/", "/exact/.",
	"/exact/..", "/exact.", "/xzy", "/x?y", "/x/y", "/ax", "/Bx", "/cx", "/[ab]x", "/secret/",
	"/a/secret/b", "/A/SECRET/B", "/secret", "/index.php", "/index.PHP", "/index.php/", "/index.php.",
	"/index.php/x", "\xff/admin/x", "/admin/\xff", "/\xffx", "/ÄDMIN", "/äadmin", "/a]", "/a*",
	`/a\b`, `/admin\x`, "/admin/x ", "/ab/", "/ab/ab", "/x/a/", "/x/y/", "/adminZ/x", "/Z", "/@[`{",
	"Admin/x", "A", "a", "x/../admin/y", "../admin/x", "/Ax", "/admin/A", "/admin/\x80",
}

// TestCompiledMatchersAgreeWithCaddy: for every plain path pattern, alone,
// with a method matcher and combined in several sets, the compiled matcher
// puts exactly the requests in the set that Caddy's matcher puts there,
// for paths that differ in case, slashes, dot segments, Unicode and bytes
// that are not UTF-8, and methods in any case.
func TestCompiledMatchersAgreeWithCaddy(t *testing.T) {
	var configs []string
	for _, p := range compilablePatterns {
		pj, _ := json.Marshal(p)
		configs = append(configs,
			`[{"path": [`+string(pj)+`]}]`,
			`[{"path": [`+string(pj)+`], "method": ["POST"]}]`,
			`[{"path": ["/nothing", `+string(pj)+`, "/none*"]}]`,
			`[{"method": ["GET"]}, {"path": [`+string(pj)+`], "method": ["post", "Put"]}]`,
		)
	}
	configs = append(configs,
		`[{}]`,
		`[{"path": []}]`,
		`[{"method": []}]`,
		`[{"method": ["get"]}]`,
		`[{"method": ["PURGE", "M-SEARCH"]}]`,
		`[{"method": ["propfind"]}]`,
		`[{"path": ["/admin/*"], "method": ["POST"]}, {"path": ["*.php"]}, {"path": ["/exact"], "method": ["DELETE"]}]`,
		`[{"path": ["/exact", "/x/*", "*"]}]`,
		`[{"path": ["/Admin/*", "/REPORTS*", "*.Php"], "method": ["get", "HEAD"]}]`,
	)
	methods := []string{"GET", "get", "Get", "POST", "post", "PUT", "DELETE", "HEAD", "PURGE", "M-SEARCH", "PROPFIND", "propfind", ""}
	for _, p := range nastyPaths {
		sameCleanPath(t, p)
	}
	var matched, unmatched int
	for _, raw := range configs {
		ms, compiled, ok := loadMatcherSets(t, raw)
		if !ok {
			t.Fatalf("%s: not compiled, so this test would compare Caddy's matcher with itself", raw)
		}
		for _, p := range nastyPaths {
			for _, m := range methods {
				if agree(t, raw, ms, compiled, matcherRequest(m, p)) {
					matched++
				} else {
					unmatched++
				}
			}
		}
	}
	// The comparison means something only if Caddy said both yes and no.
	if matched == 0 || unmatched == 0 {
		t.Fatalf("Caddy matched %d and did not match %d requests", matched, unmatched)
	}
}

// sameCleanPath fails the test when the compiled form's request path is
// not the one Caddy's path matcher compares with plain patterns.
func sameCleanPath(tb testing.TB, p string) {
	tb.Helper()
	want := caddyhttp.CleanPath(strings.ToLower(p), true)
	if got := cleanLowerPath(p); got != want {
		tb.Errorf("path %q: cleaned to %q, Caddy %q", p, got, want)
	}
	if isLowerClean(p) && want != p {
		tb.Errorf("path %q: taken as lower-case and clean, Caddy makes it %q", p, want)
	}
}

// TestCompiledMatchersKnownAnswers pins a few answers, so that a harness
// broken on both sides cannot pass the comparison.
func TestCompiledMatchersKnownAnswers(t *testing.T) {
	for _, c := range []struct {
		raw, method, path string
		want              bool
	}{
		{`[{"path": ["/admin/*"]}]`, "GET", "/ADMIN/x", true},
		{`[{"path": ["/admin/*"]}]`, "GET", "//admin//x", true},
		{`[{"path": ["/admin/*"]}]`, "GET", "/x/../admin/y", true},
		{`[{"path": ["/admin/*"]}]`, "GET", "/admin", false},
		{`[{"path": ["/Admin/*"]}]`, "GET", "/admin/x", true},
		{`[{"path": ["*.php"]}]`, "GET", "/index.PHP", true},
		{`[{"path": ["/exact"]}]`, "GET", "/exact/", false},
		{`[{"path": ["/exact"]}]`, "GET", "/exact/.", true},
		{`[{"path": ["/admin/*"], "method": ["post"]}]`, "POST", "/admin/x", true},
		{`[{"path": ["/admin/*"], "method": ["POST"]}]`, "post", "/admin/x", false},
		{`[{"path": ["/admin/*"], "method": ["POST"]}]`, "GET", "/admin/x", false},
		{`[{"path": ["*"]}]`, "GET", "", true},
	} {
		_, compiled, _ := loadMatcherSets(t, c.raw)
		if got, err := compiled(matcherRequest(c.method, c.path)); got != c.want || err != nil {
			t.Errorf("%s: %s %q: got %v (%v), want %v", c.raw, c.method, c.path, got, err, c.want)
		}
	}
}

// TestOtherMatchersKeepCaddysMatcher: a set with any matcher other than
// path and method, or a path pattern whose handling depends on the request
// (placeholders) or that Caddy compares differently ('%': escaped space,
// "//": slashes not merged), is matched by Caddy's matcher, for all of the
// transaction set's matcher sets.
func TestOtherMatchersKeepCaddysMatcher(t *testing.T) {
	for _, raw := range []string{
		`[{"header": {"X-Admin": ["1"]}}]`,
		`[{"path": ["/admin/*"], "header": {"X-Admin": ["1"]}}]`,
		`[{"remote_ip": {"ranges": ["10.0.0.0/8"]}}]`,
		`[{"client_ip": {"ranges": ["10.0.0.0/8"]}}]`,
		`[{"expression": "path('/admin/*')"}]`,
		`[{"not": [{"path": ["/admin/*"]}]}]`,
		`[{"path_regexp": {"pattern": "^/admin"}}]`,
		`[{"query": {"debug": ["1"]}}]`,
		`[{"host": ["example.com"]}]`,
		`[{"path": ["/admin%2fx"]}]`,
		`[{"path": ["/admin/%*"]}]`,
		`[{"path": ["/{http.request.host}/*"]}]`,
		`[{"path": ["/{env.ADMIN}*"]}]`,
		`[{"path": ["//admin/*"]}]`,
		`[{"path": ["/admin//x"]}]`,
		`[{"path": ["/admin/*", "/x%40y"]}]`,
		`[{"path": ["/admin/*"]}, {"path": ["/a//b"]}]`,
		`[{"path": ["/admin/*"], "method": ["POST"]}, {"header": {"X-Admin": ["1"]}}]`,
	} {
		ms, match, compiled := loadMatcherSets(t, raw)
		if compiled {
			t.Errorf("%s: compiled, want Caddy's matcher", raw)
			continue
		}
		// And it is Caddy's answer.
		r := matcherRequest("GET", "/admin/x")
		r.Header.Set("X-Admin", "1")
		r.RemoteAddr = "10.1.2.3:4444"
		r.Host = "example.com"
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), nil, nil)
		caddyhttp.SetVar(r.Context(), caddyhttp.ClientIPVarKey, "10.1.2.3")
		want, wantErr := ms.AnyMatchWithError(r)
		got, gotErr := match(r)
		if got != want || (gotErr == nil) != (wantErr == nil) {
			t.Errorf("%s: got %v (%v), Caddy %v (%v)", raw, got, gotErr, want, wantErr)
		}
	}
}

// TestHandlerCompilesPathAndMethodSets: the handler matches its path and
// method sets with the compiled form and the others with Caddy's, so
// every integration test of the handler runs through both.
func TestHandlerCompilesPathAndMethodSets(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	raw := `{
		"users": {"alice": {"password": "` + string(hash) + `"}},
		"store": {"store": "memory"},
		"secret": "` + testSecret + `",
		"tiers": [
			{"name": "login", "method": {"method": "password"}, "max_age": 28800000000000},
			{"name": "sudo", "base": "login", "method": {"method": "password"}, "max_age": 300000000000}
		],
		"transactions": [
			{"name": "reports", "match": [{"path": ["/reports/*"]}], "tier": "login"},
			{"name": "admin", "match": [{"path": ["/admin/*"], "method": ["POST"]}], "tier": "sudo"},
			{"name": "api", "match": [{"path": ["/api/*"]}, {"header": {"X-Api": ["1"]}}], "tier": "login"}
		]
	}`
	var h Handler
	if err := json.Unmarshal([]byte(raw), &h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.Cleanup() }()
	want := map[string]bool{"reports": true, "admin": true, "api": false}
	for _, tr := range h.Transactions {
		if tr.compiledMatch != want[tr.Name] {
			t.Errorf("set %q: compiled %v, want %v", tr.Name, tr.compiledMatch, want[tr.Name])
		}
	}
	for _, c := range []struct {
		method, path, header string
		want                 string
	}{
		{"GET", "/REPORTS/x", "", "reports"},
		{"POST", "//admin/./x", "", "admin"},
		{"GET", "/admin/x", "", ""},
		{"GET", "/API/x", "", "api"},
		{"GET", "/x", "1", "api"},
	} {
		r := caddyRequest(c.method, "http://localhost"+c.path, nil)
		if c.header != "" {
			r.Header.Set("X-Api", c.header)
		}
		ev := stepup.Evaluation{Request: r, Now: time.Now()}
		if err := h.gateway.Policy.Decide(&ev); err != nil {
			t.Fatal(err)
		}
		if got := h.gateway.Policy.MatchedNames(ev.Decision.Matched); got != c.want {
			t.Errorf("%s %s: matched %q, want %q", c.method, c.path, got, c.want)
		}
	}
}

// TestCompiledMatchDoesNotAllocateForCleanPaths: a lower-case, clean path
// (the usual request) is compared as it is, without a copy; also with a
// trailing slash, which Caddy's CleanPath appends to a new string.
func TestCompiledMatchDoesNotAllocateForCleanPaths(t *testing.T) {
	_, compiled, _ := loadMatcherSets(t, `[{"path": ["/reports/*"]}, {"path": ["/admin/*"], "method": ["POST"]}, {"path": ["*.php", "/x?y", "/exact"]}]`)
	for _, p := range []string{"/index.html", "/admin/users/", "/reports/q1"} {
		r := matcherRequest("POST", p)
		if n := testing.AllocsPerRun(100, func() { _, _ = compiled(r) }); n != 0 {
			t.Errorf("%s: %v allocations per match, want 0", p, n)
		}
	}
}

// FuzzCompiledMatchersAgreeWithCaddy: for any request path and method and
// any path patterns (fuzzed, and one cut from the path so that it often
// matches), with or without a method matcher, the compiled matcher and
// Caddy's give the same answer, and the compiled form cleans the path as
// Caddy does. The seeds run in every `go test`. The matchers are
// provisioned by their own Provision, as LoadModule would (which
// TestCompiledMatchersAgreeWithCaddy uses), at a fraction of its cost.
func FuzzCompiledMatchersAgreeWithCaddy(f *testing.F) {
	methods := []string{"GET", "post", ""}
	for i, p := range nastyPaths {
		pat := compilablePatterns[i%len(compilablePatterns)]
		f.Add(p, pat, uint8(i), uint8(i*7), methods[i%len(methods)], methods[(i+1)%len(methods)])
	}
	f.Fuzz(func(t *testing.T, reqPath, pattern string, shape, cut uint8, method, setMethods string) {
		// The fuzzer's own cost per input far exceeds a match: each input
		// also tries every kind of pattern cut from the path, alone.
		lists := [][]string{strings.Split(pattern, "\n")}
		if derived, ok := derivePattern(reqPath, shape, cut); ok {
			lists[0] = append(lists[0], derived)
		}
		// Cut from the path as sent and as Caddy compares it, so that
		// the patterns also match paths that need cleaning.
		for _, from := range []string{reqPath, caddyhttp.CleanPath(strings.ToLower(reqPath), true)} {
			for k := range uint8(8) {
				if derived, ok := derivePattern(from, k, cut); ok {
					lists = append(lists, []string{derived})
				}
			}
		}
		r := matcherRequest(method, reqPath)
		for _, list := range lists {
			patterns := caddyhttp.MatchPath(list)
			if err := patterns.Provision(caddy.Context{}); err != nil {
				t.Fatal(err)
			}
			set := caddyhttp.MatcherSet{&patterns}
			desc := fmt.Sprintf("path %q", patterns)
			if setMethods != "" {
				m := caddyhttp.MatchMethod(strings.Split(setMethods, "\n"))
				if err := m.Provision(caddy.Context{}); err != nil {
					t.Fatal(err)
				}
				set = append(set, &m)
				desc += fmt.Sprintf(" method %q", m)
			}
			ms := caddyhttp.MatcherSets{set}
			compiled, _ := compileMatcherSets(ms)
			agree(t, desc, ms, compiled, r)
		}
		sameCleanPath(t, reqPath)
	})
}

// derivePattern cuts a pattern of each kind out of a path, so that the
// fuzzer reaches matching requests without guessing them.
func derivePattern(p string, shape, cut uint8) (string, bool) {
	n := 0
	if len(p) > 0 {
		n = int(cut) % (len(p) + 1)
	}
	switch shape % 8 {
	case 0:
		return p[:n] + "*", true
	case 1:
		return "*" + p[n:], true
	case 2:
		return "*" + p[n/2:n] + "*", true
	case 3:
		return p, true
	case 4:
		if n < len(p) {
			return p[:n] + "?" + p[n+1:], true
		}
		return p + "*", true
	case 5:
		return p[:n] + "*" + p[n:], true
	case 6:
		return strings.ToUpper(p[:n]) + "*/" + p[n:], true
	}
	return "", false
}
