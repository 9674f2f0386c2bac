package stepup

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Hashes printed by `caddy hash-password --plaintext secret-pw` (bcrypt, the
// default) and with `--algorithm argon2id`.
const (
	caddyBcrypt   = "$2a$14$Oh7z.YK91XHWg2QTSB3dHeZ5FbeYxMEgxpCXBjuVMBsiYS8IdAKMm"
	caddyArgon2id = "$argon2id$v=19$m=47104,t=1,p=1$svKX5PFvaPFbLHO39CAmAg$8QRjM8G9lPmk34JCBPHC1097xwhtfGI4kcsqWF3WOtU"
)

func TestParsePasswordHashAcceptsCaddyFormats(t *testing.T) {
	// Caddy's default bcrypt cost (14) takes a second per comparison, much
	// more under -race: its hash is only parsed, and comparisons use the
	// same format at the lowest cost.
	if _, err := ParsePasswordHash(caddyBcrypt); err != nil {
		t.Fatal(err)
	}
	cheap, err := bcrypt.GenerateFromPassword([]byte("secret-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]string{
		"bcrypt":          string(cheap),
		"bcrypt base64":   base64.StdEncoding.EncodeToString(cheap),
		"argon2id":        caddyArgon2id,
		"with whitespace": "  " + string(cheap) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			ph, err := ParsePasswordHash(h)
			if err != nil {
				t.Fatal(err)
			}
			if !ph.Matches("secret-pw") {
				t.Fatal("right password rejected")
			}
			if ph.Matches("secret-pW") || ph.Matches("") {
				t.Fatal("wrong password accepted")
			}
		})
	}
}

func TestParsePasswordHashRejectsGarbage(t *testing.T) {
	for _, h := range []string{
		"", "secret-pw", "$1$md5crypt", "$2a$14$short",
		"$argon2i$v=19$m=47104,t=1,p=1$c2FsdA$a2V5",
		"$argon2id$v=18$m=47104,t=1,p=1$svKX5PFvaPFbLHO39CAmAg$8QRjM8G9lPmk34JCBPHC1097xwhtfGI4kcsqWF3WOtU",
		"$argon2id$v=19$m=0,t=1,p=1$svKX5PFvaPFbLHO39CAmAg$8QRjM8G9lPmk34JCBPHC1097xwhtfGI4kcsqWF3WOtU",
		"$argon2id$v=19$m=99999999,t=1,p=1$svKX5PFvaPFbLHO39CAmAg$8QRjM8G9lPmk34JCBPHC1097xwhtfGI4kcsqWF3WOtU",
		"$argon2id$v=19$m=47104,t=1,p=1,x=2$svKX5PFvaPFbLHO39CAmAg$8QRjM8G9lPmk34JCBPHC1097xwhtfGI4kcsqWF3WOtU",
		"$argon2id$v=19$m=47104,t=1,p=1$!!!$8QRjM8G9lPmk34JCBPHC1097xwhtfGI4kcsqWF3WOtU",
		"$argon2id$v=19$m=47104,t=1,p=1$svKX5PFvaPFbLHO39CAmAg$c2hvcnQ",
	} {
		if _, err := ParsePasswordHash(h); err == nil {
			t.Errorf("accepted %q", h)
		}
	}
	var zero PasswordHash
	if zero.Matches("") {
		t.Fatal("an empty hash matches")
	}
}

