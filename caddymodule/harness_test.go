package caddymodule

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"golang.org/x/crypto/bcrypt"
)

// These integration tests run the real Caddy in-process (as caddytest does),
// loading Caddyfiles through the real adapter, on free loopback ports, with
// the module's clock under the test's control. One Caddy runs per process,
// so they must not use t.Parallel.

// fakeClock is the clock the engine reads during a test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// hashes are bcrypt hashes at the lowest cost, so tests stay fast; the
// production path (cost 14, argon2id) is the same code.
var hashes = map[string]string{}

func hashFor(t testing.TB, password string) string {
	if h, ok := hashes[password]; ok {
		return h
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hashes[password] = string(h)
	return hashes[password]
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// server is a running Caddy with the site under test.
type server struct {
	t     *testing.T
	base  string
	port  int
	clock *fakeClock
	dir   string
	audit string
	// sites are the site block's addresses ({PORT} replaced); default:
	// http://127.0.0.1:{PORT}, http://localhost:{PORT}.
	sites string
}

// startCaddy loads a Caddyfile whose site block is site; {PORT} and {DIR}
// are replaced, and global options (admin off, loopback binding, storage and
// an audit log file) are prepended to the given global stepup block.
func startCaddy(t *testing.T, global, site string) *server {
	t.Helper()
	return startCaddyAt(t, "", global, site)
}

// startCaddyAt is startCaddy with the site block at other addresses ("":
// the default ones).
func startCaddyAt(t *testing.T, sites, global, site string) *server {
	t.Helper()
	s := &server{t: t, port: freePort(t), dir: t.TempDir(), sites: sites}
	s.base = fmt.Sprintf("http://127.0.0.1:%d", s.port)
	s.audit = filepath.Join(s.dir, "audit.log")
	s.clock = &fakeClock{t: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	now = s.clock.Now
	isolateData(t, s.dir)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
		now = time.Now
		previousHierarchies.Range(func(k, _ any) bool { previousHierarchies.Delete(k); return true })
	})
	if err := s.load(global, site); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	return s
}

func (s *server) caddyfile(global, site string) string {
	r := strings.NewReplacer("{PORT}", fmt.Sprint(s.port), "{DIR}", s.dir)
	sites := s.sites
	if sites == "" {
		sites = "http://127.0.0.1:{PORT}, http://localhost:{PORT}"
	}
	return r.Replace(`{
	admin off
	default_bind 127.0.0.1
	auto_https off
	storage file_system {DIR}/storage
	log audit {
		output file {DIR}/audit.log
		format json
		include http.handlers.stepup.audit
	}
` + global + `
}
` + sites + ` {
` + site + `
}
`)
}

// load adapts and loads a configuration, as `caddy reload` does.
func (s *server) load(global, site string) error {
	cfg, warn, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(s.caddyfile(global, site)), nil)
	if err != nil {
		return err
	}
	_ = warn
	return caddy.Load(cfg, true)
}

