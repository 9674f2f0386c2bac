package stepup

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
)

// CSRF issues and checks anti-forgery tokens with the signed double-submit
// pattern: the browser holds a random nonce in a cookie, and a form carries
// HMAC(key, nonce, session owner). A cross-site attacker can neither read
// the cookie nor compute the MAC; binding the owner means a nonce planted
// from a sibling subdomain, with the attacker's own token, does not pass
// for a signed-in victim. It works before a session exists (the login
// form, owner "").
type CSRF struct {
	key                  []byte
	cookieName, hostName string // hostName: "__Host-" prefixed, for HTTPS
	// Scheme returns the scheme the client used ("http" or "https").
	Scheme func(*http.Request) string
}

// NewCSRF returns the token issuer.
func NewCSRF(keys Keys, cookieName string) *CSRF {
	if cookieName == "" {
		cookieName = "stepup_csrf"
	}
	return &CSRF{key: keys.CSRF, cookieName: cookieName, hostName: "__Host-" + cookieName, Scheme: RequestScheme}
}

// RequestScheme is the scheme of a request Caddy received itself.
func RequestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

func (c *CSRF) name(r *http.Request) string {
	if r.TLS != nil {
		return c.hostName
	}
	return c.cookieName
}

func (c *CSRF) mac(nonce, owner string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(nonce))
	m.Write([]byte{0})
	m.Write([]byte(owner))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Token returns the token for this browser and session owner, setting the
// nonce cookie if the browser has none yet.
func (c *CSRF) Token(w http.ResponseWriter, r *http.Request, owner string) string {
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
	return c.mac(nonce, owner)
}

// Valid checks a token against the browser's nonce and the session owner
// in constant time, and rejects a request whose Origin header names
// another origin (scheme, host and port).
func (c *CSRF) Valid(r *http.Request, token, owner string) bool {
	if origin := r.Header.Get("Origin"); origin != "" && !SameOrigin(r, origin, c.Scheme(r)) {
		return false
	}
	nonce := cookieValue(r, c.name(r))
	if nonce == "" || token == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.mac(nonce, owner)), []byte(token)) == 1
}

// SameOrigin reports whether an origin (an Origin header, or a Referer
// URL) is the request's own: the same scheme and host (with port).
// "null" and anything unparsable are another origin.
func SameOrigin(r *http.Request, origin, scheme string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Scheme, scheme) && strings.EqualFold(u.Host, r.Host)
}

// CrossSite reports whether a request was started by another site: the
// browser says so (Sec-Fetch-Site cross-site or same-site), or its Origin
// (else its Referer) names another origin. A request that carries none of
// these (an old browser, a typed URL) is not taken as cross-site.
func CrossSite(r *http.Request, scheme string) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		return !SameOrigin(r, origin, scheme)
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		return !SameOrigin(r, ref, scheme)
	}
	return false
}
