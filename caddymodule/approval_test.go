package caddymodule

import (
	"encoding/json"
	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/approval"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// approvalGlobal: bob asks, carol and dave (role security) approve; alice
// is an admin. Payments need two approvers holding sudo and a
// justification; changes need the admin role, office hours in Berlin and
// a rate; low-risk changes approve themselves; a window grants ten minutes.
func approvalGlobal(t testing.TB) string {
	return `
	stepup {
		secret "` + testSecret + `"
		user alice {
			password "` + hashFor(t, "alice-pw") + `"
			roles admin
		}
		user bob {
			password "` + hashFor(t, "bob-pw") + `"
			roles ops
		}
		user carol {
			password "` + hashFor(t, "carol-pw") + `"
			roles security
		}
		user dave {
			password "` + hashFor(t, "dave-pw") + `"
			roles security
		}
		user erin {
			password "` + hashFor(t, "erin-pw") + `"
			roles security admin
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
		approval payments {
			approvers role:security
			require 2
			approver_tier sudo
			justification required
			expire 15m
			execute_within 5m
			break_glass {
				cooldown 1h
			}
		}
		approval change {
			roles admin
			networks 10.0.0.0/8 127.0.0.0/8
			hours Mon-Fri 08:00-18:00 Europe/Berlin
			rate 3/1h
			approvers user:carol
			auto_approve_max_risk low
		}
		approval window {
			approvers user:carol
			grant 10m
			justification none
		}
	}`
}

const approvalSite = `
	stepup {
		transaction pay {
			match {
				path /pay
				method POST
			}
			tier login
			risk high
			approval payments
		}
		transaction change {
			match {
				path /change
			}
			tier login
			risk medium
			approval change
		}
		transaction low {
			match {
				path /low
			}
			tier login
			risk low
			approval change
		}
		transaction window {
			match {
				path /window/*
			}
			tier login
			approval window
		}
	}
	respond "ok user={http.stepup.user} method={http.request.method} uri={http.request.uri} body={http.request.body}"
`

// signedIn returns a browser signed in as user at login.
func signedIn(s *server, user string) *browser {
	b := s.browser()
	b.login("login", "/", creds(user, user+"-pw"))
	return b
}

// approvalID is the id in a redirect or Location to an approval page.
func approvalID(t *testing.T, r response) string {
	t.Helper()
	id := findSub(`/_stepup/approvals/([A-Za-z0-9_-]+)`, r.Header.Get("Location"))
	if id == "" {
		t.Fatalf("no approval page in the answer (status %d, Location %q): %s", r.StatusCode, r.Header.Get("Location"), r.body)
	}
	return id
}

// decide makes an approver's decision from the approval page, stepping up
// to sudo first when the page sends them there.
func decide(t *testing.T, b *browser, user, id, decision, comment string) response {
	t.Helper()
	b.get("/_stepup/approvals/" + id)
	r := b.post("/_stepup/approvals/"+id, url.Values{"decision": {decision}, "comment": {comment}})
	if r.StatusCode == http.StatusSeeOther && strings.Contains(r.Header.Get("Location"), "/_stepup/challenge") {
		page := b.follow(r)
		back := b.follow(b.stepUp(page, pw(user+"-pw")))
		if !strings.Contains(back.body, "Confirm: "+decision) {
			t.Fatalf("after stepping up, %s's decision was not kept for confirmation: %s", user, back.body)
		}
		r = b.post("/_stepup/approvals/"+id, url.Values{"decision": {decision}, "comment": {comment}})
	}
	return r
}

func TestApprovalTwoOfThreeApproversThenTheKeptFormIsSentOnce(t *testing.T) {
	s := startCaddy(t, approvalGlobal(t), approvalSite)
	bob := signedIn(s, "bob")
	r := bob.post("/pay", url.Values{"amount": {"100"}, "iban": {"DE02"}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("a payment needing approval: %d %s", r.StatusCode, r.body)
	}
	id := approvalID(t, r)
	page := bob.get("/_stepup/approvals/" + id)
	if !strings.Contains(page.body, `name="justification"`) || page.Header.Get("Refresh") != "" {
		t.Fatalf("the requester is not asked for the required justification first: %s", page.body)
	}
	carol := signedIn(s, "carol")
	if r := carol.get("/_stepup/approvals/" + id); strings.Contains(r.body, `value="approve"`) {
		t.Fatal("approvers could decide before the required justification")
	}
	if r := bob.post("/_stepup/approvals/"+id, url.Values{"justification": {"supplier invoice 42"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("justification: %d %s", r.StatusCode, r.body)
	}
	page = bob.get("/_stepup/approvals/" + id)
	// A Refresh header (no script), which the page offers to stop.
	if page.Header.Get("Refresh") != "5" || !strings.Contains(page.body, "waits for approval") || !strings.Contains(page.body, "Stop updating this page") {
		t.Fatalf("the waiting page does not refresh itself: %s", page.body)
	}

	// The inbox lists it for carol, with the action in full.
	inbox := carol.get("/_stepup/approvals")
	if !strings.Contains(inbox.body, "/_stepup/approvals/"+id) || !strings.Contains(inbox.body, "POST /pay") {
		t.Fatalf("carol's inbox does not list the payment: %s", inbox.body)
	}
	view := carol.get("/_stepup/approvals/" + id)
	for _, want := range []string{"amount", "100", "iban", "supplier invoice 42", "bob"} {
		if !strings.Contains(view.body, want) {
			t.Errorf("the approver's view lacks %q", want)
		}
	}
	// carol holds login only: deciding sends her to sudo, then she confirms.
	if r := decide(t, carol, "carol", id, "approve", "ok"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("carol's approval: %d %s", r.StatusCode, r.body)
	}
	if r := carol.post("/_stepup/approvals/"+id, url.Values{"decision": {"approve"}}); r.StatusCode != http.StatusConflict {
		t.Fatalf("carol approving twice: %d, want 409", r.StatusCode)
	}
	if page := bob.get("/_stepup/approvals/" + id); !strings.Contains(page.body, "1 so far") {
		t.Fatalf("one approval of two should keep it waiting: %s", page.body)
	}
	// The requester cannot approve, even holding sudo.
	if r := bob.post("/_stepup/approvals/"+id, url.Values{"decision": {"approve"}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("self-approval: %d, want 403", r.StatusCode)
	}
	// An ops user (not an approver) learns nothing.
	alice := signedIn(s, "alice")
	if r := alice.get("/_stepup/approvals/" + id); r.StatusCode != http.StatusNotFound {
		t.Fatalf("a non-approver sees the request: %d", r.StatusCode)
	}
	if r := alice.post("/_stepup/approvals/"+id, url.Values{"decision": {"approve"}}); r.StatusCode != http.StatusNotFound {
		t.Fatalf("a non-approver decides: %d", r.StatusCode)
	}

	dave := signedIn(s, "dave")
	if r := decide(t, dave, "dave", id, "approve", ""); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("dave's approval: %d %s", r.StatusCode, r.body)
	}
	page = bob.get("/_stepup/approvals/" + id)
	if !strings.Contains(page.body, "Confirm your action") {
		t.Fatalf("approved, but no confirmation for the requester: %s", page.body)
	}
	sent := bob.post("/_stepup/approvals/"+id+"/send", nil)
	if sent.StatusCode != 200 || !strings.Contains(sent.body, "method=POST") || !strings.Contains(sent.body, "amount=100&") || !strings.Contains(sent.body, "iban=DE02") {
		t.Fatalf("the approved payment did not reach the upstream intact: %d %s", sent.StatusCode, sent.body)
	}
	if again := bob.post("/_stepup/approvals/"+id+"/send", nil); again.StatusCode == 200 {
		t.Fatal("the approved action was sent twice")
	}
	// The same payment again is a new action needing a new approval.
	if r := bob.post("/pay", url.Values{"amount": {"100"}, "iban": {"DE02"}}); r.StatusCode != http.StatusSeeOther || approvalID(t, r) == id {
		t.Fatalf("a used approval let the payment through again: %d", r.StatusCode)
	}
	for _, want := range []struct{ msg, result string }{
		{"approval_requested", "pending"}, {"approval_vote", "approve"}, {"approval_decided", "approved"}, {"approval_used", "allowed"},
	} {
		if s.findAudit(want.msg, map[string]string{"approval": id, "result": want.result}) == nil {
			t.Errorf("no %s audit record (result %s) for %s", want.msg, want.result, id)
		}
	}
	if rec := s.findAudit("approval_decided", map[string]string{"approval": id}); rec == nil || rec["approver"] != "dave" {
		t.Errorf("the deciding approver is not audited: %v", rec)
	}
}

// apiClient is a cookie-keeping API client.
type apiClient struct {
	t *testing.T
	s *server
	c *http.Client
}

func (b *browser) api() *apiClient {
	return &apiClient{t: b.t, s: b.s, c: b.client}
}

func (a *apiClient) send(method, path, body string) (int, http.Header, map[string]any, string) {
	a.t.Helper()
	req, _ := http.NewRequest(method, a.s.base+path, strings.NewReader(body))
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, resp.Header, m, string(raw)
}

func TestApprovalForAPIClientsIsOnceForThatSessionURLAndBody(t *testing.T) {
	s := startCaddy(t, approvalGlobal(t), approvalSite)
	bob := signedIn(s, "bob").api()
	status, h, m, raw := bob.send("POST", "/pay", `{"amount":100}`)
	if status != http.StatusAccepted || !strings.HasPrefix(h.Get("Location"), "/_stepup/approvals/") || m["status"] != "pending" || m["status_uri"] != h.Get("Location") || m["expires"] == nil {
		t.Fatalf("an API action needing approval: %d %v %s", status, h, raw)
	}
	uri := h.Get("Location")
	id := strings.TrimPrefix(uri, "/_stepup/approvals/")
	// Resending while it waits is the same request, not a second one.
	if status, h, _, _ := bob.send("POST", "/pay", `{"amount":100}`); status != http.StatusAccepted || h.Get("Location") != uri {
		t.Fatalf("resending a waiting action made another request: %d %s", status, h.Get("Location"))
	}
	if status, _, m, _ := bob.send("POST", uri, `{"justification":"monthly payroll"}`); status != 200 || m["status"] != "pending" {
		t.Fatalf("API justification: %d %v", status, m)
	}
	if status, _, m, _ := bob.send("GET", uri, ""); status != 200 || m["status"] != "pending" {
		t.Fatalf("status URI: %d %v", status, m)
	}
	for _, u := range []string{"carol", "dave"} {
		if r := decide(t, signedIn(s, u), u, id, "approve", ""); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s approving: %d %s", u, r.StatusCode, r.body)
		}
	}
	if _, _, m, _ := bob.send("GET", uri, ""); m["status"] != "approved" || m["use_by"] == nil {
		t.Fatalf("after two approvals: %v", m)
	}
	// Another body, another URL, another session: not this approval.
	if status, _, _, _ := bob.send("POST", "/pay", `{"amount":100000}`); status != http.StatusAccepted {
		t.Fatalf("another body passed on the approval: %d", status)
	}
	if status, _, _, _ := bob.send("POST", "/pay?to=mallory", `{"amount":100}`); status != http.StatusAccepted {
		t.Fatalf("another URL passed on the approval: %d", status)
	}
	other := signedIn(s, "bob").api()
	if status, _, _, _ := other.send("POST", "/pay", `{"amount":100}`); status != http.StatusAccepted {
		t.Fatalf("bob's other session passed on the approval: %d", status)
	}
	// Eight racing copies of the approved action: exactly one passes.
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _, _, body := bob.send("POST", "/pay", `{"amount":100}`)
			if status == 200 {
				mu.Lock()
				passed++
				mu.Unlock()
				if !strings.Contains(body, `body={"amount":100}`) {
					t.Errorf("the approved body did not reach the upstream: %s", body)
				}
			}
		}()
	}
	wg.Wait()
	if passed != 1 {
		t.Fatalf("%d racing copies of a once-approved action passed, want 1", passed)
	}
	if _, _, m, _ := bob.send("GET", uri, ""); m["status"] != "used" {
		t.Fatalf("after use: %v", m)
	}
}

func TestApprovalDeniedWithACommentEndsIt(t *testing.T) {
	s := startCaddy(t, approvalGlobal(t), approvalSite)
	bob := signedIn(s, "bob")
	api := bob.api()
	_, h, _, _ := api.send("POST", "/pay", `{"amount":5}`)
	uri := h.Get("Location")
	id := strings.TrimPrefix(uri, "/_stepup/approvals/")
	api.send("POST", uri, `{"justification":"coffee"}`)
	carol := signedIn(s, "carol")
	if r := decide(t, carol, "carol", id, "deny", "no <coffee> budget"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("deny: %d %s", r.StatusCode, r.body)
	}
	if _, _, m, _ := api.send("GET", uri, ""); m["status"] != "denied" || m["comment"] != "no <coffee> budget" {
		t.Fatalf("denied status: %v", m)
	}
	status, _, m, _ := api.send("POST", "/pay", `{"amount":5}`)
	if status != http.StatusForbidden || m["error"] != "approval_denied" || !strings.Contains(m["detail"].(string), "no <coffee> budget") {
		t.Fatalf("resending a denied action: %d %v", status, m)
	}
	page := bob.get(uri)
	if !strings.Contains(page.body, "no &lt;coffee&gt; budget") {
		t.Fatalf("the requester's page does not show the comment, escaped: %s", page.body)
	}
	// A second approver cannot revive it.
	if r := decide(t, signedIn(s, "dave"), "dave", id, "approve", ""); r.StatusCode != http.StatusConflict {
		t.Fatalf("approving a denied request: %d", r.StatusCode)
	}
}

func TestApprovalConditionsAtTheirBoundaries(t *testing.T) {
	s := startCaddy(t, approvalGlobal(t), approvalSite)
	// The clock starts on Sunday 2026-11-22 09:00 UTC (10:00 in Berlin).
	bob := signedIn(s, "bob").api()
	if status, _, m, _ := bob.send("GET", "/change", ""); status != http.StatusForbidden || m["error"] != "approval_condition_failed" || m["condition"] != "roles" {
		t.Fatalf("a user without the admin role: %d %v", status, m)
	}
	alice := signedIn(s, "alice").api()
	if status, _, m, _ := alice.send("GET", "/change", ""); status != http.StatusForbidden || m["condition"] != "hours" {
		t.Fatalf("on a Sunday: %d %v", status, m)
	}
	rec := s.findAudit("approval_refused", map[string]string{"user": "alice"})
	if rec == nil || rec["conditions"] != "roles=ok,networks=ok,hours=fail" {
		t.Fatalf("the refusal does not audit every condition: %v", rec)
	}
	// Monday 07:59 in Berlin (UTC+1 in November) is before the window.
	s.clock.Advance(21*time.Hour + 59*time.Minute) // Mon 06:59 UTC
	alice = signedIn(s, "alice").api()
	if status, _, m, _ := alice.send("GET", "/low", ""); status != http.StatusForbidden || m["condition"] != "hours" {
		t.Fatalf("Monday 07:59 Berlin: %d %v", status, m)
	}
	s.clock.Advance(time.Minute) // 08:00 Berlin: open
	if status, _, _, body := alice.send("GET", "/low", ""); status != 200 {
		t.Fatalf("a low-risk change at 08:00 Berlin is approved by the policy: %d %s", status, body)
	}
	if s.findAudit("approval_decided", map[string]string{"user": "alice", "reason": "auto_approved_low_risk"}) == nil {
		t.Error("the automatic approval is not audited")
	}
	if status, _, m, _ := alice.send("GET", "/change", ""); status != http.StatusAccepted || m["status"] != "pending" {
		t.Fatalf("a medium-risk change waits for carol: %d %v", status, m)
	}
	// rate 3/1h: /low and /change made two; a third passes, a fourth not.
	if status, _, _, _ := alice.send("GET", "/low?n=3", ""); status != 200 {
		t.Fatalf("third action within the rate: %d", status)
	}
	if status, _, m, _ := alice.send("GET", "/low?n=4", ""); status != http.StatusForbidden || m["condition"] != "rate" {
		t.Fatalf("fourth action within an hour: %d %v", status, m)
	}
	s.clock.Advance(time.Hour)
	alice = signedIn(s, "alice").api() // the session was idle an hour
	if status, _, _, _ := alice.send("GET", "/low?n=5", ""); status != 200 {
		t.Fatalf("after the rate window: %d", status)
	}
	// 17:59 Berlin is in, 18:00 out.
	s.clock.Advance(8*time.Hour + 59*time.Minute) // Mon 16:59 UTC = 17:59 Berlin
	alice = signedIn(s, "alice").api()
	if status, _, _, _ := alice.send("GET", "/low?n=6", ""); status != 200 {
		t.Fatalf("17:59 Berlin: %d", status)
	}
	s.clock.Advance(time.Minute)
	if status, _, m, _ := alice.send("GET", "/low?n=7", ""); status != http.StatusForbidden || m["condition"] != "hours" {
		t.Fatalf("18:00 Berlin: %d %v", status, m)
	}
	// A browser sees a page naming the condition, no internals.
	b := signedIn(s, "alice")
	page := b.get("/low?n=8")
	if page.StatusCode != http.StatusForbidden || !strings.Contains(page.body, "Mon-Fri 08:00-18:00 Europe/Berlin") {
		t.Fatalf("the browser's refusal does not name the hours: %d %s", page.StatusCode, page.body)
	}
}

func TestApprovalCrossSiteActionIsNeverAskedFor(t *testing.T) {
	s := startCaddy(t, approvalGlobal(t), approvalSite)
	bob := signedIn(s, "bob")
	r := bob.post("/pay", url.Values{"amount": {"1"}}, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("a cross-site payment: %d %s", r.StatusCode, r.body)
	}
	carol := signedIn(s, "carol")
	if inbox := carol.get("/_stepup/approvals"); strings.Contains(inbox.body, "/pay") {
		t.Fatal("a cross-site request reached the approvers' inbox")
	}
}

func TestApprovalExpiresAndAnUnusedApprovalLapses(t *testing.T) {
	s := startCaddy(t, approvalGlobal(t), approvalSite)
	bob := signedIn(s, "bob").api()
	_, h, _, _ := bob.send("POST", "/pay", `{"amount":1}`)
	uri := h.Get("Location")
	bob.send("POST", uri, `{"justification":"x"}`)
	s.clock.Advance(15 * time.Minute)
	if _, _, m, _ := bob.send("GET", uri, ""); m["status"] != "expired" {
		t.Fatalf("after expire: %v", m)
	}
	if s.findAudit("approval_expired", map[string]string{"approval": strings.TrimPrefix(uri, "/_stepup/approvals/")}) == nil {
		t.Error("the expiry is not audited")
	}
	carol := signedIn(s, "carol")
	if r := decide(t, carol, "carol", strings.TrimPrefix(uri, "/_stepup/approvals/"), "approve", ""); r.StatusCode != http.StatusConflict {
		t.Fatalf("approving an expired request: %d", r.StatusCode)
	}

	// Approved, then not used within execute_within (5m).
	bob = signedIn(s, "bob").api()
	_, h, _, _ = bob.send("POST", "/pay", `{"amount":2}`)
	uri = h.Get("Location")
	id := strings.TrimPrefix(uri, "/_stepup/approvals/")
	bob.send("POST", uri, `{"justification":"y"}`)
	for _, u := range []string{"carol", "dave"} {
		decide(t, signedIn(s, u), u, id, "approve", "")
	}
	s.clock.Advance(5 * time.Minute)
	if status, _, _, _ := bob.send("POST", "/pay", `{"amount":2}`); status == 200 {
		t.Fatal("an approval passed after execute_within")
	}
	if _, _, m, _ := bob.send("GET", uri, ""); m["status"] != "expired" {
		t.Fatalf("unused approval: %v", m)
	}
}

func TestBreakGlassNeedsAReasonTheTierAndRespectsTheCooldown(t *testing.T) {
	s := startCaddy(t, approvalGlobal(t), approvalSite)
	bob := signedIn(s, "bob")
	id := approvalID(t, bob.post("/pay", url.Values{"amount": {"9"}}))
	bob.get("/_stepup/approvals/" + id)
	if r := bob.post("/_stepup/approvals/"+id+"/break-glass", url.Values{"reason": {"  "}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("break glass without a reason: %d", r.StatusCode)
	}
	r := bob.post("/_stepup/approvals/"+id+"/break-glass", url.Values{"reason": {"outage, CFO unreachable"}})
	if r.StatusCode != http.StatusSeeOther || !strings.Contains(r.Header.Get("Location"), "tier=sudo") {
		t.Fatalf("break glass without sudo should send bob to step up: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	bob.follow(bob.stepUp(bob.follow(r), pw("bob-pw")))
	bob.get("/_stepup/approvals/" + id)
	if r := bob.post("/_stepup/approvals/"+id+"/break-glass", url.Values{"reason": {"outage, CFO unreachable"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("break glass: %d %s", r.StatusCode, r.body)
	}
	if sent := bob.post("/_stepup/approvals/"+id+"/send", nil); sent.StatusCode != 200 || !strings.Contains(sent.body, "amount=9") {
		t.Fatalf("the break-glass action was not sent: %d %s", sent.StatusCode, sent.body)
	}
	if rec := s.findAudit("break_glass", map[string]string{"approval": id, "result": "approved"}); rec == nil || rec["break_glass"] != true || rec["comment"] != "outage, CFO unreachable" {
		t.Fatalf("break glass is not flagged in the audit: %v", rec)
	}
	// Within the cooldown: refused.
	id2 := approvalID(t, bob.post("/pay", url.Values{"amount": {"10"}}))
	bob.get("/_stepup/approvals/" + id2)
	if r := bob.post("/_stepup/approvals/"+id2+"/break-glass", url.Values{"reason": {"again"}}); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("break glass within the cooldown: %d", r.StatusCode)
	}
	s.clock.Advance(time.Hour)
	bob = signedIn(s, "bob")
	id3 := approvalID(t, bob.post("/pay", url.Values{"amount": {"11"}}))
	bob.login("sudo", "/", pw("bob-pw"))
	bob.get("/_stepup/approvals/" + id3)
	if r := bob.post("/_stepup/approvals/"+id3+"/break-glass", url.Values{"reason": {"after the cooldown"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("break glass after the cooldown: %d %s", r.StatusCode, r.body)
	}
	// Another requester's page is not bob's to break.
	alice := signedIn(s, "alice")
	idA := approvalID(t, alice.post("/pay", url.Values{"amount": {"1"}}))
	bob.get("/_stepup/approvals/" + id3)
	if r := bob.post("/_stepup/approvals/"+idA+"/break-glass", url.Values{"reason": {"not mine"}}); r.StatusCode != http.StatusNotFound {
		t.Fatalf("breaking glass on another user's request: %d", r.StatusCode)
	}
}

func TestDurationGrantCoversTheSetForItsUserUntilItEnds(t *testing.T) {
	s := startCaddy(t, approvalGlobal(t), approvalSite)
	bob := signedIn(s, "bob")
	id := approvalID(t, bob.get("/window/a"))
	decide(t, signedIn(s, "carol"), "carol", id, "approve", "")
	for _, p := range []string{"/window/a", "/window/b?x=1"} {
		if r := bob.get(p); r.StatusCode != 200 {
			t.Fatalf("%s within the grant: %d", p, r.StatusCode)
		}
	}
	if r := signedIn(s, "alice").get("/window/a"); r.StatusCode == 200 {
		t.Fatal("bob's grant let alice through")
	}
	s.clock.Advance(10 * time.Minute)
	bob = signedIn(s, "bob")
	if r := bob.get("/window/a"); r.StatusCode == 200 {
		t.Fatal("the grant outlived its duration")
	}
}

func TestApprovalConfigErrorsNameThePolicyAndLine(t *testing.T) {
	base := func(policy, set string) string {
		return `{
	stepup {
		secret "` + testSecret + `"
		user bob "` + hashFor(t, "bob-pw") + `"
		tier login {
			method password
			max_age 1h
		}
` + policy + `
	}
}
:80 {
	stepup {
		transaction pay {
			match {
				path /pay
			}
			tier login
` + set + `
		}
	}
}`
	}
	for _, tc := range []struct{ name, policy, set, want string }{
		{"unknown policy", "", "approval nope", `Caddyfile:19: transaction set "pay": unknown approval policy "nope"`},
		{"require beyond approvers", "approval p {\n approvers user:a user:b\n require 3\n}", "approval p", `approval "p": require 3: only 2 approvers`},
		{"unknown zone", "approval p {\n approvers user:a\n hours Mon-Fri 08:00-18:00 Mars/Olympus\n}", "approval p", `at Caddyfile:11`},
		{"bad weekday", "approval p {\n approvers user:a\n hours Mon-Fry 08:00-18:00\n}", "approval p", `unknown weekday "Fry"`},
		{"bad rate", "approval p {\n approvers user:a\n rate ten/1h\n}", "approval p", `rate "ten/1h"`},
		{"nobody approves", "approval p {\n roles admin\n}", "approval p", `nobody can approve`},
		{"bad approver", "approval p {\n approvers alice\n}", "approval p", `approver "alice": want user:NAME or role:NAME`},
		{"bad network", "approval p {\n approvers user:a\n networks 10.0.0.0/33\n}", "approval p", `networks:`},
		{"duplicate", "approval p {\n approvers user:a\n}\napproval p {\n approvers user:a\n}", "approval p", `approval "p": defined more than once`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := adaptCaddyfile(base(tc.policy, tc.set))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// The zone error names the zone.
	_, _, err := adaptCaddyfile(base("approval p {\n approvers user:a\n hours Mon-Fri 08:00-18:00 Mars/Olympus\n}", "approval p"))
	if err == nil || !strings.Contains(err.Error(), `unknown time zone "Mars/Olympus"`) {
		t.Fatalf("unknown zone: %v", err)
	}
}

// TestApprovalForACookielessAPIClientWithAnIdentityFromBasicAuth: an API
// client that keeps no cookie (its identity asserted by basic_auth on
// every request) asks, and once approved the same request passes once;
// another user of the same route gets nothing from it.
func TestApprovalForACookielessAPIClientWithAnIdentityFromBasicAuth(t *testing.T) {
	g := `
	stepup {
		secret "` + testSecret + `"
		user carol {
			password "` + hashFor(t, "carol-pw") + `"
			roles security
		}
		tier sso {
			method external {
				user {http.auth.user.id}
			}
			max_age 1h
		}
		approval deploys {
			approvers role:security
			justification none
		}
	}`
	st := `
	@api path /deploy
	basic_auth @api {
		ci "` + hashFor(t, "ci-basic") + `"
		other "` + hashFor(t, "other-basic") + `"
	}
	stepup {
		transaction deploy {
			match {
				path /deploy
			}
			tier sso
			approval deploys
		}
	}
	respond "ok user={http.stepup.user} body={http.request.body}"
`
	s := startCaddy(t, g, st)
	send := func(user, pass, body string) (int, string, string) {
		req, _ := http.NewRequest("POST", s.base+"/deploy", strings.NewReader(body))
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req) // no cookie jar
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location"), string(raw)
	}
	status, loc, body := send("ci", "ci-basic", `{"version":"1.2.3"}`)
	if status != http.StatusAccepted || loc == "" {
		t.Fatalf("asking: %d %s", status, body)
	}
	// The root tier is the identity basic_auth asserts on /deploy only:
	// carol decides as an operator would, through the admin path.
	id := strings.TrimPrefix(loc, "/_stepup/approvals/")
	rt, err := running()
	if err != nil || len(rt.engines) == 0 || rt.engines[0].built.approvals == nil {
		t.Fatalf("no running engine: %v", err)
	}
	if _, err := rt.engines[0].built.approvals.DecideAsAdmin(t.Context(), id, "carol", []string{"security"}, "approve", "ship it"); err != nil {
		t.Fatalf("approving: %v", err)
	}
	if status, _, body := send("other", "other-basic", `{"version":"1.2.3"}`); status == 200 {
		t.Fatalf("another user passed on ci's approval: %s", body)
	}
	if status, _, body := send("ci", "ci-basic", `{"version":"1.2.3"}`); status != 200 || !strings.Contains(body, `body={"version":"1.2.3"}`) {
		t.Fatalf("the approved deploy: %d %s", status, body)
	}
	if status, _, _ := send("ci", "ci-basic", `{"version":"1.2.3"}`); status == 200 {
		t.Fatal("the approval passed twice")
	}
}

// TestApprovalActionsOfOthersOnARequestAreRefused: what the requester may
// do to a request (send it, withdraw it, answer its RADIUS question) no
// one else may, approvers included; the requester's other browser cannot
// send it (the approval is bound to the session it was asked from); a
// decision that is neither approve nor deny is a bad request.
func TestApprovalActionsOfOthersOnARequestAreRefused(t *testing.T) {
	s := startCaddy(t, approvalGlobal(t), approvalSite)
	bob := signedIn(s, "bob")
	id := approvalID(t, bob.post("/pay", url.Values{"amount": {"77"}}))
	bob.get("/_stepup/approvals/" + id)
	bob.post("/_stepup/approvals/"+id, url.Values{"justification": {"rent"}})
	carol, dave, alice := signedIn(s, "carol"), signedIn(s, "dave"), signedIn(s, "alice")
	carol.get("/_stepup/approvals/" + id)
	if r := carol.post("/_stepup/approvals/"+id, url.Values{"decision": {"maybe"}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("decision=maybe: %d, want 400", r.StatusCode)
	}
	for _, u := range []struct {
		name string
		b    *browser
	}{{"carol", carol}, {"dave", dave}} {
		decide(t, u.b, u.name, id, "approve", "")
	}
	for _, who := range []struct {
		name string
		b    *browser
	}{{"carol (an approver)", carol}, {"alice (a stranger)", alice}} {
		who.b.get("/_stepup/approvals")
		for _, action := range []struct {
			path string
			form url.Values
		}{{"/send", nil}, {"", url.Values{"action": {"withdraw"}}}, {"/radius", url.Values{"answer": {"42"}}}} {
			r := who.b.post("/_stepup/approvals/"+id+action.path, action.form)
			if r.StatusCode == 200 || r.StatusCode == http.StatusSeeOther {
				t.Errorf("%s posting %q on bob's approval: %d %s", who.name, action.path, r.StatusCode, r.body)
			}
		}
	}
	other := signedIn(s, "bob") // bob's other browser
	other.get("/_stepup/approvals/" + id)
	if r := other.post("/_stepup/approvals/"+id+"/send", nil); r.StatusCode == 200 {
		t.Fatalf("bob's other session sent the approved action: %s", r.body)
	}
	// Nothing above spent or ended it: bob's own browser sends it, once.
	bob.get("/_stepup/approvals/" + id)
	if r := bob.post("/_stepup/approvals/"+id+"/send", nil); r.StatusCode != 200 || !strings.Contains(r.body, "amount=77") {
		t.Fatalf("bob sending: %d %s", r.StatusCode, r.body)
	}
}

// TestExplainHonoursConditionsBeforeADurationGrant: explain answers as the
// stage decides, so a duration grant outside the policy's hours is
// refused, not "granted".
func TestExplainHonoursConditionsBeforeADurationGrant(t *testing.T) {
	g := strings.Replace(approvalGlobal(t), `		approval window {
			approvers user:carol`, `		approval window {
			hours Mon-Fri 08:00-18:00
			approvers user:carol`, 1)
	s := startCaddy(t, g, approvalSite)
	s.clock.Advance(32*time.Hour + 55*time.Minute) // Monday 17:55 UTC
	bob := signedIn(s, "bob")
	id := approvalID(t, bob.get("/window/a"))
	rt, err := running()
	if err != nil || len(rt.engines) == 0 {
		t.Fatal(err)
	}
	svc := rt.engines[0].built.approvals
	if _, err := svc.DecideAsAdmin(t.Context(), id, "carol", nil, "approve", ""); err != nil {
		t.Fatal(err)
	}
	set := &stepup.TransactionSet{Name: "window", Tier: "login", Approval: "window"}
	if x, err := svc.Explain(t.Context(), set, "bob", []string{"ops"}, "127.0.0.1", s.clock.Now()); err != nil || x.Outcome != approval.OutcomeGranted {
		t.Fatalf("within the hours: %+v %v", x, err)
	}
	s.clock.Advance(6 * time.Minute) // 18:01: outside the hours; the grant (10m) still runs
	if r := bob.get("/window/b"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("the real request at 18:01: %d, want 403 (hours)", r.StatusCode)
	}
	x, err := svc.Explain(t.Context(), set, "bob", []string{"ops"}, "127.0.0.1", s.clock.Now())
	if err != nil || x.Outcome != approval.OutcomeRefused {
		t.Fatalf("outside the hours, explain says %+v %v", x, err)
	}
}

// A refusal's page speaks the user's language, as the rest of the pages
// do, while API clients keep the English detail they parse.
func TestApprovalRefusalsSpeakTheUsersLanguage(t *testing.T) {
	s := startCaddy(t, approvalGlobal(t), approvalSite)
	// The clock starts on a Sunday: alice, who has the role, is outside
	// the policy's hours.
	for _, tc := range []struct {
		user, accept, want string
	}{
		{"bob", "de-DE,de;q=0.9", "Diese Aktion ist jetzt nicht erlaubt: Sie erfordert eine der Rollen admin."},
		{"bob", "en-GB", "This action is not allowed now: it requires one of the roles admin."},
		{"alice", "de", "Sie ist nur zu diesen Zeiten erlaubt: Mon-Fri 08:00-18:00 Europe/Berlin."},
	} {
		r := signedIn(s, tc.user).get("/change", "Accept-Language", tc.accept)
		if r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, tc.want) {
			t.Errorf("%s, %s: %d, want %q in\n%s", tc.user, tc.accept, r.StatusCode, tc.want, r.body)
		}
	}
	status, _, m, _ := signedIn(s, "bob").api().send("GET", "/change", "")
	if status != http.StatusForbidden || m["detail"] != "This action is not allowed now: requires one of the roles admin." {
		t.Errorf("API refusal: %d %v", status, m)
	}
}
