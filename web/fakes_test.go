package web

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/store"
	"github.com/caddy-stepup/caddy-stepup/tiers"
)

// codeMethod is a fake second factor (no real back end runs here): the
// code "right" is accepted, anything else rejected.
type codeMethod struct{}

func (codeMethod) Name() string     { return "fakecode" }
func (codeMethod) Identifies() bool { return false }
func (codeMethod) Prompt(string) stepup.Prompt {
	return stepup.Prompt{Title: "Code", Fields: []stepup.Field{{Name: "code", Label: "Code", Type: "text"}}, Submit: "Verify"}
}
func (codeMethod) Verify(_ context.Context, a *stepup.Attempt) (*stepup.Outcome, error) {
	if a.Form.Get("code") == "right" {
		return &stepup.Outcome{Result: stepup.Accepted, User: a.User}, nil
	}
	return &stepup.Outcome{Result: stepup.Rejected, Message: "Wrong code."}, nil
}

// fakeSite is a gateway over net/http alone: login (password) and code
// (the fake method), a set /code/ needing code, a set whose matcher fails.
type fakeSite struct {
	t   *testing.T
	srv *httptest.Server
	c   *http.Client
	e   *stepup.Engine
}

func newFakeSite(t *testing.T) *fakeSite {
	h, err := tiers.New([]tiers.Tier{
		{Name: "login", Method: "password", MaxAge: time.Hour},
		{Name: "code", Base: "login", Method: "fakecode", MaxAge: time.Hour},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := stepup.DeriveKeys([]byte("0123456789abcdef0123456789abcdef-web"))
	raw, _ := bcrypt.GenerateFromPassword([]byte("password"), bcrypt.MinCost)
	hash, _ := stepup.ParsePasswordHash(string(raw))
	e, err := stepup.NewEngine(stepup.EngineConfig{
		Hierarchy: h, Keys: keys, Store: store.NewMemory(0, nil), Limits: stepup.Limits{PerUser: 3, PerClient: 100, Window: time.Minute},
		Methods: map[string]stepup.Method{"login": stepup.NewPassword(map[string]*stepup.User{"alice": {Name: "alice", Hash: hash}}, true), "code": codeMethod{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	policy, err := stepup.NewPolicy(h, []stepup.TransactionSet{
		{Name: "code", Tier: "code", Match: func(r *http.Request) (bool, error) { return strings.HasPrefix(r.URL.Path, "/code/"), nil }},
		{Name: "broken", Tier: "login", Match: func(r *http.Request) (bool, error) {
			if r.URL.Path == "/broken" {
				return false, errors.New("matcher failed")
			}
			return false, nil
		}},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{Engine: e, Policy: policy}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.ServeHTTP(w, r, okNext{}); err != nil {
			var he *HTTPError
			if errors.As(err, &he) {
				http.Error(w, "error", he.Status)
				return
			}
			http.Error(w, "error", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	return &fakeSite{t: t, srv: srv, e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var fakeHidden = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

func (f *fakeSite) do(method, path string, form url.Values) (*http.Response, string) {
	f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, body)
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := f.c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// submit posts a page's form with extra fields.
func (f *fakeSite) submit(page string, extra url.Values) (*http.Response, string) {
	action := regexp.MustCompile(`<form method="post" action="([^"]+)"`).FindStringSubmatch(page)[1]
	form := url.Values{}
	for _, m := range fakeHidden.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], strings.ReplaceAll(m[2], "&amp;", "&"))
	}
	for k, v := range extra {
		form[k] = v
	}
	return f.do(http.MethodPost, strings.TrimPrefix(action, f.srv.URL), form)
}

func (f *fakeSite) cookie() string {
	u, _ := url.Parse(f.srv.URL)
	for _, c := range f.c.Jar.Cookies(u) {
		if c.Name == "stepup_session" {
			return c.Value
		}
	}
	return ""
}

// TestGatewayLimitsAFakeMethodsGuesses: wrong codes count, and past the
// limit no code is even verified, the right one included.
func TestGatewayLimitsAFakeMethodsGuesses(t *testing.T) {
	f := newFakeSite(t)
	_, page := f.do(http.MethodGet, "/_stepup/challenge?tier=code", nil)
	f.submit(page, url.Values{"username": {"alice"}, "password": {"password"}})
	_, page = f.do(http.MethodGet, "/_stepup/challenge?tier=code", nil)
	for i := 0; i < 3; i++ {
		resp, body := f.submit(page, url.Values{"code": {"wrong"}})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong code %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if resp, _ := f.submit(page, url.Values{"code": {"right"}}); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the right code past the limit: %d", resp.StatusCode)
	}
}

// TestGatewayMatcherErrorFailsClosed: a set whose matcher fails refuses
// the request rather than let it through.
func TestGatewayMatcherErrorFailsClosed(t *testing.T) {
	f := newFakeSite(t)
	if resp, body := f.do(http.MethodGet, "/broken", nil); resp.StatusCode != http.StatusInternalServerError || body == "upstream" {
		t.Fatalf("matcher error: %d %q", resp.StatusCode, body)
	}
	if resp, body := f.do(http.MethodGet, "/other", nil); resp.StatusCode != http.StatusOK || body != "upstream" {
		t.Fatalf("public: %d %q", resp.StatusCode, body)
	}
}

// TestGatewayRotatesTheIdWhenTheStackShrinks: logging off at a tier gives
// a new id, and the old one is worth nothing.
func TestGatewayRotatesTheIdWhenTheStackShrinks(t *testing.T) {
	f := newFakeSite(t)
	_, page := f.do(http.MethodGet, "/_stepup/challenge?tier=code", nil)
	f.submit(page, url.Values{"username": {"alice"}, "password": {"password"}})
	_, page = f.do(http.MethodGet, "/_stepup/challenge?tier=code", nil)
	f.submit(page, url.Values{"code": {"right"}})
	if resp, _ := f.do(http.MethodGet, "/code/x", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the code: %d", resp.StatusCode)
	}
	before := f.cookie()
	_, status := f.do(http.MethodGet, "/_stepup/", nil)
	token := regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`).FindStringSubmatch(status)[1]
	f.do(http.MethodPost, "/_stepup/logout", url.Values{"csrf_token": {token}, "tier": {"code"}})
	after := f.cookie()
	if after == before || after == "" {
		t.Fatal("logging off at a tier kept the session id, or ended the session")
	}
	if resp, _ := f.do(http.MethodGet, "/code/x", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("code still held after logging off at it: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/code/x", nil)
	req.Header.Set("Accept", "text/html")
	req.AddCookie(&http.Cookie{Name: "stepup_session", Value: before})
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the old id after the logoff: %d", resp.StatusCode)
	}
}

// TestARoundAnswersOnlyItsOwnStep: a challenge round kept for one tier is
// no round of another tier, even of the same method.
func TestARoundAnswersOnlyItsOwnStep(t *testing.T) {
	h, err := tiers.New([]tiers.Tier{
		{Name: "login", Method: "password", MaxAge: time.Hour},
		{Name: "a", Base: "login", Method: "tworounds", MaxAge: time.Hour},
		{Name: "b", Base: "login", Method: "tworounds", MaxAge: time.Hour},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := stepup.DeriveKeys([]byte("0123456789abcdef0123456789abcdef-web"))
	e, err := stepup.NewEngine(stepup.EngineConfig{Hierarchy: h, Keys: keys, Store: store.NewMemory(0, nil),
		Methods: map[string]stepup.Method{"login": stepup.NewPassword(map[string]*stepup.User{"alice": {Name: "alice"}}, true), "a": twoRounds{}, "b": twoRounds{}}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := e.Sessions.New()
	s.User = "alice"
	now := time.Now()
	s.Stack, _ = s.Stack.Push(h, tiers.Level{Tier: "login", Method: "password", At: now}, now)
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	if err := e.Sessions.Commit(httptest.NewRecorder(), r, s); err != nil {
		t.Fatal(err)
	}
	first, err := e.StepUp(httptest.NewRecorder(), r, s, stepup.Step{Tier: "a", Form: url.Values{"code": {"first"}}, Target: "a"})
	if err != nil || first.Kind != stepup.StepNextRound {
		t.Fatalf("first round at a: %+v %v", first, err)
	}
	other, err := e.StepUp(httptest.NewRecorder(), r, first.Session, stepup.Step{Tier: "b", Form: url.Values{"code": {"second"}}, Round: first.RoundID, Target: "b"})
	if err != nil || other.Kind != stepup.StepRoundExpired {
		t.Fatalf("a's round answered at b: %+v %v", other, err)
	}
}
