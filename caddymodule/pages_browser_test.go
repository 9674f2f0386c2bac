package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/caddy-stepup/caddy-stepup/stepup/totp"
)

// The pages in real Chromium: every page a person meets, at a desktop and
// a phone's size, in light and dark, scanned with axe-core for WCAG 2.2 AA
// problems (none allowed), checked for horizontal overflow on the phone,
// and photographed into testdata/artifacts. The flows assert what a first
// user needs to read: what asked for a step and why, who is signed in, that
// a form was kept, and a notice after every action.

// axeScript is axe-core's browser build, installed by `make deps` (npm).
func axeScript(t *testing.T) string {
	t.Helper()
	path := os.Getenv("STEPUP_AXE_JS")
	if path == "" {
		path = filepath.Join(userHome, ".cache", "caddy-stepup", "node_modules", "axe-core", "axe.min.js")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		// Like Chromium and FreeRADIUS, a missing test dependency fails:
		// an accessibility scan that did not run proves nothing.
		t.Fatalf("axe-core missing (%v): `make deps` (part of `make test`) installs it", err)
	}
	return string(b)
}

type viewVariant struct {
	name   string
	w, h   int64
	mobile bool
	dark   bool
	shot   bool
}

var viewVariants = []viewVariant{
	{"desktop-light", 1280, 800, false, false, true},
	{"desktop-dark", 1280, 800, false, true, false},
	{"phone-light", 390, 844, true, false, false},
	{"phone-dark", 390, 844, true, true, true},
}

// auditor scans pages in one Chromium tab.
type auditor struct {
	c       *chrome
	axe     string
	scanned int
}

func (a *auditor) emulate(v viewVariant) {
	a.c.t.Helper()
	scheme := "light"
	if v.dark {
		scheme = "dark"
	}
	if _, err := chromedp.Call(a.c.ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: v.w, Height: v.h, DeviceScaleFactor: 1, Mobile: v.mobile}); err != nil {
		a.c.t.Fatalf("device metrics: %v", err)
	}
	if _, err := chromedp.Call(a.c.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
		a.c.t.Fatalf("emulated media: %v", err)
	}
}

type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target  []any  `json:"target"`
		Summary string `json:"failureSummary"`
	} `json:"nodes"`
}

// scan checks the page shown now in every variant. reload: the page may be
// loaded again between variants (a GET page that refreshes itself); a page
// that answered a POST is scanned as it stands.
func (a *auditor) scan(name string, reload bool) {
	t := a.c.t
	t.Helper()
	for i, v := range viewVariants {
		a.emulate(v)
		if reload && i > 0 {
			a.c.do(chromedp.Reload())
		}
		if _, err := chromedp.Run(a.c.ctx, chromedp.Poll[bool](`document.readyState === "complete"`)); err != nil {
			t.Fatalf("%s: page never loaded: %v", name, err)
		}
		ctx, cancel := context.WithTimeout(a.c.ctx, 20*time.Second)
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof axe !== "undefined" || (function(){`+a.axe+`; return true})()`)); err != nil {
			cancel()
			t.Fatalf("%s: injecting axe-core: %v", name, err)
		}
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]}, resultTypes: ["violations"]}).then(r => JSON.stringify(r.violations))`, chromedp.EvalAwaitPromise))
		cancel()
		if err != nil {
			t.Fatalf("%s (%s): axe.run: %v", name, v.name, err)
		}
		var violations []axeViolation
		if err := json.Unmarshal([]byte(raw), &violations); err != nil {
			t.Fatalf("%s: axe result: %v", name, err)
		}
		for _, vi := range violations {
			var where []string
			for _, n := range vi.Nodes {
				where = append(where, fmt.Sprint(n.Target)+": "+n.Summary)
			}
			t.Errorf("%s (%s) at %s: axe %s (%s): %s\n  %s", name, v.name, a.c.path(), vi.ID, vi.Impact, vi.Help, strings.Join(where, "\n  "))
		}
		if v.mobile {
			over, _ := chromedp.Run(a.c.ctx, chromedp.Evaluate[string](`document.documentElement.scrollWidth + " " + window.innerWidth`))
			var sw, iw int
			fmt.Sscan(over, &sw, &iw)
			if sw > iw {
				t.Errorf("%s (%s): the page is wider than the screen: scrollWidth %d > innerWidth %d", name, v.name, sw, iw)
			}
		}
		if v.shot {
			a.c.screenshot("page-" + name + "-" + v.name + ".png")
		}
		a.scanned++
	}
	a.emulate(viewVariants[0])
}

func (c *chrome) title() string {
	out, _ := chromedp.Run(c.ctx, chromedp.Evaluate[string](`document.title`))
	return out
}

