package stepup

import (
	"net/http"
	"net/url"
	"strings"
)

// SafeReturn validates a return URL: only a same-origin absolute path (with
// an optional query) is accepted, never a scheme, a host, a protocol-relative
// "//host", a backslash that browsers read as a slash, or a control
// character. Paths under the module's own prefix are refused so a return can
// never loop into the step-up pages, except the session page and the
// enrolment pages, to which a user returns after stepping up to change a
// credential. The cleaned URL is returned.
func SafeReturn(raw, prefix string) (string, bool) {
	if raw == "" || len(raw) > 2048 || raw[0] != '/' {
		return "", false
	}
	if len(raw) > 1 && (raw[1] == '/' || raw[1] == '\\') {
		return "", false
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "", false
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "", false
	}
	// Percent-decoded slashes or backslashes at the start could still be
	// read as a host by a lenient client.
	if strings.HasPrefix(u.Path, "//") || strings.HasPrefix(u.Path, "/\\") {
		return "", false
	}
	if prefix != "" && (u.Path == prefix || strings.HasPrefix(u.Path, prefix+"/")) {
		switch rest := strings.TrimPrefix(u.Path, prefix); {
		case rest == "/", rest == "/enroll/totp", rest == "/enroll/webauthn", rest == "/approvals":
		case rest == "/enroll" && strings.HasPrefix(u.RawQuery, "link=") && validID(strings.TrimPrefix(u.RawQuery, "link=")):
			// An enrolment link: the user signs in first, then comes back to it.
		case strings.HasPrefix(rest, "/approvals/") && validID(strings.TrimPrefix(rest, "/approvals/")):
			// An approver steps up to decide and comes back to the request.
		default:
			return "", false
		}
	}
	u.Fragment = ""
	return u.RequestURI(), true
}

// validID reports whether s looks like a RandomID: nothing but URL-safe
// base64, of a sane length.
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// PathOf is the path of a request URI, without its query: what audit
// records, notifications and pages show of a kept action (a query may
// carry what is not for them).
func PathOf(uri string) string {
	p, _, _ := strings.Cut(uri, "?")
	return p
}

// IsAPI tells API clients from browser navigations: an API client does not
// accept HTML, or says it is a script.
func IsAPI(r *http.Request) bool {
	if r.Header.Get("X-Requested-With") != "" {
		return true
	}
	return !strings.Contains(r.Header.Get("Accept"), "text/html")
}
