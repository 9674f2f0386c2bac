package caddymodule

import (
	"encoding/base64"
	"strings"
	"testing"
)

func webauthnGlobal(t testing.TB) string {
	return `
	stepup {
		secret "` + testSecret + `"
		user alice "` + hashFor(t, "alice-pw") + `"
		user bob "` + hashFor(t, "bob-pw") + `"
		tier login {
			method password
			max_age 8h
		}
		tier key {
			base login
			method webauthn {
				user_verification required
				enroll self
				rp_name "Step-up test"
			}
			max_age 5m
		}
		tier approved {
			base login
			method webauthn {
				enroll self
				authenticators 00000000-0000-0000-0000-00000000abcd
			}
			max_age 5m
		}
	}`
}

const webauthnSite = `
	stepup {
		transaction vault {
			match {
				path /vault/*
			}
			tier key
		}
		transaction approved {
			match {
				path /approved/*
			}
			tier approved
		}
	}
	respond "ok user={http.stepup.user} tier={http.stepup.tier} tiers={http.stepup.tiers}"
`

// enrol signs a user in and registers a key through the pages, as a person
// clicking through them would, ending on the protected page.
func enrol(t *testing.T, c *chrome, user, password, nickname string, fallback bool) {
	t.Helper()
	c.open("/vault/x")
	c.signIn(user, password)
	c.waitText("Register a security key")
	if !strings.HasPrefix(c.path(), "/_stepup/enroll/webauthn?") {
		t.Fatalf("not on the registration page: %s", c.path())
	}
	if fallback {
		c.withoutJSONHelpers()
	}
	c.do(chromedpClear(`#nickname`), chromedpKeys(`#nickname`, nickname))
	c.click(`#webauthn-start`)
	c.waitTextStart("ok user=" + user + " tier=key tiers=login,key")
}

func TestWebAuthnInChromium(t *testing.T) {
	s := startCaddy(t, webauthnGlobal(t), webauthnSite)
	c := startChrome(t, s)

	// Sign in, then register a key on the way to the protected page.
	c.open("/vault/x")
	c.signIn("alice", "alice-pw")
	c.waitText("Register a security key")
	c.screenshot("webauthn-register.png")
	c.do(chromedpClear(`#nickname`), chromedpKeys(`#nickname`, "Test key"))
	c.click(`#webauthn-start`)
	c.waitTextStart("ok user=alice tier=key tiers=login,key")
	if s.findAudit("enroll", map[string]string{"user": "alice", "tier": "key", "result": "success"}) == nil {
		t.Fatal("no audit record of the registration")
	}
	creds := c.credentials()
	if len(creds) != 1 {
		t.Fatalf("authenticator holds %d credentials", len(creds))
	}

	// The status page lists the key and the held tiers.
	c.open("/_stepup/")
	c.waitText("Test key")
	c.screenshot("status.png")

	// Log off at key by clicking; the vault then asks for the key.
	c.submit(`form[action="/_stepup/logout"] input[value="key"] ~ button`)
	c.open("/vault/x")
	c.waitText("Step 2 of 2: Security key")
	c.screenshot("webauthn-challenge.png")
	c.click(`#webauthn-start`)
	c.waitTextStart("ok user=alice tier=key tiers=login,key")
	if s.findAudit("stepup", map[string]string{"user": "alice", "tier": "key", "result": "success"}) == nil {
		t.Fatal("no audit record of the step-up")
	}

	// Missing user verification is refused, and so is a bogus signature.
	c.logOffAt("key")
	for _, tc := range []struct {
		name         string
		badUV, bogus bool
		reason       string
	}{
		{"user verification missing", true, false, "user_verification_missing"},
		{"bogus signature", false, true, "assertion_invalid"},
	} {
		c.overrideBits(tc.badUV, tc.bogus)
		c.open("/vault/x")
		c.click(`#webauthn-start`)
		c.waitText("was not accepted")
		if !strings.HasPrefix(c.path(), "/_stepup/challenge?") {
			t.Fatalf("%s: left the challenge page: %s", tc.name, c.path())
		}
		c.overrideBits(false, false)
		if s.findAudit("stepup", map[string]string{"user": "alice", "tier": "key", "result": "failure", "reason": tc.reason}) == nil {
			t.Fatalf("%s: no audit record with reason %s", tc.name, tc.reason)
		}
	}
	c.click(`#webauthn-start`)
	c.waitTextStart("ok user=alice tier=key")

	// The same, in a browser without the WebAuthn JSON helpers: the
	// script's base64url fallback encodes and decodes by hand.
	c.logOffAt("key")
	c.open("/vault/x")
	c.waitText("Step 2 of 2: Security key")
	c.withoutJSONHelpers()
	c.click(`#webauthn-start`)
	c.waitTextStart("ok user=alice tier=key")

	// A replayed assertion: the same answer posted twice, and posted again
	// for a new challenge; both refused.
	c.logOffAt("key")
	c.open("/vault/x")
	c.waitText("Step 2 of 2: Security key")
	out := c.eval(replayScript)
	if out != "200,401,401" {
		t.Fatalf("replay statuses %q, want 200,401,401", out)
	}

	// A cloned authenticator: its counter goes backwards.
	c.logOffAt("key")
	c.cloneWithCounter(c.credentials()[0], 1)
	c.open("/vault/x")
	c.click(`#webauthn-start`)
	c.waitText("looks cloned")
	if s.findAudit("stepup", map[string]string{"user": "alice", "tier": "key", "reason": "sign_counter_regression"}) == nil {
		t.Fatal("no audit record of the clone")
	}

	// Changing keys needs the key tier itself, fresh: with only the base
	// tier (and a key that now looks cloned), neither adding a further key
	// nor removing this one is possible.
	c.open("/_stepup/enroll/webauthn?step=key")
	if p := c.path(); !strings.HasPrefix(p, "/_stepup/challenge?") || !strings.Contains(p, "max_age=300") || !strings.Contains(p, "tier=key") {
		t.Fatalf("adding a key without the key tier: at %s", p)
	}
	c.open("/_stepup/")
	// Remove asks first; only the confirmation's button removes.
	c.submit(`a[data-key="Test key"]`)
	c.waitText("Remove this security key?")
	c.submit(`form[action="/_stepup/webauthn/remove"] button`)
	if p := c.path(); !strings.HasPrefix(p, "/_stepup/challenge?") || !strings.Contains(p, "tier=key") {
		t.Fatalf("removing a key without the key tier: at %s", p)
	}
	c.open("/_stepup/")
	c.waitText("Test key")

	// Cascade: logging off at login by clicking ends the session.
	c.logOffAt("login")
	c.waitText("You are not signed in")
	c.open("/vault/x")
	c.waitText("Step 1 of 2: Sign-in")
}

