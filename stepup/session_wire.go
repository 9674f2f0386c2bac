package stepup

import (
	"encoding/json"
	"time"

	"github.com/caddy-stepup/caddy-stepup/tiers"
)

// The stored form of a session is JSON with one-letter names and times as
// Unix nanoseconds: a million signed-in users are a million records in the
// store (and in memory with the memory store), so every byte counts. A
// record in the older form (RFC 3339 times) still decodes.

type wireSession struct {
	Owner    string      `json:"o"`
	User     string      `json:"u,omitempty"`
	Roles    []string    `json:"r,omitempty"`
	External bool        `json:"x,omitempty"`
	LastUser string      `json:"lu,omitempty"`
	Stack    []wireLevel `json:"s,omitempty"`
	Created  int64       `json:"c"`
	Seen     int64       `json:"l"`
}

type wireLevel struct {
	Tier       string `json:"t"`
	Base       string `json:"b,omitempty"`
	Method     string `json:"m"`
	Credential string `json:"c,omitempty"`
	At         int64  `json:"a"`
}

// encodeSession returns the stored form of a session.
func encodeSession(s *Session) ([]byte, error) {
	w := wireSession{Owner: s.Owner, User: s.User, Roles: s.Roles, External: s.External, LastUser: s.LastUser,
		Created: s.Created.UnixNano(), Seen: s.Seen.UnixNano()}
	if len(s.Stack) > 0 {
		w.Stack = make([]wireLevel, len(s.Stack))
		for i, l := range s.Stack {
			w.Stack[i] = wireLevel{Tier: l.Tier, Base: l.Base, Method: l.Method, Credential: l.Credential, At: l.At.UnixNano()}
		}
	}
	return json.Marshal(&w)
}

// decodeSession reads a stored session, in either form.
func decodeSession(raw []byte, s *Session) error {
	var w wireSession
	if err := json.Unmarshal(raw, &w); err != nil {
		// The older form: RFC 3339 times.
		return json.Unmarshal(raw, s)
	}
	s.Owner, s.User, s.Roles, s.External, s.LastUser = w.Owner, w.User, w.Roles, w.External, w.LastUser
	s.Created, s.Seen = time.Unix(0, w.Created), time.Unix(0, w.Seen)
	s.Stack = nil
	if len(w.Stack) > 0 {
		s.Stack = make(tiers.Stack, len(w.Stack))
		for i, l := range w.Stack {
			s.Stack[i] = tiers.Level{Tier: l.Tier, Base: l.Base, Method: l.Method, Credential: l.Credential, At: time.Unix(0, l.At)}
		}
	}
	return nil
}
