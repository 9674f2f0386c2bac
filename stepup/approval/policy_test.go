package approval

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func mustWindow(t *testing.T, spec string) Window {
	t.Helper()
	w, err := ParseWindow(strings.Fields(spec))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWindowFollowsTheZoneAcrossDaylightSaving(t *testing.T) {
	w := mustWindow(t, "Mon-Fri 08:00-18:00 Europe/Berlin")
	for _, tc := range []struct {
		at   string // UTC
		open bool
	}{
		// Friday 27 March 2026, winter time (UTC+1).
		{"2026-03-27T06:59:59Z", false},
		{"2026-03-27T07:00:00Z", true},
		{"2026-03-27T16:59:59Z", true},
		{"2026-03-27T17:00:00Z", false},
		// Sunday 29 March: clocks go forward; Sunday is closed anyway.
		{"2026-03-29T07:00:00Z", false},
		// Monday 30 March, summer time (UTC+2): the same wall clock.
		{"2026-03-30T05:59:59Z", false},
		{"2026-03-30T06:00:00Z", true},
		{"2026-03-30T15:59:59Z", true},
		{"2026-03-30T16:00:00Z", false},
		// Monday 26 October, back to winter time.
		{"2026-10-26T06:30:00Z", false},
		{"2026-10-26T07:00:00Z", true},
	} {
		at, _ := time.Parse(time.RFC3339, tc.at)
		if got := w.Open(at); got != tc.open {
			t.Errorf("%s (%s in Berlin): open = %v, want %v", tc.at, at.In(w.Loc).Format("Mon 15:04 MST"), got, tc.open)
		}
	}
}

func TestWindowThatNeverExistsOnTheDaylightSavingDay(t *testing.T) {
	// 02:00-03:00 does not exist in Berlin on 29 March 2026.
	w := mustWindow(t, "Sun 02:00-03:00 Europe/Berlin")
	for at := time.Date(2026, 3, 28, 23, 0, 0, 0, time.UTC); at.Before(time.Date(2026, 3, 29, 3, 0, 0, 0, time.UTC)); at = at.Add(time.Minute) {
		if w.Open(at) {
			t.Fatalf("open at %s (%s), a wall-clock time that does not exist", at, at.In(w.Loc))
		}
	}
}

func TestWindowPastMidnightBelongsToTheDayItStarts(t *testing.T) {
	w := mustWindow(t, "Fri 22:00-06:00")
	for _, tc := range []struct {
		at   string
		open bool
	}{
		{"2026-11-27T21:59:00Z", false}, // Friday
		{"2026-11-27T22:00:00Z", true},
		{"2026-11-28T05:59:00Z", true}, // Saturday morning, from Friday's window
		{"2026-11-28T06:00:00Z", false},
		{"2026-11-28T22:00:00Z", false}, // Saturday night: not a Friday
		{"2026-11-27T03:00:00Z", false}, // Friday morning: Thursday is not listed
	} {
		at, _ := time.Parse(time.RFC3339, tc.at)
		if got := w.Open(at); got != tc.open {
			t.Errorf("%s: open = %v, want %v", tc.at, got, tc.open)
		}
	}
}

func TestParseWindowRejectsNonsense(t *testing.T) {
	for _, spec := range []string{
		"Mon", "Mon 8-18", "Mon 08:00-08:00", "Mon 25:00-26:00", "Mon 08:60-09:00", "Funday 08:00-09:00",
		"Mon 24:00-08:00", "Mon 08:00-18:00 Nowhere/Land", "Mon 08:00-18:00 UTC extra",
	} {
		if _, err := ParseWindow(strings.Fields(spec)); err == nil {
			t.Errorf("%q parsed", spec)
		}
	}
	w := mustWindow(t, "Sat-Mon,Wed 00:00-24:00")
	want := [7]bool{true, true, false, true, false, false, true}
	if w.Days != want {
		t.Errorf("Sat-Mon,Wed = %v, want %v (a range wraps around the week)", w.Days, want)
	}
}

func TestConditionsEachAtTheirBoundary(t *testing.T) {
	p := &Policy{Name: "p", Roles: []string{"admin"}, MaxRisk: "high", Approvers: []Approver{{"user", "carol"}}}
	if err := p.Validate(func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	p.Networks = append(p.Networks, mustPrefix(t, "10.0.0.0/8"), mustPrefix(t, "2001:db8::/32"))
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		roles  []string
		ip     string
		risk   string
		failed string
	}{
		{[]string{"admin"}, "10.255.255.255", "high", ""},
		{[]string{"ops", "admin"}, "10.0.0.1", "", ""},
		{[]string{"Admin"}, "10.0.0.1", "low", CondRoles}, // roles compare exactly
		{nil, "10.0.0.1", "low", CondRoles},
		{[]string{"admin"}, "11.0.0.0", "low", CondNetworks},
		{[]string{"admin"}, "::ffff:10.0.0.1", "low", ""}, // a v4-mapped address is its v4 self
		{[]string{"admin"}, "2001:db8::1", "low", ""},
		{[]string{"admin"}, "not-an-ip", "low", CondNetworks},
		{[]string{"admin"}, "10.0.0.1", "critical", CondMaxRisk},
	} {
		failed := ""
		for _, c := range p.staticConditions(tc.roles, tc.ip, now, tc.risk) {
			if !c.OK && failed == "" {
				failed = c.Name
			}
		}
		if failed != tc.failed {
			t.Errorf("roles %v ip %s risk %q: failed %q, want %q", tc.roles, tc.ip, tc.risk, failed, tc.failed)
		}
	}
}

func TestAutoApprovalNeverCoversASetWithoutARisk(t *testing.T) {
	p := &Policy{AutoApproveMaxRisk: "medium"}
	for risk, want := range map[string]bool{"": false, "low": true, "medium": true, "high": false, "critical": false} {
		if got := p.autoApproves(risk); got != want {
			t.Errorf("risk %q: auto-approved %v, want %v", risk, got, want)
		}
	}
}

func TestValidateRefusesPoliciesNobodyCanSatisfy(t *testing.T) {
	has := func(n string) bool { return n == "key" }
	for name, p := range map[string]*Policy{
		"no approvers":          {Roles: []string{"admin"}},
		"require beyond users":  {Approvers: []Approver{{"user", "a"}, {"user", "b"}}, Require: 3},
		"unknown approver tier": {Approvers: []Approver{{"user", "a"}}, ApproverTier: "nope"},
		"bad justification":     {Approvers: []Approver{{"user", "a"}}, Justification: "maybe"},
		"duplicate approver":    {Approvers: []Approver{{"user", "a"}, {"user", "a"}}},
		"bad max_risk":          {Approvers: []Approver{{"user", "a"}}, MaxRisk: "extreme"},
	} {
		if err := p.Validate(has); err == nil {
			t.Errorf("%s: validated", name)
		}
	}
	ok := &Policy{Approvers: []Approver{{"role", "security"}}, Require: 5, ApproverTier: "key"}
	if err := ok.Validate(has); err != nil {
		t.Errorf("a role can hold any number of approvers: %v", err)
	}
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
