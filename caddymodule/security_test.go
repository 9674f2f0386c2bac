package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// These are the attacks of the security review, each through a real Caddy:
// every one of them got through before the fix it names.

// TestSelfEnrolmentCannotReplaceAnExistingSecret: with only Alice's password
// (her TOTP secret provisioned, enroll self), the enrolment page used to
// show a fresh secret whose code granted otp and overwrote hers.
func TestSelfEnrolmentCannotReplaceAnExistingSecret(t *testing.T) {
	s := startCaddy(t, selfTOTPGlobal(t), selfTOTPSite)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	r := b.get("/_stepup/enroll/totp?step=otp")
	if r.StatusCode != http.StatusSeeOther || strings.Contains(r.body, "manual-key") {
		t.Fatalf("enrolment page with only the password: %d %s", r.StatusCode, r.body)
	}
	loc := mustURL(s.base + b.location(r))
	if loc.Path != "/_stepup/challenge" || loc.Query().Get("tier") != "otp" || loc.Query().Get("max_age") != "300" ||
		!strings.HasPrefix(loc.Query().Get("return"), "/_stepup/enroll/totp?") {
		t.Fatalf("not sent to step up to otp first: %s", loc)
	}
	// Posting a code for a secret of the attacker's choice changes nothing.
	b.get("/_stepup/")
	if r := b.post("/_stepup/enroll/totp", url.Values{"step": {"otp"}, "code": {"123456"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("confirming an enrolment with only the password: %d %s", r.StatusCode, r.body)
	}
	if s.findAudit("stepup", map[string]string{"tier": "otp", "result": "success"}) != nil {
		t.Fatal("otp granted without Alice's code")
	}
	// Alice herself steps up with her app, and then may replace it.
	page := b.get(loc.RequestURI())
	page = b.stepUp(page, url.Values{"code": {oathtool(t, s.clock.Now(), "--totp", "-b", aliceTOTP)}})
	page = b.follow(page)
	secret := strings.ReplaceAll(findSub(`<code id="manual-key">([A-Z2-7 ]+)</code>`, page.body), " ", "")
	if secret == "" {
		t.Fatalf("after a fresh otp step-up the enrolment page shows no secret: %s", page.body)
	}
	s.clock.Advance(30 * time.Second)
	if r := b.stepUpForm(page, "/_stepup/enroll/totp", url.Values{"code": {oathtool(t, s.clock.Now(), "--totp", "-b", secret)}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("replacement: %d %s", r.StatusCode, r.body)
	}
	if s.findAudit("replace", map[string]string{"tier": "otp", "auth_method": "totp", "user": "alice"}) == nil {
		t.Fatal("no audit record of the replacement")
	}
	if status := b.get("/_stepup/"); !strings.Contains(status.body, "Authenticator app replaced on 2026-11-22") {
		t.Fatalf("status page does not show the replacement: %s", status.body)
	}
}

// TestSelfEnrolmentIsTrustOnFirstUseOnly: a user with no credential sets up
// the first one with the base tier; the second needs the tier itself.
func TestSelfEnrolmentIsTrustOnFirstUseOnly(t *testing.T) {
	s := startCaddy(t, selfTOTPGlobal(t), selfTOTPSite)
	b := s.browser()
	b.login("login", "/", creds("bob", "bob-pw"))
	page := b.get("/_stepup/enroll/totp?step=otp")
	secret := strings.ReplaceAll(findSub(`<code id="manual-key">([A-Z2-7 ]+)</code>`, page.body), " ", "")
	if secret == "" {
		t.Fatalf("first enrolment refused: %d %s", page.StatusCode, page.body)
	}
	if r := b.stepUpForm(page, "/_stepup/enroll/totp", url.Values{"code": {oathtool(t, s.clock.Now(), "--totp", "-b", secret)}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("first enrolment: %d %s", r.StatusCode, r.body)
	}
	if s.findAudit("enroll", map[string]string{"tier": "otp", "auth_method": "totp", "user": "bob"}) == nil {
		t.Fatal("no audit record of the enrolment")
	}
	b.post("/_stepup/logout", url.Values{"tier": {"otp"}})
	if r := b.get("/_stepup/enroll/totp?step=otp"); r.StatusCode != http.StatusSeeOther || !strings.Contains(b.location(r), "tier=otp") {
		t.Fatalf("second enrolment without otp: %d", r.StatusCode)
	}
	// Held, but not fresh enough to change the credential.
	s.clock.Advance(30 * time.Second)
	b.login("otp", "/", url.Values{"code": {oathtool(t, s.clock.Now(), "--totp", "-b", secret)}})
	s.clock.Advance(6 * time.Minute)
	if r := b.get("/_stepup/enroll/totp?step=otp"); r.StatusCode != http.StatusSeeOther || !strings.Contains(b.location(r), "max_age=300") {
		t.Fatalf("replacement with a stale otp: %d", r.StatusCode)
	}
}

// globalWith is global with extra blocks (session, pending, ...) in the
// stepup app.
func globalWith(t testing.TB, blocks string) string {
	return strings.Replace(global(t), "\t\tlimits {", blocks+"\n\t\tlimits {", 1)
}

// lapsingGlobal is global with a login that lapses after an hour while the
// session itself lives on.
func lapsingGlobal(t testing.TB) string {
	g := globalWith(t, "\t\tsession {\n\t\t\tidle_timeout 12h\n\t\t\tlifetime 24h\n\t\t}\n\t\tpending {\n\t\t\tttl 3h\n\t\t}")
	return strings.Replace(g, "max_age 8h", "max_age 1h", 1)
}

// TestKeptRequestBelongsToTheUserWhoSentIt: after Alice's login lapsed,
// Bob signing in on the same browser could send the request Alice left.
func TestKeptRequestBelongsToTheUserWhoSentIt(t *testing.T) {
	s := startCaddy(t, lapsingGlobal(t), site)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	r := b.do(http.MethodPost, "/admin/wire", url.Values{"to": {"mallory"}, "amount": {"1000"}})
	walk := b.location(r)
	id := mustURL(s.base + walk).Query().Get("pending")
	if id == "" {
		t.Fatalf("not kept: %s", walk)
	}
	s.clock.Advance(61 * time.Minute) // Alice's login lapses; the session lives on
	page := b.get(walk)
	page = b.follow(b.stepUp(page, creds("bob", "bob-pw")))
	page = b.follow(b.stepUp(page, pw("bob-pw")))
	if strings.Contains(page.body, "/admin/wire") || page.StatusCode == http.StatusOK && strings.Contains(page.body, "Confirm your action") {
		t.Fatalf("Bob was shown Alice's request: %s", page.body)
	}
	if r := b.get("/_stepup/resume/" + id); r.StatusCode != http.StatusGone {
		t.Fatalf("Bob's confirmation page for Alice's request: %d", r.StatusCode)
	}
	if r := b.post("/_stepup/resume/"+id, url.Values{"action": {"send"}}); r.StatusCode != http.StatusGone || strings.Contains(r.body, "mallory") {
		t.Fatalf("Bob sent Alice's request: %d %s", r.StatusCode, r.body)
	}
}

// TestVisitorsKeptRequestGoesToWhoeverSignsIn: the ordinary flow, a form
// sent before signing in, still survives the sign-in.
func TestVisitorsKeptRequestGoesToWhoeverSignsIn(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	r := b.do(http.MethodPost, "/admin/users", url.Values{"name": {"carol"}, "password": {"hunter2"}, "note": {strings.Repeat("long ", 100)}})
	page := b.follow(b.stepUp(b.get(b.location(r)), creds("alice", "alice-pw")))
	confirm := b.follow(b.stepUp(page, pw("alice-pw")))
	for _, want := range []string{"POST /admin/users", ">name<", ">carol<", ">password<", "••••••••", "(shortened)"} {
		if !strings.Contains(confirm.body, want) {
			t.Fatalf("confirmation page lacks %q: %s", want, confirm.body)
		}
	}
	if strings.Contains(confirm.body, "hunter2") || strings.Contains(confirm.body, " bytes") {
		t.Fatalf("confirmation page shows a secret or a byte count: %s", confirm.body)
	}
}

// TestCrossSiteRequestsAreNeverKept: an auto-submitted form on another site
// was kept and, after the victim stepped up, sent as the victim's own.
func TestCrossSiteRequestsAreNeverKept(t *testing.T) {
	s := startCaddy(t, global(t), site)
	for name, headers := range map[string][]string{
		"fetch metadata and origin": {"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"},
		"origin only":               {"Origin", "https://evil.example"},
		"same-site sibling":         {"Sec-Fetch-Site", "same-site"},
		"referer only":              {"Referer", "https://evil.example/wire.html"},
		"own host, other scheme":    {"Origin", "https://" + strings.TrimPrefix(s.base, "http://")},
	} {
		b := s.browser()
		r := b.do(http.MethodPost, "/admin/wire", url.Values{"to": {"mallory"}}, headers...)
		if r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "came from another website") {
			t.Errorf("%s: %d %s", name, r.StatusCode, r.body)
		}
		if b.cookie("stepup_session") != nil {
			t.Errorf("%s: a session was made for a cross-site request", name)
		}
	}
	if s.findAudit("denied", map[string]string{"reason": "cross_site_request_not_kept", "set": "admin"}) == nil {
		t.Fatal("no audit record of the refusal")
	}
	// The site's own form is kept as before.
	b := s.browser()
	if r := b.do(http.MethodPost, "/admin/wire", url.Values{"to": {"bob"}}, "Origin", s.base, "Sec-Fetch-Site", "same-origin"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("same-origin form: %d %s", r.StatusCode, r.body)
	}
}

// TestParallelWrongPasswordsAreCappedAtTheLimit: 30 concurrent wrong
// passwords for one user used to be verified all (limit 3 here).
func TestParallelWrongPasswordsAreCappedAtTheLimit(t *testing.T) {
	// A hash of real cost, so that verifications overlap as they do in
	// production.
	costly, err := bcrypt.GenerateFromPassword([]byte("alice-pw"), 11)
	if err != nil {
		t.Fatal(err)
	}
	g := strings.Replace(global(t), "per_client 10", "per_client 1000", 1)
	g = strings.Replace(g, hashFor(t, "alice-pw"), string(costly), 1)
	s := startCaddy(t, g, site)
	b := s.browser()
	page := b.get("/_stepup/challenge?tier=login")
	form := hidden(page.body)
	form.Set("username", "alice")
	form.Set("password", "wrong")
	refused := 0
	for _, resp := range parallel(t, s, 30, func() *http.Request {
		req, _ := http.NewRequest(http.MethodPost, s.base+"/_stepup/verify/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, c := range b.client.Jar.Cookies(mustURL(s.base)) {
			req.AddCookie(c)
		}
		return req
	}) {
		if resp.StatusCode == http.StatusTooManyRequests {
			refused++
		}
	}
	verified := func() int {
		n := 0
		for _, rec := range s.auditRecords() {
			if rec["msg"] == "stepup" && rec["result"] == "failure" && rec["user"] == "alice" {
				n++
			}
		}
		return n
	}
	if n := verified(); n > 3 || n == 0 || refused < 27 {
		t.Fatalf("%d wrong passwords verified (limit 3), %d of 30 refused", n, refused)
	}
	// Sequentially, the limit is reached exactly, and then Alice's right
	// password is refused too until the window ends.
	for i := 0; i < 5; i++ {
		b.stepUp(page, creds("alice", "wrong"))
	}
	if n := verified(); n != 3 {
		t.Fatalf("%d wrong passwords verified in all, want 3", n)
	}
	if r := b.stepUp(page, creds("alice", "alice-pw")); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("right password inside the lockout: %d", r.StatusCode)
	}
}

// TestConcurrentStepUpsLeaveOneSession: four parallel verifications on one
// cookie gave four live sessions, and a root logoff ended only one.
func TestConcurrentStepUpsLeaveOneSession(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	page := b.get(b.location(b.get("/admin/x")))
	form := hidden(page.body)
	form.Set("password", "alice-pw")
	jar := b.client.Jar.Cookies(mustURL(s.base))
	var issued []*http.Cookie
	for _, resp := range parallel(t, s, 4, func() *http.Request {
		req, _ := http.NewRequest(http.MethodPost, s.base+"/_stepup/verify/sudo", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, c := range jar {
			req.AddCookie(c)
		}
		return req
	}) {
		for _, c := range resp.Cookies() {
			if c.Name == "stepup_session" && c.Value != "" {
				issued = append(issued, c)
			}
		}
	}
	if len(issued) != 1 {
		t.Fatalf("%d sessions issued by 4 parallel step-ups, want 1", len(issued))
	}
	// Log off at the root with the winner's cookie: nothing is left.
	winner := s.browser()
	winner.client.Jar.SetCookies(mustURL(s.base), append(jar, issued[0]))
	if r := winner.get("/admin/x"); r.StatusCode != 200 {
		t.Fatalf("winner: %d", r.StatusCode)
	}
	winner.get("/_stepup/")
	winner.post("/_stepup/logout", url.Values{"tier": {"login"}})
	for _, c := range append(issued, jar...) {
		if c.Name != "stepup_session" {
			continue
		}
		req, _ := http.NewRequest(http.MethodGet, s.base+"/reports/x", nil)
		req.Header.Set("Accept", "text/html")
		req.AddCookie(c)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("a cookie of the session still works after the root logoff: %d", resp.StatusCode)
		}
	}
}

// parallel sends n requests made by mk at once, as an attacker's script
// would: over connections opened beforehand, released together. It returns
// the responses (bodies read and closed).
func parallel(t *testing.T, s *server, n int, mk func() *http.Request) []*http.Response {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}
	defer tr.CloseIdleConnections()
	send := func(req *http.Request) (*http.Response, error) {
		resp, err := tr.RoundTrip(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ { // open the connections
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, s.base+"/warm", nil)
			_, _ = send(req)
		}()
	}
	wg.Wait()
	start := make(chan struct{})
	out := make([]*http.Response, n)
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := mk()
			<-start
			resp, err := send(req)
			if err != nil {
				t.Error(err)
				return
			}
			out[i] = resp
		}()
	}
	close(start)
	wg.Wait()
	var got []*http.Response
	for _, r := range out {
		if r != nil {
			got = append(got, r)
		}
	}
	return got
}

