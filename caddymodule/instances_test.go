package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddy-stepup/caddy-stepup/internal/testenv"
)

// These tests run Caddy instances as separate processes (this test binary,
// re-executed as `caddy run`): several instances cannot share one process,
// whose admin endpoint and configuration are global. They talk to a real
// redis-server, single and clustered, and alternate between the instances
// as a balancer without sticky sessions would.

// childCaddyEnv, set, makes the test binary run Caddy with these arguments
// (one per line) instead of the tests.
const childCaddyEnv = "STEPUP_TEST_CHILD_CADDY"

func runChildCaddy(args string) {
	os.Args = append([]string{"caddy"}, strings.Split(args, "\n")...)
	caddycmd.Main()
	os.Exit(0)
}

// instance is one Caddy process.
type instance struct {
	*server
	name      string
	config    string
	dataHome  string
	out       *testenv.Output
	cmd       *exec.Cmd
	startedAt time.Time
}

// instanceConfig is the configuration of every instance: storage is the
// Caddy storage directory (shared by instances of a cluster) and store the
// stepup store line ("" for the default). No secret: each instance takes
// the one generated in the shared storage.
func instanceConfig(t testing.TB, name, storage, store string) string {
	return `{
	admin 127.0.0.1:{ADMIN}
	persist_config off
	default_bind 127.0.0.1
	auto_https off
	storage file_system ` + storage + `
	log audit {
		output file {DIR}/audit.log
		format json
		include http.handlers.stepup.audit
	}
	stepup {
		` + store + `
		user alice {
			password "` + hashFor(t, "alice-pw") + `"
		}
		tier login {
			method password
			max_age 8h
		}
		tier sudo {
			base login
			method password
			max_age 30m
		}
		tier otp {
			base login
			method totp {
				enroll self
				lockout 3 1m
			}
			max_age 30m
		}
		limits {
			per_user 3
			per_client 200
		}
	}
}
http://127.0.0.1:{PORT} {
	stepup {
		transaction reports {
			match {
				path /reports/*
			}
			tier login
		}
		transaction admin {
			match {
				path /admin/*
			}
			tier sudo
		}
		transaction otp {
			match {
				path /otp/*
			}
			tier otp
		}
	}
	respond "ok instance=` + name + ` user={http.stepup.user} tiers={http.stepup.tiers} method={http.request.method} body={http.request.body}"
}
`
}

