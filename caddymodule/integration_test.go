package caddymodule

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testSecret = "test-secret-0123456789abcdef0123456789abcdef"

// global is the shared configuration most tests use: a three-level chain of
// password tiers (login -> sudo -> key), so that the tier logic is exercised
// through the real module with the methods this issue delivers.
func global(t testing.TB) string {
	return `
	stepup {
		secret "` + testSecret + `"
		user alice {
			password "` + hashFor(t, "alice-pw") + `"
			roles admin ops
		}
		user bob {
			password "` + hashFor(t, "bob-pw") + `"
		}
		tier login {
			method password
			max_age 8h
		}
		tier sudo {
			base login
			method password
			max_age 30m
		}
		tier key {
			base sudo
			method password
			max_age 5m
			acr urn:example:key
		}
		limits {
			per_user 3
			per_client 10
			window 15m
		}
	}`
}

const site = `
	stepup {
		transaction reports {
			match {
				path /reports/*
			}
			tier login
		}
		transaction admin {
			match {
				path /admin/*
			}
			tier sudo
			risk high
		}
		transaction fresh {
			match {
				path /admin/fresh/*
			}
			tier sudo
			max_age 1m
		}
		transaction vault {
			match {
				path /vault/*
			}
			tier key
		}
		transaction transfer {
			match {
				path /transfer
			}
			tier sudo
			max_age 0
		}
	}
	respond "ok user={http.stepup.user} tier={http.stepup.tier} tiers={http.stepup.tiers} roles={http.stepup.roles} xhdr={http.request.header.X-Stepup-User} method={http.request.method} ct={http.request.header.Content-Type} body={http.request.body}"
`

func TestPublicRequestPassesAndClientStepupHeadersAreStripped(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	r := b.get("/hello", "X-Stepup-User", "mallory", "X-STEPUP-Tiers", "key")
	if r.StatusCode != 200 || !strings.HasPrefix(r.body, "ok user= ") {
		t.Fatalf("public request: %d %q", r.StatusCode, r.body)
	}
	if !strings.Contains(r.body, "xhdr= ") {
		t.Fatalf("client-sent X-Stepup-User reached the upstream: %q", r.body)
	}
}

func TestBrowserNavigationIsRedirectedToTheChallenge(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	r := b.get("/reports/q1?year=2026")
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("status %d, want 303", r.StatusCode)
	}
	want := "/_stepup/challenge?" + url.Values{"tier": {"login"}, "return": {"/reports/q1?year=2026"}}.Encode()
	if got := b.location(r); got != want {
		t.Fatalf("Location %q, want %q", got, want)
	}
	page := b.get(want)
	for _, s := range []string{"<h1>Sign in</h1>", `name="username"`, `name="password"`, `name="csrf_token"`, `<meta name="csrf-token"`} {
		if !strings.Contains(page.body, s) {
			t.Errorf("challenge page lacks %q", s)
		}
	}
	h := page.Header
	if h.Get("Cache-Control") != "no-store" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
		strings.Contains(h.Get("Content-Security-Policy"), "unsafe-inline") || h.Get("Referrer-Policy") != "same-origin" {
		t.Fatalf("security headers missing: %v", h)
	}
	if s.findAudit("denied", map[string]string{"set": "reports", "tier": "login", "path": "/reports/q1"}) == nil {
		t.Fatalf("no audit record for the denial: %v", s.auditRecords())
	}
}

func TestAPIRequestGetsMachineReadableChallenge(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	for _, headers := range [][]string{
		{"Accept", "application/json"},
		{"Accept", "text/html", "X-Requested-With", "XMLHttpRequest"},
	} {
		r := b.get("/vault/secret", headers...)
		if r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", r.StatusCode)
		}
		stepURI := "/_stepup/challenge?" + url.Values{"tier": {"key"}, "return": {"/vault/secret"}}.Encode()
		want := `StepUp error="insufficient_user_authentication", tier="key", acr_values="urn:example:key", max_age=300, step_up_uri="` + stepURI + `"`
		if got := r.Header.Get("WWW-Authenticate"); got != want {
			t.Fatalf("WWW-Authenticate\n got %s\nwant %s", got, want)
		}
		var body map[string]any
		if err := json.Unmarshal([]byte(r.body), &body); err != nil {
			t.Fatalf("body not JSON: %q", r.body)
		}
		if body["error"] != "insufficient_user_authentication" || body["tier"] != "key" || body["max_age"] != 300.0 || body["step_up_uri"] != stepURI || body["acr_values"] != "urn:example:key" {
			t.Fatalf("JSON body %v", body)
		}
	}
}

