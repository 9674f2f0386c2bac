package caddymodule

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// A method that lives outside this repository's method packages, as a
// third party's would: an email-code method whose "mail" goes to an
// in-test outbox (a fake: no mail server runs here). It is registered like
// any Caddy module and needs no change to the host.

func init() {
	caddy.RegisterModule(emailCode{})
}

// outbox is where the fake method "sends" codes, by user.
var outbox sync.Map

type emailCode struct {
	// Subject of the message (an option, to prove the module reads its own
	// block).
	Subject string `json:"subject,omitempty"`
}

func (emailCode) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "stepup.methods.emailcode", New: func() caddy.Module { return new(emailCode) }}
}

func (m *emailCode) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	for d.NextBlock(0) {
		switch d.Val() {
		case "subject":
			if !d.AllArgs(&m.Subject) {
				return d.ArgErr()
			}
		default:
			return d.Errf("method emailcode has no option %q", d.Val())
		}
	}
	return nil
}

func (m *emailCode) NewMethod(env stepup.MethodEnv) (stepup.Method, error) {
	return &emailMethod{subject: m.Subject}, nil
}

type emailMethod struct{ subject string }

func (*emailMethod) Name() string     { return "emailcode" }
func (*emailMethod) Identifies() bool { return false }
func (*emailMethod) Prompt(string) stepup.Prompt {
	return stepup.Prompt{Title: "Code by email", Help: "Send yourself a code, then enter it.",
		Fields: []stepup.Field{{Name: "code", Label: "Code", Type: "text", Autocomplete: "one-time-code"}}, Submit: "Continue"}
}

// Verify sends a code on the first round and checks it on the second.
func (m *emailMethod) Verify(_ context.Context, a *stepup.Attempt) (*stepup.Outcome, error) {
	if a.Round == nil {
		code := fmt.Sprintf("%06d", len(a.User)*111111%1000000)
		outbox.Store(a.User, m.subject+": "+code)
		sum := sha256.Sum256([]byte(code))
		return &stepup.Outcome{Result: stepup.Challenged, Round: &stepup.Round{Prompt: "We sent a code to your mailbox.", State: sum[:]}}, nil
	}
	sum := sha256.Sum256([]byte(a.Form.Get("code")))
	if subtle.ConstantTimeCompare(sum[:], a.Round.State) == 1 {
		return &stepup.Outcome{Result: stepup.Accepted, User: a.User, Credential: "email"}, nil
	}
	return &stepup.Outcome{Result: stepup.Rejected, Message: "That code is not the one we sent.", Reason: "bad_code"}, nil
}

var (
	_ stepup.MethodBuilder  = (*emailCode)(nil)
	_ caddyfile.Unmarshaler = (*emailCode)(nil)
)

// TestAThirdPartyMethodNeedsNoChangeToTheHost: the module above completes
// a step-up through a real Caddy, configured in the Caddyfile and in JSON
// like the built-in methods.
func TestAThirdPartyMethodNeedsNoChangeToTheHost(t *testing.T) {
	g := `
	stepup {
		secret "` + testSecret + `"
		user alice "` + hashFor(t, "alice-pw") + `"
		tier login {
			method password
			max_age 1h
		}
		tier mail {
			base login
			method emailcode {
				subject "Your code"
			}
			max_age 10m
		}
	}`
	st := `
	stepup {
		transaction billing {
			match {
				path /billing/*
			}
			tier mail
		}
	}
	respond "ok tiers={http.stepup.tiers}"
`
	s := startCaddy(t, g, st)
	cfg, _, err := adaptCaddyfile(s.caddyfile(g, st))
	if err != nil || !strings.Contains(string(cfg), `"method":{"method":"emailcode","subject":"Your code"}`) {
		t.Fatalf("adapted: %v %s", err, cfg)
	}
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	page := b.get(b.location(b.get("/billing/x")))
	if !strings.Contains(page.body, "Code by email") {
		t.Fatalf("step page of the third-party method: %s", page.body)
	}
	round := b.stepUp(page, url.Values{"code": {""}})
	if round.StatusCode != http.StatusUnauthorized || !strings.Contains(round.body, "We sent a code to your mailbox.") {
		t.Fatalf("first round: %d %s", round.StatusCode, round.body)
	}
	if _, ok := outbox.Load("alice"); !ok {
		t.Fatal("no mail sent")
	}
	if r := b.stepUp(round, url.Values{"code": {"999999"}}); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong code: %d", r.StatusCode)
	}
	round = b.stepUp(b.get(b.location(b.get("/billing/x"))), url.Values{"code": {""}})
	mail, _ := outbox.Load("alice")
	code := strings.TrimPrefix(mail.(string), "Your code: ")
	if r := b.follow(b.stepUp(round, url.Values{"code": {code}})); r.StatusCode != 200 || !strings.Contains(r.body, "tiers=login,mail") {
		t.Fatalf("after the emailed code: %d %q", r.StatusCode, r.body)
	}
	if s.findAudit("stepup", map[string]string{"tier": "mail", "auth_method": "emailcode", "result": "success"}) == nil {
		t.Fatal("no audit record naming the third-party method")
	}
}
