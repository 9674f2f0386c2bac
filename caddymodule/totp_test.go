package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// aliceTOTP is Alice's provisioned secret: RFC 6238's SHA-1 test secret.
const aliceTOTP = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

func totpGlobal(t testing.TB) string {
	return `
	stepup {
		secret "` + testSecret + `"
		user alice {
			password "` + hashFor(t, "alice-pw") + `"
			totp_secret ` + aliceTOTP + `
		}
		user bob {
			password "` + hashFor(t, "bob-pw") + `"
		}
		tier login {
			method password
			max_age 8h
		}
		tier otp {
			base login
			method totp {
				enroll self
				lockout 3 1m
			}
			max_age 30m
		}
		tier code8 {
			base login
			method totp {
				digits 8
				algorithm SHA256
				period 60s
				skew 0
			}
			max_age 30m
		}
	}`
}

const totpSite = `
	stepup {
		transaction admin {
			match {
				path /admin/*
			}
			tier otp
		}
		transaction vault {
			match {
				path /vault/*
			}
			tier code8
		}
	}
	respond "ok user={http.stepup.user} tiers={http.stepup.tiers}"
`

// selfTOTPGlobal is totpGlobal without the administrator-provisioned tier
// code8: a secret a user enrols reaches every tier that uses TOTP, so
// self-enrolment is only open where every such tier allows it.
func selfTOTPGlobal(t testing.TB) string {
	g := totpGlobal(t)
	i := strings.Index(g, "\t\ttier code8 {")
	j := strings.Index(g[i:], "\n\t\t}\n") + i + len("\n\t\t}\n")
	return g[:i] + g[j:]
}

const selfTOTPSite = `
	stepup {
		transaction admin {
			match {
				path /admin/*
			}
			tier otp
		}
	}
	respond "ok user={http.stepup.user} tiers={http.stepup.tiers}"
`