func TestLoginRotatesSessionAndSetsPlaceholders(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	page := b.get(b.location(b.get("/reports/q1")))
	bad := b.stepUp(page, creds("alice", "wrong"))
	if bad.StatusCode != http.StatusUnauthorized || !strings.Contains(bad.body, "user name or password is not correct") {
		t.Fatalf("wrong password: %d %s", bad.StatusCode, bad.body)
	}
	if b.cookie("stepup_session") != nil {
		t.Fatal("a failed login created a session")
	}
	r := b.follow(b.stepUp(bad, creds("alice", "alice-pw")))
	if r.StatusCode != 200 || !strings.Contains(r.body, "user=alice tier=login tiers=login roles=admin,ops") {
		t.Fatalf("after login: %d %q", r.StatusCode, r.body)
	}
	first := b.cookie("stepup_session")
	if first == nil {
		t.Fatal("no session cookie")
	}
	// The cookie attributes as the browser received them.
	raw := b.do(http.MethodGet, "/_stepup/challenge?tier=sudo", nil)
	r = b.stepUp(raw, pw("alice-pw"))
	setCookie := strings.Join(r.Header.Values("Set-Cookie"), "\n")
	if !strings.Contains(setCookie, "stepup_session=") || !strings.Contains(setCookie, "HttpOnly") || !strings.Contains(setCookie, "SameSite=Lax") {
		t.Fatalf("session cookie attributes: %s", setCookie)
	}
	second := b.cookie("stepup_session")
	if second.Value == first.Value {
		t.Fatal("session id did not rotate when the stack grew")
	}
	// The old id is dead.
	old := s.browser()
	old.client.Jar.SetCookies(mustURL(s.base), []*http.Cookie{{Name: "stepup_session", Value: first.Value}})
	if r := old.get("/reports/q1"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("old session id still works: %d", r.StatusCode)
	}
	if rec := s.findAudit("stepup", map[string]string{"user": "alice", "tier": "sudo", "result": "success"}); rec == nil {
		t.Fatalf("no audit record of the step-up")
	}
	for _, rec := range s.auditRecords() {
		line, _ := json.Marshal(rec)
		if strings.Contains(string(line), "alice-pw") || strings.Contains(string(line), "wrong") {
			t.Fatalf("audit record leaks a password: %s", line)
		}
	}
}

func TestChallengeWalksTheWholeChainOneStepPerPage(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	r := b.get(b.location(b.get("/vault/x")))
	if !strings.Contains(r.body, "Step 1 of 3") {
		t.Fatalf("first page: %s", r.body)
	}
	r = b.follow(b.stepUp(r, creds("alice", "alice-pw")))
	if !strings.Contains(r.body, "Step 2 of 3: Password (sudo)") {
		t.Fatalf("second page: %s", r.body)
	}
	r = b.follow(b.stepUp(r, pw("alice-pw")))
	if !strings.Contains(r.body, "Step 3 of 3: Password (key)") {
		t.Fatalf("third page: %s", r.body)
	}
	r = b.follow(b.stepUp(r, pw("alice-pw")))
	if r.StatusCode != 200 || !strings.Contains(r.body, "tier=key tiers=login,sudo,key") {
		t.Fatalf("protected page: %d %q", r.StatusCode, r.body)
	}
}

func TestStepUpAboveAnUnheldBaseIsRefused(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	b.login("login", "/", creds("bob", "bob-pw"))
	b.get("/_stepup/challenge?tier=key") // for the CSRF token
	// Post straight to the key step while only login is held.
	r := b.post("/_stepup/verify/key", url.Values{"target": {"key"}, "password": {"bob-pw"}, "csrf_token": {b.csrf}})
	if r.StatusCode != http.StatusSeeOther || !strings.Contains(b.location(r), "/_stepup/challenge") {
		t.Fatalf("out-of-order step: %d %s", r.StatusCode, r.body)
	}
	if page := b.follow(r); !strings.Contains(page.body, "Step 2 of 3: Password (sudo)") {
		t.Fatalf("challenge did not resume at sudo: %s", page.body)
	}
	if got := b.get("/vault/x"); got.StatusCode != http.StatusSeeOther {
		t.Fatalf("vault reachable without key: %d", got.StatusCode)
	}
}

func TestKeptFormPostIsReplayedWithItsBodyAfterStepUp(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	form := url.Values{"name": {"carol"}, "role": {"editor & more"}}
	r := b.do(http.MethodPost, "/admin/users?x=1", form, "Referer", s.base+"/admin/list")
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST without tier: %d %s", r.StatusCode, r.body)
	}
	loc := b.location(r)
	q := mustURL(s.base + loc).Query()
	if q.Get("tier") != "sudo" || q.Get("pending") == "" || q.Get("return") != "/admin/list" {
		t.Fatalf("challenge URL %s", loc)
	}
	page := b.get(loc)
	page = b.follow(b.stepUp(page, creds("alice", "alice-pw")))
	r = b.stepUp(page, pw("alice-pw"))
	wantNext := "/_stepup/challenge?" + url.Values{"pending": {q.Get("pending")}, "return": {"/admin/list"}, "tier": {"sudo"}}.Encode()
	if got := b.location(r); got != wantNext {
		t.Fatalf("after sudo: %s", got)
	}
	confirm := b.follow(r)
	if !strings.Contains(confirm.body, "POST /admin/users?x=1") || !strings.Contains(confirm.body, `value="send"`) {
		t.Fatalf("confirmation page: %s", confirm.body)
	}
	action := "/_stepup/resume/" + q.Get("pending")
	done := b.post(action, url.Values{"action": {"send"}})
	want := "method=POST ct=application/x-www-form-urlencoded body=" + form.Encode()
	if done.StatusCode != 200 || !strings.Contains(done.body, want) || !strings.Contains(done.body, "user=alice") {
		t.Fatalf("replayed request: %d %q, want %q", done.StatusCode, done.body, want)
	}
	if again := b.post(action, url.Values{"action": {"send"}}); again.StatusCode != http.StatusGone {
		t.Fatalf("second replay: %d", again.StatusCode)
	}
	if s.findAudit("replay", map[string]string{"result": "replayed", "set": "admin"}) == nil {
		t.Fatal("no audit record of the replay")
	}
}

