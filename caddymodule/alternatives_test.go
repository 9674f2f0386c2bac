package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// altGlobal has a tier reachable by a security code or a security key.
func altGlobal(t testing.TB) string {
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
		tier strong {
			base login
			method totp
			method webauthn {
				enroll self
			}
			max_age 10m
		}
	}`
}

const altSite = `
	stepup {
		transaction admin {
			match {
				path /admin/*
			}
			tier strong
		}
	}
	respond "ok tiers={http.stepup.tiers}"
`

// TestATierReachableByAnyOfSeveralMethods: a tier listing two methods is
// reached by either; the step page offers the other one; the audit and the
// session record which one was used.
func TestATierReachableByAnyOfSeveralMethods(t *testing.T) {
	s := startCaddy(t, altGlobal(t), altSite)
	cfg, _, err := adaptCaddyfile(s.caddyfile(altGlobal(t), altSite))
	if err != nil || !strings.Contains(string(cfg), `"methods":[{"method":"totp"},{"enroll":"self","method":"webauthn"}]`) {
		t.Fatalf("adapted alternatives: %v %s", err, cfg)
	}
	// Alice has a security code: the page asks for it and offers the key.
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	page := b.get(b.location(b.get("/admin/x")))
	if !strings.Contains(page.body, "Security code") || !strings.Contains(page.body, "via=webauthn") || !strings.Contains(page.body, "instead") {
		t.Fatalf("step page with alternatives: %s", page.body)
	}
	if r := b.follow(b.stepUp(page, url.Values{"code": {oathtool(t, s.clock.Now(), "--totp", "-b", aliceTOTP)}})); r.StatusCode != 200 || !strings.Contains(r.body, "tiers=login,strong") {
		t.Fatalf("by security code: %d %q", r.StatusCode, r.body)
	}
	if s.findAudit("stepup", map[string]string{"tier": "strong", "auth_method": "totp", "result": "success"}) == nil {
		t.Fatal("the audit does not name the method used")
	}
	// Choosing the key instead: Alice has none, and holds a credential for
	// the tier (her security code), so registering a key with only her
	// password would be a way around it. She is sent to reach the tier with
	// her code first, freshly, and comes back to register the key.
	b.get("/_stepup/")
	b.post("/_stepup/logout", url.Values{"tier": {"strong"}})
	page = b.get(b.location(b.get("/admin/x")))
	r := b.get(htmlUnescape(findSub(`href="(/_stepup/challenge\?[^"]*via=webauthn[^"]*)"`, page.body)))
	r = b.get(b.location(r)) // the key's enrolment page
	if r.StatusCode != http.StatusSeeOther || !strings.Contains(b.location(r), "max_age=300") {
		t.Fatalf("a key registered with only the password: %d %s", r.StatusCode, r.body)
	}
	fresh := b.get(b.location(r))
	if !strings.Contains(fresh.body, "Security code") || strings.Contains(fresh.body, `id="webauthn-start"`) {
		t.Fatalf("the fresh step is not the code she has: %s", fresh.body)
	}
	s.clock.Advance(30 * time.Second)
	reg := b.follow(b.stepUp(fresh, url.Values{"code": {oathtool(t, s.clock.Now(), "--totp", "-b", aliceTOTP)}}))
	if !strings.Contains(reg.body, "Register a security key") {
		t.Fatalf("after the fresh code, the key's registration: %s", reg.body)
	}

	// Bob has neither: with the key offered for self-enrolment, he is sent
	// to register one (the first alternative he can set up himself).
	bob := s.browser()
	bob.login("login", "/", creds("bob", "bob-pw"))
	r = bob.get(bob.location(bob.get("/admin/x")))
	if r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(bob.location(r), "/_stepup/enroll/webauthn?") {
		t.Fatalf("bob at the step: %d %s", r.StatusCode, r.body)
	}
	// A code posted for the key's method is not a code.
	form := hidden(page.body)
	form.Set("code", "123456")
	form.Set("via", "webauthn")
	if r := b.post("/_stepup/verify/strong", form); r.StatusCode == http.StatusSeeOther {
		t.Fatalf("the key's method took a posted form: %d", r.StatusCode)
	}
}

// TestAlternativesConfigErrors: methods that cannot stand for each other
// are refused at load, naming the tier.
func TestAlternativesConfigErrors(t *testing.T) {
	s := startCaddy(t, altGlobal(t), altSite)
	for _, tc := range []struct{ tier, want string }{
		{"tier sudo {\nbase login\nmethod totp\nmethod totp\nmax_age 5m\n}", `tier "sudo": method totp given more than once`},
		{"tier root2 {\nmethod password\nmethod totp\nmax_age 5m\n}", `tier "root2": methods password and totp are not alternatives`},
	} {
		g := strings.Replace(altGlobal(t), "\t\ttier strong {", tc.tier+"\n\t\ttier strong {", 1)
		if err := s.load(g, altSite); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.tier, err, tc.want)
		}
	}
}
