package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-stepup/caddy-stepup/internal/testenv"
)

func TestRADIUSStepUpThroughTheModule(t *testing.T) {
	fr := testenv.StartFreeRADIUS(t, "module-radius-secret", true)
	silent, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	t.Setenv("TEST_RADIUS_SECRET", fr.Secret)
	g := `
	stepup {
		secret "` + testSecret + `"
		user alice "` + hashFor(t, "alice-pw") + `"
		user carol "` + hashFor(t, "carol-pw") + `"
		user dave "` + hashFor(t, "dave-pw") + `"
		tier login {
			method password
			max_age 8h
		}
		tier token {
			base login
			method radius {
				server ` + fr.Addr + ` {env.TEST_RADIUS_SECRET}
				timeout 1s
				nas_identifier stepup-test
			}
			max_age 15m
		}
		tier down {
			base login
			method radius {
				server ` + silent.LocalAddr().String() + ` secret
				timeout 200ms
				retries 0
			}
			max_age 15m
		}
	}`
	st := `
	stepup {
		transaction token {
			match {
				path /token/*
			}
			tier token
		}
		transaction down {
			match {
				path /down/*
			}
			tier down
		}
	}
	respond "ok user={http.stepup.user} tiers={http.stepup.tiers}"
`
	s := startCaddy(t, g, st)

	t.Run("accept", func(t *testing.T) {
		b := s.browser()
		b.login("login", "/", creds("alice", "alice-pw"))
		page := b.get(b.location(b.get("/token/x")))
		if !strings.Contains(page.body, "Step 2 of 2: One-time code") {
			t.Fatalf("RADIUS step: %s", page.body)
		}
		bad := b.stepUp(page, url.Values{"code": {"999999"}})
		if bad.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong code: %d", bad.StatusCode)
		}
		if r := b.follow(b.stepUp(bad, url.Values{"code": {"123456"}})); r.StatusCode != 200 || !strings.Contains(r.body, "tiers=login,token") {
			t.Fatalf("after accept: %d %q", r.StatusCode, r.body)
		}
		if s.findAudit("stepup", map[string]string{"user": "alice", "tier": "token", "result": "success"}) == nil {
			t.Fatal("no audit record")
		}
	})

	t.Run("challenge round trip", func(t *testing.T) {
		b := s.browser()
		b.login("login", "/", creds("carol", "carol-pw"))
		page := b.get(b.location(b.get("/token/x")))
		round := b.stepUp(page, url.Values{"code": {"123456"}})
		if round.StatusCode != http.StatusUnauthorized || !strings.Contains(round.body, `<p class="prompt">Enter your OTP code</p>`) {
			t.Fatalf("challenge page: %d %s", round.StatusCode, round.body)
		}
		state := hidden(round.body).Get("state")
		if state == "" || strings.Contains(round.body, "challenge-1") || strings.Contains(round.body, "6368616c6c656e67652d31") {
			t.Fatalf("round state: %q (the server's State must stay server-side)", state)
		}
		if r := b.follow(b.stepUp(round, url.Values{"code": {"654321"}})); r.StatusCode != 200 || !strings.Contains(r.body, "tiers=login,token") {
			t.Fatalf("after the second round: %d %q", r.StatusCode, r.body)
		}
		if s.findAudit("stepup", map[string]string{"user": "carol", "tier": "token", "result": "challenge"}) == nil {
			t.Fatal("no audit record of the challenge")
		}
	})

	t.Run("reject shows the server's message escaped", func(t *testing.T) {
		b := s.browser()
		b.login("login", "/", creds("dave", "dave-pw"))
		page := b.get(b.location(b.get("/token/x")))
		r := b.stepUp(page, url.Values{"code": {"111111"}})
		if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.body, "Token disabled &lt;call the helpdesk&gt;") {
			t.Fatalf("reject: %d %s", r.StatusCode, r.body)
		}
	})

	t.Run("wrong codes are rate limited", func(t *testing.T) {
		b := s.browser()
		b.login("login", "/", creds("dave", "dave-pw"))
		page := b.get(b.location(b.get("/token/x")))
		for i := 0; ; i++ {
			if i > 5 {
				t.Fatal("six rejected codes and no lockout (limits per_user defaults to 5)")
			}
			page = b.stepUp(page, url.Values{"code": {"111111"}})
			if page.StatusCode == http.StatusTooManyRequests {
				break
			}
		}
		if !strings.Contains(page.body, "Too many failed attempts") {
			t.Fatalf("lockout page: %s", page.body)
		}
		if s.findAudit("rate_limited", map[string]string{"user": "dave", "tier": "token"}) == nil {
			t.Fatal("no audit record of the lockout")
		}
	})

	t.Run("unavailable", func(t *testing.T) {
		b := s.browser()
		b.login("login", "/", creds("alice", "alice-pw"))
		before := b.cookie("stepup_session").Value
		page := b.get(b.location(b.get("/down/x")))
		r := b.stepUp(page, url.Values{"code": {"123456"}})
		if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(r.body, "authentication service is unavailable") {
			t.Fatalf("all servers silent: %d %s", r.StatusCode, r.body)
		}
		if b.cookie("stepup_session").Value != before {
			t.Fatal("the session changed")
		}
		if r := b.get("/reports/x"); r.StatusCode != 200 || !strings.Contains(r.body, "tiers=login") {
			t.Fatalf("session after the outage: %d %q", r.StatusCode, r.body)
		}
		if s.findAudit("stepup", map[string]string{"tier": "down", "result": "unavailable"}) == nil {
			t.Fatal("no audit record of the outage")
		}
	})

	t.Run("codes never reach the audit log", func(t *testing.T) {
		for _, rec := range s.auditRecords() {
			for k, v := range rec {
				if str := fmt.Sprint(v); k != "ts" && (strings.Contains(str, "123456") || strings.Contains(str, "654321") || strings.Contains(str, "999999")) {
					t.Fatalf("a RADIUS code in the audit log: %v", rec)
				}
			}
		}
	})

	// Last: it uses up the client's attempts.
	t.Run("parallel wrong codes are capped at the limit", func(t *testing.T) {
		b := s.browser()
		b.login("login", "/", creds("carol", "carol-pw"))
		page := b.get(b.location(b.get("/token/x")))
		earlier := len(s.auditRecords())
		form := hidden(page.body)
		form.Set("code", "000000")
		jar := b.client.Jar.Cookies(mustURL(s.base))
		parallel(t, s, 20, func() *http.Request {
			req, _ := http.NewRequest(http.MethodPost, s.base+"/_stepup/verify/token", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for _, c := range jar {
				req.AddCookie(c)
			}
			return req
		})
		for i := 0; i < 6; i++ {
			b.stepUp(page, url.Values{"code": {"000000"}})
		}
		asked := 0
		for _, rec := range s.auditRecords()[earlier:] {
			if rec["msg"] == "stepup" && rec["user"] == "carol" && rec["tier"] == "token" && rec["result"] != "unavailable" {
				asked++
			}
		}
		if asked != 5 {
			t.Fatalf("%d codes sent to RADIUS for carol, want 5 (limits per_user)", asked)
		}
	})
}

func TestRADIUSConfigErrors(t *testing.T) {
	s := startCaddy(t, global(t), site)
	base := "secret \"" + testSecret + "\"\nuser alice \"" + hashFor(t, "x") + "\"\ntier login {\nmethod password\nmax_age 1h\n}\n"
	for _, tt := range []struct{ method, want string }{
		{"method radius", "needs at least one server"},
		{"method radius {\nserver nohost secret\n}", `server "nohost": want host:port`},
		{"method radius {\nserver 127.0.0.1:1812 {env.STEPUP_TEST_UNSET}\n}", "empty shared secret"},
		{"method radius {\nserver 127.0.0.1:1812 s\nnas_ip nope\n}", "not an IPv4 address"},
		{"method radius {\nserver 127.0.0.1:1812 s\nretries 99\n}", "retries must be between 0 and 10"},
		{"method radius {\nserver 127.0.0.1:1812\n}", "server <host:port> <shared secret>"},
	} {
		err := s.load("stepup {\n"+base+"tier token {\nbase login\n"+tt.method+"\nmax_age 5m\n}\n}", "stepup\nrespond ok")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want %q", tt.method, err, tt.want)
		}
	}
}