// oathtool asks the independent OATH Toolkit for the code at the module's
// (test-controlled) time.
func oathtool(t *testing.T, at time.Time, args ...string) string {
	t.Helper()
	args = append(args, "-N", fmt.Sprintf("@%d", at.Unix()))
	out, err := exec.Command("oathtool", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("oathtool %v: %v: %s (make test installs the Debian package oathtool)", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestTOTPStepUpWithCodesFromOathtool(t *testing.T) {
	s := startCaddy(t, totpGlobal(t), totpSite)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	page := b.get(b.location(b.get("/admin/x")))
	if !strings.Contains(page.body, "Step 2 of 2: Security code") || !strings.Contains(page.body, `autocomplete="one-time-code"`) {
		t.Fatalf("TOTP step page: %s", page.body)
	}
	bad := b.stepUp(page, url.Values{"code": {"000000"}})
	if bad.StatusCode != http.StatusUnauthorized || !strings.Contains(bad.body, "That code is not correct") {
		t.Fatalf("wrong code: %d %s", bad.StatusCode, bad.body)
	}
	code := oathtool(t, s.clock.Now(), "--totp", "-b", aliceTOTP)
	r := b.follow(b.stepUp(bad, url.Values{"code": {code}}))
	if r.StatusCode != 200 || !strings.Contains(r.body, "tiers=login,otp") {
		t.Fatalf("after the oathtool code: %d %q", r.StatusCode, r.body)
	}
	if rec := s.findAudit("stepup", map[string]string{"tier": "otp", "result": "success", "user": "alice"}); rec == nil {
		t.Fatal("no audit record of the TOTP step-up")
	}
	for _, rec := range s.auditRecords() {
		for _, v := range rec {
			if fmt.Sprint(v) == code {
				t.Fatalf("a code reached the audit log: %v", rec)
			}
		}
	}

	// The same code, once more, after logging off at otp: refused.
	b.get("/_stepup/")
	b.post("/_stepup/logout", url.Values{"tier": {"otp"}})
	page = b.get(b.location(b.get("/admin/x")))
	replay := b.stepUp(page, url.Values{"code": {code}})
	if replay.StatusCode != http.StatusUnauthorized || !strings.Contains(replay.body, "already used") {
		t.Fatalf("replayed code: %d %s", replay.StatusCode, replay.body)
	}
	// One step later the next code works.
	s.clock.Advance(30 * time.Second)
	next := oathtool(t, s.clock.Now(), "--totp", "-b", aliceTOTP)
	if r := b.follow(b.stepUp(replay, url.Values{"code": {next}})); r.StatusCode != 200 {
		t.Fatalf("next code: %d %s", r.StatusCode, r.body)
	}

	// SHA-256, 8 digits, 60 s steps, no skew: oathtool agrees.
	page = b.get(b.location(b.get("/vault/x")))
	code8 := oathtool(t, s.clock.Now(), "--totp=sha256", "-d", "8", "-s", "60s", "-b", aliceTOTP)
	if r := b.follow(b.stepUp(page, url.Values{"code": {code8}})); r.StatusCode != 200 || !strings.Contains(r.body, "code8") {
		t.Fatalf("SHA-256 code from oathtool: %d %q", r.StatusCode, r.body)
	}
}

func TestTOTPSkewAcceptsTheNeighbouringSteps(t *testing.T) {
	s := startCaddy(t, totpGlobal(t), totpSite)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	page := b.get(b.location(b.get("/admin/x")))
	// A code from two steps ago is refused, one from the previous step is fine.
	old := oathtool(t, s.clock.Now().Add(-60*time.Second), "--totp", "-b", aliceTOTP)
	page = b.stepUp(page, url.Values{"code": {old}})
	if page.StatusCode != http.StatusUnauthorized {
		t.Fatalf("code two steps old: %d", page.StatusCode)
	}
	prev := oathtool(t, s.clock.Now().Add(-30*time.Second), "--totp", "-b", aliceTOTP)
	if r := b.follow(b.stepUp(page, url.Values{"code": {prev}})); r.StatusCode != 200 {
		t.Fatalf("code one step old: %d", r.StatusCode)
	}
}

func TestTOTPLockoutThroughTheModule(t *testing.T) {
	s := startCaddy(t, totpGlobal(t), totpSite)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	page := b.get(b.location(b.get("/admin/x")))
	for i := 0; i < 2; i++ {
		page = b.stepUp(page, url.Values{"code": {"111111"}})
	}
	page = b.stepUp(page, url.Values{"code": {"111111"}})
	if !strings.Contains(page.body, "try again in 1 minute") {
		t.Fatalf("third wrong code: %s", page.body)
	}
	good := oathtool(t, s.clock.Now(), "--totp", "-b", aliceTOTP)
	if r := b.stepUp(page, url.Values{"code": {good}}); r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.body, "locked") {
		t.Fatalf("right code while locked: %d", r.StatusCode)
	}
	if s.findAudit("stepup", map[string]string{"tier": "otp", "user": "alice", "reason": "locked_out"}) == nil {
		t.Fatal("no audit record of the lockout")
	}
	s.clock.Advance(61 * time.Second)
	page = b.get(b.location(b.get("/admin/x")))
	good = oathtool(t, s.clock.Now(), "--totp", "-b", aliceTOTP)
	if r := b.follow(b.stepUp(page, url.Values{"code": {good}})); r.StatusCode != 200 {
		t.Fatalf("after the lock: %d %s", r.StatusCode, r.body)
	}
}

func TestTOTPSelfEnrolment(t *testing.T) {
	s := startCaddy(t, selfTOTPGlobal(t), selfTOTPSite)
	b := s.browser()
	// Enrolment needs the base tier: an anonymous visit is sent to sign in.
	if r := b.get("/_stepup/enroll/totp?step=otp"); r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(b.location(r), "/_stepup/challenge?") {
		t.Fatalf("anonymous enrolment: %d", r.StatusCode)
	}
	b.login("login", "/", creds("bob", "bob-pw"))
	r := b.get(b.location(b.get("/admin/x")))
	loc := b.location(r)
	if !strings.HasPrefix(loc, "/_stepup/enroll/totp?") {
		t.Fatalf("a user without a secret was not sent to enrol: %s", loc)
	}
	page := b.get(loc)
	key := findSub(`<code id="manual-key">([A-Z2-7 ]+)</code>`, page.body)
	if page.StatusCode != 200 || key == "" || !strings.Contains(page.body, `src="/_stepup/enroll/totp/qr.png?step=otp"`) ||
		!strings.Contains(page.body, "otpauth://totp/127.0.0.1:bob?") {
		t.Fatalf("enrolment page: %d %s", page.StatusCode, page.body)
	}
	qr := b.get("/_stepup/enroll/totp/qr.png?step=otp")
	if qr.StatusCode != 200 || qr.Header.Get("Content-Type") != "image/png" || qr.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("QR code: %d %v", qr.StatusCode, qr.Header)
	}
	if img, err := png.Decode(strings.NewReader(qr.body)); err != nil || img.Bounds().Dx() != 240 {
		t.Fatalf("QR code image: %v", err)
	}
	if again := b.get(loc); findSub(`<code id="manual-key">([A-Z2-7 ]+)</code>`, again.body) != key {
		t.Fatal("reloading the page changed the secret")
	}
	if other := s.browser().get("/_stepup/enroll/totp/qr.png?step=otp"); other.StatusCode != http.StatusNotFound {
		t.Fatalf("another browser got the QR code: %d", other.StatusCode)
	}

	// A wrong code does not activate the secret.
	wrong := b.stepUpForm(page, "/_stepup/enroll/totp", url.Values{"code": {"000000"}})
	if wrong.StatusCode != http.StatusUnauthorized || !strings.Contains(wrong.body, "not correct") {
		t.Fatalf("wrong code: %d %s", wrong.StatusCode, wrong.body)
	}
	if r := b.get(b.location(b.get("/admin/x"))); !strings.HasPrefix(b.location(r), "/_stepup/enroll/totp?") {
		t.Fatal("a wrong code activated the secret")
	}
	// The code of an independent implementation, from the key as shown.
	secret := strings.ReplaceAll(key, " ", "")
	code := oathtool(t, s.clock.Now(), "--totp", "-b", secret)
	done := b.stepUpForm(wrong, "/_stepup/enroll/totp", url.Values{"code": {code}})
	if done.StatusCode != http.StatusSeeOther {
		t.Fatalf("confirming code: %d %s", done.StatusCode, done.body)
	}
	if r := b.follow(done); r.StatusCode != 200 || !strings.Contains(r.body, "user=bob tiers=login,otp") {
		t.Fatalf("after enrolment: %d %q", r.StatusCode, r.body)
	}
	if s.findAudit("enroll", map[string]string{"user": "bob", "tier": "otp", "result": "success"}) == nil {
		t.Fatal("no audit record of the enrolment")
	}
	// The secret is encrypted at rest in Caddy storage.
	found := 0
	_ = filepath.Walk(filepath.Join(s.dir, "storage"), func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		raw, _ := os.ReadFile(path)
		if bytes.Contains(raw, []byte(secret)) || strings.Contains(path, "bob") {
			t.Errorf("secret or user name visible at rest: %s", path)
		}
		if strings.Contains(path, filepath.Join("stepup", "totp")) {
			found++
		}
		return nil
	})
	if found != 1 {
		t.Fatalf("%d enrolled secrets in storage, want 1", found)
	}
	// The key is never shown again: the enrolment page now starts a new one.
	if page := b.get("/_stepup/enroll/totp?step=otp"); strings.Contains(page.body, key) {
		t.Fatal("the enrolled key was shown again")
	}

	// Next time, a code for the enrolled secret steps Bob up.
	b.post("/_stepup/logout", url.Values{"tier": {"otp"}})
	s.clock.Advance(30 * time.Second)
	page = b.get(b.location(b.get("/admin/x")))
	if r := b.follow(b.stepUp(page, url.Values{"code": {oathtool(t, s.clock.Now(), "--totp", "-b", secret)}})); r.StatusCode != 200 {
		t.Fatalf("step-up with the enrolled secret: %d %s", r.StatusCode, r.body)
	}
}

