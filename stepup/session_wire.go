package stepup

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"

	"github.com/caddy-stepup/caddy-stepup/tiers"
)

// The stored form of a session is binary (encodeSession). The JSON forms
// of earlier versions (one-letter names with Unix-nanosecond times, or
// RFC 3339 times) still decode.

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

// encodeSession returns the stored form of a session, the owner's record:
// a version byte, then length-prefixed strings and varint times (Unix
// nanoseconds; after Created, as differences from it, which are short).
// It carries the current id, which a cookie must present. A million
// sessions are a million records, in memory with the memory store: about
// half the bytes of the JSON form.
func encodeSession(s *Session) ([]byte, error) { return appendSession(s, wireVersion), nil }

// encodeLegacySession returns the form of the previous version (no id,
// absolute times), for refreshing a record that version stored under its
// id: an instance not yet upgraded still reads it.
func encodeLegacySession(s *Session) ([]byte, error) { return appendSession(s, wireVersion1), nil }

func appendSession(s *Session, version byte) []byte {
	size := 2 + len(s.Owner) + len(s.ID) + len(s.User) + len(s.LastUser) + len(s.PasswordMark) + 5*binary.MaxVarintLen64 + 2*binary.MaxVarintLen64
	for _, r := range s.Roles {
		size += len(r) + binary.MaxVarintLen64
	}
	for _, l := range s.Stack {
		size += len(l.Tier) + len(l.Base) + len(l.Method) + len(l.Credential) + 5*binary.MaxVarintLen64
	}
	b := make([]byte, 0, size)
	var flags byte
	if s.External {
		flags |= 1
	}
	created := s.Created.UnixNano()
	// since is a time as stored: from version 2 on, its difference from
	// Created (wrapping arithmetic: any time round-trips exactly).
	since := func(t time.Time) int64 {
		if version == wireVersion1 {
			return t.UnixNano()
		}
		return t.UnixNano() - created
	}
	b = append(b, version, flags)
	b = appendString(b, s.Owner)
	if version != wireVersion1 {
		b = appendString(b, s.ID)
	}
	b = appendString(b, s.User)
	b = appendString(b, s.LastUser)
	if version >= wireVersion3 {
		b = appendString(b, s.PasswordMark)
	}
	b = binary.AppendVarint(b, created)
	b = binary.AppendVarint(b, since(s.Seen))
	b = binary.AppendUvarint(b, uint64(len(s.Roles)))
	for _, r := range s.Roles {
		b = appendString(b, r)
	}
	b = binary.AppendUvarint(b, uint64(len(s.Stack)))
	for _, l := range s.Stack {
		b = appendString(b, l.Tier)
		b = appendString(b, l.Base)
		b = appendString(b, l.Method)
		b = appendString(b, l.Credential)
		b = binary.AppendVarint(b, since(l.At))
	}
	return b
}

// The versions of the binary form (JSON forms start with '{').
const (
	// wireVersion1 is the form of the previous version, stored under the
	// session's id: no id inside, absolute times.
	wireVersion1 = 1
	// wireVersion2 is the owner's record: the current id inside, times
	// after Created as differences from it.
	wireVersion2 = 2
	// wireVersion3 adds the password mark (Session.PasswordMark).
	wireVersion3 = 3
	// wireVersion is the form this version writes.
	wireVersion = wireVersion3
)

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// errWire is a stored session that does not decode.
var errWire = errors.New("malformed stored session")

// wireReader reads the binary form, failing on anything out of bounds.
type wireReader struct {
	b   []byte
	err error
}

func (r *wireReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err, r.b = errWire, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err, r.b = errWire, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) string() string {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err, r.b = errWire, nil
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// count reads a number of items, each at least min bytes long.
func (r *wireReader) count(min int) int {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)/min) {
		r.err, r.b = errWire, nil
		return 0
	}
	return int(n)
}

// decodeSession reads a stored session, in any form this version or an
// earlier one wrote. The forms of earlier versions carry no id: s.ID is
// then empty, and the caller knows it from the record's key.
func decodeSession(raw []byte, s *Session) error {
	if len(raw) > 0 && raw[0] == '{' {
		s.ID = ""
		return decodeJSONSession(raw, s)
	}
	if len(raw) < 2 || raw[0] < wireVersion1 || raw[0] > wireVersion3 {
		return errWire
	}
	version := raw[0]
	r := &wireReader{b: raw[2:]}
	s.External = raw[1]&1 != 0
	s.Owner, s.ID = r.string(), ""
	if version != wireVersion1 {
		s.ID = r.string()
	}
	s.User, s.LastUser, s.PasswordMark = r.string(), r.string(), ""
	if version >= wireVersion3 {
		s.PasswordMark = r.string()
	}
	created := r.varint()
	at := func(v int64) time.Time {
		if version == wireVersion1 {
			return time.Unix(0, v)
		}
		return time.Unix(0, created+v)
	}
	s.Created, s.Seen = time.Unix(0, created), at(r.varint())
	s.Roles = nil
	if n := r.count(1); n > 0 {
		s.Roles = make([]string, n)
		for i := range s.Roles {
			s.Roles[i] = r.string()
		}
	}
	s.Stack = nil
	if n := r.count(5); n > 0 {
		s.Stack = make(tiers.Stack, n)
		for i := range s.Stack {
			s.Stack[i] = tiers.Level{Tier: r.string(), Base: r.string(), Method: r.string(), Credential: r.string(), At: at(r.varint())}
		}
	}
	if r.err != nil || len(r.b) != 0 {
		return errWire
	}
	return nil
}

// decodeJSONSession reads the JSON forms of earlier versions: times as
// Unix nanoseconds, or older still as RFC 3339.
func decodeJSONSession(raw []byte, s *Session) error {
	var w wireSession
	if err := json.Unmarshal(raw, &w); err != nil {
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
