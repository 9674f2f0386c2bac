package stepup

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// User is an account of the module's own directory.
type User struct {
	// Name is the user id.
	Name string
	// Hash is the password hash as `caddy hash-password` prints it.
	Hash PasswordHash
	// Roles of the user.
	Roles []string
	// TOTPSecret is an administratively provisioned TOTP secret (base32).
	TOTPSecret string
}

// PasswordHash is a parsed bcrypt or argon2id hash.
type PasswordHash struct {
	bcrypt []byte
	argon  *argonParams
}

type argonParams struct {
	salt, key    []byte
	time, memory uint32
	threads      uint8
}

// Mark is a short fingerprint of the hash, by which a session tells that
// the password it was signed in with has been changed since. It reveals
// nothing of the password a salted hash does not.
func (h PasswordHash) Mark() string {
	d := sha256.New()
	if h.argon != nil {
		fmt.Fprintf(d, "argon2id %d %d %d %x %x", h.argon.time, h.argon.memory, h.argon.threads, h.argon.salt, h.argon.key)
	} else {
		d.Write(h.bcrypt)
	}
	return hex.EncodeToString(d.Sum(nil)[:8])
}

// ParsePasswordHash accepts the formats of `caddy hash-password`: bcrypt
// ($2a$/$2b$/$2y$, also base64-encoded as older Caddy versions printed it)
// and argon2id in PHC form ($argon2id$v=19$m=…,t=…,p=…$salt$key).
func ParsePasswordHash(s string) (PasswordHash, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return PasswordHash{}, errors.New("empty password hash")
	}
	if !strings.HasPrefix(s, "$") {
		if dec, err := base64.StdEncoding.DecodeString(s); err == nil && strings.HasPrefix(string(dec), "$2") {
			s = string(dec)
		}
	}
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return PasswordHash{}, fmt.Errorf("invalid bcrypt hash: %w", err)
		}
		return PasswordHash{bcrypt: []byte(s)}, nil
	case strings.HasPrefix(s, "$argon2id$"):
		p, err := parseArgon2id(s)
		if err != nil {
			return PasswordHash{}, fmt.Errorf("invalid argon2id hash: %w", err)
		}
		return PasswordHash{argon: p}, nil
	}
	return PasswordHash{}, errors.New("unsupported password hash (want bcrypt or argon2id from `caddy hash-password`)")
}

func parseArgon2id(s string) (*argonParams, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[2] != "v=19" {
		return nil, errors.New("want $argon2id$v=19$m=…,t=…,p=…$salt$key")
	}
	var p argonParams
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("parameter %q: %w", k, err)
		}
		switch k {
		case "m":
			p.memory = uint32(n)
		case "t":
			p.time = uint32(n)
		case "p":
			if n == 0 || n > 255 {
				return nil, errors.New("parallelism out of range")
			}
			p.threads = uint8(n)
		default:
			return nil, fmt.Errorf("unknown parameter %q", k)
		}
	}
	if p.memory == 0 || p.time == 0 || p.threads == 0 {
		return nil, errors.New("missing m, t or p")
	}
	if p.memory > 4<<20 { // 4 GiB: a typo, or a hash meant to exhaust memory
		return nil, errors.New("memory parameter too large")
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil {
		return nil, fmt.Errorf("salt: %w", err)
	}
	if p.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(p.key) < 16 {
		return nil, errors.New("key: invalid")
	}
	return &p, nil
}

// Matches compares a password with the hash in constant time.
func (h PasswordHash) Matches(password string) bool {
	switch {
	case h.bcrypt != nil:
		return bcrypt.CompareHashAndPassword(h.bcrypt, []byte(password)) == nil
	case h.argon != nil:
		p := h.argon
		key := argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
		return subtle.ConstantTimeCompare(key, p.key) == 1
	}
	return false
}

// Password is the password method: a user name and password checked against
// the configured users. At a root tier it identifies the user; at a tier above
// the root it re-confirms the session user's password ("sudo mode").
type Password struct {
	users map[string]*User
	root  bool
	// decoy is compared for unknown users so that a login for a user that
	// does not exist costs what one for a user that does costs: it is a
	// configured user's hash, so its algorithm and cost are the real ones.
	decoy PasswordHash
}