// auditRecords reads the audit log.
func (s *server) auditRecords() []map[string]any {
	s.t.Helper()
	f, err := os.Open(s.audit)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// findAudit returns the first record with the message and all fields.
func (s *server) findAudit(msg string, fields map[string]string) map[string]any {
	for _, rec := range s.auditRecords() {
		if rec["msg"] != msg {
			continue
		}
		ok := true
		for k, v := range fields {
			if fmt.Sprint(rec[k]) != v {
				ok = false
			}
		}
		if ok {
			return rec
		}
	}
	return nil
}

// awaitAudit is findAudit for a record written in the background (a
// RADIUS decision): the record may follow the change it records by a
// moment, so it is looked for until a deadline.
func (s *server) awaitAudit(msg string, fields map[string]string) map[string]any {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if rec := s.findAudit(msg, fields); rec != nil || time.Now().After(deadline) {
			return rec
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// browser is an HTTP client with cookies that does not follow redirects.
type browser struct {
	t      *testing.T
	s      *server
	client *http.Client
	csrf   string
}

func (s *server) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: s.t, s: s, client: &http.Client{
		Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type response struct {
	*http.Response
	body string
}

func (b *browser) do(method, path string, form url.Values, headers ...string) response {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	u := path
	if strings.HasPrefix(path, "/") {
		u = b.s.base + path
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			// Go sends req.Host, never a Host header, and its client then
			// leaves the jar's cookies out: they go in by hand.
			req.Host = headers[i+1]
			for _, c := range b.client.Jar.Cookies(req.URL) {
				req.AddCookie(c)
			}
			continue
		}
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{resp, string(raw)}
	if m := csrfMeta.FindStringSubmatch(r.body); m != nil {
		b.csrf = m[1]
	}
	return r
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

func (b *browser) get(path string, headers ...string) response {
	return b.do(http.MethodGet, path, nil, headers...)
}

// post submits a form, adding the CSRF token the last page carried.
func (b *browser) post(path string, form url.Values, headers ...string) response {
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf_token"]; !ok {
		form.Set("csrf_token", b.csrf)
	}
	return b.do(http.MethodPost, path, form, headers...)
}

// hidden returns the hidden form fields of a page.
func hidden(body string) url.Values {
	v := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(body, -1) {
		v.Set(m[1], htmlUnescape(m[2]))
	}
	return v
}

var hiddenField = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&lt;", "<", "&gt;", ">", "&#34;", `"`, "&#39;", "'").Replace(s)
}

func (b *browser) location(r response) string {
	b.t.Helper()
	loc := r.Header.Get("Location")
	if loc == "" {
		b.t.Fatalf("no Location (status %d): %s", r.StatusCode, r.body)
	}
	return strings.TrimPrefix(loc, b.s.base)
}

// follow follows redirects like a browser (303 -> GET) until a page.
func (b *browser) follow(r response) response {
	b.t.Helper()
	for i := 0; i < 10 && r.StatusCode >= 300 && r.StatusCode < 400; i++ {
		r = b.get(b.location(r))
	}
	return r
}

// stepUp completes the step page shown in r with the given fields and
// follows the walk to its end.
func (b *browser) stepUp(r response, fields url.Values) response {
	b.t.Helper()
	if !strings.Contains(r.body, `action="/_stepup/verify/`) {
		b.t.Fatalf("not a step page (status %d): %s", r.StatusCode, r.body)
	}
	action := regexp.MustCompile(`action="(/_stepup/verify/[^"]+)"`).FindStringSubmatch(r.body)[1]
	form := hidden(r.body)
	for k, v := range fields {
		form[k] = v
	}
	return b.post(action, form)
}

// login walks the challenge for tier with the given password(s) per step.
func (b *browser) login(tier, ret string, steps ...url.Values) response {
	b.t.Helper()
	r := b.get("/_stepup/challenge?" + url.Values{"tier": {tier}, "return": {ret}}.Encode())
	for _, f := range steps {
		r = b.follow(b.stepUp(r, f))
	}
	return r
}

func creds(user, password string) url.Values {
	return url.Values{"username": {user}, "password": {password}}
}

func pw(password string) url.Values { return url.Values{"password": {password}} }

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.s.base)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// findSub returns the first submatch of pattern in s.
func findSub(pattern, s string) string {
	if m := regexp.MustCompile(pattern).FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}

func basic(user, password string) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, password)
	return r.Header.Get("Authorization")
}

func adaptCaddyfile(src string) ([]byte, []caddyconfig.Warning, error) {
	return caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
}

func loadJSON(cfg []byte) error { return caddy.Load(cfg, true) }

// stepUpForm posts the page's hidden fields plus fields to action.
func (b *browser) stepUpForm(page response, action string, fields url.Values, headers ...string) response {
	b.t.Helper()
	form := hidden(page.body)
	for k, v := range fields {
		form[k] = v
	}
	return b.post(action, form, headers...)
}

// caddyContext is a bare Caddy context for building configurations
// outside a running server.
func caddyContext(t *testing.T) caddy.Context {
	isolateData(t, t.TempDir())
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	t.Cleanup(cancel)
	return ctx
}

// isolateData gives the test a Caddy data directory of its own: the
// default store is a file there, and state one test leaves (sessions,
// counters) must not reach the next.
func isolateData(t *testing.T, dir string) {
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
}
