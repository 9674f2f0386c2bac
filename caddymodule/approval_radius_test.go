package caddymodule

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/internal/testenv"
)

// TestRADIUSApprovalAgainstFreeRADIUS sends actions to a real FreeRADIUS
// acting as the approval service (internal/testenv/freeradius/approval-users):
// a policy on the action's attributes, a refusal, a push approval held
// open until the test "approves on the phone", a question, and silence.
func TestRADIUSApprovalAgainstFreeRADIUS(t *testing.T) {
	fr := testenv.StartFreeRADIUSApproval(t, "approval-radius-secret")
	t.Setenv("TEST_APPROVAL_SECRET", fr.Secret)
	radius := `radius {
				server ` + fr.Addr + ` {env.TEST_APPROVAL_SECRET}
				timeout 3s
			}`
	g := `
	stepup {
		secret "` + testSecret + `"
		user bob "` + hashFor(t, "bob-pw") + `"
		user dan "` + hashFor(t, "dan-pw") + `"
		user pat "` + hashFor(t, "pat-pw") + `"
		user quinn "` + hashFor(t, "quinn-pw") + `"
		user sam "` + hashFor(t, "sam-pw") + `"
		tier login {
			method password
			max_age 8h
		}
		approval service {
			` + radius + `
			justification none
		}
		approval service_window {
			` + radius + `
			justification none
			grant 10m
		}
	}`
	site := `
	stepup {
		transaction pay {
			match {
				method POST
				path /pay
			}
			tier login
			approval service
		}
		transaction other {
			match {
				path /other
			}
			tier login
			approval service
		}
		transaction window {
			match {
				path /window/*
			}
			tier login
			approval service_window
		}
	}
	respond "ok user={http.stepup.user} body={http.request.body}"
`
	s := startCaddy(t, g, site)

	// waitStatus polls the status URI (real time: FreeRADIUS answers in
	// the background) until it leaves pending, or the deadline.
	waitStatus := func(a *apiClient, uri string, pred func(map[string]any) bool) map[string]any {
		t.Helper()
		deadline := time.Now().Add(8 * time.Second)
		for {
			_, _, m, _ := a.send("GET", uri, "")
			if pred(m) || time.Now().After(deadline) {
				return m
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	notPending := func(m map[string]any) bool { return m["status"] != "pending" }
	ask := func(a *apiClient, method, path, body string) string {
		t.Helper()
		status, h, m, raw := a.send(method, path, body)
		if status != http.StatusAccepted {
			t.Fatalf("%s %s: %d %s (want 202: the gateway never holds a request open for RADIUS)", method, path, status, raw)
		}
		_ = m
		return h.Get("Location")
	}

	t.Run("a policy on the action's attributes approves", func(t *testing.T) {
		bob := signedIn(s, "bob").api()
		uri := ask(bob, "POST", "/pay", `{"amount":7}`)
		if m := waitStatus(bob, uri, notPending); m["status"] != "approved" {
			t.Fatalf("bob's payment: %v\n%s", m, fr.Log())
		}
		id := strings.TrimPrefix(uri, "/_stepup/approvals/")
		rec := s.awaitAudit("approval_decided", map[string]string{"approval": id})
		if rec == nil || rec["approver"] != "radius" || rec["comment"] != "Approved by the payments policy" || rec["reason"] != "radius_class=7061792d6f6b" {
			t.Fatalf("the RADIUS decision is not audited with its Reply-Message and Class: %v", rec)
		}
		if status, _, _, body := bob.send("POST", "/pay", `{"amount":7}`); status != 200 || !strings.Contains(body, `{"amount":7}`) {
			t.Fatalf("the approved payment: %d %s", status, body)
		}
	})
	t.Run("another set of the same user is refused by the policy", func(t *testing.T) {
		bob := signedIn(s, "bob").api()
		uri := ask(bob, "GET", "/other", "")
		m := waitStatus(bob, uri, notPending)
		if m["status"] != "denied" || m["comment"] != "Not covered by the payments policy" {
			t.Fatalf("bob's other action: %v", m)
		}
	})
	t.Run("a reject denies, its message shown escaped", func(t *testing.T) {
		dan := signedIn(s, "dan")
		r := dan.post("/pay", url.Values{"amount": {"1"}})
		uri := dan.location(r)
		m := waitStatus(dan.api(), uri, notPending)
		if m["status"] != "denied" {
			t.Fatalf("dan: %v", m)
		}
		page := dan.get(uri)
		if !strings.Contains(page.body, "Not on the &lt;approvers&gt; list") {
			t.Fatalf("the Reply-Message is not shown escaped: %s", page.body)
		}
	})
	t.Run("push approval held open until approved on the phone", func(t *testing.T) {
		pat := signedIn(s, "pat")
		r := pat.post("/pay", url.Values{"amount": {"3"}})
		uri := pat.location(r)
		time.Sleep(300 * time.Millisecond)
		page := pat.get(uri)
		if !strings.Contains(page.body, "has been asked") || page.Header.Get("Refresh") != "5" {
			t.Fatalf("while the server waits, the page should say so and refresh: %s", page.body)
		}
		if err := os.WriteFile(filepath.Join(fr.Dir, "approve-pat"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if m := waitStatus(pat.api(), uri, notPending); m["status"] != "approved" {
			t.Fatalf("after the phone approved: %v\n%s", m, fr.Log())
		}
		page = pat.get(uri)
		if !strings.Contains(page.body, "Confirm your action") {
			t.Fatalf("no confirmation after the push approval: %s", page.body)
		}
		if sent := pat.post(uri+"/send", nil); sent.StatusCode != 200 || !strings.Contains(sent.body, "amount=3") {
			t.Fatalf("sending: %d %s", sent.StatusCode, sent.body)
		}
	})
	t.Run("a challenge is answered by the requester", func(t *testing.T) {
		quinn := signedIn(s, "quinn")
		uri := quinn.location(quinn.post("/pay", url.Values{"amount": {"4"}}))
		var page response
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if page = quinn.get(uri); strings.Contains(page.body, "Type the number shown on your phone") {
				break
			}
		}
		if !strings.Contains(page.body, `name="answer"`) || page.Header.Get("Refresh") != "" {
			t.Fatalf("the challenge prompt is not shown as a form (without refresh): %s", page.body)
		}
		if r := quinn.post(uri+"/radius", url.Values{"answer": {"42"}}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("answering: %d %s", r.StatusCode, r.body)
		}
		if m := waitStatus(quinn.api(), uri, notPending); m["status"] != "approved" {
			t.Fatalf("after the right answer: %v\n%s", m, fr.Log())
		}
	})
	t.Run("silence leaves the request pending as unavailable", func(t *testing.T) {
		sam := signedIn(s, "sam")
		uri := sam.location(sam.post("/pay", url.Values{"amount": {"5"}}))
		m := waitStatus(sam.api(), uri, func(m map[string]any) bool { return m["detail"] != nil })
		if m["status"] != "pending" || m["detail"] != "approval service unavailable" {
			t.Fatalf("after the timeout: %v", m)
		}
		if page := sam.get(uri); !strings.Contains(page.body, "approval service is unavailable") {
			t.Fatalf("the page does not say the service is unavailable: %s", page.body)
		}
		// Let the held request end, so that the server stops promptly.
		_ = os.WriteFile(filepath.Join(fr.Dir, "deny-sam"), nil, 0o600)
	})
	t.Run("Session-Timeout caps a duration grant", func(t *testing.T) {
		bob := signedIn(s, "bob").api()
		uri := ask(bob, "GET", "/window/a", "")
		if m := waitStatus(bob, uri, notPending); m["status"] != "approved" {
			t.Fatalf("window: %v", m)
		}
		if status, _, _, _ := bob.send("GET", "/window/b", ""); status != 200 {
			t.Fatalf("within the grant: %d", status)
		}
		s.clock.Advance(2 * time.Minute)
		if status, _, _, _ := bob.send("GET", "/window/b", ""); status == 200 {
			t.Fatal("the grant outlived the server's Session-Timeout of 120 s (policy: 10m)")
		}
	})
}
