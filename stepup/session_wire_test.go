package stepup

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/tiers"
)

// TestSessionWireFormRoundTripsAndReadsTheOlderForm: what is stored comes
// back whole (times to the nanosecond, in any zone), and a record stored
// by an earlier version (RFC 3339 times) still reads.
func TestSessionWireFormRoundTripsAndReadsTheOlderForm(t *testing.T) {
	at := time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))
	s := &Session{Owner: "own", User: "alice", Roles: []string{"admin", "ops"}, External: true, LastUser: "bob",
		Stack:   tiers.Stack{{Tier: "login", Method: "password", Credential: "alice", At: at}, {Tier: "otp", Base: "login", Method: "totp", At: at.Add(time.Minute)}},
		Created: at, Seen: at.Add(time.Hour)}
	raw, err := encodeSession(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Session
	if err := decodeSession(raw, &back); err != nil {
		t.Fatal(err)
	}
	if back.Owner != s.Owner || back.User != s.User || len(back.Roles) != 2 || !back.External || back.LastUser != "bob" ||
		!back.Created.Equal(s.Created) || !back.Seen.Equal(s.Seen) || len(back.Stack) != 2 ||
		back.Stack[1] != (tiers.Level{Tier: "otp", Base: "login", Method: "totp", At: back.Stack[1].At}) || !back.Stack[1].At.Equal(s.Stack[1].At) {
		t.Fatalf("round trip: %+v", &back)
	}
	old, _ := json.Marshal(s) // the form an earlier version stored
	var fromOld Session
	if err := decodeSession(old, &fromOld); err != nil || fromOld.User != "alice" || !fromOld.Stack[0].At.Equal(at) {
		t.Fatalf("older form: %+v %v", &fromOld, err)
	}
	if len(raw) >= len(old) {
		t.Errorf("the stored form (%d bytes) is not smaller than the older one (%d)", len(raw), len(old))
	}
}
