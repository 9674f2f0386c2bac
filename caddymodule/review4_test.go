package caddymodule

import (
	"strings"
	"testing"
)

// Review 4: sessions of the one-record layout attacked through a real
// Caddy.

// Two applications on one Caddy with the defaults (generated secret, one
// store), each with its own directory in which, as is common, the first
// user is called "admin", and the same tier names: site A's admin (a
// tenant of her own site) takes her session cookie to site B. Site B's
// admin has another password (and roles): the cookie must not sign her in
// there. The namespace of an inline configuration was derived from user
// names and tier names only, so both sites shared keys and records.
func TestReview4ASiteIsNotSignedIntoByAnotherSitesSameNamedUser(t *testing.T) {
	site := func(password, roles, reply string) string {
		return `
	stepup {
		user admin {
			password "` + hashFor(t, password) + `"
			roles ` + roles + `
		}
		tier login {
			method password
			max_age 1h
		}
		default login
	}
	respond "` + reply + ` user={http.stepup.user} roles={http.stepup.roles}"
`
	}
	s, baseB := startTwoSites(t, site("tenant-a-pw", "editor", "A ok"), site("tenant-b-pw", "owner", "B ok"))
	mallory := s.browser()
	if r := mallory.login("login", "/x", creds("admin", "tenant-a-pw")); r.StatusCode != 200 || !strings.Contains(r.body, "A ok user=admin") {
		t.Fatalf("site A's admin on site A: %d %q", r.StatusCode, r.body)
	}
	cookie := mallory.cookie("stepup_session")
	if cookie == nil {
		t.Fatal("no session cookie on site A")
	}

	refusedOnSiteB(t, cookie, baseB)
}
