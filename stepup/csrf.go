package stepup

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
)

// CSRF issues and checks anti-forgery tokens with the signed double-submit
// pattern: the browser holds a random nonce in a cookie, and a form carries
// HMAC(key, nonce). A cross-site attacker can neither read the cookie nor
// compute the MAC. It works before a session exists (the login form).
type CSRF struct {
	key                  []byte
	cookieName, hostName string // hostName: "__Host-" prefixed, for HTTPS
}

// NewCSRF returns the token issuer.
func NewCSRF(keys Keys, cookieName string) *CSRF {
	if cookieName == "" {
		cookieName = "stepup_csrf"
	}
	return &CSRF{key: keys.CSRF, cookieName: cookieName, hostName: "__Host-" + cookieName}
}

func (c *CSRF) name(r *http.Request) string {
	if r.TLS != nil {
		return c.hostName
	}
	return c.cookieName
}

func (c *CSRF) mac(nonce string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Token returns the token for this browser, setting the nonce cookie if the
// browser has none yet.
func (c *CSRF) Token(w http.ResponseWriter, r *http.Request) string {
	nonce := cookieValue(r, c.name(r))
	if len(nonce) < 32 || len(nonce) > 64 {
		nonce = randomToken(32)
		http.SetCookie(w, &http.Cookie{
			Name: c.name(r), Value: nonce, Path: "/", HttpOnly: true,
			Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
		})
		// Later reads in this request must see the new nonce.
		r.AddCookie(&http.Cookie{Name: c.name(r), Value: nonce})
	}
	return c.mac(nonce)
}

// Valid checks a token against the browser's nonce in constant time, and
// rejects a request whose Origin header names another origin.
func (c *CSRF) Valid(r *http.Request, token string) bool {
	if !sameOriginHeader(r) {
		return false
	}
	nonce := cookieValue(r, c.name(r))
	if nonce == "" || token == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.mac(nonce)), []byte(token)) == 1
}

// sameOriginHeader accepts a missing Origin (older browsers, same-origin
// navigations) but rejects one that names another host.
func sameOriginHeader(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if origin == "null" {
		return false
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}
