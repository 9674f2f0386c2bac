package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestEnrolmentPagesWithoutHiddenParameters: /_stepup/enroll/totp and
// /_stepup/enroll/webauthn work without step when one tier uses the
// method, and offer the choice when several do.
func TestEnrolmentPagesWithoutHiddenParameters(t *testing.T) {
	s := startCaddy(t, everyMethodGlobal(t), site)
	b := s.browser()
	b.login("login", "/", creds("bob", "bob-pw"))
	page := b.get("/_stepup/enroll/totp")
	if page.StatusCode != 200 || !strings.Contains(page.body, `id="manual-key"`) {
		t.Fatalf("TOTP enrolment without step: %d %s", page.StatusCode, page.body)
	}
	page = b.get("/_stepup/enroll/webauthn", "Host", "localhost")
	if page.StatusCode != 200 || !strings.Contains(page.body, "Register a security key") {
		t.Fatalf("WebAuthn enrolment without step: %d %s", page.StatusCode, page.body)
	}
	r := b.do(http.MethodPost, "/_stepup/enroll/webauthn/begin", nil, "Content-Type", "application/json", "X-CSRF-Token", b.csrf)
	if r.StatusCode == http.StatusNotFound || strings.Contains(r.body, "no such") {
		t.Fatalf("WebAuthn enrolment ceremony without step: %d %s", r.StatusCode, r.body)
	}

	// Two TOTP tiers: the page offers both.
	s2 := startCaddy(t, totpGlobal(t), totpSite)
	b2 := s2.browser()
	b2.login("login", "/", creds("bob", "bob-pw"))
	choose := b2.get("/_stepup/enroll/totp")
	for _, step := range []string{"otp", "code8"} {
		if !strings.Contains(choose.body, "/_stepup/enroll/totp?"+url.Values{"step": {step}}.Encode()) {
			t.Fatalf("choice page lacks %s: %s", step, choose.body)
		}
	}
}
