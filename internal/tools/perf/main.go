// Command perf measures whole requests the way issue 13 defines them: one
// Caddy process (this repository's cmd/caddy) pinned to one core with
// GOMAXPROCS=1, wrk pinned to the other (-t1 -c16), each case for a few
// seconds, the cases interleaved, the median of three rounds, against
// `respond "ok"` in the same Caddy. It prints req/s, p50 and p99 and the
// ratio of each case to plain respond, and can write a CPU profile of the
// protected case. `make perf` runs it; the README's figures come from its
// output. Nothing here asserts a timing.
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
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func main() {
	duration := flag.Duration("d", 4*time.Second, "duration of each wrk run")
	rounds := flag.Int("rounds", 3, "interleaved rounds (the median is reported)")
	conns := flag.Int("c", 16, "wrk connections")
	stores := flag.String("stores", "memory,local,redis", "comma-separated stores for the protected case (memory, local, redis: a redis-server started here)")
	profile := flag.String("profile", "", "write a CPU profile of Caddy during an extra protected run to this file")
	profileCase := flag.Int("profile-case", 3, "the case to profile: 0 plain respond, 1 public route, 2 public route signed in, 3 protected route (first store), …")
	bin := flag.String("caddy", "", "Caddy binary (default: build ./cmd/caddy)")
	flag.Parse()
	tools := []string{"wrk", "taskset"}
	if slices.Contains(strings.Split(*stores, ","), "redis") {
		tools = append(tools, "redis-server")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			fail(fmt.Errorf("%s not found (Debian packages wrk, util-linux; `make deps` installs them)", tool))
		}
	}
	dir, err := os.MkdirTemp("", "stepup-perf-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	if *bin == "" {
		*bin = filepath.Join(dir, "caddy")
		build := exec.Command("go", "build", "-o", *bin, "./cmd/caddy")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fail(fmt.Errorf("go build: %v", err))
		}
	}
	caddyCPU, wrkCPU := "0", "1"
	if runtime.NumCPU() < 2 {
		caddyCPU, wrkCPU = "0", "0"
	}

	type kase struct{ name, url, header string }
	var cases []kase
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}()
	admin := 0
	for i, st := range strings.Split(*stores, ",") {
		plain, guarded, adminPort := port(), port(), port()
		storeCfg := st
		if st == "redis" {
			// A real Redis beside wrk: on a cache hit the protected case
			// asks it nothing; sign-in and the change channel use it.
			addr := fmt.Sprintf("127.0.0.1:%d", port())
			_, p, _ := net.SplitHostPort(addr)
			srv := exec.Command("taskset", "-c", wrkCPU, "redis-server", "--port", p, "--bind", "127.0.0.1",
				"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
			if err := srv.Start(); err != nil {
				fail(fmt.Errorf("redis-server: %v", err))
			}
			procs = append(procs, srv)
			waitForTCP(addr)
			storeCfg = "redis {\n\t\t\taddress " + addr + "\n\t\t}"
		}
		cfg := caddyfile(dir, st, storeCfg, plain, guarded, adminPort)
		path := filepath.Join(dir, fmt.Sprintf("Caddyfile.%s", st))
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			fail(err)
		}
		cmd := exec.Command("taskset", "-c", caddyCPU, *bin, "run", "--config", path)
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1", "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data-"+st), "XDG_CONFIG_HOME="+dir)
		logf, _ := os.Create(filepath.Join(dir, "caddy-"+st+".log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			fail(err)
		}
		procs = append(procs, cmd)
		base := fmt.Sprintf("http://127.0.0.1:%d", guarded)
		waitFor(base + "/")
		cookie := signIn(base)
		if i == 0 {
			admin = adminPort
			cases = append(cases,
				kase{"plain respond", fmt.Sprintf("http://127.0.0.1:%d/reports/q1", plain), "Cookie: " + cookie},
				kase{"stepup, public route (no set matched)", base + "/index.html", ""},
				kase{"stepup, public route, signed in", base + "/index.html", "Cookie: " + cookie},
			)
		}
		cases = append(cases, kase{"stepup, protected route, tier held (" + st + ")", base + "/reports/q1", "Cookie: " + cookie})
	}

	type result struct{ rps, p50, p99 []float64 }
	results := make([]result, len(cases))
	for _, c := range cases {
		check(c.url, c.header)
	}
	for r := 0; r < *rounds; r++ {
		for i, c := range cases {
			rps, p50, p99 := runWrk(wrkCPU, *conns, *duration, c.url, c.header)
			results[i].rps = append(results[i].rps, rps)
			results[i].p50 = append(results[i].p50, p50)
			results[i].p99 = append(results[i].p99, p99)
		}
	}
	fmt.Printf("Caddy pinned to CPU %s with GOMAXPROCS=1; wrk -t1 -c%d -d%s pinned to CPU %s; %d interleaved rounds, medians; %s, %d CPUs\n",
		caddyCPU, *conns, *duration, wrkCPU, *rounds, runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU())
	fmt.Printf("| case | req/s | p50 | p99 | ratio to plain respond |\n| --- | --- | --- | --- | --- |\n")
	for i, c := range cases {
		ratios := make([]float64, len(results[i].rps))
		for r := range ratios {
			ratios[r] = results[i].rps[r] / results[0].rps[r]
		}
		fmt.Printf("| %s | %.0f | %.0f µs | %.0f µs | %.3f |\n", c.name, median(results[i].rps), median(results[i].p50), median(results[i].p99), median(ratios))
	}
	if *profile != "" {
		protected := cases[*profileCase]
		done := make(chan error, 1)
		go func() {
			secs := int(duration.Seconds())
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", admin, secs))
			if err != nil {
				done <- err
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(*profile)
			if err != nil {
				done <- err
				return
			}
			defer f.Close()
			_, err = io.Copy(f, resp.Body)
			done <- err
		}()
		time.Sleep(100 * time.Millisecond)
		runWrk(wrkCPU, *conns, *duration+time.Second, protected.url, protected.header)
		if err := <-done; err != nil {
			fail(fmt.Errorf("profile: %v", err))
		}
		fmt.Printf("CPU profile of the protected case: %s (go tool pprof -top -focus 'stepup' %s %s)\n", *profile, *bin, *profile)
	}
}

func caddyfile(dir, name, store string, plain, guarded, admin int) string {
	hash, _ := bcrypt.GenerateFromPassword([]byte("bench-pw"), bcrypt.MinCost)
	return fmt.Sprintf(`{
	admin 127.0.0.1:%[5]d
	default_bind 127.0.0.1
	auto_https off
	persist_config off
	storage file_system %[1]s/storage-%[7]s
	log {
		output discard
	}
	log audit {
		output file %[1]s/audit-%[7]s.log
		format json
		include http.handlers.stepup.audit
	}
	stepup {
		secret "perf-secret-0123456789abcdef0123456789ab"
		store %[6]s
		user bench "%[2]s"
		tier login {
			method password
			max_age 8h
		}
	}
}
http://:%[3]d {
	respond "ok"
}
http://:%[4]d {
	stepup {
		transaction reports {
			match {
				path /reports/*
			}
			tier login
		}
	}
	respond "ok"
}
`, dir, hash, plain, guarded, admin, store, name)
}

var (
	reqPerSec = regexp.MustCompile(`Requests/sec:\s+(\S+)`)
	p50Line   = regexp.MustCompile(`(?m)^\s+50%\s+(\S+)`)
	p99Line   = regexp.MustCompile(`(?m)^\s+99%\s+(\S+)`)
	non2xx    = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
)

func runWrk(cpu string, conns int, d time.Duration, u, header string) (rps, p50, p99 float64) {
	args := []string{"-c", cpu, "wrk", "-t1", fmt.Sprintf("-c%d", conns), "-d" + d.String(), "--latency"}
	if header != "" {
		args = append(args, "-H", header)
	}
	out, err := exec.Command("taskset", append(args, u)...).CombinedOutput()
	if err != nil {
		fail(fmt.Errorf("wrk: %v\n%s", err, out))
	}
	if m := non2xx.FindSubmatch(out); m != nil {
		fail(fmt.Errorf("%s: %s responses were not 2xx", u, m[1]))
	}
	rps, _ = strconv.ParseFloat(sub(reqPerSec, out), 64)
	return rps, micros(sub(p50Line, out)), micros(sub(p99Line, out))
}

func sub(re *regexp.Regexp, out []byte) string {
	if m := re.FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return ""
}

// micros reads wrk's latency ("812.00us", "1.20ms", "2.00s").
func micros(s string) float64 {
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"us", 1}, {"ms", 1e3}, {"s", 1e6}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f * u.scale
		}
	}
	return 0
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func waitForTCP(addr string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	fail(fmt.Errorf("%s did not come up", addr))
}

func waitFor(u string) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	fail(fmt.Errorf("%s did not come up", u))
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

func port() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "perf:", err)
	os.Exit(1)
}
