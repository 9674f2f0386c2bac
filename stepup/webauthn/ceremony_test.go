package webauthn

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// These tests run whole ceremonies against the software key: what only the
// Chromium test proved before, without a browser.

const testOrigin = "http://app.example"

func ceremonyRequest() *http.Request {
	return httptest.NewRequest(http.MethodPost, testOrigin+"/_stepup/webauthn", nil)
}

// enrol registers a new credential of k for the user.
func enrol(t testing.TB, m *Method, k *softKey, user string) *softCredential {
	t.Helper()
	opts, err := m.BeginRegistration(ceremonyRequest(), "key", "owner-"+user, user, "")
	if err != nil {
		t.Fatal(err)
	}
	body, c := k.register(t, opts)
	o, err := m.FinishRegistration(ceremonyRequest(), "key", "owner-"+user, user, body)
	if err != nil || o.Result != stepup.Accepted {
		t.Fatalf("registration: %+v, %v", o, err)
	}
	return c
}

// login runs a sign-in ceremony for the user, answered by k with c.
func login(t testing.TB, m *Method, k *softKey, user string, c *softCredential) *stepup.Outcome {
	t.Helper()
	opts, err := m.BeginLogin(ceremonyRequest(), "key", "owner-"+user, user)
	if err != nil {
		t.Fatal(err)
	}
	o, err := m.FinishLogin(ceremonyRequest(), "key", "owner-"+user, user, k.assert(t, opts, c))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestValidAssertionIsAcceptedOnce(t *testing.T) {
	m, _ := newMethod(t, Config{})
	k := newSoftKey(testOrigin)
	c := enrol(t, m, k, "alice")
	ctx := context.Background()
	creds, err := m.Credentials(ctx, "alice")
	if err != nil || len(creds) != 1 || creds[0].Nickname != "Security key" || creds[0].ID() != b64(c.id) {
		t.Fatalf("stored after registration: %+v, %v", creds, err)
	}

	opts, err := m.BeginLogin(ceremonyRequest(), "key", "owner-alice", "alice")
	if err != nil {
		t.Fatal(err)
	}
	body := k.assert(t, opts, c)
	o, err := m.FinishLogin(ceremonyRequest(), "key", "owner-alice", "alice", body)
	if err != nil || o.Result != stepup.Accepted || o.User != "alice" || o.Credential != "webauthn:"+b64(c.id) {
		t.Fatalf("valid assertion: %+v, %v", o, err)
	}
	creds, _ = m.Credentials(ctx, "alice")
	if creds[0].Credential.Authenticator.SignCount != c.counter || creds[0].LastUsed.IsZero() {
		t.Fatalf("sign counter or last use not stored: %+v", creds[0])
	}
	if o, _ := m.FinishLogin(ceremonyRequest(), "key", "owner-alice", "alice", body); o.Result != stepup.Rejected || o.Reason != "challenge_missing" {
		t.Fatalf("replayed assertion: %+v", o)
	}
}

func TestSignCounterRegressionIsRefused(t *testing.T) {
	m, _ := newMethod(t, Config{})
	k := newSoftKey(testOrigin)
	c := enrol(t, m, k, "alice")
	if o := login(t, m, k, "alice", c); o.Result != stepup.Accepted {
		t.Fatalf("first sign-in: %+v", o)
	}
	stolen := c.clone()
	if o := login(t, m, k, "alice", c); o.Result != stepup.Accepted {
		t.Fatalf("second sign-in: %+v", o)
	}
	// The copy's counter is one behind what the server saw last.
	o := login(t, m, k, "alice", stolen)
	if o.Result != stepup.Rejected || o.Reason != "sign_counter_regression" {
		t.Fatalf("cloned key: %+v", o)
	}
}

func TestMissingUserVerification(t *testing.T) {
	tests := []struct {
		setting string
		want    stepup.Result
	}{
		{"", stepup.Rejected}, // the default is required
		{"required", stepup.Rejected},
		{"preferred", stepup.Accepted},
		{"discouraged", stepup.Accepted},
	}
	for _, tt := range tests {
		t.Run("user_verification "+tt.setting, func(t *testing.T) {
			m, _ := newMethod(t, Config{UserVerification: tt.setting})
			k := newSoftKey(testOrigin)
			c := enrol(t, m, k, "alice")
			k.uv = false // touched, but no PIN or fingerprint
			o := login(t, m, k, "alice", c)
			if o.Result != tt.want {
				t.Fatalf("sign-in without user verification: %+v, want %v", o, tt.want)
			}
			if tt.want == stepup.Rejected && o.Reason != "user_verification_missing" {
				t.Fatalf("reason %q", o.Reason)
			}
		})
	}
}

func TestRegistrationWithoutUserVerificationIsRefusedWhenRequired(t *testing.T) {
	m, _ := newMethod(t, Config{})
	k := newSoftKey(testOrigin)
	k.uv = false
	opts, err := m.BeginRegistration(ceremonyRequest(), "key", "owner-alice", "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := k.register(t, opts)
	o, err := m.FinishRegistration(ceremonyRequest(), "key", "owner-alice", "alice", body)
	if err != nil || o.Result != stepup.Rejected {
		t.Fatalf("registration without user verification: %+v, %v", o, err)
	}
	if ok, _ := m.Enrolled(context.Background(), "alice"); ok {
		t.Fatal("the refused key was stored")
	}
}

func TestAnotherUsersCredentialIsRefused(t *testing.T) {
	m, _ := newMethod(t, Config{})
	alicesKey, bobsKey := newSoftKey(testOrigin), newSoftKey(testOrigin)
	enrol(t, m, alicesKey, "alice")
	bobs := enrol(t, m, bobsKey, "bob")
	claiming := bobs.clone()
	claiming.user = m.handle("alice")
	for name, c := range map[string]*softCredential{
		"bob's key":                       bobs,
		"bob's key with alice's handle":   claiming,
		"a key registered to nobody here": {id: randomBytes(t, 32), key: bobs.key, user: m.handle("alice")},
	} {
		t.Run(name, func(t *testing.T) {
			if o := login(t, m, bobsKey, "alice", c); o.Result != stepup.Rejected {
				t.Fatalf("alice signed in with %s: %+v", name, o)
			}
		})
	}
	if o := login(t, m, bobsKey, "bob", bobs); o.Result != stepup.Accepted {
		t.Fatalf("bob's own sign-in (control): %+v", o)
	}
}
