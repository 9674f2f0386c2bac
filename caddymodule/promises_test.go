package caddymodule

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The README's promises that no test proved before: each test here fails
// when the promise breaks.

// everyMethodGlobal has a tier of each self-enrolling method, so that every
// form endpoint of the module exists.
func everyMethodGlobal(t testing.TB) string {
	return `
	stepup {
		secret "` + testSecret + `"
		user alice {
			password "` + hashFor(t, "alice-pw") + `"
			totp_secret ` + aliceTOTP + `
		}
		user bob "` + hashFor(t, "bob-pw") + `"
		tier login {
			method password
			max_age 8h
		}
		tier sudo {
			base login
			method password
			max_age 30m
		}
		tier otp {
			base login
			method totp {
				enroll self
			}
			max_age 30m
		}
		tier key {
			base login
			method webauthn {
				enroll self
			}
			max_age 5m
		}
	}`
}

// TestEveryFormEndpointRefusesForgedRequests: each POST endpoint answers a
// missing, forged or cross-origin token with 403 and changes nothing.
func TestEveryFormEndpointRefusesForgedRequests(t *testing.T) {
	s := startCaddy(t, everyMethodGlobal(t), site)
	b := s.browser()
	b.login("sudo", "/", creds("alice", "alice-pw"), pw("alice-pw"))
	kept := b.do(http.MethodPost, "/transfer", url.Values{"amount": {"5"}})
	pending := mustURL(s.base + b.location(kept)).Query().Get("pending")
	b.get("/_stepup/")
	session := b.cookie("stepup_session").Value
	good := b.csrf
	forged := "AAAA" + good[4:]
	type attempt struct{ token, origin string }
	attempts := map[string]attempt{
		"missing token":       {"", ""},
		"forged token":        {forged, ""},
		"cross-origin":        {good, "https://evil.example"},
		"cross-scheme origin": {good, "https://" + strings.TrimPrefix(s.base, "http://")},
	}
	forms := []struct {
		path string
		form url.Values
	}{
		{"/_stepup/verify/sudo", url.Values{"password": {"alice-pw"}}},
		{"/_stepup/logout", url.Values{"tier": {"sudo"}}},
		{"/_stepup/resume/" + pending, url.Values{"action": {"send"}}},
		{"/_stepup/resume/" + pending, url.Values{"action": {"discard"}}},
		{"/_stepup/enroll/totp", url.Values{"step": {"otp"}, "code": {"123456"}}},
		{"/_stepup/webauthn/remove", url.Values{"step": {"key"}, "id": {"x"}}},
	}
	for _, f := range forms {
		for name, a := range attempts {
			form := url.Values{}
			for k, v := range f.form {
				form[k] = v
			}
			form.Set("csrf_token", a.token)
			headers := []string{}
			if a.origin != "" {
				headers = append(headers, "Origin", a.origin)
			}
			if r := b.do(http.MethodPost, f.path, form, headers...); r.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s with %s: %d, want 403", f.path, name, r.StatusCode)
			}
		}
	}
	// The JSON ceremonies carry the token in X-CSRF-Token.
	for _, path := range []string{"/_stepup/webauthn/key/begin", "/_stepup/webauthn/key/finish", "/_stepup/enroll/webauthn/begin?step=key", "/_stepup/enroll/webauthn/finish?step=key"} {
		for name, a := range attempts {
			headers := []string{"Content-Type", "application/json", "X-CSRF-Token", a.token}
			if a.origin != "" {
				headers = append(headers, "Origin", a.origin)
			}
			if r := b.do(http.MethodPost, path, nil, headers...); r.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s with %s: %d, want 403", path, name, r.StatusCode)
			}
		}
	}
	// Nothing changed: the same session, its tiers, the kept request.
	if c := b.cookie("stepup_session"); c == nil || c.Value != session {
		t.Fatal("a refused form changed the session cookie")
	}
	if r := b.get("/admin/x"); r.StatusCode != 200 || !strings.Contains(r.body, "tiers=login,sudo") {
		t.Fatalf("a refused form changed the tiers: %d %q", r.StatusCode, r.body)
	}
	if r := b.get("/_stepup/resume/" + pending); r.StatusCode != 200 {
		t.Fatalf("a refused form used up the kept request: %d", r.StatusCode)
	}
	for _, ev := range []string{"enroll", "replace", "remove", "replay", "logoff"} {
		if s.findAudit(ev, nil) != nil {
			t.Fatalf("a refused form was carried out: %s", ev)
		}
	}
}