func TestTOTPReplacingOnesOwnSecret(t *testing.T) {
	s := startCaddy(t, selfTOTPGlobal(t), selfTOTPSite)
	b := s.browser()
	b.login("otp", "/", creds("alice", "alice-pw"), url.Values{"code": {oathtool(t, s.clock.Now(), "--totp", "-b", aliceTOTP)}})
	status := b.get("/_stepup/")
	if !strings.Contains(status.body, "Replace authenticator") {
		t.Fatalf("status page offers no replacement: %s", status.body)
	}
	s.clock.Advance(30 * time.Second)
	page := b.get("/_stepup/enroll/totp?step=otp")
	secret := strings.ReplaceAll(findSub(`<code id="manual-key">([A-Z2-7 ]+)</code>`, page.body), " ", "")
	if r := b.stepUpForm(page, "/_stepup/enroll/totp", url.Values{"code": {oathtool(t, s.clock.Now(), "--totp", "-b", secret)}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("replacement: %d %s", r.StatusCode, r.body)
	}
	// The provisioned secret no longer works; the new one does.
	b.post("/_stepup/logout", url.Values{"tier": {"otp"}})
	s.clock.Advance(30 * time.Second)
	page = b.get(b.location(b.get("/admin/x")))
	page = b.stepUp(page, url.Values{"code": {oathtool(t, s.clock.Now(), "--totp", "-b", aliceTOTP)}})
	if page.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the replaced secret still works: %d", page.StatusCode)
	}
	if r := b.follow(b.stepUp(page, url.Values{"code": {oathtool(t, s.clock.Now(), "--totp", "-b", secret)}})); r.StatusCode != 200 {
		t.Fatalf("the new secret: %d", r.StatusCode)
	}
}