// wantText fails unless the page says every one of want.
func (c *chrome) wantText(what string, want ...string) {
	c.t.Helper()
	body := c.body()
	for _, w := range want {
		if !strings.Contains(body, w) {
			c.t.Errorf("%s: the page does not say %q; it says:\n%s", what, w, body)
		}
	}
}

func pagesGlobal(t *testing.T) string {
	return `
	stepup {
		secret "` + testSecret + `"
		ui {
			title "Example Corp sign-in"
		}
		user alice {
			password "` + hashFor(t, "alice-pw") + `"
			roles admin
			totp_secret ` + aliceTOTP + `
		}
		user bob {
			password "` + hashFor(t, "bob-pw") + `"
			roles staff
		}
		tier login {
			method password
			max_age 8h
		}
		tier otp {
			base login
			label "Security code"
			method totp {
				enroll self
			}
			max_age 30m
		}
		tier key {
			base otp
			method webauthn {
				enroll self
			}
			max_age 5m
		}
		tier token {
			base login
			method radius {
				server 127.0.0.1:9 radius-secret
				timeout 1s
				retries 0
			}
			max_age 15m
		}
		approval transfer {
			approvers user:alice
			approver_tier otp
			justification required
		}
	}`
}

const pagesSite = `
	stepup {
		transaction admin {
			label "Admin area"
			match {
				path /admin /admin/*
			}
			tier otp
			max_age 5m
		}
		transaction orders {
			label "Orders"
			match {
				path /orders
				method POST
			}
			tier otp
			max_age 0
		}
		transaction payments {
			label "Payments"
			match {
				path /payments /payments/*
			}
			tier token
		}
		transaction settings {
			label "Account settings"
			match {
				path /settings /settings/*
			}
			tier key
		}
		transaction transfers {
			label "Transfers"
			match {
				path /transfers
				method POST
			}
			tier login
			approval transfer
		}
	}
	handle /form {
		header Content-Type "text/html; charset=utf-8"
		respond <<HTML
			<!doctype html><html lang="en"><head><title>Forms</title></head><body><main>
			<h1>Forms</h1>
			<form method="post" action="/orders"><label>Amount <input name="amount" value="100"></label><label>IBAN <input name="iban" value="DE02120300000000202051"></label><button id="order">Order</button></form>
			<form method="post" action="/payments/send"><label>Amount <input name="amount" value="9"></label><button id="pay">Pay</button></form>
			<form method="post" action="/transfers"><label>Memo <input name="memo" value="Invoice 7"></label><button id="transfer">Transfer</button></form>
			</main></body></html>
			HTML 200
	}
	respond "ok {method} {path} user={http.stepup.user} tiers={http.stepup.tiers}"
`

