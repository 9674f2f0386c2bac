package caddymodule

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestPassesAreRecordedInTheAccessLog: a request that passes because the
// session holds its tier is recorded in that request's access-log entry
// (stepup_user, stepup_set, stepup_tier, stepup_decision), with no audit
// record of its own, except for sets of risk high or critical.
func TestPassesAreRecordedInTheAccessLog(t *testing.T) {
	s := startCaddy(t, global(t), `
	log {
		output file {DIR}/access.log
		format json
	}
`+site)
	b := s.browser()
	b.login("sudo", "/", creds("alice", "alice-pw"), pw("alice-pw"))
	b.get("/reports/r1")
	b.get("/admin/a1")
	anon := s.browser()
	anon.get("/reports/r2")

	entries := map[string]map[string]any{}
	f, err := os.Open(filepath.Join(s.dir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if req, ok := e["request"].(map[string]any); ok {
			entries[req["uri"].(string)] = e
		}
	}
	for uri, want := range map[string]map[string]string{
		"/reports/r1": {"stepup_user": "alice", "stepup_set": "reports", "stepup_tier": "sudo", "stepup_decision": "allowed"},
		"/admin/a1":   {"stepup_user": "alice", "stepup_set": "admin", "stepup_decision": "allowed"},
		"/reports/r2": {"stepup_set": "reports", "stepup_tier": "login", "stepup_decision": "step_up_required"},
	} {
		e := entries[uri]
		if e == nil {
			t.Fatalf("no access-log entry for %s", uri)
		}
		for k, v := range want {
			if e[k] != v {
				t.Errorf("%s: %s = %v, want %q", uri, k, e[k], v)
			}
		}
	}
	if s.findAudit("allowed", map[string]string{"set": "reports"}) != nil {
		t.Fatal("a pass of a low-risk set was written to the audit log")
	}
	if s.findAudit("allowed", map[string]string{"set": "admin"}) == nil {
		t.Fatal("a pass of a high-risk set has no audit record")
	}
}
