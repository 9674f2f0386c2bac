package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// The operations tests run Caddy with its admin endpoint on a free
// loopback port, as an operator's Caddy does, and talk to admin.api.stepup
// over HTTP. One Caddy per process: no t.Parallel.

// opsGlobal: alice (admin, a TOTP secret in the configuration), bob
// (staff), carol and dave (security, the approvers of payments). code8 is
// a TOTP tier users cannot enrol in themselves: an enrolment link is the
// way in.
func opsGlobal(t testing.TB) string {
	return `
	stepup {
		secret "` + testSecret + `"
		user alice {
			password "` + hashFor(t, "alice-pw") + `"
			roles admin
			totp_secret ` + aliceTOTP + `
		}
		user bob {
			password "` + hashFor(t, "bob-pw") + `"
			roles staff
		}
		user carol {
			password "` + hashFor(t, "carol-pw") + `"
			roles security
		}
		user dave {
			password "` + hashFor(t, "dave-pw") + `"
			roles security
		}
		tier login {
			method password
			max_age 8h
		}
		tier otp {
			base login
			method totp
			max_age 30m
		}
		tier code8 {
			base login
			method totp {
				digits 8
				algorithm SHA256
				period 60s
				skew 0
			}
			max_age 30m
		}
		approval payments {
			approvers role:security
			justification none
		}
		approval change {
			roles admin
			networks 10.0.0.0/8
			hours Mon-Fri 08:00-18:00 Europe/Berlin
			rate 2/1h
			approvers user:carol
		}
	}`
}

const opsSite = `
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
				method POST PUT PATCH DELETE
			}
			tier otp
			max_age 5m
			risk high
		}
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
	}
	respond "ok user={http.stepup.user} tiers={http.stepup.tiers}"
`

// opsServer is a running Caddy with its admin endpoint.
type opsServer struct {
	*server
	admin string // host:port of the admin endpoint
}

// startOps starts Caddy as startCaddy does, with the admin endpoint on a
// free loopback port instead of off.
func startOps(t *testing.T, global, site string) *opsServer {
	t.Helper()
	s := &server{t: t, port: freePort(t), dir: t.TempDir()}
	s.base = fmt.Sprintf("http://127.0.0.1:%d", s.port)
	s.audit = s.dir + "/audit.log"
	s.clock = &fakeClock{t: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)} // a Sunday
	now = s.clock.Now
	o := &opsServer{server: s, admin: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	isolateData(t, s.dir)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
		now = time.Now
		previousHierarchies.Range(func(k, _ any) bool { previousHierarchies.Delete(k); return true })
	})
	if err := o.load(global, site); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	return o
}

func (o *opsServer) load(global, site string) error {
	src := strings.Replace(o.caddyfile(global, site), "\tadmin off\n", "\tadmin "+o.admin+"\n", 1)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		return err
	}
	return caddy.Load(cfg, true)
}

// api calls the admin endpoint and returns the status and body.
func (o *opsServer) api(method, path string, body any) (int, string) {
	o.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = strings.NewReader(string(raw))
	}
	req, _ := http.NewRequest(method, "http://"+o.admin+path, rd)
	req.Header.Set("Origin", "http://"+o.admin)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// apiJSON calls the admin endpoint, wants the status and decodes the
// answer into v.
func (o *opsServer) apiJSON(method, path string, body any, want int, v any) string {
	o.t.Helper()
	status, raw := o.api(method, path, body)
	if status != want {
		o.t.Fatalf("%s %s: %d, want %d: %s", method, path, status, want, raw)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(raw), v); err != nil {
			o.t.Fatalf("%s %s: decoding %q: %v", method, path, raw, err)
		}
	}
	return raw
}

// apiError wants an admin API error: the status and a message with want.
func (o *opsServer) apiError(method, path string, body any, status int, want string) {
	o.t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	o.apiJSON(method, path, body, status, &e)
	if !strings.Contains(e.Error, want) {
		o.t.Errorf("%s %s: error %q does not say %q", method, path, e.Error, want)
	}
}