func TestPasswordMethod(t *testing.T) {
	h, _ := ParsePasswordHash(caddyArgon2id)
	users := map[string]*User{"alice": {Name: "alice", Hash: h, Roles: []string{"admin"}}}
	root := NewPassword(users, true)
	sudo := NewPassword(users, false)
	ctx := context.Background()
	tests := []struct {
		name   string
		m      *Password
		user   string
		form   url.Values
		result Result
		reason string
	}{
		{"root accepts", root, "", url.Values{"username": {"alice"}, "password": {"secret-pw"}}, Accepted, ""},
		{"root trims user name", root, "", url.Values{"username": {" alice "}, "password": {"secret-pw"}}, Accepted, ""},
		{"root wrong password", root, "", url.Values{"username": {"alice"}, "password": {"nope"}}, Rejected, "bad_credentials"},
		{"root unknown user", root, "", url.Values{"username": {"mallory"}, "password": {"secret-pw"}}, Rejected, "unknown_user"},
		{"root missing field", root, "", url.Values{"username": {"alice"}}, Rejected, "missing_or_oversized_field"},
		{"oversized password", root, "", url.Values{"username": {"alice"}, "password": {strings.Repeat("x", 2000)}}, Rejected, "missing_or_oversized_field"},
		{"sudo uses the session user", sudo, "alice", url.Values{"username": {"mallory"}, "password": {"secret-pw"}}, Accepted, ""},
		{"sudo wrong password", sudo, "alice", url.Values{"password": {"nope"}}, Rejected, "bad_credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := tt.m.Verify(ctx, &Attempt{User: tt.user, Form: tt.form})
			if err != nil {
				t.Fatal(err)
			}
			if o.Result != tt.result || o.Reason != tt.reason {
				t.Fatalf("result %v reason %q", o.Result, o.Reason)
			}
			if o.Result == Accepted && (o.User != "alice" || o.Roles[0] != "admin") {
				t.Fatalf("identity %q %v", o.User, o.Roles)
			}
			if o.Result == Rejected && strings.Contains(o.Message, "mallory") {
				t.Fatal("message reveals the user name")
			}
		})
	}
	if root.Prompt("").Fields[0].Name != "username" || len(sudo.Prompt("alice").Fields) != 1 {
		t.Fatal("prompts")
	}
}

// FuzzParsePasswordHash: configured hashes are parsed at load. Nothing
// makes the parser panic, and an argon2id hash made from a password parses
// and matches that password and no other. (bcrypt's parser and comparison
// are x/crypto's, and take a tenth of a second under the fuzzer's
// instrumentation: TestParsePasswordHashAcceptsCaddyFormats covers them.)
func FuzzParsePasswordHash(f *testing.F) {
	f.Add("secret-pw", "secret-pW", []byte("0123456789abcdef"), uint8(0), caddyArgon2id)
	f.Add("", "x", []byte{}, uint8(200), "$argon2id$v=19$m=1,t=1,p=1$AA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("pässwörd", "passwörd", []byte("salt"), uint8(31), caddyBcrypt)
	f.Add(strings.Repeat("p", 100), strings.Repeat("p", 99), []byte("s"), uint8(255), "$2y$04$")
	f.Add("a", "b", []byte("salt"), uint8(1), "")
	f.Fuzz(func(t *testing.T, password, other string, salt []byte, params uint8, s string) {
		if h, err := ParsePasswordHash(s); err == nil {
			if h.bcrypt == nil && h.argon == nil {
				t.Fatal("accepted a hash with no algorithm")
			}
			if h.argon != nil && (h.argon.memory > 4<<20 || h.argon.threads == 0 || len(h.argon.key) < 16) {
				t.Fatalf("accepted unusable argon2id parameters: %+v", h.argon)
			}
		}

		// Cheap parameters keep the fuzzer fast; the parser reads them
		// like any others.
		memory, time, threads := 8+uint32(params%64), 1+uint32(params>>6&1), 1+params>>7
		key := argon2.IDKey([]byte(password), salt, time, memory, threads, 16+uint32(params%17))
		hash := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", memory, time, threads,
			base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
		h, err := ParsePasswordHash(hash)
		if err != nil {
			t.Fatalf("%q: %v", hash, err)
		}
		if !h.Matches(password) {
			t.Fatalf("%q does not match its password %q", hash, password)
		}
		if other != password && h.Matches(other) {
			t.Fatalf("%q of %q matches %q", hash, password, other)
		}
	})
}