// startInstance runs an instance with its own Caddy data directory
// (dataHome, where the local store keeps its file).
func startInstance(t *testing.T, name, dataHome, config string) *instance {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	s := &server{t: t, port: port, dir: dir, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	s.audit = filepath.Join(dir, "audit.log")
	config = strings.NewReplacer("{PORT}", fmt.Sprint(port), "{ADMIN}", fmt.Sprint(freePort(t)), "{DIR}", dir).Replace(config)
	i := &instance{server: s, name: name, dataHome: dataHome, config: filepath.Join(dir, "Caddyfile")}
	if err := os.WriteFile(i.config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := i.start(); err != nil {
		t.Fatal(err)
	}
	return i
}

// start runs the process and waits until it serves.
func (i *instance) start() error {
	i.t.Helper()
	i.cmd = exec.Command(os.Args[0])
	i.cmd.Env = append(os.Environ(),
		childCaddyEnv+"="+strings.Join([]string{"run", "--config", i.config, "--adapter", "caddyfile"}, "\n"),
		"XDG_DATA_HOME="+i.dataHome,
		"XDG_CONFIG_HOME="+filepath.Join(i.dataHome, "config"),
	)
	i.out = testenv.Start(i.t, "caddy "+i.name, i.cmd)
	i.startedAt = time.Now()
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err := client.Get(i.base + "/_stepup/assets/style.css"); err == nil {
			resp.Body.Close()
			return nil
		}
		if i.out.Exited() {
			return fmt.Errorf("caddy %s exited:\n%s", i.name, i.out.String())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("caddy %s did not start:\n%s", i.name, i.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the process as an operator would (SIGTERM) and waits.
func (i *instance) stop() {
	_ = i.cmd.Process.Signal(syscall.SIGTERM)
	for deadline := time.Now().Add(15 * time.Second); !i.out.Exited(); {
		if time.Now().After(deadline) {
			i.t.Fatalf("caddy %s did not stop", i.name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// on points the browser at an instance; its cookies go to every instance
// (cookies are per host, not per port), as behind one balanced name.
func (b *browser) on(i *instance) *browser {
	b.s = i.server
	return b
}

// rawGet sends a GET with exactly this session cookie (an old cookie
// replayed, as an attacker holding it would) and returns the status.
func rawGet(t *testing.T, i *instance, path string, c *http.Cookie, accept string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, i.base+path, nil)
	req.Header.Set("Accept", accept)
	if c != nil {
		req.AddCookie(c)
	}
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestTwoInstancesShareStateThroughRedis(t *testing.T) {
	srv := testenv.StartRedis(t)
	twoInstances(t, "store redis {\n\t\t\taddress "+srv.Addr+"\n\t\t\tkey_prefix two:\n\t\t}")
}

func TestTwoInstancesShareStateThroughRedisCluster(t *testing.T) {
	c := testenv.StartRedisCluster(t)
	twoInstances(t, "store redis {\n\t\t\taddress "+strings.Join(c.Addrs, " ")+"\n\t\t}")
}

// twoInstances is the behaviour of two instances behind a balancer that
// alternates, with no sticky sessions.
func twoInstances(t *testing.T, store string) {
	storage := t.TempDir()
	a := startInstance(t, "A", t.TempDir(), instanceConfig(t, "A", storage, store))
	b := startInstance(t, "B", t.TempDir(), instanceConfig(t, "B", storage, store))
	br := a.browser()

	// Signed in on A, the session holds on B: the same generated secret
	// (Caddy storage) opens the cookie, the same store holds the session.
	if r := br.on(a).login("login", "/reports/x", creds("alice", "alice-pw")); r.StatusCode != 200 || !strings.Contains(r.body, "instance=A user=alice") {
		t.Fatalf("login on A: %d %s", r.StatusCode, r.body)
	}
	if r := br.on(b).get("/reports/x"); r.StatusCode != 200 || !strings.Contains(r.body, "instance=B user=alice tiers=login") {
		t.Fatalf("A's session on B: %d %s", r.StatusCode, r.body)
	}

	// A form POST kept on A is stepped up for and replayed from B.
	form := url.Values{"name": {"carol"}, "role": {"editor"}}
	r := br.on(a).do(http.MethodPost, "/admin/users", form, "Referer", a.base+"/admin/list")
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("kept POST on A: %d %s", r.StatusCode, r.body)
	}
	pending := mustURL(a.base + br.location(r)).Query().Get("pending")
	page := br.on(b).get(br.location(r))
	confirm := br.on(b).follow(br.stepUp(page, pw("alice-pw")))
	if !strings.Contains(confirm.body, "POST /admin/users") {
		t.Fatalf("confirmation on B: %d %s", confirm.StatusCode, confirm.body)
	}
	done := br.on(b).post("/_stepup/resume/"+pending, url.Values{"action": {"send"}})
	if done.StatusCode != 200 || !strings.Contains(done.body, "instance=B user=alice tiers=login,sudo method=POST body="+form.Encode()) {
		t.Fatalf("replay from B: %d %s", done.StatusCode, done.body)
	}
	if again := br.on(a).post("/_stepup/resume/"+pending, url.Values{"action": {"send"}}); again.StatusCode != http.StatusGone {
		t.Fatalf("second replay, on A: %d", again.StatusCode)
	}

	// A TOTP secret enrolled on A (Caddy storage) is the one B checks.
	enrolTOTPOnAVerifyOnB(t, br, a, b)

	// Wrong codes sent at once to both instances are capped by the shared
	// lockout counters: at most 3 are checked, then TOTP is locked on both.
	concurrentWrongCodes(t, br, a, b)

	// Wrong passwords sent at once to both instances are capped by the
	// shared counters: at most per_user (3) are even checked.
	concurrentWrongPasswords(t, br, a, b)

	// Log off on B: A refuses the old cookie within the staleness bound.
	logOffOnBRefusedOnA(t, br, a, b)
}

func enrolTOTPOnAVerifyOnB(t *testing.T, br *browser, a, b *instance) {
	t.Helper()
	page := br.on(a).get("/_stepup/enroll/totp?step=otp")
	key := findSub(`<code id="manual-key">([A-Z2-7 ]+)</code>`, page.body)
	if key == "" {
		t.Fatalf("enrolment page on A: %d %s", page.StatusCode, page.body)
	}
	secret := strings.ReplaceAll(key, " ", "")
	enrolled := br.on(a).stepUpForm(page, "/_stepup/enroll/totp", url.Values{"code": {oathtool(t, time.Now(), "--totp", "-b", secret)}})
	if enrolled.StatusCode != http.StatusSeeOther {
		t.Fatalf("confirming the code on A: %d %s", enrolled.StatusCode, enrolled.body)
	}
	if r := br.on(b).get("/otp/x"); r.StatusCode != 200 || !strings.Contains(r.body, "instance=B user=alice tiers=login,sudo,otp") {
		t.Fatalf("otp reached on A, on B: %d %s", r.StatusCode, r.body)
	}
	br.on(b).get("/_stepup/")
	br.on(b).post("/_stepup/logout", url.Values{"tier": {"otp"}})
	// B asks for a code (not for an enrolment): it has A's credential,
	// and accepts the next code of the secret A generated.
	step := br.on(b).get(br.location(br.on(b).get("/otp/x")))
	if !strings.Contains(step.body, `name="code"`) {
		t.Fatalf("B does not see the enrolled secret: %d %s", step.StatusCode, step.body)
	}
	next := oathtool(t, time.Now().Add(30*time.Second), "--totp", "-b", secret)
	if r := br.on(b).follow(br.stepUp(step, url.Values{"code": {next}})); r.StatusCode != 200 || !strings.Contains(r.body, "instance=B") {
		t.Fatalf("step-up on B with A's enrolled secret: %d %s", r.StatusCode, r.body)
	}
}

// postConcurrently sends the form to path on a and b alternately, all at
// once, and returns the response bodies.
func postConcurrently(t *testing.T, br *browser, a, b *instance, path string, form url.Values, n int) []string {
	t.Helper()
	var mu sync.Mutex
	var bodies []string
	var wg sync.WaitGroup
	for k := range n {
		target := a
		if k%2 == 1 {
			target = b
		}
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, target.base+path, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Accept", "text/html")
			resp, err := br.client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			bodies = append(bodies, fmt.Sprintf("%d %s", resp.StatusCode, body))
			mu.Unlock()
		})
	}
	wg.Wait()
	return bodies
}

func concurrentWrongCodes(t *testing.T, br *browser, a, b *instance) {
	t.Helper()
	br.on(a).get("/_stepup/")
	br.on(a).post("/_stepup/logout", url.Values{"tier": {"otp"}})
	page := br.on(a).get("/_stepup/challenge?tier=otp")
	form := hidden(page.body)
	form.Set("code", "000000")
	checked := 0
	for _, body := range postConcurrently(t, br, a, b, "/_stepup/verify/otp", form, 12) {
		if strings.Contains(body, "That code is not correct") {
			checked++
		}
	}
	if checked > 3 {
		t.Fatalf("12 wrong codes across A and B: %d checked, want at most 3 (lockout 3)", checked)
	}
	t.Logf("12 concurrent wrong codes across A and B: %d checked, the rest refused", checked)
	for _, i := range []*instance{a, b} {
		page := br.on(i).get("/_stepup/challenge?tier=otp")
		r := br.on(i).stepUp(page, url.Values{"code": {"123456"}})
		if r.StatusCode == http.StatusSeeOther || !strings.Contains(r.body, "locked") {
			t.Fatalf("a code on %s after the lockout: %d %s", i.name, r.StatusCode, r.body)
		}
	}
}

func concurrentWrongPasswords(t *testing.T, br *browser, a, b *instance) {
	t.Helper()
	br.on(a).post("/_stepup/logout", url.Values{"tier": {"sudo"}})
	page := br.on(a).get("/_stepup/challenge?tier=sudo")
	form := hidden(page.body)
	form.Set("password", "wrong")
	const attempts = 12
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for n := range attempts {
		target := a
		if n%2 == 1 {
			target = b
		}
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, target.base+"/_stepup/verify/sudo", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Accept", "text/html")
			resp, err := br.client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if statuses[http.StatusUnauthorized] > 3 || statuses[http.StatusUnauthorized]+statuses[http.StatusTooManyRequests] != attempts {
		t.Fatalf("12 wrong passwords across A and B: %v; want at most 3 checked (401), the rest refused (429)", statuses)
	}
	t.Logf("12 concurrent wrong passwords across A and B: %d checked, %d refused", statuses[401], statuses[429])
	for _, i := range []*instance{a, b} {
		page := br.on(i).get("/_stepup/challenge?tier=sudo")
		if r := br.on(i).stepUp(page, pw("alice-pw")); r.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("the right password on %s after the cap: %d", i.name, r.StatusCode)
		}
	}
}

func logOffOnBRefusedOnA(t *testing.T, br *browser, a, b *instance) {
	t.Helper()
	old := br.cookie("stepup_session")
	if code, body := rawGet(t, a, "/reports/x", old, "text/html"); code != 200 {
		t.Fatalf("before the logoff, on A: %d %s", code, body) // and now cached on A
	}
	br.on(b).get("/_stepup/")
	if r := br.on(b).post("/_stepup/logout", url.Values{"tier": {"login"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("logoff on B: %d %s", r.StatusCode, r.body)
	}
	loggedOff := time.Now()
	polls := 0
	for {
		polls++
		code, _ := rawGet(t, a, "/reports/x", old, "text/html")
		if code == http.StatusSeeOther {
			break
		}
		if time.Since(loggedOff) > 10*time.Second {
			t.Fatalf("A still serves the session logged off on B after 10 s (status %d)", code)
		}
	}
	t.Logf("logoff on B refused on A after %v (%d polls of A)", time.Since(loggedOff), polls)
}

func TestRedisDownFailsClosedAndRecovers(t *testing.T) {
	srv := testenv.StartRedis(t)
	a := startInstance(t, "A", t.TempDir(), instanceConfig(t, "A", t.TempDir(), "store redis {\n\t\t\taddress "+srv.Addr+"\n\t\t\ttimeout 1s\n\t\t}"))
	br := a.browser()
	if r := br.login("login", "/reports/x", creds("alice", "alice-pw")); r.StatusCode != 200 {
		t.Fatalf("login: %d %s", r.StatusCode, r.body)
	}
	c := br.cookie("stepup_session")

	srv.Kill()
	killed := time.Now()
	for {
		code, body := rawGet(t, a, "/reports/x", c, "text/html")
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "Temporarily unavailable") || strings.Contains(strings.ToLower(body), "redis") {
				t.Fatalf("503 page: %s", body)
			}
			break
		}
		if code != 200 || time.Since(killed) > 10*time.Second {
			t.Fatalf("with Redis down: %d %s; want 200 from the cache until the change channel is found down, then 503", code, body)
		}
	}
	t.Logf("Redis killed: requests needing a session fail closed after %v", time.Since(killed))

	code, body := rawGet(t, a, "/reports/x", c, "application/json")
	var js map[string]any
	if code != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &js) != nil || js["error"] != "temporarily_unavailable" {
		t.Fatalf("API request with Redis down: %d %s", code, body)
	}
	for _, path := range []string{"/_stepup/challenge?tier=login", "/_stepup/"} {
		if code, body := rawGet(t, a, path, c, "text/html"); code != http.StatusServiceUnavailable {
			t.Fatalf("%s with Redis down: %d %s", path, code, body)
		}
	}
	// A visitor with no session at all is not let into a protected path
	// either: "cannot say" is not "anonymous".
	if code, _ := rawGet(t, a, "/reports/x", nil, "text/html"); code != http.StatusSeeOther {
		t.Fatalf("no cookie with Redis down: %d, want the challenge (it needs no store to refuse)", code)
	}
	if code, body := rawGet(t, a, "/public", c, "text/html"); code != 200 || !strings.Contains(body, "instance=A user= ") {
		t.Fatalf("public request with Redis down: %d %s", code, body)
	}
	if code, _ := rawGet(t, a, "/_stepup/assets/style.css", c, "text/css"); code != 200 {
		t.Fatalf("assets with Redis down: %d", code)
	}
	if a.findAudit("denied", map[string]string{"result": "unavailable", "reason": "store_unavailable"}) == nil {
		t.Fatal("no audit record of the refusal")
	}

	srv.Restart()
	restarted := time.Now()
	for {
		code, body := rawGet(t, a, "/reports/x", c, "text/html")
		if code == 200 && strings.Contains(body, "user=alice") {
			break
		}
		if time.Since(restarted) > 15*time.Second {
			t.Fatalf("no recovery 15 s after Redis came back: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("Redis back: the session is served again after %v, with no restart of Caddy", time.Since(restarted))
}

func TestLocalStoreKeepsEverythingAcrossARestart(t *testing.T) {
	data := t.TempDir()
	a := startInstance(t, "A", data, instanceConfig(t, "A", t.TempDir(), ""))
	var browsers []*browser
	for range 3 {
		br := a.browser()
		if r := br.login("login", "/reports/x", creds("alice", "alice-pw")); r.StatusCode != 200 {
			t.Fatalf("login: %d %s", r.StatusCode, r.body)
		}
		browsers = append(browsers, br)
	}
	form := url.Values{"amount": {"42"}}
	r := browsers[0].do(http.MethodPost, "/admin/pay", form)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("kept POST: %d", r.StatusCode)
	}
	challenge := browsers[0].location(r)
	pending := mustURL(a.base + challenge).Query().Get("pending")

	a.stop()
	if _, err := os.Stat(filepath.Join(data, "caddy", "stepup", "store.db")); err != nil {
		t.Fatalf("the local store's file: %v", err)
	}
	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	for n, br := range browsers {
		if r := br.get("/reports/x"); r.StatusCode != 200 || !strings.Contains(r.body, "user=alice") {
			t.Fatalf("session %d after the restart: %d %s", n, r.StatusCode, r.body)
		}
	}
	b0 := browsers[0]
	confirm := b0.follow(b0.stepUp(b0.get(challenge), pw("alice-pw")))
	if !strings.Contains(confirm.body, "POST /admin/pay") {
		t.Fatalf("the request kept before the restart: %d %s", confirm.StatusCode, confirm.body)
	}
	if done := b0.post("/_stepup/resume/"+pending, url.Values{"action": {"send"}}); done.StatusCode != 200 || !strings.Contains(done.body, "body=amount=42") {
		t.Fatalf("replay after the restart: %d %s", done.StatusCode, done.body)
	}

	// A second Caddy on the same data directory is refused at load, with
	// a message saying why, rather than waiting or sharing the file.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, os.Args[0])
	second.Env = append(os.Environ(), childCaddyEnv+"=validate\n--config\n"+a.config+"\n--adapter\ncaddyfile", "XDG_DATA_HOME="+data)
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "locked by another process") {
		t.Fatalf("a second Caddy on the same store file: %v\n%s", err, out)
	}
}