func TestKeptRequestsAreBoundedAndOversizedBodiesRefused(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	big := url.Values{"blob": {strings.Repeat("x", 70<<10)}}
	r := b.do(http.MethodPost, "/admin/upload", big)
	if r.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(r.body, "too large to hold") {
		t.Fatalf("oversized body: %d %s", r.StatusCode, r.body)
	}
	for i := 0; i < 5; i++ {
		if r := b.do(http.MethodPost, "/admin/x", url.Values{"i": {"1"}}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("kept request %d: %d", i, r.StatusCode)
		}
	}
	if r := b.do(http.MethodPost, "/admin/x", url.Values{"i": {"1"}}); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("sixth kept request: %d", r.StatusCode)
	}
}

func TestPerSetMaxAgeRequiresAFresherStepUp(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	b.login("sudo", "/", creds("alice", "alice-pw"), pw("alice-pw"))
	if r := b.get("/admin/fresh/x"); r.StatusCode != 200 {
		t.Fatalf("fresh sudo: %d", r.StatusCode)
	}
	s.clock.Advance(2 * time.Minute)
	if r := b.get("/admin/other"); r.StatusCode != 200 {
		t.Fatalf("sudo within its own max age: %d", r.StatusCode)
	}
	r := b.get("/admin/fresh/x")
	loc := b.location(r)
	if !strings.Contains(loc, "max_age=60") {
		t.Fatalf("stricter set did not ask for a fresher step-up: %s", loc)
	}
	page := b.get(loc)
	if !strings.Contains(page.body, "Step 2 of 2: Password (sudo)") {
		t.Fatalf("re-authentication at sudo not asked: %s", page.body)
	}
	if r := b.follow(b.stepUp(page, pw("alice-pw"))); r.StatusCode != 200 || !strings.Contains(r.body, "tiers=login,sudo") {
		t.Fatalf("after fresh step-up: %d %q", r.StatusCode, r.body)
	}
}

func TestMaxAgeZeroNeedsAStepUpForEachRequest(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	b.login("sudo", "/", creds("alice", "alice-pw"), pw("alice-pw"))
	r := b.get("/transfer?to=bob")
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("per-request set passed without a step-up: %d %s", r.StatusCode, r.body)
	}
	page := b.get(b.location(r))
	if !strings.Contains(page.body, "Step 2 of 2: Password (sudo)") {
		t.Fatalf("sudo held, but a new step-up must be asked: %s", page.body)
	}
	r = b.stepUp(page, pw("alice-pw"))
	r = b.get(b.location(r)) // challenge: done, grant, redirect
	if got := b.location(r); got != "/transfer?to=bob" {
		t.Fatalf("after step-up: %s", got)
	}
	if r := b.get("/transfer?to=bob"); r.StatusCode != 200 {
		t.Fatalf("the step-up was for this request: %d", r.StatusCode)
	}
	if r := b.get("/transfer?to=bob"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("the grant was reused: %d", r.StatusCode)
	}
	// A form POST: replayed once after the step-up performed for it.
	r = b.do(http.MethodPost, "/transfer", url.Values{"amount": {"100"}})
	page = b.get(b.location(r))
	confirm := b.follow(b.stepUp(page, pw("alice-pw")))
	id := findSub(`/_stepup/resume/([A-Za-z0-9_-]+)`, confirm.body)
	if done := b.post("/_stepup/resume/"+id, url.Values{"action": {"send"}}); done.StatusCode != 200 || !strings.Contains(done.body, "body=amount=100") {
		t.Fatalf("per-request replay: %d %q", done.StatusCode, done.body)
	}
}

