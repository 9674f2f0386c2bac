package caddymodule

// Second security review of the approval feature (issue 10). Each test
// named TestReviewApproval* that is marked FINDING fails against the code
// as reviewed; tests marked HOLDS pass and pin a property not tested
// elsewhere.

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// reviewGlobal adds to approvalGlobal: "shared", one policy named by a
// low-risk and a critical set, that approves low risk by itself; and
// "single", one approver (carol, at login), no justification.
func reviewGlobal(t testing.TB) string {
	return strings.Replace(approvalGlobal(t), "\t\tapproval window {", `		approval shared {
			approvers user:carol
			auto_approve_max_risk low
			justification none
		}
		approval single {
			approvers user:carol
			justification none
		}
		approval window {`, 1)
}

const reviewSite = `
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
		transaction apiread {
			match {
				path /api/*
			}
			tier login
			risk low
			approval shared
		}
		transaction apipay {
			match {
				path /api/pay
			}
			tier login
			risk critical
			approval shared
		}
		transaction any {
			match {
				path /any
			}
			tier login
			risk high
			approval single
		}
	}
	respond "upstream method={http.request.method} uri={http.request.uri} override={http.request.header.X-HTTP-Method-Override} ct={http.request.header.Content-Type} body={http.request.body}"
`

// rawSend sends a request with a cookie-keeping client and the given
// headers (Accept defaults to JSON).
func rawSend(t *testing.T, c *http.Client, base, method, path, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(raw)
}

// FINDING (high): the stage evaluates a policy once per request, for the
// first matched set naming it (done[policy]), so a request matching a
// low-risk and a critical set of the same policy is judged at the low
// risk: auto-approved, and max_risk checked against "low".
func TestReviewApprovalSamePolicyTwoSetsIsJudgedAtTheRiskiest(t *testing.T) {
	s := startCaddy(t, reviewGlobal(t), reviewSite)
	bob := signedIn(s, "bob")
	// /api/list is low risk only: the policy approves it itself.
	if status, _, body := rawSend(t, bob.client, s.base, "GET", "/api/list", ""); status != 200 {
		t.Fatalf("a low-risk read: %d %s", status, body)
	}
	// /api/pay is also in apipay (critical): no automatic approval.
	status, h, body := rawSend(t, bob.client, s.base, "POST", "/api/pay", `{"amount":1000000}`, "Content-Type", "application/json")
	if status == 200 {
		t.Fatalf("a critical action was auto-approved because it also matched a low-risk set of the same policy: %d %s", status, body)
	}
	if status != http.StatusAccepted || !strings.Contains(h.Get("Location"), "/_stepup/approvals/") {
		t.Fatalf("a critical action should wait for carol: %d %s", status, body)
	}
}

// FINDING (high): the once-grant's digest covers method, host, URI and
// body, but not the method-override headers that the upstream honours
// (and that the matcher itself treats as the request's method, see
// stepup/variants.go). An approved POST is spent as a DELETE.
func TestReviewApprovalMethodOverrideIsNotPartOfTheApprovedAction(t *testing.T) {
	s := startCaddy(t, reviewGlobal(t), reviewSite)
	bob := signedIn(s, "bob")
	status, h, body := rawSend(t, bob.client, s.base, "POST", "/any", `{"id":7}`, "Content-Type", "application/json")
	if status != http.StatusAccepted {
		t.Fatalf("asking: %d %s", status, body)
	}
	id := strings.TrimPrefix(h.Get("Location"), "/_stepup/approvals/")
	if r := decide(t, signedIn(s, "carol"), "carol", id, "approve", ""); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("carol approving: %d %s", r.StatusCode, r.body)
	}
	status, _, body = rawSend(t, bob.client, s.base, "POST", "/any", `{"id":7}`, "Content-Type", "application/json", "X-HTTP-Method-Override", "DELETE")
	if status == 200 {
		t.Errorf("the approval of POST /any was spent on a request the upstream runs as DELETE: %s", body)
	}

	// The browser's Confirm (POST …/send) carries the send request's own
	// headers to the replayed action.
	id2 := approvalID(t, bob.post("/any", url.Values{"id": {"8"}}))
	if r := decide(t, signedIn(s, "carol"), "carol", id2, "approve", ""); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("carol approving: %d %s", r.StatusCode, r.body)
	}
	bob.get("/_stepup/approvals/" + id2)
	sent := bob.post("/_stepup/approvals/"+id2+"/send", nil, "X-HTTP-Method-Override", "DELETE")
	if sent.StatusCode == 200 && strings.Contains(sent.body, "override=DELETE") {
		t.Errorf("the confirmed action reached the upstream with a method override the approver never saw: %s", sent.body)
	}
}