type sessionList struct {
	Sessions []struct {
		Handle string `json:"handle"`
		User   string `json:"user"`
		Tiers  []struct {
			Tier string `json:"tier"`
		} `json:"tiers"`
	} `json:"sessions"`
	Revoked []struct {
		Handle string `json:"handle"`
		User   string `json:"user"`
	} `json:"revoked"`
}

// secretsOf are the values no admin answer may carry: the browser's
// session cookie and CSRF token.
func secretsOf(b *browser) []string {
	var out []string
	u, _ := url.Parse(b.s.base)
	for _, c := range b.client.Jar.Cookies(u) {
		out = append(out, c.Value)
	}
	if b.csrf != "" {
		out = append(out, b.csrf)
	}
	return out
}

func noSecrets(t *testing.T, answer string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(answer, s) {
			t.Errorf("an admin answer carries a secret (%.8s…): %s", s, answer)
		}
	}
}

func TestAdminAPISessionsListedAndRevoked(t *testing.T) {
	o := startOps(t, opsGlobal(t), opsSite)
	alice := signedIn(o.server, "alice")
	bob1 := signedIn(o.server, "bob")
	bob2 := signedIn(o.server, "bob")
	for _, b := range []*browser{alice, bob1, bob2} {
		if r := b.get("/reports/q"); r.StatusCode != 200 {
			t.Fatalf("signed-in user refused: %d", r.StatusCode)
		}
	}
	anonymous := o.browser()
	anonymous.get("/reports/q") // no session worth listing

	var all sessionList
	raw := o.apiJSON("GET", "/stepup/sessions", nil, 200, &all)
	if len(all.Sessions) != 3 {
		t.Fatalf("sessions: %d, want 3: %s", len(all.Sessions), raw)
	}
	for _, b := range []*browser{alice, bob1, bob2} {
		noSecrets(t, raw, secretsOf(b)...)
	}
	for _, field := range []string{`"id":`, `"password":`, "csrf", "secret"} {
		if strings.Contains(raw, field) {
			t.Errorf("session listing has %s: %s", field, raw)
		}
	}
	var bobs sessionList
	o.apiJSON("GET", "/stepup/sessions?user=bob", nil, 200, &bobs)
	if len(bobs.Sessions) != 2 || bobs.Sessions[0].User != "bob" || bobs.Sessions[0].Tiers[0].Tier != "login" {
		t.Fatalf("bob's sessions: %+v", bobs)
	}

	// The handle is the session of the audit records: an operator finds
	// the session of a record, and ends it.
	handle := ""
	for _, rec := range o.auditRecords() {
		if rec["msg"] == "stepup" && rec["user"] == "bob" && rec["result"] == "success" {
			handle, _ = rec["session"].(string) // bob1's sign-in came first
			break
		}
	}
	if handle == "" || (handle != bobs.Sessions[0].Handle && handle != bobs.Sessions[1].Handle) {
		t.Fatalf("the audit's session %q is not a listed handle: %+v", handle, bobs)
	}
	var one sessionList
	o.apiJSON("DELETE", "/stepup/sessions/"+handle, nil, 200, &one)
	if len(one.Revoked) != 1 || one.Revoked[0].User != "bob" {
		t.Fatalf("revoke one: %+v", one)
	}
	if r := bob1.get("/reports/q"); r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(bob1.location(r), "/_stepup/challenge") {
		t.Fatalf("a revoked session still passes: %d", r.StatusCode)
	}
	if r := bob2.get("/reports/q"); r.StatusCode != 200 {
		t.Fatalf("bob's other session was ended too: %d", r.StatusCode)
	}
	if o.findAudit("revoke", map[string]string{"user": "bob", "session": handle, "result": "session_ended"}) == nil {
		t.Error("no audit record of the revocation")
	}
	o.apiError("DELETE", "/stepup/sessions/"+handle, nil, 404, "no session")

	// Every session of a user.
	var every sessionList
	o.apiJSON("DELETE", "/stepup/sessions?user=bob", nil, 200, &every)
	if len(every.Revoked) != 1 {
		t.Fatalf("revoke bob: %+v", every)
	}
	if r := bob2.get("/reports/q"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("bob's browser still passes after all his sessions were ended: %d", r.StatusCode)
	}
	if r := alice.get("/reports/q"); r.StatusCode != 200 {
		t.Fatalf("alice's session was ended with bob's: %d", r.StatusCode)
	}
	o.apiJSON("GET", "/stepup/sessions?user=bob", nil, 200, &bobs)
	if len(bobs.Sessions) != 0 {
		t.Fatalf("bob still has sessions: %+v", bobs)
	}

	// Errors, as Caddy's admin API gives them.
	o.apiError("DELETE", "/stepup/sessions", nil, 400, "user")
	o.apiError("GET", "/stepup/nothing", nil, 404, "no such route")
	o.apiError("PUT", "/stepup/sessions", nil, 405, "no such route")
	o.apiError("DELETE", "/stepup/sessions/..%2Fo:x", nil, 404, "no session")
}