func TestCascadeLogoff(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	b.login("key", "/", creds("alice", "alice-pw"), pw("alice-pw"), pw("alice-pw"))
	status := b.get("/_stepup/")
	for _, tier := range []string{"login", "sudo", "key"} {
		if !strings.Contains(status.body, `<input type="hidden" name="tier" value="`+tier+`">`) {
			t.Fatalf("status page lacks logoff for %s: %s", tier, status.body)
		}
	}
	// Log off at the middle level: it and the level above close.
	r := b.post("/_stepup/logout", url.Values{"tier": {"sudo"}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", r.StatusCode, r.body)
	}
	if r := b.get("/reports/x"); r.StatusCode != 200 || !strings.Contains(r.body, "tiers=login ") {
		t.Fatalf("after logoff at sudo: %d %q", r.StatusCode, r.body)
	}
	if r := b.get("/admin/x"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("sudo still held: %d", r.StatusCode)
	}
	if rec := s.findAudit("logoff", map[string]string{"tier": "sudo", "user": "alice"}); rec == nil || rec["tiers"] != "sudo,key" {
		t.Fatalf("logoff audit: %v", rec)
	}
	// Log off at the root: the session ends.
	b.get("/_stepup/")
	b.post("/_stepup/logout", url.Values{"tier": {"login"}})
	if r := b.get("/reports/x"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("session survived logoff at the root: %d", r.StatusCode)
	}
	if st := b.get("/_stepup/"); !strings.Contains(st.body, "You are not signed in") {
		t.Fatalf("status after root logoff: %s", st.body)
	}
}

func TestLevelsLapseAtMaxAgeInACascade(t *testing.T) {
	// Idle timeout and lifetime beyond login's max age, so that only the
	// lapse can end the login level.
	g := strings.Replace(global(t), "\t\tlimits {", `		session {
			idle_timeout 24h
			lifetime 24h
		}
		limits {`, 1)
	s := startCaddy(t, g, site)
	b := s.browser()
	b.login("key", "/", creds("alice", "alice-pw"), pw("alice-pw"), pw("alice-pw"))
	s.clock.Advance(5*time.Minute + time.Second)
	if r := b.get("/vault/x"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("key outlived its max age: %d", r.StatusCode)
	}
	if r := b.get("/admin/x"); r.StatusCode != 200 {
		t.Fatalf("sudo lapsed too early: %d", r.StatusCode)
	}
	if s.findAudit("lapse", map[string]string{"tier": "key", "reason": "lapsed"}) == nil {
		t.Fatal("no lapse audit record")
	}
	s.clock.Advance(8 * time.Hour)
	r := b.get("/reports/x")
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login outlived its max age: %d", r.StatusCode)
	}
	if s.findAudit("lapse", map[string]string{"tier": "login", "reason": "lapsed", "user": "alice"}) == nil {
		t.Fatal("no lapse audit record for login")
	}
	if st := b.get("/_stepup/"); !strings.Contains(st.body, "You are not signed in") {
		t.Fatalf("status after the root lapsed: %s", st.body)
	}
}

func TestIdleSessionEnds(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	b.login("login", "/", creds("bob", "bob-pw"))
	s.clock.Advance(50 * time.Minute)
	if r := b.get("/reports/x"); r.StatusCode != 200 {
		t.Fatalf("used session ended: %d", r.StatusCode)
	}
	s.clock.Advance(61 * time.Minute)
	if r := b.get("/reports/x"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("idle session still valid: %d", r.StatusCode)
	}
}

func TestReloadKeepsSessionsAndRefusesRemovingABaseTier(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	b.login("key", "/", creds("alice", "alice-pw"), pw("alice-pw"), pw("alice-pw"))

	if err := s.load(global(t), site); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if r := b.get("/vault/x"); r.StatusCode != 200 {
		t.Fatalf("session lost on reload: %d", r.StatusCode)
	}

	removed := strings.Replace(global(t), `tier sudo {
			base login
			method password
			max_age 30m
		}`, "", 1)
	err := s.load(removed, strings.Replace(site, "tier sudo", "tier login", -1))
	if err == nil || !strings.Contains(err.Error(), "cannot remove tier sudo: it is the base of key") {
		t.Fatalf("reload removing a base tier: %v", err)
	}
	if r := b.get("/vault/x"); r.StatusCode != 200 {
		t.Fatalf("failed reload disturbed the running config: %d", r.StatusCode)
	}

	// Re-parent key onto login: the level no longer counts.
	reparented := strings.Replace(global(t), "base sudo", "base login", 1)
	if err := s.load(reparented, site); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if r := b.get("/vault/x"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("re-parented level still counts: %d %s", r.StatusCode, r.body)
	}
	if r := b.get("/admin/x"); r.StatusCode != 200 {
		t.Fatalf("unrelated level dropped: %d", r.StatusCode)
	}
	if s.findAudit("lapse", map[string]string{"tier": "key", "reason": "tier_reparented"}) == nil {
		t.Fatal("no audit record for the re-parented level")
	}
}