// FINDING (medium): Content-Type is not part of the approved action.
// The approver is shown the multipart fields as parsed with the boundary
// of the request they approve (amount=5); the requester then sends the
// same bytes with another boundary, which the upstream parses as
// amount=5000000, and the once-grant pays it.
func TestReviewApprovalContentTypeIsPartOfTheApprovedAction(t *testing.T) {
	s := startCaddy(t, reviewGlobal(t), reviewSite)
	bob := signedIn(s, "bob")
	inner := "--YYY\r\nContent-Disposition: form-data; name=\"amount\"\r\n\r\n5000000\r\n--YYY--\r\n"
	outer := "\r\n--XXX\r\nContent-Disposition: form-data; name=\"amount\"\r\n\r\n5\r\n--XXX--\r\n"
	body := inner + outer
	status, h, raw := rawSend(t, bob.client, s.base, "POST", "/any", body, "Content-Type", "multipart/form-data; boundary=XXX")
	if status != http.StatusAccepted {
		t.Fatalf("asking: %d %s", status, raw)
	}
	id := strings.TrimPrefix(h.Get("Location"), "/_stepup/approvals/")
	carol := signedIn(s, "carol")
	view := carol.get("/_stepup/approvals/" + id)
	if !strings.Contains(view.body, "<td>5</td>") || strings.Contains(view.body, "5000000") {
		t.Fatalf("setup: the approver should see amount=5 only: %s", view.body)
	}
	if r := decide(t, carol, "carol", id, "approve", "5 is fine"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("carol approving: %d %s", r.StatusCode, r.body)
	}
	status, _, raw = rawSend(t, bob.client, s.base, "POST", "/any", body, "Content-Type", "multipart/form-data; boundary=YYY")
	if status == 200 {
		t.Errorf("an approval of amount=5 passed the same bytes as amount=5000000 (other boundary): %s", raw)
	}
}

// FINDING (medium): an approver approves an API client's action blind:
// for a body that is not a form (JSON, the usual API body) the page shows
// only "N bytes of data", not what the action does. The issue asks that
// approvers see "the action in full".
func TestReviewApproverSeesAJSONActionInFull(t *testing.T) {
	s := startCaddy(t, reviewGlobal(t), reviewSite)
	bob := signedIn(s, "bob")
	status, h, raw := rawSend(t, bob.client, s.base, "POST", "/any", `{"amount":1000000,"to":"mallory"}`, "Content-Type", "application/json")
	if status != http.StatusAccepted {
		t.Fatalf("asking: %d %s", status, raw)
	}
	id := strings.TrimPrefix(h.Get("Location"), "/_stepup/approvals/")
	view := signedIn(s, "carol").get("/_stepup/approvals/" + id)
	if !strings.Contains(view.body, "1000000") || !strings.Contains(view.body, "mallory") {
		t.Fatalf("the approver cannot see what the JSON action does: %s", findSub(`(?s)(<dl>.*?</dl>.*?<form)`, view.body))
	}
}

// FINDING (medium): the conditions are checked when the request is
// created, not when the approved action is carried out: an action
// approved at 17:58 Berlin passes at 18:00, outside the policy's hours
// (SPEC §2: conditions hold "at the moment of the action"). The same
// holds for networks and roles, and for a duration grant its whole life.
func TestReviewApprovalConditionsHoldWhenTheApprovedActionIsUsed(t *testing.T) {
	s := startCaddy(t, reviewGlobal(t), reviewSite)
	// Sunday 09:00 UTC -> Monday 16:58 UTC = 17:58 Berlin.
	s.clock.Advance(31*time.Hour + 58*time.Minute)
	alice := signedIn(s, "alice").api()
	status, h, m, raw := alice.send("GET", "/change?what=firewall", "")
	if status != http.StatusAccepted {
		t.Fatalf("17:58 Berlin, a medium change waits: %d %v %s", status, m, raw)
	}
	id := strings.TrimPrefix(h.Get("Location"), "/_stepup/approvals/")
	if r := decide(t, signedIn(s, "carol"), "carol", id, "approve", ""); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("carol approving: %d %s", r.StatusCode, r.body)
	}
	s.clock.Advance(2 * time.Minute) // 18:00 Berlin: closed, execute_within (5m) still open
	status, _, m, raw = alice.send("GET", "/change?what=firewall", "")
	if status == 200 {
		t.Fatalf("the approved change ran at 18:00 Berlin, outside the policy's hours: %s", raw)
	}
	if status != http.StatusForbidden || m["condition"] != "hours" {
		t.Fatalf("want 403 naming hours: %d %v", status, m)
	}
}

