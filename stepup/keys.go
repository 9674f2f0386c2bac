package stepup

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
)

// MinSecretLength is the shortest configured secret accepted.
const MinSecretLength = 32

// Keys are the independent keys derived from the module secret, one per
// purpose, so that no key is ever used for two things.
type Keys struct {
	CookieHash  []byte // HMAC-SHA256 of the session cookie
	CookieBlock []byte // AES-256 of the session cookie
	CSRF        []byte // HMAC of CSRF tokens
	Records     []byte // AES-GCM of secrets at rest (TOTP secrets)
	Flash       []byte // HMAC of the pages' one-time notices
}

// DeriveKeys derives the purpose keys from secret.
func DeriveKeys(secret []byte) (Keys, error) {
	if len(secret) < MinSecretLength {
		return Keys{}, errors.New("secret must be at least 32 bytes long")
	}
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("caddy-stepup/v1/" + label))
		return m.Sum(nil)
	}
	return Keys{
		CookieHash:  derive("cookie-hash"),
		CookieBlock: derive("cookie-block"),
		CSRF:        derive("csrf"),
		Records:     derive("records"),
		Flash:       derive("flash"),
	}, nil
}

// NewSecret returns a fresh random secret, base64url-encoded, for operators
// who do not configure one (it is then kept in Caddy storage).
func NewSecret() string { return randomToken(48) }

// randomToken returns n random bytes, base64url-encoded without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("stepup: crypto/rand failed: " + err.Error()) // never happens on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// RandomID returns an unguessable id (144 random bits, URL-safe) for
// records that others reach by id (kept requests, approvals).
func RandomID() string { return randomToken(18) }
