package caddymodule

import (
	"net/http"
	"strings"
	"testing"
)

// A user removed from the configuration's directory, whose roles were
// taken away, or whose password was changed, by a reload: their live
// session must not go on as before until it lapses (a dismissed employee,
// a revoked approver or admin, a password that leaked).
func TestAReloadThatChangesTheDirectoryHoldsForLiveSessions(t *testing.T) {
	global := approvalGlobal(t)
	s := startCaddy(t, global, approvalSite)
	alice := signedIn(s, "alice").api()
	bob := signedIn(s, "bob")
	carol := signedIn(s, "carol")
	dave := signedIn(s, "dave")
	// Before: alice has the role the policy `change` requires (on this
	// Sunday it is refused for its hours); the site's public page names
	// bob and carol as its user (the http.stepup.user placeholder).
	if status, _, m, _ := alice.send("GET", "/change", ""); status != http.StatusForbidden || m["condition"] != "hours" {
		t.Fatalf("before the reload, alice: %d %v", status, m)
	}
	for _, u := range []struct {
		b    *browser
		name string
	}{{bob, "bob"}, {carol, "carol"}, {dave, "dave"}} {
		if r := u.b.get("/"); !strings.Contains(r.body, "ok user="+u.name+" ") {
			t.Fatalf("before the reload, %s: %d %s", u.name, r.StatusCode, r.body)
		}
	}

	// The reload: bob is removed, alice loses the role admin, dave's
	// password is changed.
	reloaded := strings.Replace(global, "\t\t\troles admin\n", "\t\t\troles reader\n", 1)
	reloaded = strings.Replace(reloaded, hashFor(t, "dave-pw"), hashFor(t, "dave-new-pw"), 1)
	start := strings.Index(reloaded, "\t\tuser bob {")
	end := start + strings.Index(reloaded[start:], "\t\t}\n") + len("\t\t}\n")
	reloaded = reloaded[:start] + reloaded[end:]
	if strings.Contains(reloaded, "user bob") || strings.Contains(reloaded, "roles admin\n\t\t}\n\t\tuser bob") {
		t.Fatal("the directory was not edited")
	}
	if err := s.load(reloaded, approvalSite); err != nil {
		t.Fatalf("reload: %v", err)
	}

	if r := bob.get("/"); !strings.Contains(r.body, "ok user= ") {
		t.Errorf("bob, removed from the directory, is still signed in: %d %s", r.StatusCode, r.body)
	}
	if s.findAudit("identity_change", map[string]string{"user": "bob", "reason": "user removed from the directory"}) == nil {
		t.Error("bob's sign-out is not audited")
	}
	if status, _, m, _ := alice.send("GET", "/change", ""); status != http.StatusForbidden || m["condition"] != "roles" {
		t.Errorf("alice, without the role admin now, is judged with it: %d %v", status, m)
	}
	if s.findAudit("identity_change", map[string]string{"user": "alice", "reason": "roles changed in the directory"}) == nil {
		t.Error("alice's new roles are not audited")
	}
	if r := dave.get("/"); !strings.Contains(r.body, "ok user= ") {
		t.Errorf("dave, whose password was changed, is still signed in: %d %s", r.StatusCode, r.body)
	}
	if s.findAudit("identity_change", map[string]string{"user": "dave", "reason": "password changed in the directory"}) == nil {
		t.Error("dave's sign-out is not audited")
	}
	if r := signedIn(s, "dave").get("/"); strings.Contains(r.body, "ok user=dave ") {
		t.Error("dave signed in with the old password")
	}
	// Nothing changed for carol: she goes on, signed in.
	if r := carol.get("/"); !strings.Contains(r.body, "ok user=carol ") {
		t.Errorf("carol, unchanged, lost her session: %d %s", r.StatusCode, r.body)
	}
}