func TestTOTPWithoutSelfEnrolmentSendsUsersToTheirAdministrator(t *testing.T) {
	s := startCaddy(t, totpGlobal(t), totpSite)
	b := s.browser()
	b.login("login", "/", creds("bob", "bob-pw"))
	r := b.get(b.location(b.get("/vault/x")))
	if r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "Ask your administrator") {
		t.Fatalf("no secret, no self-enrolment: %d %s", r.StatusCode, r.body)
	}
	if r := b.get("/_stepup/enroll/totp?step=code8"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("enrolment page for an administrator-provisioned tier: %d", r.StatusCode)
	}
}

func TestTOTPConfigErrors(t *testing.T) {
	s := startCaddy(t, totpGlobal(t), totpSite)
	base := "secret \"" + testSecret + "\"\nuser alice {\npassword \"" + hashFor(t, "x") + "\"\n%s}\ntier login {\nmethod password\nmax_age 1h\n}\n"
	tests := []struct{ user, tier, want string }{
		{"totp_secret not-base32!\n", "method totp {\nenroll self\n}", `user "alice": totp_secret: not a base32 secret`},
		{"totp_secret GEZDGNBV\n", "method totp {\nenroll self\n}", "secret too short"},
		{"", "method totp {\ndigits 9\nenroll self\n}", "digits must be 6, 7 or 8"},
		{"", "method totp {\nalgorithm MD5\nenroll self\n}", "algorithm must be SHA1, SHA256 or SHA512"},
		{"", "method totp {\nenroll admin\n}", `enroll: want "self"`},
		{"", "method totp {\nlockout 0 1m\nenroll self\n}", "lockout"},
		{"", "method totp {\nwhatever 1\n}", `method totp has no option "whatever"`},
		{"", "method totp", "nobody could reach this tier"},
	}
	for _, tt := range tests {
		g := "stepup {\n" + fmt.Sprintf(base, tt.user) + "tier otp {\nbase login\n" + tt.tier + "\nmax_age 5m\n}\n}"
		err := s.load(g, "stepup\nrespond ok")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q / %q: got %v, want %q", tt.user, tt.tier, err, tt.want)
		}
	}
	// JSON: an option of another method is refused by the method's module.
	h := Handler{Config: Config{Secret: testSecret, Users: map[string]*UserConfig{"a": {Password: hashFor(t, "x")}},
		Tiers: []TierConfig{{Name: "login", MethodRaw: json.RawMessage(`{"method": "password", "digits": 6}`), MaxAge: 1}}}}
	if _, err := h.Config.build(caddyContext(t), "test"); err == nil || !strings.Contains(err.Error(), `tier "login"`) || !strings.Contains(err.Error(), `unknown field "digits"`) {
		t.Fatalf("totp option on a password tier: %v", err)
	}
}