// rawStatus sends a request line as given (Go's client would clean or
// refuse some of these targets) and returns the status code.
func rawStatus(t *testing.T, s *server, method, target string, headers ...string) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\nConnection: close\r\n", method, target, strings.TrimPrefix(s.base, "http://"))
	body := ""
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "body" {
			body = headers[i+1]
			continue
		}
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, "/", nil)
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatalf("%s %q: %v", method, target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

const variantSite = `
	stepup {
		transaction delete {
			match {
				method DELETE
				path /api/*
			}
			tier sudo
		}
		transaction read {
			match {
				method GET
				path /read/*
			}
			tier sudo
		}
		transaction admin {
			match {
				path /admin /admin/*
			}
			tier sudo
		}
	}
	respond "ok method={http.request.method}"
`

// TestSetsMatchEveryMethodAnUpstreamMayRun: lower-case methods, method
// overrides and HEAD passed sets written for DELETE and GET.
func TestSetsMatchEveryMethodAnUpstreamMayRun(t *testing.T) {
	s := startCaddy(t, global(t), variantSite)
	form := "Content-Type"
	for _, tc := range []struct {
		name, method, target string
		headers              []string
	}{
		{"lower-case delete", "delete", "/api/users/1", nil},
		{"mixed-case delete", "DeLeTe", "/api/users/1", nil},
		{"X-HTTP-Method-Override", "POST", "/api/users/1", []string{"X-HTTP-Method-Override", "DELETE"}},
		{"X-HTTP-Method", "POST", "/api/users/1", []string{"X-HTTP-Method", "delete"}},
		{"X-Method-Override", "POST", "/api/users/1", []string{"X-Method-Override", "DELETE"}},
		{"_method in the query", "POST", "/api/users/1?_method=DELETE", nil},
		{"_method in a form", "POST", "/api/users/1", []string{form, "application/x-www-form-urlencoded", "body", "a=1&_method=delete"}},
		{"_method in a multipart form", "POST", "/api/users/1", []string{form, "multipart/form-data; boundary=XX", "body", "--XX\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--XX--\r\n"}},
		{"a form too large to read", "POST", "/api/users/1", []string{form, "application/x-www-form-urlencoded", "body", "a=" + strings.Repeat("x", 1<<20+10)}},
		{"HEAD for GET", "HEAD", "/read/report", nil},
	} {
		if got := rawStatus(t, s, tc.method, tc.target, tc.headers...); got != http.StatusUnauthorized {
			t.Errorf("%s: %s %s answered %d, want 401", tc.name, tc.method, tc.target, got)
		}
	}
	// Plain requests the sets do not name still pass.
	for _, tc := range [][2]string{{"POST", "/api/users/1"}, {"PUT", "/read/report"}} {
		if got := rawStatus(t, s, tc[0], tc[1], form, "application/x-www-form-urlencoded", "body", "a=1"); got != http.StatusOK {
			t.Errorf("%s %s: %d, want 200", tc[0], tc[1], got)
		}
	}
	// The upstream receives the method the request was matched as.
	b := s.browser()
	b.login("sudo", "/", creds("alice", "alice-pw"), pw("alice-pw"))
	if r := b.do("delete", "/api/users/1", nil); r.StatusCode != 200 || !strings.Contains(r.body, "method=DELETE") {
		t.Fatalf("lower-case delete after step-up: %d %q", r.StatusCode, r.body)
	}
}

// TestSetsMatchPathsAsLenientServersReadThem: ";", "\", NUL, trailing dots
// and spaces passed a /admin/* set.
func TestSetsMatchPathsAsLenientServersReadThem(t *testing.T) {
	s := startCaddy(t, global(t), variantSite)
	for _, target := range []string{"/admin", "/admin/", "/admin;/x", "/admin;jsessionid=1/x", "/admin./x", "/admin%20/x", "/admin%00/x", "/admin%09/x", `/admin\x`, "/admin%5cx", "/ADMIN/x", "/admin/./x", "//admin/x"} {
		if got := rawStatus(t, s, "GET", target); got != http.StatusUnauthorized {
			t.Errorf("GET %s answered %d, want 401", target, got)
		}
	}
	for _, target := range []string{"/administrator", "/admins/x", "/public/admin.x"} {
		if got := rawStatus(t, s, "GET", target); got != http.StatusOK {
			t.Errorf("GET %s answered %d, want 200", target, got)
		}
	}
}

// TestRequestTrailersNeverReachTheUpstream: an X-Stepup-User trailer on a
// chunked body reached the upstream unstripped.
func TestRequestTrailersNeverReachTheUpstream(t *testing.T) {
	seen := make(chan string, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		seen <- fmt.Sprintf("%v", r.Trailer)
	}))
	defer up.Close()
	s := startCaddy(t, global(t), `
	stepup {
		transaction admin {
			match {
				path /admin/*
			}
			tier sudo
		}
	}
	reverse_proxy `+strings.TrimPrefix(up.URL, "http://"))
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "POST /public HTTP/1.1\r\nHost: "+strings.TrimPrefix(s.base, "http://")+"\r\nTransfer-Encoding: chunked\r\nTrailer: X-Stepup-User\r\nConnection: close\r\n\r\n"+
		"5\r\nhello\r\n0\r\nX-Stepup-User: admin\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case got := <-seen:
		if strings.Contains(strings.ToLower(got), "stepup") {
			t.Fatalf("the upstream received request trailers %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream was not reached")
	}
}

