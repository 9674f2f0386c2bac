package stepup

import (
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// The decoy compared for unknown user names is the costliest hash, so a
// login for a user that does not exist costs what the costliest real one
// costs (with the cheapest, timing would tell users apart).
func TestDecoyIsTheCostliestHash(t *testing.T) {
	hash := func(cost int) PasswordHash {
		raw, err := bcrypt.GenerateFromPassword([]byte("pw"), cost)
		if err != nil {
			t.Fatal(err)
		}
		h, err := ParsePasswordHash(string(raw))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	cheap, costly := hash(4), hash(6)
	argon, err := ParsePasswordHash("$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0$MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		users map[string]*User
		want  PasswordHash
	}{
		{"bcrypt costs", map[string]*User{"aaron": {Name: "aaron", Hash: cheap}, "zoe": {Name: "zoe", Hash: costly}}, costly},
		{"argon2id over cheap bcrypt", map[string]*User{"aaron": {Name: "aaron", Hash: cheap}, "zoe": {Name: "zoe", Hash: argon}}, argon},
	} {
		p := NewPassword(tc.users, true)
		if p.decoy.cost() != tc.want.cost() || string(p.decoy.bcrypt) != string(tc.want.bcrypt) {
			t.Errorf("%s: decoy cost %v, want %v", tc.name, p.decoy.cost(), tc.want.cost())
		}
	}
}