// replayScript runs the ceremony by hand in the page: one assertion, posted
// to finish twice, then once more after a fresh begin.
const replayScript = `(async () => {
  const box = document.getElementById('webauthn');
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const post = (url, body) => fetch(url, {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}, body: JSON.stringify(body)});
  const opts = await (await post(box.dataset.begin, {})).json();
  const cred = await navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts.publicKey)});
  const answer = cred.toJSON();
  const first = await post(box.dataset.finish, answer);
  const second = await post(box.dataset.finish, answer);
  await post(box.dataset.begin, {});
  const third = await post(box.dataset.finish, answer);
  return [first.status, second.status, third.status].join(',');
})()`

func TestWebAuthnCredentialOfAnotherUserIsRefused(t *testing.T) {
	s := startCaddy(t, webauthnGlobal(t), webauthnSite)
	c := startChrome(t, s)
	enrol(t, c, "alice", "alice-pw", "Alice's key", false)
	aliceID := base64.RawURLEncoding.EncodeToString(c.credentials()[0].CredentialID)
	c.logOffAt("login")
	c.waitText("You are not signed in")
	enrol(t, c, "bob", "bob-pw", "Bob's key", true) // the script's base64url fallback
	c.logOffAt("key")
	c.open("/vault/x")
	c.waitText("Step 2 of 2: Security key")
	// Bob's challenge, answered with Alice's key (same authenticator).
	out := c.eval(`(async () => {
  const box = document.getElementById('webauthn');
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const post = (url, body) => fetch(url, {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}, body: JSON.stringify(body)});
  const opts = await (await post(box.dataset.begin, {})).json();
  opts.publicKey.allowCredentials = [{type: 'public-key', id: '` + aliceID + `'}];
  const cred = await navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts.publicKey)});
  return String((await post(box.dataset.finish, cred.toJSON())).status);
})()`)
	if out != "401" {
		t.Fatalf("Alice's key for Bob: status %s", out)
	}
	c.open("/vault/x")
	c.click(`#webauthn-start`)
	c.waitTextStart("ok user=bob tier=key")
}

