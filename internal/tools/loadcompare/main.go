// Command loadcompare measures whole requests: it starts Caddy in-process on
// loopback with an upstream, a site that is plain reverse_proxy and a site
// with stepup in front of the same reverse_proxy, signs in once, and runs wrk
// against each in the same run. `make load` runs it. The figures go to the
// README; nothing here asserts a timing.
package main

import (
	"flag"
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
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"golang.org/x/crypto/bcrypt"

	_ "github.com/caddy-stepup/caddy-stepup"
)

func main() {
	duration := flag.Duration("d", 5*time.Second, "duration of each wrk run")
	conns := flag.Int("c", 32, "wrk connections")
	flag.Parse()
	if _, err := exec.LookPath("wrk"); err != nil {
		fail(fmt.Errorf("wrk not found (Debian package wrk; `make deps` installs it)"))
	}
	dir, err := os.MkdirTemp("", "stepup-load-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	hash, _ := bcrypt.GenerateFromPassword([]byte("bench-pw"), bcrypt.MinCost)
	up, plain, guarded := port(), port(), port()
	cfg := fmt.Sprintf(`{
	admin off
	default_bind 127.0.0.1
	auto_https off
	storage file_system %[1]s/storage
	log {
		output discard
	}
	log audit {
		output file %[1]s/audit.log
		format json
		include http.handlers.stepup.audit
	}
	stepup {
		secret "load-compare-secret-0123456789abcdef0123"
		user bench "%[2]s"
		tier login {
			method password
			max_age 8h
		}
	}
}
http://:%[3]d {
	respond "hello from the upstream"
}
http://:%[4]d {
	reverse_proxy 127.0.0.1:%[3]d
}
http://:%[5]d {
	stepup {
		transaction reports {
			match {
				path /reports/*
			}
			tier login
		}
	}
	reverse_proxy 127.0.0.1:%[3]d
}
`, dir, hash, up, plain, guarded)
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		fail(err)
	}
	if err := caddy.Load(adapted, true); err != nil {
		fail(err)
	}
	defer caddy.Stop() //nolint:errcheck

	cookie := signIn(fmt.Sprintf("http://127.0.0.1:%d", guarded))
	runs := []struct {
		name, url, header string
	}{
		{"plain reverse_proxy", fmt.Sprintf("http://127.0.0.1:%d/reports/q1", plain), ""},
		{"stepup, no set matched", fmt.Sprintf("http://127.0.0.1:%d/index.html", guarded), ""},
		{"stepup, set matched, tier held", fmt.Sprintf("http://127.0.0.1:%d/reports/q1", guarded), "Cookie: " + cookie},
	}
	fmt.Printf("wrk -t2 -c%d -d%s on loopback (2 cores shared by wrk and Caddy)\n", *conns, *duration)
	fmt.Printf("%-34s %12s %12s %12s\n", "case", "req/s", "p50", "p99")
	for _, r := range runs {
		check(r.url, r.header)
		args := []string{"-t2", fmt.Sprintf("-c%d", *conns), "-d" + duration.String(), "--latency"}
		if r.header != "" {
			args = append(args, "-H", r.header)
		}
		out, err := exec.Command("wrk", append(args, r.url)...).CombinedOutput()
		if err != nil {
			fail(fmt.Errorf("wrk: %v\n%s", err, out))
		}
		fmt.Printf("%-34s %12s %12s %12s\n", r.name, field(out, `Requests/sec:\s+(\S+)`), field(out, `(?m)^\s+50%\s+(\S+)`), field(out, `(?m)^\s+99%\s+(\S+)`))
		if non2xx := field(out, `Non-2xx or 3xx responses:\s+(\d+)`); non2xx != "-" {
			fail(fmt.Errorf("%s: %s responses were not 2xx", r.name, non2xx))
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "audit.log")); err == nil {
		fmt.Printf("audit log written during the run: %d bytes\n", fi.Size())
	}
}

func signIn(base string) string {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := c.Get(base + "/_stepup/challenge?tier=login")
	if err != nil {
		fail(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	token := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindSubmatch(page)
	if token == nil {
		fail(fmt.Errorf("no CSRF token on the sign-in page"))
	}
	form := url.Values{"csrf_token": {string(token[1])}, "target": {"login"}, "return": {"/"}, "username": {"bench"}, "password": {"bench-pw"}}
	resp, err = c.PostForm(base+"/_stepup/verify/login", form)
	if err != nil {
		fail(err)
	}
	resp.Body.Close()
	u, _ := url.Parse(base)
	var parts []string
	for _, ck := range jar.Cookies(u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	if !strings.Contains(strings.Join(parts, ";"), "stepup_session=") {
		fail(fmt.Errorf("sign-in did not set a session cookie"))
	}
	return strings.Join(parts, "; ")
}

func check(u, header string) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if k, v, ok := strings.Cut(header, ": "); ok {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fail(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		fail(fmt.Errorf("%s: status %d before the load run", u, resp.StatusCode))
	}
}

func field(out []byte, pattern string) string {
	if m := regexp.MustCompile(pattern).FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return "-"
}

func port() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadcompare:", err)
	os.Exit(1)
}