// TestPerRequestGrantIsUsedOnceUnderRace: the max_age 0 grant was read, then
// used, so parallel requests could all pass on it.
func TestPerRequestGrantIsUsedOnceUnderRace(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	b.login("sudo", "/", creds("alice", "alice-pw"), pw("alice-pw"))
	page := b.get(b.location(b.get("/transfer?to=bob")))
	b.get(b.location(b.stepUp(page, pw("alice-pw")))) // the grant is made here
	jar := b.client.Jar.Cookies(mustURL(s.base))
	passed := 0
	for _, resp := range parallel(t, s, 16, func() *http.Request {
		req, _ := http.NewRequest(http.MethodGet, s.base+"/transfer?to=bob", nil)
		req.Header.Set("Accept", "text/html")
		for _, c := range jar {
			req.AddCookie(c)
		}
		return req
	}) {
		if resp.StatusCode == http.StatusOK {
			passed++
		}
	}
	if passed != 1 {
		t.Fatalf("%d requests passed on one per-request grant", passed)
	}
}

// TestCompletedPerRequestActionsFreeTheirPlace: completed max_age 0 actions
// still counted against pending per_session (5).
func TestCompletedPerRequestActionsFreeTheirPlace(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	b.login("sudo", "/", creds("alice", "alice-pw"), pw("alice-pw"))
	for i := 0; i < 8; i++ {
		r := b.do(http.MethodPost, "/transfer", url.Values{"n": {fmt.Sprint(i)}})
		if r.StatusCode != http.StatusSeeOther {
			t.Fatalf("transfer %d refused: %d %s", i, r.StatusCode, r.body)
		}
		confirm := b.follow(b.stepUp(b.get(b.location(r)), pw("alice-pw")))
		id := findSub(`/_stepup/resume/([A-Za-z0-9_-]+)`, confirm.body)
		if done := b.post("/_stepup/resume/"+id, url.Values{"action": {"send"}}); done.StatusCode != 200 {
			t.Fatalf("transfer %d: %d", i, done.StatusCode)
		}
	}
}

