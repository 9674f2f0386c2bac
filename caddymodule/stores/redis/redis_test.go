package redis

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-stepup/caddy-stepup/internal/testenv"
	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// writeCerts writes a CA and a server certificate for 127.0.0.1 it signed.
func writeCerts(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, _ := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}

// open provisions the module and opens its store.
func open(t *testing.T, r *Redis) stepup.Store {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := r.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := r.OpenStore(time.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Cleanup() })
	return st
}

func TestRedisOverTLSWithAnACLUser(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeCerts(t, dir)
	port := testenv.FreeTCPPort(t)
	testenv.StartRedisWith(t, port,
		"--port", "0", "--tls-port", fmt.Sprint(port),
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no",
		"--user", "default", "off", "--user", "stepup", "on", ">s3cret", "~*", "&*", "+@all")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ctx := context.Background()

	t.Setenv("STEPUP_TEST_REDIS_PW", "s3cret") // the password through a placeholder
	st := open(t, &Redis{Addresses: []string{addr}, Username: "stepup", Password: "{env.STEPUP_TEST_REDIS_PW}", TLS: &TLS{CA: ca}, KeyPrefix: "tls:"})
	if err := st.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatalf("Set over TLS as the ACL user: %v", err)
	}
	if v, err := st.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("Get over TLS: %q, %v", v, err)
	}
	shared := st.(stepup.SharedStore)
	for deadline := time.Now().Add(5 * time.Second); !shared.Coherent(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the change channel did not come up over TLS")
		}
	}

	// Wrong credentials, or no TLS: every answer is "unavailable", never
	// "not found".
	for name, r := range map[string]*Redis{
		"wrong password": {Addresses: []string{addr}, Username: "stepup", Password: "nope", TLS: &TLS{CA: ca}, Timeout: caddy.Duration(500 * time.Millisecond)},
		"no TLS":         {Addresses: []string{addr}, Username: "stepup", Password: "s3cret", Timeout: caddy.Duration(500 * time.Millisecond)},
		"unknown CA":     {Addresses: []string{addr}, Username: "stepup", Password: "s3cret", TLS: &TLS{}, Timeout: caddy.Duration(500 * time.Millisecond)},
	} {
		bad := open(t, r)
		if _, err := bad.Get(ctx, "k"); !errors.Is(err, stepup.ErrStoreUnavailable) || errors.Is(err, stepup.ErrNotFound) {
			t.Errorf("%s: Get = %v, want ErrStoreUnavailable", name, err)
		}
		if bad.(stepup.SharedStore).Coherent() {
			t.Errorf("%s: the change channel reports coherent", name)
		}
	}
}