type approvalList struct {
	Approvals []map[string]any `json:"approvals"`
}

func TestAdminAPIApprovalsDecidedInAnApproversName(t *testing.T) {
	o := startOps(t, opsGlobal(t), opsSite)
	bob := signedIn(o.server, "bob")
	id := approvalID(t, bob.post("/pay", url.Values{"amount": {"4242"}, "iban": {"DE-SECRET-IBAN"}}))

	var pending approvalList
	raw := o.apiJSON("GET", "/stepup/approvals?status=pending", nil, 200, &pending)
	if len(pending.Approvals) != 1 || pending.Approvals[0]["id"] != id || pending.Approvals[0]["requester"] != "bob" ||
		pending.Approvals[0]["status"] != "pending" || pending.Approvals[0]["uri"] != "/pay" {
		t.Fatalf("pending approvals: %s", raw)
	}
	noSecrets(t, raw, append(secretsOf(bob), "DE-SECRET-IBAN", "4242")...)
	for _, field := range []string{`"body"`, `"binding"`, `"digest"`} {
		if strings.Contains(raw, field) {
			t.Errorf("approval listing has %s: %s", field, raw)
		}
	}
	o.apiError("GET", "/stepup/approvals?status=maybe", nil, 400, "status")

	decision := func(approver, d string) DecisionRequest {
		return DecisionRequest{Decision: d, Approver: approver, Comment: "checked by phone"}
	}
	o.apiError("POST", "/stepup/approvals/"+id, decision("bob", "approve"), 403, "cannot decide it")
	o.apiError("POST", "/stepup/approvals/"+id, decision("alice", "approve"), 403, "not an approver")
	o.apiError("POST", "/stepup/approvals/"+id, decision("mallory", "approve"), 403, "not an approver")
	o.apiError("POST", "/stepup/approvals/"+id, decision("carol", "maybe"), 400, "approve or deny")
	o.apiError("POST", "/stepup/approvals/"+id, DecisionRequest{Decision: "approve"}, 400, "approver is required")
	o.apiError("POST", "/stepup/approvals/nope", decision("carol", "approve"), 404, "no approval")
	if status, _ := o.api("POST", "/stepup/approvals/"+id, map[string]any{"decision": "approve", "approver": "carol", "extra": 1}); status != 400 {
		t.Errorf("unknown fields: %d, want 400", status)
	}

	var decided map[string]any
	raw = o.apiJSON("POST", "/stepup/approvals/"+id, decision("carol", "approve"), 200, &decided)
	if decided["status"] != "approved" {
		t.Fatalf("after carol's approval: %s", raw)
	}
	votes, _ := decided["votes"].([]any)
	if len(votes) != 1 || votes[0].(map[string]any)["via"] != "admin" || votes[0].(map[string]any)["user"] != "carol" {
		t.Fatalf("the vote does not record carol through the admin API: %s", raw)
	}
	if o.findAudit("approval_decided", map[string]string{"approval": id, "approver": "carol", "reason": "via_admin"}) == nil {
		t.Error("no audit record of the decision via the admin API")
	}
	o.apiError("POST", "/stepup/approvals/"+id, decision("dave", "approve"), 409, "no longer pending")

	// The requester's browser confirms and the action goes through once.
	bob.get("/_stepup/approvals/" + id)
	if r := bob.post("/_stepup/approvals/"+id+"/send", nil); r.StatusCode != 200 || !strings.Contains(r.body, "ok user=bob") {
		t.Fatalf("the approved action: %d %s", r.StatusCode, r.body)
	}
	var one map[string]any
	o.apiJSON("GET", "/stepup/approvals/"+id, nil, 200, &one)
	if one["status"] != "used" {
		t.Fatalf("after use: %v", one["status"])
	}

	// A denial through the API reaches the requester with its comment.
	id2 := approvalID(t, bob.post("/pay", url.Values{"amount": {"1"}}))
	o.apiJSON("POST", "/stepup/approvals/"+id2, DecisionRequest{Decision: "deny", Approver: "dave", Comment: "not this month"}, 200, nil)
	if page := bob.get("/_stepup/approvals/" + id2); !strings.Contains(page.body, "not this month") {
		t.Fatalf("the requester does not see the denial: %s", page.body)
	}
}

