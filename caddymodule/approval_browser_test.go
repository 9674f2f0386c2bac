package caddymodule

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/chromedp/chromedp"

	_ "github.com/caddy-stepup/caddy-stepup/internal/demoapp"
	"github.com/caddy-stepup/caddy-stepup/stepup/totp"
)

// startExample loads Caddyfile.example in this process, its ports moved to
// free ones and its storage to a temporary directory: the demo as a
// newcomer runs it.
func startExample(t *testing.T) *server {
	t.Helper()
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, port: freePort(t), dir: t.TempDir()}
	s.base = fmt.Sprintf("http://localhost:%d", s.port)
	isolateData(t, s.dir)
	up := freePort(t)
	cfg := strings.NewReplacer(
		"localhost:8080", fmt.Sprintf("localhost:%d", s.port),
		"127.0.0.1:8081", fmt.Sprintf("127.0.0.1:%d", up),
		":8081 {", fmt.Sprintf(":%d {", up),
	).Replace(string(src))
	cfg = strings.Replace(cfg, "{\n", "{\n\tadmin off\n\tstorage file_system "+filepath.Join(s.dir, "storage")+"\n", 1)
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile.example: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
		previousHierarchies.Range(func(k, _ any) bool { previousHierarchies.Delete(k); return true })
	})
	if err := caddy.Load(adapted, true); err != nil {
		t.Fatalf("loading Caddyfile.example: %v", err)
	}
	return s
}

// TestApprovalDemoInTwoBrowsers walks the README's approval demo in two
// real Chromium profiles: bob asks to send a transfer, alice approves it
// from her inbox after stepping up to otp, bob confirms and his kept form
// reaches the application once. Screenshots go to testdata/artifacts.
func TestApprovalDemoInTwoBrowsers(t *testing.T) {
	s := startExample(t)
	bob, alice := startChrome(t, s), startChrome(t, s)

	bob.open("/_stepup/challenge?tier=login&return=/transfers")
	bob.signIn("bob", "demo-bob")
	bob.waitText("New transfer")
	bob.do(chromedp.SetValue(`input[name="memo"]`, "Invoice 2026-117 (urgent)"))
	bob.submit(`form[action="/transfers"] button`)
	bob.waitText("Why do you need this?")
	if !strings.HasPrefix(bob.path(), "/_stepup/approvals/") {
		t.Fatalf("bob did not land on the approval page: %s", bob.path())
	}
	approvalPath := bob.path()
	bob.do(chromedp.SendKeys(`#justification`, "Supplier invoice due today"))
	bob.submit(`form button[type="submit"]`)
	bob.waitText("waits for approval")
	bob.screenshot("approval-requester-waiting.png")

	alice.open("/_stepup/challenge?tier=login&return=/_stepup/approvals")
	alice.signIn("alice", "demo-alice")
	alice.waitText("Waiting for you")
	alice.screenshot("approval-inbox.png")
	alice.submit(`a[href="` + approvalPath + `"]`)
	alice.waitText("Supplier invoice due today")
	for _, want := range []string{"bob", "POST /transfers", "Invoice 2026-117 (urgent)", "2500"} {
		if !strings.Contains(alice.body(), want) {
			t.Errorf("the approver's view lacks %q:\n%s", want, alice.body())
		}
	}
	alice.screenshot("approval-approver.png")
	alice.do(chromedp.SendKeys(`#comment`, "Checked against the invoice"))
	alice.submit(`button[value="approve"]`)
	// Deciding needs otp: alice steps up with her authenticator app.
	alice.waitText("Security code")
	secret, _ := totp.ParseSecret("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
	opts, _ := totp.Options{}.WithDefaults()
	alice.do(chromedp.SendKeys(`input[name="code"]`, opts.Code(secret, opts.Step(time.Now()))))
	alice.submit(`button[type="submit"]`)
	alice.waitText("Confirm your decision")
	alice.submit(`button[value="approve"]`)
	alice.waitText("You decided: approve")

	// bob's page refreshes itself; the confirmation appears without a click.
	bob.waitText("Confirm your action")
	bob.screenshot("approval-requester-confirm.png")
	bob.submit(`form[action$="/send"] button`)
	bob.waitText("Transfer sent")
	if body := bob.body(); !strings.Contains(body, "Sent 2500 to DE89 3704 0044 0532 0130 00 (Invoice 2026-117 (urgent))") {
		t.Fatalf("the kept transfer did not reach the application intact:\n%s", body)
	}
	bob.screenshot("approval-sent.png")
	// Back and resend: the approval is spent.
	bob.open(approvalPath)
	bob.waitText("The approved action was sent")
}