// TestShortIdleTimeoutIsNotAnAbsoluteTimeout: an idle_timeout below the
// one-minute touch interval ended sessions in use.
func TestShortIdleTimeoutIsNotAnAbsoluteTimeout(t *testing.T) {
	g := globalWith(t, "\t\tsession {\n\t\t\tidle_timeout 30s\n\t\t}")
	s := startCaddy(t, g, site)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	for i := 0; i < 8; i++ {
		s.clock.Advance(20 * time.Second)
		if r := b.get("/reports/x"); r.StatusCode != 200 {
			t.Fatalf("after %ds of use: %d", (i+1)*20, r.StatusCode)
		}
	}
	s.clock.Advance(31 * time.Second)
	if r := b.get("/reports/x"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("idle session still alive: %d", r.StatusCode)
	}
}

// TestAPIChallengeNamesTheSetOnlyToSignedInUsers: the 401 told anonymous
// clients the transaction set's name.
func TestAPIChallengeNamesTheSetOnlyToSignedInUsers(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	r := b.get("/admin/x", "Accept", "application/json")
	if r.StatusCode != http.StatusUnauthorized || strings.Contains(r.body, "transaction_set") || strings.Contains(r.body, `"admin"`) {
		t.Fatalf("anonymous API challenge: %d %s", r.StatusCode, r.body)
	}
	if s.findAudit("denied", map[string]string{"set": "admin"}) == nil {
		t.Fatal("the set is not in the audit record")
	}
	b.login("login", "/", creds("alice", "alice-pw"))
	if r := b.get("/admin/x", "Accept", "application/json"); !strings.Contains(r.body, `"transaction_set":"admin"`) {
		t.Fatalf("signed-in API challenge: %s", r.body)
	}
}