func TestEnrolmentLinkUsedOnceByItsUserOnly(t *testing.T) {
	o := startOps(t, opsGlobal(t), opsSite)

	o.apiError("POST", "/stepup/enrollments", EnrollmentRequest{User: "bob"}, 400, "required")
	o.apiError("POST", "/stepup/enrollments", EnrollmentRequest{User: "bob", Tier: "nope"}, 404, "no tier")
	o.apiError("POST", "/stepup/enrollments", EnrollmentRequest{User: "bob", Tier: "login"}, 400, "none of its methods")
	o.apiError("POST", "/stepup/enrollments", EnrollmentRequest{User: "bob", Tier: "code8", Expires: "forever"}, 400, "expires")
	o.apiError("POST", "/stepup/enrollments", EnrollmentRequest{User: "bob", Tier: "code8", BaseURL: "javascript:x"}, 400, "base_url")

	// Without a link, bob cannot set up code8: it is not `enroll self`.
	bob := signedIn(o.server, "bob")
	if r := bob.get("/_stepup/enroll/totp?step=code8"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("enrolling without a link: %d", r.StatusCode)
	}

	var link struct {
		URL     string    `json:"url"`
		Expires time.Time `json:"expires"`
		Method  string    `json:"method"`
	}
	o.apiJSON("POST", "/stepup/enrollments", EnrollmentRequest{User: "bob", Tier: "code8", BaseURL: "https://app.example.com"}, 201, &link)
	if !strings.HasPrefix(link.URL, "https://app.example.com/_stepup/enroll?link=") || link.Method != "totp" ||
		!link.Expires.Equal(o.clock.Now().Add(24*time.Hour)) {
		t.Fatalf("link: %+v", link)
	}
	path := strings.TrimPrefix(link.URL, "https://app.example.com")
	token := strings.TrimPrefix(path, "/_stepup/enroll?link=")
	if o.findAudit("enroll", map[string]string{"user": "bob", "result": "link_issued"}) == nil {
		t.Error("issuing the link is not audited")
	}
	for _, rec := range o.auditRecords() {
		if strings.Contains(fmt.Sprint(rec), token) {
			t.Fatalf("the audit trail carries the link's token: %v", rec)
		}
	}

	// Someone else, signed in, cannot use it; it stays valid for bob.
	carol := signedIn(o.server, "carol")
	if r := carol.get(path); r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "another account") {
		t.Fatalf("carol opening bob's link: %d %s", r.StatusCode, r.body)
	}
	if r := carol.get("/_stepup/enroll/totp?step=code8"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("carol enrolling after opening bob's link: %d", r.StatusCode)
	}
	// A visitor not signed in is sent to sign in and comes back to it.
	visitor := o.browser()
	r := visitor.get(path)
	if r.StatusCode != http.StatusSeeOther || !strings.Contains(visitor.location(r), url.QueryEscape(path)) {
		t.Fatalf("anonymous visit: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	r = visitor.follow(visitor.stepUp(visitor.follow(r), creds("bob", "bob-pw")))
	if r.StatusCode != 200 || !strings.Contains(r.body, "manual-key") {
		t.Fatalf("after signing in, bob is not on the enrolment page: %d %s", r.StatusCode, r.body)
	}
	key := strings.ReplaceAll(findSub(`<code id="manual-key">([A-Z2-7 ]+)</code>`, r.body), " ", "")
	wrong := visitor.stepUpForm(r, "/_stepup/enroll/totp", url.Values{"code": {"00000000"}})
	if wrong.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong code: %d", wrong.StatusCode)
	}
	// A wrong code does not spend the link.
	code := oathtool(t, o.clock.Now(), "--totp=SHA256", "--digits=8", "--time-step-size=60s", "-b", key)
	done := visitor.stepUpForm(wrong, "/_stepup/enroll/totp", url.Values{"code": {code}})
	if done.StatusCode != http.StatusSeeOther {
		t.Fatalf("confirming: %d %s", done.StatusCode, done.body)
	}
	if o.findAudit("enroll", map[string]string{"user": "bob", "tier": "code8", "reason": "enrolment_link", "result": "success"}) == nil {
		t.Error("the enrolment through a link is not audited as such")
	}
	if page := visitor.follow(done); page.StatusCode != 200 {
		t.Fatalf("after enrolment: %d", page.StatusCode)
	}

	// Replayed: used once, it is gone, for bob too.
	if r := visitor.get(path); r.StatusCode != http.StatusGone {
		t.Fatalf("a used link: %d", r.StatusCode)
	}
	if r := visitor.get("/_stepup/enroll/totp?step=code8"); r.StatusCode == 200 && strings.Contains(r.body, "manual-key") {
		t.Fatal("the enrolment page stays open after the link was used")
	}

	// A lost phone: bob has a secret now, and a new link lets him replace
	// it without the old one (the administrator vouches).
	o.apiJSON("POST", "/stepup/enrollments", EnrollmentRequest{User: "bob", Tier: "code8", Expires: "1h"}, 201, &link)
	if !strings.HasPrefix(link.URL, "/_stepup/enroll?link=") {
		t.Fatalf("a link without base_url: %s", link.URL)
	}
	lost := signedIn(o.server, "bob")
	if r := lost.follow(lost.get(link.URL)); !strings.Contains(r.body, "manual-key") {
		t.Fatalf("replacing with a link: %d %s", r.StatusCode, r.body)
	}

	// Expired: a link not used in time is refused.
	o.apiJSON("POST", "/stepup/enrollments", EnrollmentRequest{User: "bob", Tier: "otp", Expires: "1h"}, 201, &link)
	o.clock.Advance(61 * time.Minute)
	late := signedIn(o.server, "bob")
	if r := late.get(link.URL); r.StatusCode != http.StatusGone {
		t.Fatalf("an expired link: %d", r.StatusCode)
	}
	if r := late.get("/_stepup/enroll?link=forged"); r.StatusCode != http.StatusGone {
		t.Fatalf("a forged link: %d", r.StatusCode)
	}
}

