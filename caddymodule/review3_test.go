package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// Review 3: the admin API, enrolment links, pages and stores of issues
// 11, 12 and 14, attacked through a real Caddy.

// startTwoSites runs two sites, each with its own inline stepup
// configuration (its own users and tiers), neither naming a secret or a
// store: the defaults, as an operator hosting two applications writes
// them.
func startTwoSites(t *testing.T, siteA, siteB string) (*server, string) {
	t.Helper()
	s := &server{t: t, port: freePort(t), dir: t.TempDir()}
	s.base = fmt.Sprintf("http://127.0.0.1:%d", s.port)
	s.audit = s.dir + "/audit.log"
	s.clock = &fakeClock{t: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	now = s.clock.Now
	isolateData(t, s.dir)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
		now = time.Now
		previousHierarchies.Range(func(k, _ any) bool { previousHierarchies.Delete(k); return true })
	})
	portB := freePort(t)
	src := fmt.Sprintf(`{
	admin off
	default_bind 127.0.0.1
	auto_https off
	storage file_system %s/storage
}
http://127.0.0.1:%d {
%s
}
http://127.0.0.1:%d {
%s
}
`, s.dir, s.port, siteA, portB, siteB)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading: %v", err)
	}
	return s, fmt.Sprintf("http://127.0.0.1:%d", portB)
}

// Two applications on one Caddy, each with its own users: with the
// defaults (a secret generated into Caddy storage under one key, and the
// local store's one bbolt file in the data directory) both engines sign
// cookies with the same key and keep sessions in the same keyspace. A
// user of application A takes her session cookie to application B and is
// signed in there, as a user B's directory does not know, at B's tier of
// the same name.
func TestReview3ASessionOfOneSiteIsNotASessionOfAnother(t *testing.T) {
	siteA := `
	stepup {
		user mallory "` + hashFor(t, "mallory-pw") + `"
		tier login {
			method password
			max_age 1h
		}
		default login
	}
	respond "A ok user={http.stepup.user}"
`
	siteB := `
	stepup {
		user alice "` + hashFor(t, "alice-pw") + `"
		tier login {
			method password
			max_age 1h
		}
		default login
	}
	respond "B ok user={http.stepup.user}"
`
	s, baseB := startTwoSites(t, siteA, siteB)
	mallory := s.browser()
	if r := mallory.login("login", "/x", creds("mallory", "mallory-pw")); r.StatusCode != 200 || !strings.Contains(r.body, "A ok user=mallory") {
		t.Fatalf("mallory on site A: %d %q", r.StatusCode, r.body)
	}
	cookie := mallory.cookie("stepup_session")
	if cookie == nil {
		t.Fatal("no session cookie on site A")
	}

	// The same cookie, sent to site B.
	refusedOnSiteB(t, cookie, baseB)
}

// refusedOnSiteB sends site A's session cookie to site B's protected page:
// B must not let its holder in, but send them to sign in.
func refusedOnSiteB(t *testing.T, cookie *http.Cookie, baseB string) {
	t.Helper()
	req, _ := http.NewRequest("GET", baseB+"/private", nil)
	req.Header.Set("Accept", "text/html")
	req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body := readAll(resp); resp.StatusCode == 200 {
		t.Fatalf("site B let in site A's user with site A's cookie: %d %q", resp.StatusCode, body)
	}
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("site B: %d, want a 303 to sign in", resp.StatusCode)
	}
}

func readAll(resp *http.Response) string {
	b := new(strings.Builder)
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}
