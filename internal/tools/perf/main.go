// Command perf measures whole requests the way issue 13 defines them: one
// Caddy process (this repository's cmd/caddy) per store, pinned to one core
// with GOMAXPROCS=1, wrk pinned to the other (-t1 -c16), each case for a
// few seconds per round, the cases interleaved, three rounds, against
// `respond "ok"` in the same Caddy. A VM's speed drifts over seconds (its
// neighbours), by more than the differences measured here, so each case
// runs in slices, each between two slices of plain respond in its own
// process sent the same request (cookie or none), and a case's ratio is the
// median of its slices' ratios to the mean of their two neighbours. A
// control case, a second plain respond site, shows what noise is left. It
// prints req/s, p50 and p99 and the ratios, and can write a CPU profile of
// a case. `make perf` runs it; the README's figures come from its output.
// Nothing here asserts a timing.
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
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
	pieces := flag.Int("slices", 4, "slices of each case's run, each between two slices of plain respond")
	conns := flag.Int("c", 16, "wrk connections")
	stores := flag.String("stores", "memory,local,redis", "comma-separated stores for the protected case (memory, local, redis: a redis-server started here)")
	profile := flag.String("profile", "", "write a CPU profile of Caddy during an extra protected run to this file")
	profileCase := flag.Int("profile-case", 4, "the case to profile: 0 plain respond, 1 the control, 2 public route, 3 public route signed in, 4 protected route (first store), …")
	verbose := flag.Bool("v", false, "print every slice and its ratio to standard error")
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

	// Each case belongs to one Caddy process (one per store) and is
	// measured between two runs of plain respond in that same process: its
	// ratio is to the mean of its two neighbours, so a drift of the machine
	// over a round (other tenants of the VM, frequency) cancels out instead
	// of landing on whichever case ran last.
	type kase struct {
		name, url, header string
		proc              int
	}
	var plains []kase // plain respond of each process
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
		plain, control, guarded, adminPort := port(), port(), port(), port()
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
		cfg := caddyfile(dir, st, storeCfg, plain, control, guarded, adminPort)
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
		// Plain respond gets the same cookie: the request is the same size.
		plains = append(plains, kase{"plain respond", fmt.Sprintf("http://127.0.0.1:%d/reports/q1", plain), "Cookie: " + cookie, i})
		if i == 0 {
			admin = adminPort
			cases = append(cases,
				// Another plain respond site: its ratio shows the harness's
				// own noise, against which the others are read.
				kase{"plain respond, another site (control)", fmt.Sprintf("http://127.0.0.1:%d/reports/q1", control), "Cookie: " + cookie, i},
				kase{"stepup, public route (no set matched)", base + "/index.html", "", i},
				kase{"stepup, public route, signed in", base + "/index.html", "Cookie: " + cookie, i},
			)
		}
		cases = append(cases, kase{"stepup, protected route, tier held (" + st + ")", base + "/reports/q1", "Cookie: " + cookie, i})
	}
	for _, c := range append(slices.Clone(plains), cases...) {
		check(c.url, c.header)
	}

	// A round measures each case in slices alternating with plain respond
	// of the same process: P C P C … C P. The machine's speed drifts over
	// seconds (a VM's neighbours), so each slice of a case is compared with
	// the plain slices just before and after it; the ratio reported is the
	// median of those paired ratios over every round.
	slice := *duration / time.Duration(*pieces)
	type result struct{ rps, p50, p99, ratio []float64 }
	results := make([]result, len(cases))
	var plain result
	var drift []float64
	for r := 0; r < *rounds; r++ {
		for i, c := range cases {
			pl := plains[c.proc]
			// The plain slices send the case's own request (with or without
			// the cookie): only the handler differs.
			before, bp50, bp99 := runWrk(wrkCPU, *conns, slice, pl.url, c.header)
			if c.proc == 0 && c.header != "" {
				plain.rps, plain.p50, plain.p99 = append(plain.rps, before), append(plain.p50, bp50), append(plain.p99, bp99)
			}
			for k := 0; k < *pieces; k++ {
				rps, p50, p99 := runWrk(wrkCPU, *conns, slice, c.url, c.header)
				after, _, _ := runWrk(wrkCPU, *conns, slice, pl.url, c.header)
				drift = append(drift, math.Abs(after/before-1))
				results[i].rps = append(results[i].rps, rps)
				results[i].p50 = append(results[i].p50, p50)
				results[i].p99 = append(results[i].p99, p99)
				results[i].ratio = append(results[i].ratio, rps/((before+after)/2))
				if *verbose {
					fmt.Fprintf(os.Stderr, "%s: %.0f between %.0f and %.0f: %.3f\n", c.name, rps, before, after, rps/((before+after)/2))
				}
				before = after
			}
		}
	}
	fmt.Printf("Caddy pinned to CPU %s with GOMAXPROCS=1; wrk -t1 -c%d pinned to CPU %s; %s per case and round in %d slices alternating with plain respond; %d interleaved rounds, medians; %s, %d CPUs\n",
		caddyCPU, *conns, wrkCPU, *duration, *pieces, *rounds, runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU())
	fmt.Printf("| case | req/s | p50 | p99 | ratio to plain respond |\n| --- | --- | --- | --- | --- |\n")
	fmt.Printf("| plain respond | %.0f | %.0f µs | %.0f µs | 1.000 |\n", median(plain.rps), median(plain.p50), median(plain.p99))
	for i, c := range cases {
		fmt.Printf("| %s | %.0f | %.0f µs | %.0f µs | %.3f |\n", c.name, median(results[i].rps), median(results[i].p50), median(results[i].p99), median(results[i].ratio))
	}
	// How far two slices of the same plain respond, one slice of a case
	// apart, differed: the machine's drift, which the pairing cancels. The
	// control case (another plain respond site) shows what is left of it.
	if len(drift) > 0 {
		fmt.Printf("drift: consecutive plain respond slices differed by %.1f %% (median), %.1f %% (largest)\n",
			100*median(drift), 100*slices.Max(drift))
	}
	if *profile != "" {
		protected := append([]kase{plains[0]}, cases...)[*profileCase]
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

func caddyfile(dir, name, store string, plain, control, guarded, admin int) string {
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
http://:%[8]d {
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
`, dir, hash, plain, guarded, admin, store, name, control)
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
