package web

import (
	"context"
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

// twoRounds is a test method shaped like RADIUS with Access-Challenge: the
// first answer "first" yields a challenge carrying server state, the second
// must be "second" together with that state. (A stand-in: the real RADIUS
// method has its own issue.)
type twoRounds struct{}

func (twoRounds) Name() string     { return "tworounds" }
func (twoRounds) Identifies() bool { return false }
func (twoRounds) Prompt(string) stepup.Prompt {
	return stepup.Prompt{Title: "Code", Fields: []stepup.Field{{Name: "code", Label: "Code", Type: "text"}}, Submit: "Verify"}
}
func (twoRounds) Verify(_ context.Context, a *stepup.Attempt) (*stepup.Outcome, error) {
	switch {
	case a.Round == nil && a.Form.Get("code") == "first":
		return &stepup.Outcome{Result: stepup.Challenged, Round: &stepup.Round{Prompt: "Enter <the> second code", State: []byte("s3cret-state")}}, nil
	case a.Round != nil && string(a.Round.State) == "s3cret-state" && a.Form.Get("code") == "second":
		return &stepup.Outcome{Result: stepup.Accepted, User: a.User, Credential: "token"}, nil
	}
	return &stepup.Outcome{Result: stepup.Rejected, Message: "Wrong code."}, nil
}

type okNext struct{}

func (okNext) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	_, err := io.WriteString(w, "upstream")
	return err
}

// TestMultiRoundMethodThroughTheGateway drives the gateway with net/http
// alone: a method that answers with a challenge gets a second round whose
// state stays server-side, is single-use, and completes the step-up.
func TestMultiRoundMethodThroughTheGateway(t *testing.T) {
	h, err := tiers.New([]tiers.Tier{
		{Name: "login", Method: "password", MaxAge: time.Hour},
		{Name: "token", Base: "login", Method: "tworounds", MaxAge: time.Hour},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := stepup.DeriveKeys([]byte("0123456789abcdef0123456789abcdef-web"))
	raw, _ := bcrypt.GenerateFromPassword([]byte("password"), bcrypt.MinCost)
	hash, _ := stepup.ParsePasswordHash(string(raw))
	users := map[string]*stepup.User{"alice": {Name: "alice", Hash: hash}}
	e, err := stepup.NewEngine(stepup.EngineConfig{
		Hierarchy: h, Keys: keys, Store: store.NewMemory(0, nil),
		Methods: map[string]stepup.Method{"login": stepup.NewPassword(users, true), "token": twoRounds{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	policy, err := stepup.NewPolicy(h, []stepup.TransactionSet{{Name: "t", Tier: "token",
		Match: func(r *http.Request) (bool, error) { return strings.HasPrefix(r.URL.Path, "/t/"), nil }}}, "")
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{Engine: e, Policy: policy}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.ServeHTTP(w, r, okNext{}); err != nil {
			http.Error(w, "error", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	fields := regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
	submit := func(page string, extra url.Values) (*http.Response, string) {
		action := regexp.MustCompile(`action="([^"]+)"`).FindStringSubmatch(page)[1]
		form := url.Values{}
		for _, m := range fields.FindAllStringSubmatch(page, -1) {
			form.Set(m[1], strings.ReplaceAll(m[2], "&amp;", "&"))
		}
		for k, v := range extra {
			form[k] = v
		}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+action, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	get := func(path string) string {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Accept", "text/html")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}

	page := get("/t/x")
	_, page = submit(page, url.Values{"username": {"alice"}, "password": {"password"}})
	if !strings.Contains(page, "Step 2 of 2: Code") {
		t.Fatalf("second step: %s", page)
	}
	resp, round := submit(page, url.Values{"code": {"first"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(round, "Enter &lt;the&gt; second code") {
		t.Fatalf("challenge round: %d %s", resp.StatusCode, round)
	}
	if strings.Contains(round, "s3cret-state") {
		t.Fatal("the method's state reached the browser")
	}
	// A forged round id is refused, and so is reusing one.
	forged := strings.Replace(round, `name="state" value="`, `name="state" value="x`, 1)
	if resp, body := submit(forged, url.Values{"code": {"second"}}); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Fatalf("forged round: %d %s", resp.StatusCode, body)
	}
	resp, body := submit(round, url.Values{"code": {"second"}})
	if resp.StatusCode != 200 || body != "upstream" {
		t.Fatalf("after the second round: %d %q", resp.StatusCode, body)
	}
	if resp, _ := submit(round, url.Values{"code": {"second"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a round was used twice: %d", resp.StatusCode)
	}
}
