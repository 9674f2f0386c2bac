// Package testenv starts the real external services the tests talk to,
// on free loopback ports, and stops them when the test ends. It is used by
// tests only.
package testenv

import (
	"embed"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

//go:embed freeradius/radiusd.conf.in freeradius/users freeradius/approval.conf.in freeradius/approval-users freeradius/push.sh
var freeradiusFiles embed.FS

// FreeRADIUS is a running FreeRADIUS 3 server.
type FreeRADIUS struct {
	Addr   string // host:port of the auth listener
	Secret string
	// Dir is the server's configuration directory (the push approval
	// script looks there for approve-USER and deny-USER files).
	Dir string
	out *Output
}

// Log returns what the server printed so far.
func (f *FreeRADIUS) Log() string { return f.out.String() }

// StartFreeRADIUS runs Debian's freeradius from a private two-file
// configuration (users alice, carol and dave; see freeradius/users).
// requireMA sets require_message_authenticator for the client, as servers
// hardened against BlastRADIUS do. A missing binary fails the test:
// `make test` installs the package.
func StartFreeRADIUS(t testing.TB, secret string, requireMA bool) *FreeRADIUS {
	t.Helper()
	conf, _ := freeradiusFiles.ReadFile("freeradius/radiusd.conf.in")
	users, _ := freeradiusFiles.ReadFile("freeradius/users")
	ma := "no"
	if requireMA {
		ma = "yes"
	}
	text := strings.Replace(string(conf), "require_message_authenticator = no", "require_message_authenticator = "+ma, 1)
	return startFreeRADIUS(t, secret, map[string][]byte{"radiusd.conf": []byte(text), "users": users})
}

// StartFreeRADIUSApproval runs FreeRADIUS as an approval service (see
// freeradius/approval-users): bob's payments approved by policy, dan
// always refused, pat approved when the test touches Dir/approve-pat (a
// push approval held open meanwhile), quinn asked a question (answer
// 42), sam never answered. It requires Message-Authenticator.
func StartFreeRADIUSApproval(t testing.TB, secret string) *FreeRADIUS {
	t.Helper()
	conf, _ := freeradiusFiles.ReadFile("freeradius/approval.conf.in")
	users, _ := freeradiusFiles.ReadFile("freeradius/approval-users")
	push, _ := freeradiusFiles.ReadFile("freeradius/push.sh")
	return startFreeRADIUS(t, secret, map[string][]byte{"radiusd.conf": conf, "users": users, "push.sh": push})
}

func startFreeRADIUS(t testing.TB, secret string, files map[string][]byte) *FreeRADIUS {
	t.Helper()
	bin, err := exec.LookPath("freeradius")
	if err != nil {
		t.Fatalf("freeradius not found (Debian package freeradius; `make test` installs it): %v", err)
	}
	dir := t.TempDir()
	port := FreeUDPPort(t)
	for name, data := range files {
		text := strings.NewReplacer("@DIR@", dir, "@PORT@", fmt.Sprint(port), "@SECRET@", secret).Replace(string(data))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"log", "run"} {
		_ = os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
	f := &FreeRADIUS{Addr: fmt.Sprintf("127.0.0.1:%d", port), Secret: secret, Dir: dir}
	f.out = Start(t, "freeradius", exec.Command(bin, "-f", "-l", "stdout", "-d", dir))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(f.Log(), "Ready to process requests") {
		if time.Now().After(deadline) || f.out.Exited() {
			t.Fatalf("freeradius did not start:\n%s", f.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return f
}

// FreeUDPPort returns a UDP port free on loopback now.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