// Identities from earlier in the route have no stored session until they
// need one; two such users enrolling at once must not share any state.
func TestExternalUsersEnrollingAtOnceShareNothing(t *testing.T) {
	g := `
	stepup {
		secret "` + testSecret + `"
		tier sso {
			method external
			max_age 1h
		}
		tier otp {
			base sso
			method totp {
				enroll self
			}
			max_age 30m
		}
	}`
	st := `
	basic_auth {
		alice "` + hashFor(t, "alice-basic") + `"
		bob "` + hashFor(t, "bob-basic") + `"
	}
	stepup {
		default otp
	}
	respond "ok user={http.stepup.user} tiers={http.stepup.tiers}"
`
	s := startCaddy(t, g, st)
	alice, bob := s.browser(), s.browser()
	aAuth, bAuth := basic("alice", "alice-basic"), basic("bob", "bob-basic")
	aPage := alice.get("/_stepup/enroll/totp?step=otp", "Authorization", aAuth)
	bPage := bob.get("/_stepup/enroll/totp?step=otp", "Authorization", bAuth)
	aKey := findSub(`<code id="manual-key">([A-Z2-7 ]+)</code>`, aPage.body)
	bKey := findSub(`<code id="manual-key">([A-Z2-7 ]+)</code>`, bPage.body)
	if aKey == "" || bKey == "" || aKey == bKey {
		t.Fatalf("enrolment keys %q and %q", aKey, bKey)
	}
	if alice.cookie("stepup_session") == nil {
		t.Fatal("the enrolment was not bound to a session of Alice's")
	}
	if qr := alice.get("/_stepup/enroll/totp/qr.png?step=otp", "Authorization", aAuth); qr.StatusCode != 200 {
		t.Fatalf("Alice's QR code after Bob began his enrolment: %d", qr.StatusCode)
	}
	code := oathtool(t, s.clock.Now(), "--totp", "-b", strings.ReplaceAll(aKey, " ", ""))
	done := alice.stepUpForm(aPage, "/_stepup/enroll/totp", url.Values{"code": {code}}, "Authorization", aAuth)
	if done.StatusCode != http.StatusSeeOther {
		t.Fatalf("Alice's confirmation: %d %s", done.StatusCode, done.body)
	}
	if r := alice.get("/x", "Authorization", aAuth); r.StatusCode != 200 || !strings.Contains(r.body, "user=alice tiers=sso,otp") {
		t.Fatalf("Alice after enrolment: %d %q", r.StatusCode, r.body)
	}
	if r := bob.get("/x", "Authorization", bAuth); r.StatusCode == 200 {
		t.Fatalf("Bob holds otp without enrolling: %q", r.body)
	}
}
