package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/internal/testenv"
	"github.com/caddy-stepup/caddy-stepup/stepup/totp"
)

// TestExampleCaddyfile runs the README's first command for real: this
// binary on Caddyfile.example (its ports moved to free ones, its storage to
// a temporary directory), and walks the demo as a newcomer would.
func TestExampleCaddyfile(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	src, err := os.ReadFile("../../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	site, upstream, admin := freePort(t), freePort(t), freePort(t)
	// The README's FreeRADIUS set-up for the demo: alice's code is 123456.
	fr := testenv.StartFreeRADIUS(t, "demo-radius-secret", true)
	cfg := strings.NewReplacer(
		"127.0.0.1:1812", fr.Addr,
		"localhost:8080", fmt.Sprintf("localhost:%d", site),
		"127.0.0.1:8081", fmt.Sprintf("127.0.0.1:%d", upstream),
		":8081 {", fmt.Sprintf(":%d {", upstream),
	).Replace(string(src))
	cfg = strings.Replace(cfg, "{\n", fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tstorage file_system %s\n", admin, filepath.Join(dir, "storage")), 1)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", path)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+dir)
	testenv.Start(t, "caddy", cmd)
	base := fmt.Sprintf("http://localhost:%d", site)
	waitFor(t, base+"/")

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	get := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Accept", "text/html")
		return do(t, c, req)
	}
	post := func(path string, form url.Values, referer string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if referer != "" {
			req.Header.Set("Referer", base+referer)
		}
		return do(t, c, req)
	}
	submit := func(page string, fields url.Values) (int, string) {
		action := regexp.MustCompile(`action="(/_stepup/[^"]+)"`).FindStringSubmatch(page)
		if action == nil {
			t.Fatalf("no form on page: %s", page)
		}
		form := url.Values{}
		for _, m := range regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`).FindAllStringSubmatch(page, -1) {
			form.Set(m[1], strings.ReplaceAll(m[2], "&amp;", "&"))
		}
		for k, v := range fields {
			form[k] = v
		}
		return post(action[1], form, "")
	}

	if code, body := get("/"); code != 200 || !strings.Contains(body, "This page is public") {
		t.Fatalf("public page: %d %s", code, body)
	}
	code, page := get("/reports/")
	if code != 200 || !strings.Contains(page, "<h1>Sign in</h1>") || !strings.Contains(page, "Reports needs your sign-in.") {
		t.Fatalf("reports did not lead to the sign-in: %d %s", code, page)
	}
	code, body := submit(page, url.Values{"username": {"alice"}, "password": {"demo-alice"}})
	if code != 200 || !strings.Contains(body, `Signed in as <strong id="user">alice</strong> holding <code id="tiers">login</code>`) {
		t.Fatalf("after sign-in: %d %s", code, body)
	}
	// The admin form: submitted without sudo, kept, stepped up, replayed.
	code, page = post("/admin/users", url.Values{"name": {"carol"}, "role": {"editor"}}, "/admin/")
	if code != 200 || !strings.Contains(page, "Step 2 of 2: Security code") || !strings.Contains(page, "Admin area needs your security code from the last 5 minutes.") || !strings.Contains(page, "Your form is saved and will be sent after this step.") {
		t.Fatalf("admin POST did not lead to the security code step: %d %s", code, page)
	}
	// Alice's secret is the one the README documents.
	secret, _ := totp.ParseSecret("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
	opts, _ := totp.Options{}.WithDefaults()
	code, confirm := submit(page, url.Values{"code": {opts.Code(secret, opts.Step(time.Now()))}})
	if code != 200 || !strings.Contains(confirm, "POST /admin/users") {
		t.Fatalf("confirmation: %d %s", code, confirm)
	}
	code, body = submit(confirm, url.Values{"action": {"send"}})
	if code != 200 || !strings.Contains(body, "User <strong>carol</strong> created with role <strong>editor</strong>") {
		t.Fatalf("replayed form: %d %s", code, body)
	}
	// Payments: a one-time code checked by FreeRADIUS.
	code, page = get("/payments/")
	if code != 200 || !strings.Contains(page, "Step 2 of 2: One-time code") {
		t.Fatalf("payments did not lead to the RADIUS step: %d %s", code, page)
	}
	if code, body := submit(page, url.Values{"code": {"123456"}}); code != 200 || !strings.Contains(body, `id="payments"`) {
		t.Fatalf("after the RADIUS step: %d %s", code, body)
	}
	// Settings: the security key tier above otp; Alice has no key yet and
	// registers one herself (the browser part is tested with Chromium in
	// caddymodule).
	if code, body := get("/settings/"); code != 200 || !strings.Contains(body, "Register a security key") || !strings.Contains(body, "/assets/webauthn.js") {
		t.Fatalf("settings did not lead to key registration: %d %s", code, body)
	}
	if code, body := get("/_stepup/"); code != 200 || !strings.Contains(body, "Log off at Security code") {
		t.Fatalf("status page: %d %s", code, body)
	}
}

func do(t *testing.T, c *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitFor(t testing.TB, u string) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not come up", u)
}