// TestPagesInChromiumAreAccessibleAndSayWhatHappens walks every page in
// real Chromium and scans each with axe-core (see above).
func TestPagesInChromiumAreAccessibleAndSayWhatHappens(t *testing.T) {
	axe := axeScript(t)
	s := startCaddy(t, pagesGlobal(t), pagesSite)
	chromeTimeout = 4 * time.Minute // some 90 page views
	c := startChrome(t, s)
	chromeTimeout = 90 * time.Second
	a := &auditor{c: c, axe: axe}
	secret, _ := totp.ParseSecret(aliceTOTP)
	opts, _ := totp.Options{}.WithDefaults()
	code := func(secret []byte) string {
		// A new time step for each code: a code is used once.
		s.clock.Advance(opts.Period)
		return opts.Code(secret, opts.Step(s.clock.Now()))
	}

	// Signed out.
	c.open("/_stepup/")
	c.wantText("signed out", "You are not signed in.")
	a.scan("status-signed-out", true)

	// The admin area asks; the first step says what and why.
	c.open("/admin/")
	c.waitText("Admin area needs your security code from the last 5 minutes.")
	c.wantText("step 1", "Step 1 of 2: Sign-in", "Afterwards you go on to /admin/")
	if got := c.title(); got != "Step 1 of 2: Sign-in · Example Corp sign-in" {
		t.Errorf("step 1 title %q", got)
	}
	a.scan("step-password", true)

	// A wrong password: the error is tied to the fields, the user name kept.
	c.do(chromedp.SendKeys(`input[name="username"]`, "alice"), chromedp.SendKeys(`input[name="password"]`, "wrong"))
	c.submit(`button[type="submit"]`)
	c.waitText("The user name or password is not correct.")
	if got := c.title(); !strings.HasPrefix(got, "Error: Step 1 of 2") {
		t.Errorf("error page title %q", got)
	}
	if out := c.eval(`Promise.resolve(document.querySelector('input[name="username"]').value + "|" + document.querySelector('input[name="password"]').getAttribute("aria-invalid") + "|" + document.querySelector('input[name="password"]').getAttribute("aria-describedby"))`); out != "alice|true|form-error" {
		t.Errorf("failed sign-in: user name, aria-invalid, aria-describedby = %q", out)
	}
	a.scan("step-error", false)
	c.do(chromedp.SendKeys(`input[name="password"]`, "alice-pw"))
	c.submit(`button[type="submit"]`)

	// The second step: a security code; progress shows the first as done.
	c.waitText("Step 2 of 2: Security code")
	c.wantText("step 2", "Signed in as alice", "Not you?", "Admin area needs your security code")
	if out := c.eval(`Promise.resolve(document.querySelector('.chain li.done').innerText + "|" + document.querySelector('.chain li[aria-current="step"]').innerText)`); !strings.Contains(out, "done") || !strings.Contains(out, "current step") {
		t.Errorf("progress is told by colour alone: %q", out)
	}
	a.scan("step-totp", true)
	c.do(chromedp.SendKeys(`input[name="code"]`, code(secret)))
	c.submit(`button[type="submit"]`)
	c.waitTextStart("ok GET /admin/ user=alice")

	// A form kept for a per-request step: the page says it is kept; the
	// confirmation shows the decoded fields, a secret-like one masked.
	c.open("/form")
	c.submit(`#order`)
	c.waitText("Your form is saved and will be sent after this step.")
	c.wantText("kept order", "Orders needs your security code for this very action.", "POST /orders")
	a.scan("step-totp-kept", true)
	c.do(chromedp.SendKeys(`input[name="code"]`, code(secret)))
	c.submit(`button[type="submit"]`)
	c.waitText("Confirm your action")
	confirmPath := c.path()
	c.wantText("confirm", "It is for: Orders.", "amount", "100", "iban", "••••••••")
	if strings.Contains(c.body(), "DE02120300000000202051") {
		t.Error("the confirmation shows the IBAN")
	}
	a.scan("confirm", true)
	c.submit(`button[value="send"]`)
	c.waitTextStart("ok POST /orders user=alice")
	// Back to the confirmation (a page never cached: loaded again) says
	// that nothing more will be sent.
	c.open(confirmPath)
	c.waitText("Nothing more to send")
	c.wantText("back after sending", "It will not be sent again.")
	if strings.Contains(c.body(), "try again") {
		t.Errorf("Back after sending invites a retry:\n%s", c.body())
	}
	a.scan("message-sent", true)

	// A kept payment at the RADIUS step; Cancel asks, then discards.
	c.open("/form")
	c.submit(`#pay`)
	c.waitText("Step 2 of 2: One-time code")
	c.wantText("radius", "Your form is saved and will be sent after this step.", "Payments needs your one-time code")
	a.scan("step-radius", true)
	c.submit(`a[href^="/_stepup/cancel/"]`)
	c.waitText("Discard your saved form?")
	a.scan("cancel", true)
	c.submit(`form[action^="/_stepup/resume/"] button`)
	c.waitText("Forms")
	c.open("/_stepup/")
	c.waitText("Your saved request was discarded; nothing was sent.")

	// The session page: time in words, the stricter set's note, sign-out.
	c.wantText("status", "Signed in as alice", "7 hours 59 minutes left", "Admin area asks for it again", "Sign out")
	a.scan("status", true)

	// A security key, registered from the session page.
	c.open("/_stepup/")
	c.submit(`a[href^="/_stepup/enroll/webauthn"]`)
	c.waitText("Register a security key")
	c.wantText("register", "Step 3 of 3: set up Security key", "Cancel")
	a.scan("enrol-webauthn", true)
	c.do(chromedp.SetValue(`#nickname`, "Laptop"))
	c.click(`#webauthn-start`)
	c.waitText("Your security key was registered.")
	c.waitText("Laptop")
	a.scan("status-keys", false)

	// Its step page (after logging off at it), then a removal that asks
	// first.
	c.logOffAt("key")
	c.waitText("You logged off at that level")
	c.open("/settings/")
	c.waitText("Step 3 of 3: Security key")
	c.wantText("key step", "Account settings needs your security key.")
	a.scan("step-webauthn", true)
	c.click(`#webauthn-start`)
	c.waitTextStart("ok GET /settings/ user=alice")
	c.open("/_stepup/")
	c.submit(`a[data-key="Laptop"]`)
	c.waitText("Remove this security key?")
	a.scan("remove-confirm", true)
	c.submit(`form[action="/_stepup/webauthn/remove"] button`)
	c.waitText("The security key was removed.")
	c.logOffAt("otp")
	c.waitText("You logged off at that level")

	// Not found, in German.
	c.open("/_stepup/nowhere")
	c.waitText("There is no such page.")
	a.scan("message-not-found", true)

	// Bob, in a second profile of the same browser, sets up his app.
	bctx, cancel := chromedp.NewContext(c.ctx, chromedp.WithNewBrowserContext())
	defer cancel()
	b := &chrome{t: t, ctx: bctx, base: c.base}
	ab := &auditor{c: b, axe: axe}
	b.open("/_stepup/challenge?tier=otp&return=/_stepup/")
	b.signIn("bob", "bob-pw")
	b.waitText("Set up your authenticator app")
	b.wantText("enrol totp", "Step 2 of 2: set up Security code", "This key is shown only now", "Cancel")
	ab.scan("enrol-totp", true)
	key, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("manual-key").textContent`))
	bobSecret, err := totp.ParseSecret(key)
	if err != nil {
		t.Fatalf("bob's key %q: %v", key, err)
	}
	b.do(chromedp.SendKeys(`input[name="code"]`, code(bobSecret)))
	b.submit(`button[type="submit"]`)
	b.waitText("Your authenticator app is set up.")

	// "Not you?" asks, signs out, and the walk starts again.
	b.open("/payments/")
	b.waitText("Step 2 of 2: One-time code")
	b.submit(`a[href^="/_stepup/signout"]`)
	b.waitText("Sign out?")
	ab.scan("signout", true)
	b.submit(`form[action="/_stepup/logout"] button`)
	b.waitText("You signed out.")
	b.waitText("Step 1 of 2: Sign-in")

	// An approval: bob asks, alice decides, bob sends.
	b.signIn("bob", "bob-pw")
	b.waitText("Step 2 of 2")
	b.open("/form")
	b.submit(`#transfer`)
	b.waitText("Why do you need this?")
	approvalPath := b.path()
	ab.scan("approval-requester", true)
	b.do(chromedp.SendKeys(`#justification`, "Invoice due today"))
	b.submit(`form button[type="submit"]`)
	b.waitText("Your justification was sent to the approvers.")
	b.waitText("Stop updating this page")
	b.open(approvalPath + "?updates=off")
	b.waitText("Automatic updates are off.")
	ab.scan("approval-waiting", true)

	c.open("/_stepup/challenge?tier=otp&return=/_stepup/approvals")
	c.do(chromedp.SendKeys(`input[name="code"]`, code(secret)))
	c.submit(`button[type="submit"]`)
	c.waitText("Waiting for you")
	a.scan("inbox", true)
	c.submit(`a[href="` + approvalPath + `"]`)
	c.waitText("Invoice due today")
	c.wantText("approver", "Transfers (transfers)", "memo", "Invoice 7")
	a.scan("approval-approver", true)
	c.submit(`button[value="approve"]`)
	c.waitText("Your decision was recorded.")
	c.wantText("decided", "You decided: approve.")

	b.open(approvalPath)
	b.waitText("Confirm your action")
	ab.scan("approval-confirm", true)
	b.submit(`form[action$="/send"] button`)
	b.waitTextStart("ok POST /transfers user=bob")

	// German, chosen from Accept-Language.
	if _, err := chromedp.Call(bctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Accept-Language": "de-DE,de;q=0.9"}}); err != nil {
		t.Fatal(err)
	}
	b.open("/_stepup/")
	b.waitText("Ihre Sitzung")
	b.wantText("german", "Angemeldet als bob", "Abmelden")
	ab.scan("status-de", true)

	t.Logf("%d page views scanned with axe-core", a.scanned+ab.scanned)
}