// NewPassword returns the method for a tier; root tells whether the tier is a
// root tier (identifying) or confirms a known user.
func NewPassword(users map[string]*User, root bool) *Password {
	p := &Password{users: users, root: root}
	var decoyUser string
	var decoyCost float64
	for name, u := range users {
		// The most expensive hash is the decoy: with the cheapest, a login
		// for an unknown user would answer faster than one for a user
		// whose hash is costlier, and tell the two apart.
		c := u.Hash.cost()
		if decoyUser == "" || c > decoyCost || (c == decoyCost && name < decoyUser) {
			decoyUser, decoyCost = name, c
		}
	}
	if decoyUser != "" {
		p.decoy = users[decoyUser].Hash
	}
	return p
}

// cost estimates the work of checking a password against the hash, in
// bcrypt-cost-10 units (about one bcrypt at cost 10 per 64 MiB·pass of
// argon2id), to pick the most expensive one as the decoy.
func (h PasswordHash) cost() float64 {
	switch {
	case h.bcrypt != nil:
		c, err := bcrypt.Cost(h.bcrypt)
		if err != nil {
			return 0
		}
		return float64(uint64(1)<<uint(c)) / 1024
	case h.argon != nil:
		return float64(h.argon.memory) * float64(h.argon.time) / (64 << 10)
	}
	return 0
}

// Name implements Method.
func (p *Password) Name() string { return passwordMethod }

// passwordMethod is the password method's name: a session whose root level
// it reached is one of the directory's users (Engine.applyDirectory).
const passwordMethod = "password"

// Identifies implements Method.
func (p *Password) Identifies() bool { return p.root }

// Prompt implements Method.
func (p *Password) Prompt(user string) Prompt {
	pw := Field{Name: "password", Label: "Password", Type: "password", Autocomplete: "current-password"}
	if p.root {
		return Prompt{
			Title:  "Sign in",
			Fields: []Field{{Name: "username", Label: "Username", Type: "text", Autocomplete: "username"}, pw},
			Submit: "Sign in",
		}
	}
	return Prompt{
		Title:  "Confirm your password",
		Help:   "This action needs you to confirm your password, " + user + ".",
		Fields: []Field{pw},
		Submit: "Confirm",
	}
}

// Verify implements Method.
func (p *Password) Verify(_ context.Context, a *Attempt) (*Outcome, error) {
	name := a.User
	if p.root {
		name = strings.TrimSpace(a.Form.Get("username"))
	}
	password := a.Form.Get("password")
	failed := &Outcome{Result: Rejected, User: name, Message: "The user name or password is not correct.", Reason: "bad_credentials"}
	if !p.root {
		failed.Message = "The password is not correct."
	}
	if name == "" || password == "" || len(password) > 1024 {
		_ = p.decoy.Matches(password)
		failed.Reason = "missing_or_oversized_field"
		return failed, nil
	}
	u, ok := p.users[name]
	if !ok {
		_ = p.decoy.Matches(password)
		failed.Reason = "unknown_user"
		return failed, nil
	}
	if !u.Hash.Matches(password) {
		return failed, nil
	}
	return &Outcome{Result: Accepted, User: u.Name, Roles: u.Roles, Credential: u.Name}, nil
}

// External takes the identity established earlier in the Caddy route (by
// basic_auth, forward_auth, ...), read through a resolver such as Caddy's
// placeholder replacer. It cannot be completed on a step-up page.
type External struct {
	// UserFrom and RolesFrom are the placeholder expressions, such as
	// "{http.auth.user.id}" and "{http.request.header.Remote-Groups}".
	UserFrom, RolesFrom string
	// Resolve expands a placeholder expression for the request; unknown
	// placeholders must expand to "".
	Resolve func(r *http.Request, expr string) string
}

// Name implements Method.
func (e *External) Name() string { return "external" }

// Identifies implements Method.
func (e *External) Identifies() bool { return true }

// Prompt implements Method.
func (e *External) Prompt(string) Prompt {
	return Prompt{Title: "Sign in", Help: "Sign-in happens before this gateway, and this request did not carry an identity. Sign in through your organisation's login and try again."}
}

// Verify implements Method: there is nothing to submit.
func (e *External) Verify(context.Context, *Attempt) (*Outcome, error) {
	return &Outcome{Result: Rejected, Message: "Sign-in happens before this gateway.", Reason: "external_method_has_no_form"}, nil
}

// Identify implements RequestIdentity.
func (e *External) Identify(r *http.Request) (string, []string, bool) {
	user := strings.TrimSpace(e.Resolve(r, e.UserFrom))
	if user == "" || len(user) > 256 {
		return "", nil, false
	}
	var roles []string
	if e.RolesFrom != "" {
		roles = strings.FieldsFunc(e.Resolve(r, e.RolesFrom), func(c rune) bool { return c == ',' || c == ' ' })
	}
	return user, roles, true
}