func TestFormsNeedAValidCSRFToken(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	page := b.get("/_stepup/challenge?tier=login")
	form := hidden(page.body)
	form.Set("username", "alice")
	form.Set("password", "alice-pw")
	tests := []struct {
		name    string
		token   string
		headers []string
	}{
		{"missing token", "", nil},
		{"forged token", "AAAA" + b.csrf[4:], nil},
		{"cross-origin", b.csrf, []string{"Origin", "https://evil.example"}},
	}
	for _, tt := range tests {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		f.Set("csrf_token", tt.token)
		r := b.do(http.MethodPost, "/_stepup/verify/login", f, tt.headers...)
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tt.name, r.StatusCode)
		}
	}
	if b.cookie("stepup_session") != nil {
		t.Fatal("a forged form created a session")
	}
	// Another browser's token is not valid for this one.
	other := s.browser()
	other.get("/_stepup/challenge?tier=login")
	f := url.Values{"csrf_token": {other.csrf}, "target": {"login"}, "username": {"alice"}, "password": {"alice-pw"}}
	if r := b.do(http.MethodPost, "/_stepup/verify/login", f); r.StatusCode != http.StatusForbidden {
		t.Fatalf("token of another browser accepted: %d", r.StatusCode)
	}
}

func TestHostileReturnURLsAreNotFollowed(t *testing.T) {
	s := startCaddy(t, global(t), site)
	for _, hostile := range []string{"//evil.example/", "https://evil.example/", `/\evil.example`, "/%2F%2Fevil.example", "javascript:alert(1)", "/_stepup/logout"} {
		b := s.browser()
		r := b.get("/_stepup/challenge?" + url.Values{"tier": {"login"}, "return": {hostile}}.Encode())
		r = b.stepUp(r, creds("alice", "alice-pw"))
		r = b.get(b.location(r))
		if got := b.location(r); got != "/" {
			t.Errorf("return %q led to %q", hostile, got)
		}
	}
}

func TestFailedPasswordsAreRateLimitedPerUser(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	page := b.get("/_stepup/challenge?tier=login")
	for i := 0; i < 3; i++ {
		page = b.stepUp(page, creds("alice", "nope"))
		if page.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, page.StatusCode)
		}
	}
	r := b.stepUp(page, creds("alice", "alice-pw"))
	if r.StatusCode != http.StatusTooManyRequests || !strings.Contains(r.body, "Too many failed attempts") {
		t.Fatalf("fourth attempt with the right password: %d %s", r.StatusCode, r.body)
	}
	if s.findAudit("rate_limited", map[string]string{"user": "alice", "tier": "login"}) == nil {
		t.Fatal("no audit record for the lockout")
	}
	// Another user from the same client is not locked out yet.
	if r := b.stepUp(r, creds("bob", "bob-pw")); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("bob locked out by alice's failures: %d", r.StatusCode)
	}
	// After the window the user may try again.
	s.clock.Advance(16 * time.Minute)
	b2 := s.browser()
	if r := b2.login("login", "/reports/x", creds("alice", "alice-pw")); r.StatusCode != 200 {
		t.Fatalf("after the window: %d", r.StatusCode)
	}
}

func TestFailedAttemptsAreRateLimitedPerClient(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	page := b.get("/_stepup/challenge?tier=login")
	for i := 0; i < 10; i++ {
		page = b.stepUp(page, creds("user"+string(rune('a'+i)), "guess"))
		if page.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, page.StatusCode)
		}
	}
	page = b.stepUp(page, creds("alice", "alice-pw"))
	if page.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("eleventh attempt from one client: %d", page.StatusCode)
	}
}

func TestExternalIdentityFromBasicAuth(t *testing.T) {
	g := `
	stepup {
		secret "` + testSecret + `"
		user alice {
			password "` + hashFor(t, "alice-pw") + `"
		}
		tier sso {
			method external {
				user {http.auth.user.id}
				roles {http.request.header.X-Groups}
			}
			max_age 1h
		}
		tier sudo {
			base sso
			method password
			max_age 10m
		}
	}`
	st := `
	basic_auth {
		alice "` + hashFor(t, "alice-basic") + `"
		bob "` + hashFor(t, "bob-basic") + `"
	}
	stepup {
		default sso
		transaction admin {
			match {
				path /admin/*
			}
			tier sudo
		}
	}
	respond "ok user={http.stepup.user} tiers={http.stepup.tiers} roles={http.stepup.roles}"
`
	s := startCaddy(t, g, st)
	b := s.browser()
	r := b.get("/home", "Authorization", basic("alice", "alice-basic"), "X-Groups", "ops, dev")
	if r.StatusCode != 200 || !strings.Contains(r.body, "user=alice tiers=sso roles=ops,dev") {
		t.Fatalf("external identity: %d %q", r.StatusCode, r.body)
	}
	page := b.get(b.location(b.get("/admin/x", "Authorization", basic("alice", "alice-basic"))), "Authorization", basic("alice", "alice-basic"))
	if !strings.Contains(page.body, "Step 2 of 2: Password") {
		t.Fatalf("sudo step: %s", page.body)
	}
	form := hidden(page.body)
	form.Set("password", "alice-pw")
	b.post("/_stepup/verify/sudo", form, "Authorization", basic("alice", "alice-basic"))
	if r := b.get("/admin/x", "Authorization", basic("alice", "alice-basic")); r.StatusCode != 200 || !strings.Contains(r.body, "tiers=sso,sudo") {
		t.Fatalf("after sudo: %d %q", r.StatusCode, r.body)
	}
	// Same cookie, another identity: nothing carries over.
	if r := b.get("/admin/x", "Authorization", basic("bob", "bob-basic")); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("bob inherited alice's sudo: %d %q", r.StatusCode, r.body)
	}
	if s.findAudit("identity_change", map[string]string{"user": "alice"}) == nil {
		t.Fatal("no audit record for the identity change")
	}
}