// FINDING (medium, core matching): "/pay/" and "//pay" are not matched by
// `path /pay`, so a POST to them reaches the upstream with no approval;
// many frameworks (Express's default non-strict routing, Django's
// APPEND_SLASH, Rails) route both to the /pay handler. The readings of
// stepup/variants.go cover ";", "\", dots and spaces but not a trailing
// slash or repeated slashes.
func TestReviewApprovalPathVariantsNeedTheApproval(t *testing.T) {
	s := startCaddy(t, reviewGlobal(t), reviewSite)
	bob := signedIn(s, "bob").api()
	// ("//pay" and "/./pay" are cleaned by Caddy's matcher and hold.)
	for _, p := range []string{"/pay/", "/pay//", "//pay", "/./pay"} {
		status, _, _, raw := bob.send("POST", p, `{"amount":1}`)
		if status == 200 {
			t.Errorf("POST %s reached the upstream without an approval: %s", p, raw)
		}
	}
}

// HOLDS: every other reading of POST /pay needs the approval (through the
// approval stage, not only the tier check): a lower-case method, the
// override header on another method, _method in the query or the form,
// ";params", percent-encoding, a trailing dot or space. (A PUT carrying
// _method=POST in its form is not read as POST; frameworks honour the
// field on POST only, so that is right.)
func TestReviewApprovalMethodAndPathReadingsNeedTheApproval(t *testing.T) {
	s := startCaddy(t, reviewGlobal(t), reviewSite)
	bob := signedIn(s, "bob")
	for _, tc := range []struct {
		method, path, ct, body string
		headers                []string
	}{
		{"post", "/pay", "application/json", `{"a":1}`, nil},
		{"PUT", "/pay", "application/json", `{"a":2}`, []string{"X-HTTP-Method-Override", "POST"}},
		{"PATCH", "/pay?_method=POST", "application/json", `{"a":3}`, nil},
		{"POST", "/pay", "application/x-www-form-urlencoded", "_method=PUT&a=4", nil},
		{"POST", "/pay;x", "application/json", `{"a":5}`, nil},
		{"POST", "/p%61y", "application/json", `{"a":6}`, nil},
		{"POST", "/pay.", "application/json", `{"a":7}`, nil},
		{"POST", "/pay%20", "application/json", `{"a":8}`, nil},
	} {
		headers := append([]string{"Content-Type", tc.ct}, tc.headers...)
		status, _, raw := rawSend(t, bob.client, s.base, tc.method, tc.path, tc.body, headers...)
		if status == 200 {
			t.Errorf("%s %s %v reached the upstream without an approval: %s", tc.method, tc.path, tc.headers, raw)
		}
	}
}