// TestVerifyWithOnlyTheDocumentedFields: csrf_token, username and password
// answered 400 because the page's hidden target was required.
func TestVerifyWithOnlyTheDocumentedFields(t *testing.T) {
	s := startCaddy(t, global(t), site)
	b := s.browser()
	b.get("/_stepup/")
	r := b.post("/_stepup/verify/login", url.Values{"username": {"alice"}, "password": {"alice-pw"}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("documented fields: %d %s", r.StatusCode, r.body)
	}
	if got := b.location(b.get(b.location(r))); got != "/" {
		t.Fatalf("walk ends at %s, want /", got)
	}
	if r := b.get("/reports/x"); r.StatusCode != 200 {
		t.Fatalf("signed in: %d", r.StatusCode)
	}
}

// TestCSRFTokenIsBoundToTheSession: a token from the attacker's own visit,
// with the nonce cookie planted in the victim's browser (a sibling
// subdomain over plain HTTP can), passed the double-submit check.
func TestCSRFTokenIsBoundToTheSession(t *testing.T) {
	s := startCaddy(t, global(t), site)
	attacker := s.browser()
	attacker.get("/_stepup/")
	nonce := attacker.cookie("stepup_csrf")
	token := attacker.csrf
	victim := s.browser()
	victim.login("sudo", "/", creds("alice", "alice-pw"), pw("alice-pw"))
	victim.client.Jar.SetCookies(mustURL(s.base), []*http.Cookie{{Name: "stepup_csrf", Value: nonce.Value, Path: "/"}})
	r := victim.do(http.MethodPost, "/_stepup/logout", url.Values{"tier": {"sudo"}, "csrf_token": {token}})
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("planted nonce with the attacker's token: %d", r.StatusCode)
	}
	if r := victim.get("/admin/x"); r.StatusCode != 200 {
		t.Fatalf("the forged logoff changed the session: %d", r.StatusCode)
	}
}

