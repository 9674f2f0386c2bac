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
	s := &Session{Owner: "own", ID: "the-id", User: "alice", Roles: []string{"admin", "ops"}, External: true, LastUser: "bob", PasswordMark: "0123456789abcdef",
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
	if back.Owner != s.Owner || back.ID != s.ID || raw[0] != wireVersion || back.User != s.User || len(back.Roles) != 2 || !back.External || back.LastUser != "bob" || back.PasswordMark != s.PasswordMark ||
		!back.Created.Equal(s.Created) || !back.Seen.Equal(s.Seen) || len(back.Stack) != 2 ||
		back.Stack[1] != (tiers.Level{Tier: "otp", Base: "login", Method: "totp", At: back.Stack[1].At}) || !back.Stack[1].At.Equal(s.Stack[1].At) {
		t.Fatalf("round trip: %+v", &back)
	}
	// The owner's record as the previous version wrote it: no password mark.
	v2 := appendSession(s, wireVersion2)
	var fromV2 Session
	if err := decodeSession(v2, &fromV2); err != nil || fromV2.ID != s.ID || fromV2.PasswordMark != "" || fromV2.User != "alice" || !fromV2.Stack[1].At.Equal(s.Stack[1].At) {
		t.Fatalf("version 2 form: %+v %v", &fromV2, err)
	}
	prev, _ := encodeLegacySession(s) // the form before that one
	var fromPrev Session
	if err := decodeSession(prev, &fromPrev); err != nil || prev[0] != wireVersion1 || fromPrev.ID != "" || fromPrev.Owner != s.Owner ||
		!fromPrev.Seen.Equal(s.Seen) || !fromPrev.Stack[1].At.Equal(s.Stack[1].At) {
		t.Fatalf("previous binary form: %+v %v", &fromPrev, err)
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

// TestStoredSessionFormsDecodeAndNonsenseDoesNot: the JSON form of the
// previous version still reads; a truncated or altered record is an error,
// never a session.
func TestStoredSessionFormsDecodeAndNonsenseDoesNot(t *testing.T) {
	at := time.Unix(1795950549, 652058286)
	prev := []byte(`{"o":"own","u":"alice","r":["staff"],"s":[{"t":"login","m":"password","c":"alice","a":1795950549652058286}],"c":1795950549652058286,"l":1795950549652058286}`)
	var s Session
	if err := decodeSession(prev, &s); err != nil || s.User != "alice" || !s.Stack[0].At.Equal(at) || !s.Created.Equal(at) {
		t.Fatalf("previous JSON form: %v %+v", err, &s)
	}
	raw, _ := encodeSession(&Session{Owner: "own", User: "alice", Roles: []string{"a"}, Stack: tiers.Stack{{Tier: "login", Method: "password", At: at}}, Created: at, Seen: at})
	for i := 0; i < len(raw); i++ {
		var got Session
		if decodeSession(raw[:i], &got) == nil {
			t.Fatalf("a record cut to %d of %d bytes decoded", i, len(raw))
		}
	}
	if decodeSession(append(append([]byte(nil), raw...), 0), new(Session)) == nil {
		t.Fatal("a record with trailing bytes decoded")
	}
}

// FuzzStoredSession: any stored bytes decode to a session or an error,
// never a panic; what decodes encodes back (in the current form, and in
// the previous version's, which refreshes that version's records) to the
// same session.
func FuzzStoredSession(f *testing.F) {
	at := time.Unix(1795950549, 1)
	s := &Session{Owner: "o", ID: "i", User: "u", Roles: []string{"r"}, Stack: tiers.Stack{{Tier: "t", Method: "m", At: at}}, Created: at, Seen: at.Add(time.Minute)}
	raw, _ := encodeSession(s)
	f.Add(raw)
	legacy, _ := encodeLegacySession(s)
	f.Add(legacy)
	f.Add([]byte(`{"o":"x","c":1,"l":2}`))
	f.Add([]byte{1, 0, 200, 200, 200})
	f.Add([]byte{2, 0, 1, 'o', 1, 'i', 0, 0, 2, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Session
		if decodeSession(b, &s) != nil || len(b) == 0 || b[0] == '{' {
			return
		}
		if b[0] == wireVersion1 && s.ID != "" {
			t.Fatalf("the previous version's form decoded with an id %q", s.ID)
		}
		same := func(s2 *Session) bool {
			if s2.User != s.User || s2.Owner != s.Owner || s2.LastUser != s.LastUser || s2.External != s.External ||
				!s2.Created.Equal(s.Created) || !s2.Seen.Equal(s.Seen) || len(s2.Stack) != len(s.Stack) || len(s2.Roles) != len(s.Roles) {
				return false
			}
			for i := range s.Stack {
				if s2.Stack[i] != (tiers.Level{Tier: s.Stack[i].Tier, Base: s.Stack[i].Base, Method: s.Stack[i].Method, Credential: s.Stack[i].Credential, At: s2.Stack[i].At}) ||
					!s2.Stack[i].At.Equal(s.Stack[i].At) {
					return false
				}
			}
			return true
		}
		again, _ := encodeSession(&s)
		var s2 Session
		if err := decodeSession(again, &s2); err != nil || !same(&s2) || s2.ID != s.ID {
			t.Fatalf("re-encoding changed the session: %v", err)
		}
		old, _ := encodeLegacySession(&s)
		var s3 Session
		if err := decodeSession(old, &s3); err != nil || !same(&s3) || s3.ID != "" {
			t.Fatalf("re-encoding in the previous form changed the session: %v", err)
		}
	})
}
