package webauthn

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gowebauthn "github.com/go-webauthn/webauthn/webauthn"

	"github.com/caddy-stepup/caddy-stepup/internal/testenv"
	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

func newMethod(t testing.TB, c Config) (*Method, *testenv.Blobs) {
	t.Helper()
	bl := testenv.NewBlobs()
	c.Blobs, c.Store, c.UserKey = bl, store.NewMemory(0, nil), bytes.Repeat([]byte{3}, 32)
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return m, bl
}

func TestOptionsAreValidated(t *testing.T) {
	for _, c := range []Config{
		{UserVerification: "always"}, {Attestation: "enterprise"}, {ResidentKey: "maybe"},
		{Authenticators: []string{"nope"}}, {Origins: []string{"app.example"}},
	} {
		c.Blobs, c.Store, c.UserKey = testenv.NewBlobs(), store.NewMemory(0, nil), []byte("k")
		if _, err := New(c); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("accepted a method without storage")
	}
}

func TestCredentialsAreStoredPerUserAndRemoved(t *testing.T) {
	m, bl := newMethod(t, Config{SelfEnroll: true})
	ctx := context.Background()
	if ok, _ := m.Enrolled(ctx, "alice"); ok {
		t.Fatal("enrolled with no keys")
	}
	k1 := Credential{Credential: gowebauthn.Credential{ID: []byte{1, 2, 3}}, Nickname: "one", Created: time.Now()}
	k2 := Credential{Credential: gowebauthn.Credential{ID: []byte{4, 5, 6}}, Nickname: "two", Created: time.Now()}
	if err := m.save(ctx, "alice", []Credential{k1, k2}); err != nil {
		t.Fatal(err)
	}
	for k := range bl.Snapshot() {
		if strings.Contains(k, "alice") {
			t.Fatalf("storage key reveals the user: %s", k)
		}
	}
	if ok, _ := m.Enrolled(ctx, "alice"); !ok {
		t.Fatal("not enrolled")
	}
	if ok, _ := m.Enrolled(ctx, "bob"); ok {
		t.Fatal("Alice's keys count for Bob")
	}
	if removed, err := m.Remove(ctx, "alice", k1.ID()); !removed || err != nil {
		t.Fatalf("Remove = %v, %v", removed, err)
	}
	if removed, _ := m.Remove(ctx, "alice", "unknown"); removed {
		t.Fatal("removed an unknown key")
	}
	creds, _ := m.Credentials(ctx, "alice")
	if len(creds) != 1 || creds[0].Nickname != "two" {
		t.Fatalf("left: %+v", creds)
	}
	_, _ = m.Remove(ctx, "alice", k2.ID())
	if len(bl.Snapshot()) != 0 {
		t.Fatal("the last removal left a record behind")
	}
}

func TestUserHandlesAreOpaqueAndStable(t *testing.T) {
	m, _ := newMethod(t, Config{})
	a, b := m.handle("alice"), m.handle("bob")
	if bytes.Equal(a, b) || !bytes.Equal(a, m.handle("alice")) || bytes.Contains(a, []byte("alice")) || len(a) != 32 {
		t.Fatal("user handles must be stable per user, distinct, and not contain the name")
	}
	other, _ := newMethod(t, Config{})
	other.cfg.UserKey = []byte("another key")
	if bytes.Equal(other.handle("alice"), a) {
		t.Fatal("handles do not depend on the key")
	}
}

func TestCeremonyStateIsSingleUseAndPerSession(t *testing.T) {
	m, _ := newMethod(t, Config{})
	ctx := context.Background()
	sd := &gowebauthn.SessionData{Challenge: "c"}
	if err := m.keep(ctx, ceremonyKey("login", "owner1", "key"), sd, "x"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.take(ctx, ceremonyKey("login", "owner2", "key")); err == nil {
		t.Fatal("another session took the challenge")
	}
	got, extra, err := m.take(ctx, ceremonyKey("login", "owner1", "key"))
	if err != nil || got.Challenge != "c" || extra != "x" {
		t.Fatalf("take = %+v %q %v", got, extra, err)
	}
	if _, _, err := m.take(ctx, ceremonyKey("login", "owner1", "key")); err == nil {
		t.Fatal("a challenge was used twice")
	}
}

func TestRelyingPartyFromTheRequest(t *testing.T) {
	m, _ := newMethod(t, Config{})
	r := httptest.NewRequest("GET", "http://app.example:8443/x", nil)
	wa, err := m.relyingParty(r)
	if err != nil || wa.Config.RPID != "app.example" || wa.Config.RPOrigins[0] != "http://app.example:8443" {
		t.Fatalf("derived %+v, %v", wa, err)
	}
	if _, err := m.relyingParty(httptest.NewRequest("GET", "http://192.0.2.1/x", nil)); err == nil {
		t.Fatal("an IP address was accepted as RP id")
	}
	fixed, _ := newMethod(t, Config{RPID: "example.com", Origins: []string{"https://app.example.com"}})
	wa, _ = fixed.relyingParty(r)
	if wa.Config.RPID != "example.com" || wa.Config.RPOrigins[0] != "https://app.example.com" {
		t.Fatal("configured RP id and origins not used")
	}
	if _, err := m.BeginLogin(r, "key", "o", "nobody"); err != ErrNoCredentials {
		t.Fatalf("BeginLogin without keys: %v", err)
	}
	o, err := m.FinishLogin(r, "key", "o", "nobody", []byte("{}"))
	if err != nil || o.Result != stepup.Rejected || o.Reason != "challenge_missing" {
		t.Fatalf("finish without begin: %+v %v", o, err)
	}
}