// HOLDS: three approvers of a 2-of-N policy voting at once decide it
// once: two votes count, the third finds it decided, one decided record.
func TestReviewApprovalParallelVotesDecideOnce(t *testing.T) {
	s := startCaddy(t, reviewGlobal(t), reviewSite)
	bob := signedIn(s, "bob")
	id := approvalID(t, bob.post("/pay", url.Values{"amount": {"77"}}))
	bob.get("/_stepup/approvals/" + id)
	bob.post("/_stepup/approvals/"+id, url.Values{"justification": {"race"}})
	var approvers []*browser
	for _, u := range []string{"carol", "dave", "erin"} {
		b := signedIn(s, u)
		b.login("sudo", "/", pw(u+"-pw"))
		b.get("/_stepup/approvals/" + id)
		approvers = append(approvers, b)
	}
	codes := make(chan int, len(approvers))
	start := make(chan struct{})
	for _, b := range approvers {
		go func(b *browser) {
			<-start
			form := url.Values{"decision": {"approve"}, "csrf_token": {b.csrf}}
			req, _ := http.NewRequest("POST", s.base+"/_stepup/approvals/"+id, strings.NewReader(form.Encode()))
			req.Header.Set("Accept", "text/html")
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := b.client.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}(b)
	}
	close(start)
	ok := 0
	for range approvers {
		if c := <-codes; c == http.StatusSeeOther {
			ok++
		}
	}
	if ok != 2 {
		t.Fatalf("%d votes counted on a 2-of-N request, want 2", ok)
	}
	n := 0
	for _, rec := range s.auditRecords() {
		if rec["msg"] == "approval_decided" && rec["approval"] == id {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d approval_decided records, want 1", n)
	}
}

// HOLDS: two break-glass requests sent at once on two of the requester's
// actions spend one cooldown: one passes.
func TestReviewBreakGlassInParallelIsOncePerCooldown(t *testing.T) {
	s := startCaddy(t, reviewGlobal(t), reviewSite)
	bob := signedIn(s, "bob")
	ids := []string{approvalID(t, bob.post("/pay", url.Values{"amount": {"1"}})), approvalID(t, bob.post("/pay", url.Values{"amount": {"2"}}))}
	bob.login("sudo", "/", pw("bob-pw"))
	bob.get("/_stepup/approvals/" + ids[0])
	codes := make(chan int, 2)
	start := make(chan struct{})
	for _, id := range ids {
		go func(id string) {
			<-start
			form := url.Values{"reason": {"outage"}, "csrf_token": {bob.csrf}}
			req, _ := http.NewRequest("POST", s.base+"/_stepup/approvals/"+id+"/break-glass", strings.NewReader(form.Encode()))
			req.Header.Set("Accept", "text/html")
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := bob.client.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}(id)
	}
	close(start)
	ok := 0
	for range ids {
		if c := <-codes; c == http.StatusSeeOther {
			ok++
		}
	}
	if ok != 1 {
		t.Fatalf("%d break-glass approvals within one cooldown, want 1", ok)
	}
}

// HOLDS: a requester who is also in the approver role (erin, security)
// cannot approve their own action, even holding the approver tier, and
// their vote does not count.
func TestReviewApprovalRequesterInTheApproverRoleCannotApprove(t *testing.T) {
	s := startCaddy(t, reviewGlobal(t), reviewSite)
	erin := signedIn(s, "erin")
	id := approvalID(t, erin.post("/pay", url.Values{"amount": {"3"}}))
	erin.get("/_stepup/approvals/" + id)
	erin.post("/_stepup/approvals/"+id, url.Values{"justification": {"mine"}})
	erin.login("sudo", "/", pw("erin-pw"))
	erin.get("/_stepup/approvals/" + id)
	if r := erin.post("/_stepup/approvals/"+id, url.Values{"decision": {"approve"}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("erin approving her own payment: %d", r.StatusCode)
	}
	if inbox := erin.get("/_stepup/approvals"); strings.Contains(inbox.body, `value="approve"`) {
		t.Fatal("erin's inbox offers her own request to decide")
	}
	if r := decide(t, signedIn(s, "carol"), "carol", id, "approve", ""); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("carol: %d", r.StatusCode)
	}
	if _, _, m, _ := erin.api().send("GET", "/_stepup/approvals/"+id, ""); m["status"] != "pending" {
		t.Fatalf("one approval besides erin's own should leave it pending: %v", m)
	}
}

// FINDING (low): the rate condition is spent before the cross-site check,
// so another site that makes the user's browser navigate to a set's URL
// (a top-level GET carries SameSite=Lax cookies) uses up the user's
// quota for the window, although every such request is refused: the
// user is then refused their own actions for an hour.
func TestReviewApprovalCrossSiteRequestsDoNotSpendTheRate(t *testing.T) {
	s := startCaddy(t, reviewGlobal(t), reviewSite)
	s.clock.Advance(23 * time.Hour) // Monday 09:00 Berlin
	alice := signedIn(s, "alice")
	for i := range 3 {
		r := alice.get("/change?from=evil&n="+string(rune('0'+i)), "Sec-Fetch-Site", "cross-site", "Referer", "https://evil.example/")
		if r.StatusCode != http.StatusForbidden {
			t.Fatalf("a cross-site navigation to a set needing approval: %d", r.StatusCode)
		}
	}
	if status, _, m, _ := alice.api().send("GET", "/change?mine=1", ""); status != http.StatusAccepted {
		t.Fatalf("alice's own change after three refused cross-site requests: %d %v", status, m)
	}
}