func TestWebAuthnAAGUIDAllowList(t *testing.T) {
	s := startCaddy(t, webauthnGlobal(t), webauthnSite)
	c := startChrome(t, s)
	c.open("/approved/x")
	c.signIn("alice", "alice-pw")
	c.waitText("Register a security key")
	c.click(`#webauthn-start`)
	c.waitText("This kind of security key is not allowed here")
	if s.findAudit("enroll", map[string]string{"user": "alice", "tier": "approved", "reason": "authenticator_not_allowed"}) == nil {
		t.Fatal("no audit record of the refused authenticator")
	}
}

func TestWebAuthnCeremonyNeedsTheCSRFHeader(t *testing.T) {
	s := startCaddy(t, webauthnGlobal(t), webauthnSite)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	for _, hdr := range []string{"", "forged"} {
		r := b.do("POST", "/_stepup/webauthn/key/begin?tier=key", nil, "X-CSRF-Token", hdr, "Content-Type", "application/json")
		if r.StatusCode != 403 || !strings.Contains(r.body, `"error"`) {
			t.Fatalf("X-CSRF-Token %q: %d %s", hdr, r.StatusCode, r.body)
		}
	}
	b.get("/_stepup/")
	r := b.do("POST", "/_stepup/webauthn/key/begin?tier=key", nil, "X-CSRF-Token", b.csrf)
	if r.StatusCode != 409 || !strings.Contains(r.body, "/_stepup/enroll/webauthn?") {
		t.Fatalf("begin without a registered key: %d %s", r.StatusCode, r.body)
	}
}

func TestWebAuthnConfigErrors(t *testing.T) {
	s := startCaddy(t, global(t), site)
	base := "secret \"" + testSecret + "\"\nuser alice \"" + hashFor(t, "x") + "\"\ntier login {\nmethod password\nmax_age 1h\n}\n"
	for _, tt := range []struct{ method, want string }{
		{"method webauthn {\nuser_verification always\n}", "user_verification must be required, preferred or discouraged"},
		{"method webauthn {\nattestation enterprise\n}", "attestation must be none, indirect or direct"},
		{"method webauthn {\nresident_key maybe\n}", "resident_key must be discouraged, preferred or required"},
		{"method webauthn {\nauthenticators not-a-uuid\n}", `"not-a-uuid" is not an AAGUID`},
		{"method webauthn {\norigins app.example.com\n}", "is not an origin"},
		{"method webauthn {\nenroll admin\n}", `enroll: want "self"`},
		{"method webauthn {\ndigits 6\n}", `method webauthn has no option "digits"`},
		{"method totp {\nenroll self\nrp_id x\n}", `method totp has no option "rp_id"`},
	} {
		err := s.load("stepup {\n"+base+"tier key {\nbase login\n"+tt.method+"\nmax_age 5m\n}\n}", "stepup\nrespond ok")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want %q", tt.method, err, tt.want)
		}
	}
}

func TestWebAuthnLastKeyStaysWhileTheAdministratorRegistersKeys(t *testing.T) {
	g := strings.Replace(webauthnGlobal(t), `		tier approved {`, `		tier adminkey {
			base login
			method webauthn
			max_age 5m
		}
		tier approved {`, 1)
	// The key is registered while every WebAuthn tier lets users register
	// (a first key with only the password is not allowed where a tier that
	// the key would reach has keys registered by the administrator); then
	// that tier arrives with a reload.
	s := startCaddy(t, webauthnGlobal(t), webauthnSite)
	c := startChrome(t, s)
	enrol(t, c, "alice", "alice-pw", "Only key", false)
	if err := s.load(g, webauthnSite); err != nil {
		t.Fatal(err)
	}
	c.open("/_stepup/")
	c.waitText("Only key")
	if !strings.Contains(c.body(), "only key") {
		t.Fatalf("the only key is offered for removal:\n%s", c.body())
	}
	id := base64.RawURLEncoding.EncodeToString(c.credentials()[0].CredentialID)
	status := c.eval(`(async () => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const r = await fetch('/_stepup/webauthn/remove', {method: 'POST', credentials: 'same-origin',
    body: new URLSearchParams({csrf_token: csrf, step: 'key', id: '` + id + `'})});
  return String(r.status);
})()`)
	if status != "409" {
		t.Fatalf("removing the last key: status %s", status)
	}
	c.open("/_stepup/")
	c.waitText("Only key")
}
