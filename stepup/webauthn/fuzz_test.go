package webauthn

import (
	"bytes"
	"context"
	"testing"
	"time"

	gowebauthn "github.com/go-webauthn/webauthn/webauthn"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// captureCeremony takes the ceremony state a Begin call stored, so that a
// fuzzer can put it back before every attempt: bodies answering its
// challenge then get past the challenge check to the signature, counter and
// authenticator checks.
func captureCeremony(t testing.TB, m *Method, kind, owner string) *gowebauthn.SessionData {
	t.Helper()
	sd, _, err := m.take(context.Background(), ceremonyKey(kind, owner, "key"))
	if err != nil {
		t.Fatal(err)
	}
	sd.Expires = time.Now().Add(time.Hour)
	return sd
}

// FuzzFinishLogin: no assertion body, however malformed, makes FinishLogin
// panic, fail or accept. The seeds answer the challenge the fuzzer replays,
// one of them correctly signed: it was used once already, so its counter
// is stale and it too must be refused.
func FuzzFinishLogin(f *testing.F) {
	m, k, c := enrolledForFuzzing(f)
	opts, err := m.BeginLogin(ceremonyRequest(), "key", "owner-alice", "alice")
	if err != nil {
		f.Fatal(err)
	}
	sd := captureCeremony(f, m, "login", "owner-alice")
	used := k.assert(f, opts, c)
	if o := finishLogin(f, m, sd, used); o.Result != stepup.Accepted {
		f.Fatalf("the seed assertion, first use: %+v", o)
	}
	if o := finishLogin(f, m, sd, used); o.Result != stepup.Rejected || o.Reason != "sign_counter_regression" {
		f.Fatalf("the seed assertion, used again: %+v", o)
	}
	k.uv = false
	f.Add(used)
	f.Add(k.assert(f, opts, c)) // fresh counter, no user verification
	f.Add(bytes.Replace(used, []byte(`"type":"public-key"`), []byte(`"type":"public-key2"`), 1))
	f.Add([]byte(`{"id":"AA","rawId":"AA","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"","signature":""}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		if o := finishLogin(t, m, sd, body); o.Result == stepup.Accepted {
			t.Fatalf("accepted %q", body)
		}
	})
}

// FuzzFinishRegistration: no registration body, however malformed, makes
// FinishRegistration panic, fail or store a key. The method allows one
// authenticator model the software key is not: a well-formed answer to the
// replayed challenge gets through every check but the last, and is refused
// there.
func FuzzFinishRegistration(f *testing.F) {
	m, _ := newMethod(f, Config{Authenticators: []string{"cb69481e-8ff7-4039-93ec-0a2729a154a8"}})
	k := newSoftKey(testOrigin)
	opts, err := m.BeginRegistration(ceremonyRequest(), "key", "owner-alice", "alice", "")
	if err != nil {
		f.Fatal(err)
	}
	sd := captureCeremony(f, m, "register", "owner-alice")
	wellFormed, _ := k.register(f, opts)
	if o := finishRegistration(f, m, sd, wellFormed); o.Result != stepup.Rejected || o.Reason != "authenticator_not_allowed" {
		f.Fatalf("the well-formed seed: %+v", o)
	}
	k.uv = false
	withoutUV, _ := k.register(f, opts)
	f.Add(wellFormed)
	f.Add(withoutUV)
	f.Add([]byte(`{"id":"AA","rawId":"AA","type":"public-key","response":{"clientDataJSON":"e30","attestationObject":"oA"}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		if o := finishRegistration(t, m, sd, body); o.Result == stepup.Accepted {
			t.Fatalf("accepted %q", body)
		}
		if ok, _ := m.Enrolled(context.Background(), "alice"); ok {
			t.Fatalf("%q stored a key", body)
		}
	})
}

// enrolledForFuzzing is a method with one key registered to alice.
func enrolledForFuzzing(f *testing.F) (*Method, *softKey, *softCredential) {
	m, _ := newMethod(f, Config{})
	k := newSoftKey(testOrigin)
	return m, k, enrol(f, m, k, "alice")
}

// finishLogin puts the captured ceremony back and finishes it with body.
func finishLogin(t testing.TB, m *Method, sd *gowebauthn.SessionData, body []byte) *stepup.Outcome {
	t.Helper()
	if err := m.keep(context.Background(), ceremonyKey("login", "owner-alice", "key"), sd, ""); err != nil {
		t.Fatal(err)
	}
	o, err := m.FinishLogin(ceremonyRequest(), "key", "owner-alice", "alice", body)
	if err != nil {
		t.Fatalf("FinishLogin failed: %v", err)
	}
	return o
}

// finishRegistration puts the captured ceremony back and finishes it with
// body.
func finishRegistration(t testing.TB, m *Method, sd *gowebauthn.SessionData, body []byte) *stepup.Outcome {
	t.Helper()
	if err := m.keep(context.Background(), ceremonyKey("register", "owner-alice", "key"), sd, "fuzzed"); err != nil {
		t.Fatal(err)
	}
	o, err := m.FinishRegistration(ceremonyRequest(), "key", "owner-alice", "alice", body)
	if err != nil {
		t.Fatalf("FinishRegistration failed: %v", err)
	}
	return o
}