func TestConfigErrorsNameTheirCause(t *testing.T) {
	s := startCaddy(t, global(t), site)
	tier := func(name, rest string) string {
		return "tier " + name + " {\n" + rest + "\n}\n"
	}
	base := "secret \"" + testSecret + "\"\nuser alice \"" + hashFor(t, "x") + "\"\n" + tier("login", "method password\nmax_age 1h")
	tests := []struct {
		name, global, site, want string
	}{
		{"unknown base", base + tier("otp", "base nope\nmethod password\nmax_age 1m"), "", `tier "otp": unknown base tier "nope"`},
		{"cycle", base + tier("a", "base b\nmethod password\nmax_age 1m") + tier("b", "base a\nmethod password\nmax_age 1m"), "", "base cycle"},
		{"duplicate tier", base + tier("login", "method password\nmax_age 1m"), "", `tier "login": defined more than once`},
		{"unknown method", base + tier("otp", "base login\nmethod carrier-pigeon\nmax_age 1m"), "", `tier "otp": unknown method "carrier-pigeon"`},
		{"missing max_age", base + tier("otp", "base login\nmethod password"), "", `tier "otp": missing max_age`},
		{"root with non-identifying method", "secret \"" + testSecret + "\"\nuser alice \"" + hashFor(t, "x") + "\"\n" + tier("a", "method external\nmax_age 1m") + tier("b", "base a\nmethod external\nmax_age 1m"), "", `tier "b": method external identifies a user`},
		{"unknown tier in set", base, "stepup {\ntransaction t {\nmatch {\npath /x\n}\ntier nope\n}\n}\nrespond ok", `transaction set "t": unknown tier "nope"`},
		{"unknown default", base, "stepup {\ndefault nope\n}\nrespond ok", `default: unknown tier "nope"`},
		{"set without match", base, "stepup {\ntransaction t {\ntier login\n}\n}\nrespond ok", `transaction set "t": missing match block`},
		{"unknown subdirective names line", base, "stepup {\nbogus 1\n}\nrespond ok", `unknown subdirective "bogus"`},
		{"bad hash", "secret \"" + testSecret + "\"\nuser alice nothash\n" + tier("login", "method password\nmax_age 1h"), "", `user "alice": unsupported password hash`},
		{"short secret", "secret short\nuser alice \"" + hashFor(t, "x") + "\"\n" + tier("login", "method password\nmax_age 1h"), "", "secret: must be at least 32 bytes"},
		{"bad prefix", base + "prefix stepup/", "", `prefix "stepup/": want a path`},
		{"duplicate set", base, "stepup {\ntransaction t {\nmatch {\npath /x\n}\ntier login\n}\ntransaction t {\nmatch {\npath /y\n}\ntier login\n}\n}\nrespond ok", `transaction set "t": defined more than once`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			siteBlock := tt.site
			if siteBlock == "" {
				siteBlock = "stepup\nrespond ok"
			}
			err := s.load("stepup {\n"+tt.global+"\n}", siteBlock)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, tt.want)
			}
		})
	}
	// The line of a Caddyfile error is named.
	err := s.load(global(t), "stepup {\n\ttransaction t {\n\t\tbogus\n\t}\n}\nrespond ok")
	if err == nil || !strings.Contains(err.Error(), "Caddyfile:") {
		t.Fatalf("error without line: %v", err)
	}
	// The running configuration is untouched by the failures.
	if r := s.browser().get("/reports/x"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("running config disturbed: %d", r.StatusCode)
	}
}

func TestSingleSiteConfigWithInlineTiers(t *testing.T) {
	inline := `
	stepup {
		secret "` + testSecret + `"
		user alice "` + hashFor(t, "alice-pw") + `"
		tier login {
			method password
			max_age 1h
		}
		default login
	}
	respond "ok user={http.stepup.user}"
`
	s := startCaddy(t, "", inline)
	b := s.browser()
	if r := b.get("/anything"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("default login not enforced: %d", r.StatusCode)
	}
	if r := b.login("login", "/anything", creds("alice", "alice-pw")); r.StatusCode != 200 || !strings.Contains(r.body, "user=alice") {
		t.Fatalf("inline login: %d %q", r.StatusCode, r.body)
	}
}