// TestOldSessionIdDiesWhenTheStackShrinks: logging off at a tier and a
// lapse rotate the id; the previous cookie is worth nothing.
func TestOldSessionIdDiesWhenTheStackShrinks(t *testing.T) {
	s := startCaddy(t, global(t), site)
	replayCookie := func(c *http.Cookie, path string) int {
		req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
		req.Header.Set("Accept", "text/html")
		req.AddCookie(c)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	b := s.browser()
	b.login("sudo", "/", creds("alice", "alice-pw"), pw("alice-pw"))
	before := *b.cookie("stepup_session")
	b.get("/_stepup/")
	b.post("/_stepup/logout", url.Values{"tier": {"sudo"}})
	if b.cookie("stepup_session").Value == before.Value {
		t.Fatal("logging off at sudo kept the session id")
	}
	if got := replayCookie(&before, "/reports/x"); got != http.StatusSeeOther {
		t.Fatalf("the id from before the logoff still works: %d", got)
	}
	if r := b.get("/reports/x"); r.StatusCode != 200 {
		t.Fatalf("the new id: %d", r.StatusCode)
	}
	// A lapse: sudo's 30 minutes pass, and the next request drops it.
	b.login("sudo", "/", pw("alice-pw"))
	before = *b.cookie("stepup_session")
	s.clock.Advance(31 * time.Minute)
	if r := b.get("/reports/x"); r.StatusCode != 200 {
		t.Fatalf("login after sudo lapsed: %d", r.StatusCode)
	}
	if b.cookie("stepup_session").Value == before.Value {
		t.Fatal("the lapse kept the session id")
	}
	if got := replayCookie(&before, "/reports/x"); got != http.StatusSeeOther {
		t.Fatalf("the id from before the lapse still works: %d", got)
	}
}

// TestLifetimeEndsASessionInUse: lifetime is absolute, however busy.
func TestLifetimeEndsASessionInUse(t *testing.T) {
	g := globalWith(t, "\t\tsession {\n\t\t\tidle_timeout 30m\n\t\t\tlifetime 1h\n\t\t}")
	s := startCaddy(t, g, site)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	for i := 0; i < 2; i++ {
		s.clock.Advance(25 * time.Minute)
		if r := b.get("/reports/x"); r.StatusCode != 200 {
			t.Fatalf("within the lifetime: %d", r.StatusCode)
		}
	}
	s.clock.Advance(11 * time.Minute)
	if r := b.get("/reports/x"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("past the lifetime, in use: %d", r.StatusCode)
	}
}

// TestPerRequestGrantIsForThatMethodAndURLOnly: the step-up performed for
// GET /transfer?to=bob is no grant for another URL or another method.
func TestPerRequestGrantIsForThatMethodAndURLOnly(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	b.login("sudo", "/", creds("alice", "alice-pw"), pw("alice-pw"))
	page := b.get(b.location(b.get("/transfer?to=bob")))
	b.get(b.location(b.stepUp(page, pw("alice-pw"))))
	if r := b.get("/transfer?to=mallory"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("another URL passed on the grant: %d", r.StatusCode)
	}
	if r := b.do(http.MethodPost, "/transfer?to=bob", url.Values{"x": {"1"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("another method passed on the grant: %d", r.StatusCode)
	}
	if r := b.get("/transfer?to=bob"); r.StatusCode != 200 {
		t.Fatalf("the grant itself: %d", r.StatusCode)
	}
}

// TestMatcherErrorFailsTheRequest: a set whose matcher fails answers 500,
// never lets the request through.
func TestMatcherErrorFailsTheRequest(t *testing.T) {
	s := startCaddy(t, global(t), `
	stepup {
		transaction big {
			match {
				expression int({http.request.header.X-Amount}) > 1000
			}
			tier sudo
		}
	}
	respond "ok"`)
	b := s.browser()
	if r := b.get("/pay", "X-Amount", "5"); r.StatusCode != 200 {
		t.Fatalf("a small amount: %d", r.StatusCode)
	}
	r := b.get("/pay", "X-Amount", "lots")
	if r.StatusCode != http.StatusInternalServerError || strings.Contains(r.body, "ok") {
		t.Fatalf("a matcher error: %d %q", r.StatusCode, r.body)
	}
	if s.findAudit("denied", map[string]string{"reason": "matcher_error"}) == nil {
		t.Fatal("no audit record of the matcher error")
	}
}

// TestSecretsNeverReachTheLogs: passwords, codes, the enrolment secret and
// session ids appear in neither the audit log nor the access log.
func TestSecretsNeverReachTheLogs(t *testing.T) {
	s := startCaddy(t, selfTOTPGlobal(t), `
	log {
		output file {DIR}/access.log
		format json
	}
`+selfTOTPSite)
	b := s.browser()
	b.login("otp", "/", creds("alice", "alice-pw"), url.Values{"code": {oathtool(t, s.clock.Now(), "--totp", "-b", aliceTOTP)}})
	b.get("/admin/x")
	bob := s.browser()
	bob.login("login", "/", creds("bob", "bob-pw"))
	page := bob.get("/_stepup/enroll/totp?step=otp")
	secret := strings.ReplaceAll(findSub(`<code id="manual-key">([A-Z2-7 ]+)</code>`, page.body), " ", "")
	code := oathtool(t, s.clock.Now(), "--totp", "-b", secret)
	bob.stepUpForm(page, "/_stepup/enroll/totp", url.Values{"code": {code}})
	bob.get("/admin/x")
	secrets := map[string]string{
		"alice's password": "alice-pw", "bob's password": "bob-pw", "the enrolment code": code,
		"the enrolled secret": secret, "the provisioned secret": aliceTOTP, "the module secret": testSecret,
		"alice's session cookie": b.cookie("stepup_session").Value, "bob's session cookie": bob.cookie("stepup_session").Value,
		"the CSRF nonce": b.cookie("stepup_csrf").Value,
	}
	for _, name := range []string{"audit.log", "access.log"} {
		raw, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil || len(raw) == 0 {
			t.Fatalf("%s: %v (empty: %v)", name, err, len(raw) == 0)
		}
		for what, v := range secrets {
			if strings.Contains(string(raw), v) {
				t.Errorf("%s contains %s", name, what)
			}
		}
	}
}

// TestTOTPLockoutGrowsAndResetsWithinADay: each further lock within a day
// lasts twice as long; a day later the first lock is short again.
func TestTOTPLockoutGrowsAndResetsWithinADay(t *testing.T) {
	s := startCaddy(t, totpGlobal(t), totpSite)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	lock := func() string {
		t.Helper()
		page := b.get(b.location(b.get("/admin/x")))
		for i := 0; i < 3; i++ {
			page = b.stepUp(page, url.Values{"code": {"111111"}})
		}
		return findSub(`try again in (\d+ minutes?)`, page.body)
	}
	if got := lock(); got != "1 minute" {
		t.Fatalf("first lock: %q", got)
	}
	s.clock.Advance(2 * time.Minute)
	if got := lock(); got != "2 minutes" {
		t.Fatalf("second lock within a day: %q", got)
	}
	s.clock.Advance(25 * time.Hour)
	b.login("login", "/", creds("alice", "alice-pw"))
	if got := lock(); got != "1 minute" {
		t.Fatalf("first lock of a new day: %q", got)
	}
}

// TestWebAuthnAnswersAreRateLimited: failed security-key answers count like
// wrong passwords; past per_user (5) none is even checked.
func TestWebAuthnAnswersAreRateLimited(t *testing.T) {
	s := startCaddy(t, everyMethodGlobal(t), site)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	b.get("/_stepup/")
	finish := func() int {
		return b.do(http.MethodPost, "/_stepup/webauthn/key/finish", nil, "Content-Type", "application/json", "X-CSRF-Token", b.csrf).StatusCode
	}
	for i := 0; i < 5; i++ {
		if got := finish(); got != http.StatusUnauthorized {
			t.Fatalf("answer %d: %d, want 401", i+1, got)
		}
	}
	if got := finish(); got != http.StatusTooManyRequests {
		t.Fatalf("sixth answer: %d, want 429", got)
	}
	if s.findAudit("rate_limited", map[string]string{"tier": "key", "auth_method": "webauthn"}) == nil {
		t.Fatal("no audit record of the limit")
	}
}
