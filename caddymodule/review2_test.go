package caddymodule

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// crossTierGlobal: tier otp lets anyone with the password set up a first
// security code; tier strong is reached by a RADIUS token or a security
// code, and Bob has his RADIUS token (the RADIUS server is never asked:
// the attack does not use it).
func crossTierGlobal(t testing.TB, radius string) string {
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
		tier otp {
			base login
			method totp {
				enroll self
			}
			max_age 30m
		}
		tier strong {
			base login
			method radius {
				server ` + radius + ` secret
				timeout 200ms
				retries 0
			}
			method totp
			max_age 10m
		}
		tier key {
			base login
			method webauthn {
				enroll self
			}
			max_age 10m
		}
		tier strong2 {
			base login
			method totp
			method webauthn {
				enroll self
			}
			max_age 10m
		}
	}`
}

const crossTierSite = `
	stepup {
		transaction admin {
			match {
				path /admin/*
			}
			tier strong
		}
		transaction admin2 {
			match {
				path /admin2/*
			}
			tier strong2
		}
	}
	respond "ok tiers={http.stepup.tiers}"
`

func silentRADIUS(t *testing.T) string {
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.LocalAddr().String()
}

// TestReview2TrustOnFirstUseThroughAnotherTierOfTheSameMethod: Bob reaches
// strong with his RADIUS token; he has no security code. With only Bob's
// password, an attacker sets up a first code at tier otp (trust on first
// use: otp has no credential), and that code, a credential of the user
// whichever tier lists the method, then reaches strong as its alternative:
// strong's own trust-on-first-use rule (a credential exists: the RADIUS
// token) is bypassed through a lower tier listing the same method.
func TestReview2TrustOnFirstUseThroughAnotherTierOfTheSameMethod(t *testing.T) {
	s := startCaddy(t, crossTierGlobal(t, silentRADIUS(t)), crossTierSite)
	b := s.browser()
	b.login("login", "/", creds("bob", "bob-pw"))
	// The code would reach strong too, where Bob has a credential (his
	// RADIUS token): setting it up needs strong first, freshly.
	page := b.get("/_stepup/enroll/totp?step=otp")
	if strings.Contains(page.body, "manual-key") || page.StatusCode != http.StatusSeeOther ||
		!strings.Contains(b.location(page), "tier=strong") || !strings.Contains(b.location(page), "max_age=300") {
		t.Fatalf("a first code set up at otp with only the password: %d %s", page.StatusCode, page.body)
	}
	b.get("/_stepup/")
	if r := b.post("/_stepup/enroll/totp", url.Values{"step": {"otp"}, "code": {"123456"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("confirming a code at otp: %d %s", r.StatusCode, r.body)
	}
	s.clock.Advance(30 * time.Second)
	if r := b.get("/admin/x"); r.StatusCode == http.StatusOK {
		t.Fatalf("strong (Bob's RADIUS token, or a code) reached with only his password and a code the attacker set up at otp: %d %q", r.StatusCode, r.body)
	}
}

// TestReview2KeyRegisteredAtAnotherTierStandsInForTheCode: Alice has a
// security code, which (with a key) reaches strong2: the alternatives test
// shows a key cannot be registered for strong2 with her password alone.
// Tier key lists the same method with no credential of its own, so the
// registration is offered there, with only the password; the key it
// registers is Alice's, and reaches strong2.
func TestReview2KeyRegisteredAtAnotherTierStandsInForTheCode(t *testing.T) {
	s := startCaddy(t, crossTierGlobal(t, silentRADIUS(t)), crossTierSite)
	byName := *s // WebAuthn needs a host name
	byName.base = strings.Replace(s.base, "127.0.0.1", "localhost", 1)
	b := byName.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	if r := b.get("/_stepup/enroll/webauthn?step=strong2"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("registration for strong2 with the password alone: %d", r.StatusCode)
	}
	page := b.get("/_stepup/enroll/webauthn?step=key")
	r := b.do(http.MethodPost, "/_stepup/enroll/webauthn/begin?step=key", nil, "Content-Type", "application/json", "X-CSRF-Token", b.csrf)
	if page.StatusCode == http.StatusOK || r.StatusCode == http.StatusOK {
		t.Fatalf("a security key (which would reach strong2, where Alice has a code) registered with only her password at tier key: page %d, begin %d %s", page.StatusCode, r.StatusCode, r.body)
	}
}

// TestReview2PageRoutesRefuseTricksWrongMethodsAndForeignSteps: against
// the pages' mux, with a signed-in session and a valid token and a right
// code in every body: an encoded slash or dot segments in {tier}, unclean
// paths, methods in other cases, HEAD/OPTIONS/GET on POST pages, a
// ceremony for a tier whose methods hold no ceremony (or that does not
// list the method), a method's enrolment for a tier it is not in, and via
// naming another tier's method: none reaches a tier.
func TestReview2PageRoutesRefuseTricksWrongMethodsAndForeignSteps(t *testing.T) {
	s := startCaddy(t, crossTierGlobal(t, silentRADIUS(t)), crossTierSite)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	b.get("/_stepup/")
	cookies := ""
	for _, c := range b.client.Jar.Cookies(mustURL(s.base)) {
		cookies += c.Name + "=" + c.Value + "; "
	}
	body := url.Values{"csrf_token": {b.csrf}, "code": {oathtool(t, s.clock.Now(), "--totp", "-b", aliceTOTP)}, "via": {"totp"}}.Encode()
	for _, c := range []struct {
		method, target string
		want           int
	}{
		{"POST", "/_stepup/verify/strong%2F..%2Fotp", 400},
		{"POST", "/_stepup/verify/strong2%2F", 400},
		{"POST", "/_stepup/verify/strong2/", 404},
		{"POST", "/_stepup/verify/%2e%2e", 400},
		{"GET", "/_stepup/%2e%2e/admin/x", 404},
		{"GET", "/_stepup/..%2fadmin/x", 404},
		{"GET", "/_stepup%2fchallenge?tier=login", 404},
		{"OPTIONS", "/_stepup/verify/strong2", 405},
		{"GET", "/_stepup/verify/strong2", 405},
		{"HEAD", "/_stepup/verify/strong2", 405},
		{"post", "/_stepup/verify/strong2", 405},
		{"Post", "/_stepup/verify/strong2", 405},
		{"PUT", "/_stepup/verify/strong2", 405},
		{"POST", "/_stepup/webauthn/otp/begin", 404},     // otp lists no key
		{"POST", "/_stepup/webauthn/strong/finish", 404}, // nor does strong
		{"POST", "/_stepup/totp/strong2/finish", 404},    // a code is no ceremony
		{"POST", "/_stepup/radius/strong/finish", 404},   // nor is RADIUS
		{"POST", "/_stepup/webauthn/login/begin", 404},   // the root
		{"POST", "/_stepup/enroll/webauthn/begin?step=otp", 404},
		{"GET", "/_stepup/enroll/radius?step=strong", 404},
		{"GET", "/_stepup/enroll/totp/qr.png?step=key", 404},
	} {
		if got := rawStatus(t, s, c.method, c.target, "Cookie", cookies, "Content-Type", "application/x-www-form-urlencoded", "X-CSRF-Token", b.csrf, "Origin", s.base, "body", body); got != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.target, got, c.want)
		}
	}
	// Unclean paths are redirected to their clean form, never served.
	for _, target := range []string{"/_stepup//verify/strong2", "/_stepup/./verify/strong2", "/_stepup/x/../verify/strong2"} {
		if got := rawStatus(t, s, "POST", target, "Cookie", cookies, "Content-Type", "application/x-www-form-urlencoded", "body", body); got < 300 || got > 399 {
			t.Errorf("POST %s: %d, want a redirect", target, got)
		}
	}
	// via naming strong's RADIUS at strong2 (whose methods are a code or a
	// key) is an unknown step, whatever the code.
	if r := b.post("/_stepup/verify/strong2", url.Values{"via": {"radius"}, "code": {oathtool(t, s.clock.Now(), "--totp", "-b", aliceTOTP)}}); r.StatusCode != http.StatusBadRequest {
		t.Errorf("via naming another tier's method: %d", r.StatusCode)
	}
	if r := b.get("/admin2/x"); r.StatusCode == http.StatusOK {
		t.Fatalf("a trick reached strong2: %q", r.body)
	}
	if s.findAudit("stepup", map[string]string{"result": "success", "tier": "strong2"}) != nil {
		t.Fatal("a trick stepped up")
	}
}
