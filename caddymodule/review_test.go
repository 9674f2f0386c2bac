package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Second security review of the security-core fixes: attacks as a script
// would run them, through a real Caddy.

// keepAndSend keeps a request as the browser b and then sends it from the
// confirmation page, skipping the step-up walk entirely.
func keepAndSend(t *testing.T, b *browser, method, target string, form url.Values, headers ...string) response {
	t.Helper()
	r := b.do(method, target, form, headers...)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("%s %s was not kept: %d %s", method, target, r.StatusCode, r.body)
	}
	id := mustURL(b.s.base + b.location(r)).Query().Get("pending")
	if id == "" {
		t.Fatalf("%s %s: no pending id in %s", method, target, b.location(r))
	}
	b.get("/_stepup/resume/" + id) // the confirmation page, for its CSRF token
	return b.post("/_stepup/resume/"+id, url.Values{"action": {"send"}})
}

// TestReviewReplayedRequestsAreMatchedOnEveryReading: a request kept because
// a lenient reading of it (path or method override) matched a set is sent,
// without any step-up, straight from the confirmation page: the replay is
// decided on its plain reading only.
func TestReviewReplayedRequestsAreMatchedOnEveryReading(t *testing.T) {
	s := startCaddy(t, global(t), variantSite)
	for _, tc := range []struct {
		name, method, target string
		form                 url.Values
	}{
		{"path with ;", http.MethodPost, "/admin;/users", url.Values{"name": {"mallory"}}},
		{"path with a trailing dot", http.MethodPost, "/admin./users", url.Values{"name": {"mallory"}}},
		{"_method in the kept form", http.MethodPost, "/api/users/1", url.Values{"_method": {"DELETE"}}},
	} {
		b := s.browser() // an anonymous visitor: no password at all
		if r := keepAndSend(t, b, tc.method, tc.target, tc.form); r.StatusCode == http.StatusOK {
			t.Errorf("%s: sent to the upstream with no step-up: %d %q", tc.name, r.StatusCode, r.body)
		}
	}
}

// TestReviewSetsMatchMethodOverridesInEveryEncoding: the _method scan looks
// for the literal bytes "_method" and only in bodies labelled as forms, but
// frameworks decode field names (%5Fmethod), PHP (Symfony, Laravel) turns
// "." and " " in names into "_", and Rack (Rails) parses a POST body without
// a Content-Type as a form.
func TestReviewSetsMatchMethodOverridesInEveryEncoding(t *testing.T) {
	s := startCaddy(t, global(t), variantSite)
	const ct = "Content-Type"
	const form = "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, target string
		headers      []string
	}{
		{"%5Fmethod in the query", "/api/users/1?%5Fmethod=DELETE", nil},
		{"%5Fmethod in a form", "/api/users/1", []string{ct, form, "body", "a=1&%5Fmethod=DELETE"}},
		{"%5fmethod in a form", "/api/users/1", []string{ct, form, "body", "a=1&%5fmethod=DELETE"}},
		{".method in a form (PHP reads _method)", "/api/users/1", []string{ct, form, "body", "a=1&.method=DELETE"}},
		{"+method in a form (PHP reads _method)", "/api/users/1", []string{ct, form, "body", "a=1&+method=DELETE"}},
		{".method in the query (PHP reads _method)", "/api/users/1?.method=DELETE", nil},
		{"_method in a body without Content-Type (Rack reads a form)", "/api/users/1", []string{"body", "a=1&_method=DELETE"}},
	} {
		if got := rawStatus(t, s, http.MethodPost, tc.target, tc.headers...); got != http.StatusUnauthorized {
			t.Errorf("%s: POST %s answered %d, want 401", tc.name, tc.target, got)
		}
	}
}

// TestReviewALogoffThatLosesTheRaceToAStepUpStillEndsTheSession: two tabs;
// a step-up in one rotates the session id while a root logoff is in flight
// in the other with the old cookie. The README says a logoff that loses a
// race with a step-up ends the whole session; instead the old cookie loads
// no session, the token (bound to the owner) no longer matches the empty
// owner, the logoff answers "Form expired" and the browser keeps the
// step-up's cookie, now holding sudo.
func TestReviewALogoffThatLosesTheRaceToAStepUpStillEndsTheSession(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	page := b.get(b.location(b.get("/admin/x")))
	token := b.csrf
	old := b.client.Jar.Cookies(mustURL(s.base))
	// Tab 1: the step-up completes first and rotates the id.
	b.follow(b.stepUp(page, pw("alice-pw")))
	if r := b.get("/admin/x"); r.StatusCode != http.StatusOK {
		t.Fatalf("step-up: %d", r.StatusCode)
	}
	// Tab 2: the logoff the user clicked, sent with the cookie it had.
	tab := s.browser()
	tab.client.Jar.SetCookies(mustURL(s.base), old)
	r := tab.post("/_stepup/logout", url.Values{"tier": {"login"}, "csrf_token": {token}})
	if after := b.get("/admin/x"); after.StatusCode == http.StatusOK {
		t.Fatalf("the session survived the root logoff (the logoff answered %d): %q", r.StatusCode, after.body)
	}
}