// TestStepContextIsLookedUpNotTakenFromTheURL: the set a step page names
// is found on the server, from the sets that require the tier and match
// the path the user goes on to; a crafted link cannot make the page name
// a set, and query text is never shown as a sentence.
func TestStepContextIsLookedUpNotTakenFromTheURL(t *testing.T) {
	s := startCaddy(t, pagesGlobal(t), pagesSite)
	b := s.browser()
	b.login("login", "/", creds("alice", "alice-pw"))
	for _, tc := range []struct{ query, want, not string }{
		{"tier=otp&max_age=300&return=/admin/users", "Admin area needs your security code from the last 5 minutes.", ""},
		{"tier=otp&max_age=300&return=/elsewhere&set=admin&label=Admin+area", "This page needs your security code from the last 5 minutes.", "Admin area"},
		{"tier=token&return=/admin/users", "This page needs your one-time code.", "Admin area"},
		{"tier=otp&return=/%3Cb%3EPay+now%3C%2Fb%3E", "This page needs your security code.", "<b>Pay"},
	} {
		page := b.get("/_stepup/challenge?" + tc.query)
		if !strings.Contains(page.body, tc.want) || (tc.not != "" && strings.Contains(page.body, tc.not)) {
			t.Errorf("%s: want %q, not %q:\n%s", tc.query, tc.want, tc.not, page.body)
		}
	}
}