func TestAdminAPICredentialsListedAndReset(t *testing.T) {
	o := startOps(t, opsGlobal(t), opsSite)
	var link struct {
		URL string `json:"url"`
	}
	o.apiJSON("POST", "/stepup/enrollments", EnrollmentRequest{User: "bob", Tier: "otp"}, 201, &link)
	bob := signedIn(o.server, "bob")
	page := bob.follow(bob.get(link.URL))
	key := strings.ReplaceAll(findSub(`<code id="manual-key">([A-Z2-7 ]+)</code>`, page.body), " ", "")
	if key == "" {
		t.Fatalf("no enrolment page: %s", page.body)
	}
	if r := bob.stepUpForm(page, "/_stepup/enroll/totp", url.Values{"code": {oathtool(t, o.clock.Now(), "--totp", "-b", key)}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("enrolment: %d", r.StatusCode)
	}

	type creds struct {
		Tiers []struct {
			Tier    string `json:"tier"`
			Methods []struct {
				Method      string `json:"method"`
				Enrolls     bool   `json:"enrolls"`
				Enrolled    bool   `json:"enrolled"`
				Provisioned bool   `json:"provisioned"`
			} `json:"methods"`
		} `json:"tiers"`
		Changes []struct {
			Kind string `json:"kind"`
			Tier string `json:"tier"`
		} `json:"changes"`
	}
	enrolled := func(c creds, tier string) bool {
		for _, t := range c.Tiers {
			if t.Tier == tier {
				return t.Methods[0].Enrolled
			}
		}
		return false
	}
	var c creds
	raw := o.apiJSON("GET", "/stepup/users/bob", nil, 200, &c)
	if len(c.Tiers) != 3 || !enrolled(c, "otp") || !enrolled(c, "code8") || c.Tiers[0].Methods[0].Enrolls {
		t.Fatalf("bob's credentials: %s", raw)
	}
	noSecrets(t, raw, append(secretsOf(bob), key, strings.ToLower(key))...)

	var res struct {
		Removed     map[string]int `json:"removed"`
		AlsoAffects []string       `json:"also_affects"`
	}
	o.apiJSON("DELETE", "/stepup/users/bob/credentials/otp", nil, 200, &res)
	if res.Removed["totp"] != 1 || len(res.AlsoAffects) != 1 || res.AlsoAffects[0] != "code8" {
		t.Fatalf("reset: %+v", res)
	}
	raw = o.apiJSON("GET", "/stepup/users/bob", nil, 200, &c)
	if enrolled(c, "otp") || len(c.Changes) < 2 || c.Changes[0].Kind != "remove" || c.Changes[0].Tier != "otp" {
		t.Fatalf("after the reset: %s", raw)
	}
	if o.findAudit("remove", map[string]string{"user": "bob", "tier": "otp", "reason": "reset_by_admin"}) == nil {
		t.Error("the reset is not audited")
	}
	// Signing in again, bob is sent to his administrator: otp is not
	// `enroll self`. A session that holds otp keeps it until it lapses,
	// unless the reset ends the user's sessions too (below).
	again := signedIn(o.server, "bob")
	if r := again.follow(again.post("/admin/x", url.Values{"a": {"1"}})); !strings.Contains(r.body, "administrator") {
		t.Fatalf("after the reset, the otp step: %d %s", r.StatusCode, r.body)
	}
	if r := bob.get("/reports/q"); r.StatusCode != http.StatusOK {
		t.Fatalf("a plain reset ended bob's session: %d", r.StatusCode)
	}
	// A stolen device: the reset with ?end_sessions=true also ends every
	// session of the user, the one that reached otp with it included.
	o.apiError("DELETE", "/stepup/users/bob/credentials/otp?end_sessions=maybe", nil, 400, "end_sessions")
	var ended struct {
		Removed       map[string]int   `json:"removed"`
		EndedSessions []map[string]any `json:"ended_sessions"`
	}
	o.apiJSON("DELETE", "/stepup/users/bob/credentials/otp?end_sessions=true", nil, 200, &ended)
	if len(ended.EndedSessions) != 2 || ended.Removed == nil {
		t.Fatalf("reset with end_sessions: %+v", ended)
	}
	for _, b := range []*browser{bob, again} {
		if r := b.get("/reports/q"); r.StatusCode == http.StatusOK || !strings.Contains(r.Header.Get("Location"), "tier=login") {
			t.Fatalf("after the reset that ends sessions, bob's session still passes: %d %s", r.StatusCode, r.Header.Get("Location"))
		}
	}

	// alice's secret is in the configuration: listed as provisioned, kept.
	raw = o.apiJSON("GET", "/stepup/users/alice", nil, 200, &c)
	if !enrolled(c, "otp") || !c.Tiers[1].Methods[0].Provisioned {
		t.Fatalf("alice's credentials: %s", raw)
	}
	noSecrets(t, raw, aliceTOTP)
	var kept struct {
		Removed     map[string]int `json:"removed"`
		Provisioned []string       `json:"provisioned"`
	}
	o.apiJSON("DELETE", "/stepup/users/alice/credentials/otp", nil, 200, &kept)
	if kept.Removed["totp"] != 0 || len(kept.Provisioned) != 1 {
		t.Fatalf("resetting a provisioned secret: %+v", kept)
	}
	o.apiError("DELETE", "/stepup/users/bob/credentials/login", nil, 409, "no method")
	o.apiError("DELETE", "/stepup/users/bob/credentials/nope", nil, 404, "no tier")
}