func TestJSONConfigIsEquivalent(t *testing.T) {
	s := startCaddy(t, global(t), site)
	cfg, _, err := adaptCaddyfile(s.caddyfile(global(t), site))
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Apps struct {
			Stepup App `json:"stepup"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &parsed); err != nil {
		t.Fatal(err)
	}
	app := parsed.Apps.Stepup
	if len(app.Tiers) != 3 || app.Tiers[2].Name != "key" || app.Tiers[2].Base != "sudo" || app.Tiers[2].ACR != "urn:example:key" ||
		time.Duration(app.Tiers[2].MaxAge) != 5*time.Minute || app.Users["alice"].Roles[1] != "ops" || app.Limits.PerUser != 3 {
		t.Fatalf("adapted app config: %+v", app)
	}
	if string(app.Tiers[1].MethodRaw) != `{"method":"password"}` {
		t.Fatalf("a tier's method in JSON: %s", app.Tiers[1].MethodRaw)
	}
	if !strings.Contains(string(cfg), `"handler":"stepup","transactions":[{"match":[{"path":["/reports/*"]}],"name":"reports","tier":"login"}`) ||
		!strings.Contains(string(cfg), `"max_age":0,"name":"transfer"`) {
		t.Fatalf("adapted handler config: %s", cfg)
	}
	// Loading the JSON directly behaves like the Caddyfile.
	if err := loadJSON(cfg); err != nil {
		t.Fatal(err)
	}
	if r := s.browser().get("/reports/x"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("JSON config: %d", r.StatusCode)
	}
}

func TestCustomPrefix(t *testing.T) {
	g := strings.Replace(global(t), "stepup {", "stepup {\n\t\tprefix /auth", 1)
	s := startCaddy(t, g, site)
	b := s.browser()
	r := b.get("/reports/x")
	if loc := b.location(r); !strings.HasPrefix(loc, "/auth/challenge?") {
		t.Fatalf("challenge not under the prefix: %s", loc)
	}
	if r := b.get("/_stepup/"); r.StatusCode != 200 || !strings.HasPrefix(r.body, "ok ") {
		t.Fatalf("the default prefix is still served by the module: %d %q", r.StatusCode, r.body)
	}
	page := b.get(b.location(r))
	if !strings.Contains(page.body, `action="/auth/verify/login"`) || !strings.Contains(page.body, `href="/auth/assets/style.css"`) {
		t.Fatalf("page links outside the prefix: %s", page.body)
	}
	if css := b.get("/auth/assets/style.css"); css.StatusCode != 200 || !strings.HasPrefix(css.Header.Get("Content-Type"), "text/css") {
		t.Fatalf("stylesheet: %d %s", css.StatusCode, css.Header.Get("Content-Type"))
	}
}

func TestHTTPSCookiesUseTheHostPrefix(t *testing.T) {
	s := startCaddy(t, global(t), site)
	httpsPort := freePort(t)
	raw := strings.NewReplacer("{DIR}", s.dir, "{HTTPS}", fmt.Sprint(httpsPort), "{HTTP}", fmt.Sprint(freePort(t))).Replace(`{
	admin off
	default_bind 127.0.0.1
	storage file_system {DIR}/storage
	skip_install_trust
	http_port {HTTP}
	https_port {HTTPS}
` + global(t) + `
}
https://localhost:{HTTPS} {
	tls internal
` + site + `
}
`)
	cfg, _, err := adaptCaddyfile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := loadJSON(cfg); err != nil {
		t.Fatal(err)
	}
	b := s.browser()
	b.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the internal CA is not trusted here
	base := fmt.Sprintf("https://localhost:%d", httpsPort)
	// The internal CA issues the site's certificate in the background.
	for deadline := time.Now().Add(15 * time.Second); ; {
		resp, err := b.client.Get(base + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HTTPS site never came up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	page := b.get(base + "/_stepup/challenge?tier=login")
	if page.StatusCode != 200 {
		t.Fatalf("challenge over HTTPS: %d", page.StatusCode)
	}
	form := hidden(page.body)
	form.Set("username", "alice")
	form.Set("password", "alice-pw")
	r := b.post(base+"/_stepup/verify/login", form)
	set := strings.Join(r.Header.Values("Set-Cookie"), "\n")
	if !strings.Contains(set, "__Host-stepup_session=") || !strings.Contains(set, "Secure") || !strings.Contains(set, "Path=/") || strings.Contains(set, "Domain=") {
		t.Fatalf("HTTPS session cookie: %s", set)
	}
	if csrf := strings.Join(page.Header.Values("Set-Cookie"), "\n"); !strings.Contains(csrf, "__Host-stepup_csrf=") || !strings.Contains(csrf, "Secure") {
		t.Fatalf("HTTPS CSRF cookie: %s", csrf)
	}
	if r := b.get(base + "/reports/x"); r.StatusCode != 200 || !strings.Contains(r.body, "user=alice") {
		t.Fatalf("signed in over HTTPS: %d %q", r.StatusCode, r.body)
	}
}

func TestTransactionSetsTakeAnyCaddyMatcher(t *testing.T) {
	s := startCaddy(t, global(t), `
	stepup {
		transaction risky_header {
			match {
				header X-Risk high
			}
			tier sudo
		}
		transaction deletes {
			match {
				expression {method} == "DELETE" && path('/records/*')
			}
			tier login
		}
		transaction either {
			match {
				path /a/*
			}
			match {
				query danger=1
			}
			tier login
		}
	}
	respond "ok user={http.stepup.user}"
`)
	b := s.browser()
	for _, tc := range []struct {
		method, path string
		headers      []string
		status       int
	}{
		{"GET", "/x", []string{"X-Risk", "high"}, http.StatusSeeOther},
		{"GET", "/x", []string{"X-Risk", "low"}, 200},
		{"DELETE", "/records/1", nil, http.StatusUnauthorized}, // an API call: 401
		{"GET", "/records/1", nil, 200},
		{"GET", "/a/b", nil, http.StatusSeeOther},
		{"GET", "/z?danger=1", nil, http.StatusSeeOther},
		{"GET", "/z?danger=0", nil, 200},
	} {
		h := append([]string{"Accept", "application/json"}, tc.headers...)
		if tc.status == http.StatusSeeOther {
			h = append([]string{"Accept", "text/html"}, tc.headers...)
		}
		if r := b.do(tc.method, tc.path, nil, h...); r.StatusCode != tc.status {
			t.Errorf("%s %s %v: %d, want %d", tc.method, tc.path, tc.headers, r.StatusCode, tc.status)
		}
	}
}

func TestGeneratedSecretIsKeptInStorage(t *testing.T) {
	noSecret := strings.Replace(global(t), `secret "`+testSecret+`"`, "", 1)
	s := startCaddy(t, noSecret, site)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	raw, err := os.ReadFile(filepath.Join(s.dir, "storage", "stepup", "secret"))
	if err != nil || len(raw) < 32 {
		t.Fatalf("generated secret not in storage: %v (%d bytes)", err, len(raw))
	}
	// A reload (and so a restart with the same storage) keeps the secret,
	// so the cookie still decrypts.
	if err := s.load(noSecret, site); err != nil {
		t.Fatal(err)
	}
	if r := b.get("/reports/x"); r.StatusCode != 200 {
		t.Fatalf("session lost with a generated secret: %d", r.StatusCode)
	}
	again, _ := os.ReadFile(filepath.Join(s.dir, "storage", "stepup", "secret"))
	if string(again) != string(raw) {
		t.Fatal("the generated secret changed")
	}
}

func TestKeptNavigationNeverRedirectsOffSite(t *testing.T) {
	s := startCaddy(t, global(t), `
	stepup {
		transaction everything {
			match {
				path *
			}
			tier sudo
			max_age 0
		}
	}
	respond "ok"
`)
	b := s.browser()
	b.login("sudo", "/", creds("alice", "alice-pw"), pw("alice-pw"))
	// A request line of "//evil.example/x" (a path, to the server).
	r := b.get(s.base + "//evil.example/x")
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("status %d", r.StatusCode)
	}
	page := b.get(b.location(r))
	done := b.stepUp(page, pw("alice-pw"))
	loc := b.location(b.get(b.location(done)))
	if strings.HasPrefix(loc, "//") || strings.Contains(loc, "evil.example") && !strings.HasPrefix(loc, "/") {
		t.Fatalf("redirected off-site: %q", loc)
	}
	// Where a browser goes: the location resolved against the page's URL.
	if u := mustURL(s.base + "/_stepup/").ResolveReference(mustURL(loc)); u.Host != mustURL(s.base).Host {
		t.Fatalf("redirected to another host: %q", loc)
	}
}

func TestUpstreamNeverSeesTheModulesCookies(t *testing.T) {
	s := startCaddy(t, global(t), `
	stepup {
		transaction reports {
			match {
				path /reports/*
			}
			tier login
		}
	}
	respond "cookies=[{http.request.header.Cookie}]"
`)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	// The notice cookie too (it reaches the site when a replay is sent
	// from a page under the prefix).
	b.client.Jar.SetCookies(mustURL(s.base), []*http.Cookie{{Name: "app_pref", Value: "dark"}, {Name: "stepup_flash", Value: "x"}})
	r := b.get("/reports/x")
	if r.StatusCode != 200 || strings.Contains(r.body, "stepup_") || !strings.Contains(r.body, "app_pref=dark") {
		t.Fatalf("upstream saw: %q", r.body)
	}
	if r := s.browser().get("/public"); r.body != "cookies=[]" {
		t.Fatalf("without cookies: %q", r.body)
	}
}

func TestKeptRequestsAreBoundedPerClient(t *testing.T) {
	g := strings.Replace(global(t), "limits {", "pending {\n\t\t\tper_client 3\n\t\t}\n\t\tlimits {", 1)
	s := startCaddy(t, g, site)
	for i := 0; i < 3; i++ {
		// A new client without cookies each time: a fresh session each time.
		if r := s.browser().do(http.MethodPost, "/admin/x", url.Values{"i": {"1"}}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("kept request %d: %d", i, r.StatusCode)
		}
	}
	r := s.browser().do(http.MethodPost, "/admin/x", url.Values{"i": {"1"}})
	if r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth kept request from one client: %d", r.StatusCode)
	}
	if s.findAudit("rate_limited", map[string]string{"reason": "too_many_kept_requests_from_client"}) == nil {
		t.Fatal("no audit record")
	}
}