// TestConfigBoundsAreLoadErrors: max_body 100000000000 and a window of 1ns
// loaded silently.
func TestConfigBoundsAreLoadErrors(t *testing.T) {
	s := startCaddy(t, global(t), site)
	for _, tc := range []struct{ block, want string }{
		{"pending {\n\t\t\tmax_body 100000000000\n\t\t}", "pending: max_body 100000000000 is out of range"},
		{"pending {\n\t\t\tttl 1s\n\t\t}", "pending: ttl 1s is out of range"},
		{"pending {\n\t\t\tmax_body 2000\n\t\t\tmax_total 1500\n\t\t}", "max_body 2000 is larger than max_total 1500"},
		{"session {\n\t\t\tidle_timeout 2h\n\t\t\tlifetime 1h\n\t\t}", "idle_timeout 2h0m0s is longer than lifetime 1h0m0s"},
	} {
		g := globalWith(t, "\t\t"+tc.block)
		if err := s.load(g, site); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.block, err, tc.want)
		}
	}
	g := strings.Replace(global(t), "window 15m", "window 1ns", 1)
	if err := s.load(g, site); err == nil || !strings.Contains(err.Error(), "limits: window 1ns is out of range") {
		t.Errorf("window 1ns: %v", err)
	}
}

// TestExternalIdentityCeremonyKeepsItsToken: for an identity from earlier
// in the route (never stored until a ceremony needs it), the page's CSRF
// token must still hold once the ceremony has stored the session.
func TestExternalIdentityCeremonyKeepsItsToken(t *testing.T) {
	g := `
	stepup {
		secret "` + testSecret + `"
		tier sso {
			method external
			max_age 1h
		}
		tier key {
			base sso
			method webauthn {
				enroll self
			}
			max_age 5m
		}
	}`
	st := `
	basic_auth {
		alice "` + hashFor(t, "alice-basic") + `"
	}
	stepup {
		transaction vault {
			match {
				path /vault/*
			}
			tier key
		}
	}
	respond "ok"
`
	s := startCaddy(t, g, st)
	b := s.browser()
	auth := basic("alice", "alice-basic")
	host := fmt.Sprintf("http://localhost:%d", s.port) // WebAuthn needs a name, not an IP
	page := b.get(host+"/vault/x", "Authorization", auth)
	for i := 0; i < 5 && page.StatusCode >= 300; i++ {
		page = b.get(host+page.Header.Get("Location"), "Authorization", auth)
	}
	begin := findSub(`data-begin="([^"]+)"`, page.body)
	finish := findSub(`data-finish="([^"]+)"`, page.body)
	if begin == "" || finish == "" {
		t.Fatalf("no ceremony on the page: %d %s", page.StatusCode, page.body)
	}
	begin, finish = host+htmlUnescape(begin), host+htmlUnescape(finish)
	post := func(path string) response {
		return b.do(http.MethodPost, path, nil, "Authorization", auth, "Content-Type", "application/json", "X-CSRF-Token", b.csrf)
	}
	if r := post(begin); r.StatusCode != http.StatusOK {
		t.Fatalf("begin: %d %s", r.StatusCode, r.body)
	}
	if r := post(finish); r.StatusCode == http.StatusForbidden {
		t.Fatalf("finish refused the page's own token: %s", r.body)
	}
}