// TestReviewAUsersKeptRequestsSurviveHerLoginLapsing: Alice's login lapses
// (the session lives on, anonymous, with its owner) while her forms wait.
// The README promises the request of the sign-in walk is adopted "when a
// visitor kept it or the same user did", but the challenge page checks the
// kept request against the now anonymous session (mayUse: "alice" != ""),
// drops the pending id from the walk before she signs in, and her request
// is never shown again. A second tab's request of hers is lost as well:
// the re-sign-in starts a new owner and adopts at most the walk's one.
func TestReviewAUsersKeptRequestsSurviveHerLoginLapsing(t *testing.T) {
	s := startCaddy(t, lapsingGlobal(t), site)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	walkA := b.location(b.do(http.MethodPost, "/admin/a", url.Values{"n": {"a"}}))
	walkB := b.location(b.do(http.MethodPost, "/admin/b", url.Values{"n": {"b"}}))
	s.clock.Advance(61 * time.Minute) // the login lapses; the session lives on
	signIn := b.stepUp(b.get(walkA), creds("alice", "alice-pw"))
	if loc := b.location(signIn); !strings.Contains(loc, "pending=") {
		t.Errorf("the sign-in step dropped the kept request from the walk: on to %s", loc)
	}
	confirm := b.follow(b.stepUp(b.follow(signIn), pw("alice-pw")))
	if !strings.Contains(confirm.body, "POST /admin/a") {
		t.Errorf("tab A: Alice's own request was lost on her re-sign-in: %d %.200q", confirm.StatusCode, confirm.body)
	}
	other := b.follow(b.get(walkB))
	if !strings.Contains(other.body, "POST /admin/b") {
		t.Errorf("tab B: Alice's own request was lost on her re-sign-in: %d %.200q", other.StatusCode, other.body)
	}
}

// TestReviewFormsWorkBehindATrustedTLSProxy: the documented set-up behind a
// TLS-terminating proxy (trusted_proxies, X-Forwarded-Proto: https): the
// browser's Origin is https://host, and sign-in and kept forms must work.
func TestReviewFormsWorkBehindATrustedTLSProxy(t *testing.T) {
	g := "\tservers {\n\t\ttrusted_proxies static private_ranges\n\t\ttrusted_proxies_strict\n\t}\n" + global(t)
	s := startCaddy(t, g, site)
	origin := "https://" + strings.TrimPrefix(s.base, "http://")
	hdr := []string{"Origin", origin, "X-Forwarded-Proto", "https", "X-Forwarded-For", "203.0.113.7"}
	b := s.browser()
	page := b.get("/_stepup/challenge?tier=login", hdr...)
	form := hidden(page.body)
	form.Set("username", "alice")
	form.Set("password", "alice-pw")
	if r := b.post("/_stepup/verify/login", form, hdr...); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in behind a trusted TLS proxy: %d %s", r.StatusCode, r.body)
	}
	if r := b.do(http.MethodPost, "/admin/wire", url.Values{"to": {"bob"}}, append(hdr, "Sec-Fetch-Site", "same-origin")...); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("the site's own form behind a trusted TLS proxy: %d %s", r.StatusCode, r.body)
	}
}

// TestReviewOnePasswordHasOneGuessBudget: the login and sudo tiers both
// check Alice's password, but failures are counted per user *and tier*, so
// a thief holding her session cookie gets per_user guesses at sudo and as
// many again at login (and more with every further password tier).
func TestReviewOnePasswordHasOneGuessBudget(t *testing.T) {
	s := startCaddy(t, global(t), site) // per_user 3
	victim := s.browser()
	victim.login("login", "/", creds("alice", "alice-pw"))
	thief := s.browser()
	thief.client.Jar.SetCookies(mustURL(s.base), victim.client.Jar.Cookies(mustURL(s.base)))
	page := thief.get(thief.location(thief.get("/admin/x")))
	for i := 0; i < 3; i++ {
		thief.stepUp(page, pw("guess"))
	}
	login := s.browser()
	lp := login.get("/_stepup/challenge?tier=login")
	verified := 0
	for i := 0; i < 3; i++ {
		if r := login.stepUp(lp, creds("alice", "guess")); r.StatusCode == http.StatusUnauthorized {
			verified++
		}
	}
	if verified > 0 {
		t.Fatalf("after 3 wrong passwords at sudo (per_user 3), %d more were checked at login", verified)
	}
}
