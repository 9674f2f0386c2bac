package stepup

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
)

// An upstream application may read a request differently from Caddy's
// matchers: frameworks honour method overrides (Rails, Laravel and Express
// read _method and X-HTTP-Method-Override), run GET handlers for HEAD, and
// accept lower-case methods; servers strip ";params", read "\" as "/", and
// drop trailing dots and spaces from path segments. A transaction set must
// match whatever the upstream will run, so a request is matched against
// every reading of it (a conjunction: more sets, more requirements), and
// fails closed when a form is too large to read for an override.

// overrideHeaders are the method-override headers frameworks honour.
var overrideHeaders = [...]string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// maxOverrideScan bounds how much of a form body is read for a _method
// field; a larger form is taken to override to any unsafe method.
const maxOverrideScan = 1 << 20

// unknownOverride are the methods a form too large to read may carry.
var unknownOverride = []string{http.MethodPut, http.MethodPatch, http.MethodDelete}

// Readings are the other ways an upstream may read a request.
type Readings struct {
	// Methods are further methods the request may run as (upper case).
	Methods []string
	// Path is the path as a lenient server reads it, when that differs.
	Path string
}

// Empty reports whether the request has only its plain reading.
func (v *Readings) Empty() bool { return len(v.Methods) == 0 && v.Path == "" }

// ReadingsOf returns the other readings of a request. It upper-cases a
// lower-case method in place (the upstream receives the method it was
// matched as) and may read the start of a form body to look for a _method
// field, leaving the body intact for the next handler.
func ReadingsOf(r *http.Request) Readings { return readingsOf(r, true) }

// ReadingsOfScanned is ReadingsOf for a caller that has looked at every
// header name of the request already: overrides is whether one of them
// is a method-override header (IsOverrideHeader). When it is false the
// header lookups are skipped.
func ReadingsOfScanned(r *http.Request, overrides bool) Readings { return readingsOf(r, overrides) }

// IsOverrideHeader reports whether a header name (canonical, as Go's
// server gives it) is one that frameworks read as the request's method.
func IsOverrideHeader(name string) bool {
	for _, h := range overrideHeaders {
		if name == h {
			return true
		}
	}
	return false
}

func readingsOf(r *http.Request, overrides bool) Readings {
	var v Readings
	if !isUpperToken(r.Method) {
		r.Method = strings.ToUpper(r.Method)
	}
	if r.Method == http.MethodHead {
		v.Methods = append(v.Methods, http.MethodGet)
	}
	for _, h := range overrideHeaders {
		if !overrides {
			break
		}
		for _, m := range r.Header[h] {
			v.addMethod(r.Method, m)
		}
	}
	if q := r.URL.RawQuery; strings.Contains(q, "method") || strings.IndexByte(q, '%') >= 0 {
		for _, m := range overrideFields(q) {
			v.addMethod(r.Method, m)
		}
	}
	if r.Method == http.MethodPost && r.Body != nil && r.Body != http.NoBody {
		for _, m := range formOverride(r) {
			v.addMethod(r.Method, m)
		}
	}
	switch p := r.URL.Path; {
	case suspiciousPath(p):
		v.Path = lenientPath(p)
	case len(p) > 1 && p[len(p)-1] == '/':
		// Express (non-strict routing), Django (APPEND_SLASH) and Rails
		// route /pay/ to /pay: read it as /pay too (no allocation).
		v.Path = p[:len(p)-1]
	}
	return v
}

func (v *Readings) addMethod(actual, m string) {
	m = strings.ToUpper(strings.TrimSpace(m))
	if m == "" || m == actual || len(m) > 32 {
		return
	}
	for _, have := range v.Methods {
		if have == m {
			return
		}
	}
	v.Methods = append(v.Methods, m)
}

func isUpperToken(m string) bool {
	for i := 0; i < len(m); i++ {
		if c := m[i]; c >= 'a' && c <= 'z' {
			return false
		}
	}
	return true
}

// formOverride reads up to maxOverrideScan bytes of a form body for
// _method fields and puts the body back as it was. A body without a
// Content-Type is read as a URL-encoded form, as Rack reads it.
func formOverride(r *http.Request) []string {
	ct := r.Header.Get("Content-Type")
	mediaType, params := "application/x-www-form-urlencoded", map[string]string(nil)
	if ct != "" {
		var err error
		if mediaType, params, err = mime.ParseMediaType(ct); err != nil {
			return nil
		}
	}
	if mediaType != "application/x-www-form-urlencoded" && mediaType != "multipart/form-data" {
		return nil
	}
	head, err := io.ReadAll(io.LimitReader(r.Body, maxOverrideScan+1))
	r.Body = replayedBody{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
	if err != nil || len(head) > maxOverrideScan {
		return unknownOverride
	}
	if mediaType == "application/x-www-form-urlencoded" {
		if !bytes.Contains(head, []byte("method")) && bytes.IndexByte(head, '%') < 0 {
			return nil
		}
		return overrideFields(string(head))
	}
	var out []string
	mr := multipart.NewReader(bytes.NewReader(head), params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			return unknownOverride
		}
		if isOverrideName(part.FormName()) {
			b, err := io.ReadAll(io.LimitReader(part, 64))
			if err != nil {
				return unknownOverride
			}
			out = append(out, string(b))
		}
	}
}

// overrideFields returns the values of every field of a URL-encoded query
// or form that a framework may read as _method. One that cannot be decoded
// may be anything.
func overrideFields(encoded string) []string {
	q, err := url.ParseQuery(encoded)
	if err != nil {
		return unknownOverride
	}
	var out []string
	for k, vs := range q {
		if isOverrideName(k) {
			out = append(out, vs...)
		}
	}
	return out
}

// isOverrideName reports whether a decoded field name may be read as
// _method: as PHP reads names (Symfony, Laravel: leading spaces dropped,
// "." and " " as "_", the part before "[" as the name), or with a leading
// space taken as "_" (failing closed where parsers differ).
func isOverrideName(name string) bool {
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	return sameAsMethodField(name) || sameAsMethodField(strings.TrimLeft(name, " "))
}

func sameAsMethodField(name string) bool {
	const field = "_method"
	if len(name) != len(field) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '.' || c == ' ' {
			c = '_'
		}
		if c != field[i] {
			return false
		}
	}
	return true
}

// replayedBody is a request body whose start was read ahead.
type replayedBody struct {
	io.Reader
	io.Closer
}

// suspiciousPath reports whether a lenient server could read the path as
// another one: a ";", "\", NUL, or a segment ending in a dot, a space or
// a tab (other than "." and "..", which Caddy's matchers already clean).
func suspiciousPath(p string) bool {
	for i := 0; i < len(p); i++ {
		if !pathByteOfNote[p[i]] {
			continue // most bytes of most paths: one table load each
		}
		switch c := p[i]; c {
		case ';', '\\', 0:
			return true
		case '/':
			// Repeated slashes, which many servers collapse.
			if i > 0 && p[i-1] == '/' {
				return true
			}
		case '.', ' ', '\t':
			if (i+1 == len(p) || p[i+1] == '/') && !dotSegment(p, i) {
				return true
			}
		}
	}
	return false
}

// pathByteOfNote marks the bytes suspiciousPath looks at.
var pathByteOfNote = [256]bool{';': true, '\\': true, 0: true, '/': true, '.': true, ' ': true, '\t': true}

// dotSegment reports whether the segment ending at p[i] is "." or "..".
func dotSegment(p string, i int) bool {
	start := strings.LastIndexByte(p[:i+1], '/') + 1
	seg := p[start : i+1]
	return seg == "." || seg == ".."
}

// lenientPath is the path as a lenient server reads it: backslashes are
// slashes, ";params" and NUL bytes are dropped, trailing dots, spaces and
// tabs are trimmed from each segment, and empty segments (repeated or
// trailing slashes) are dropped.
func lenientPath(p string) string {
	p = strings.ReplaceAll(p, "\\", "/")
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		seg, _, _ = strings.Cut(seg, ";")
		seg = strings.ReplaceAll(seg, "\x00", "")
		if seg != "." && seg != ".." {
			seg = strings.TrimRight(seg, ". \t")
		}
		segs[i] = seg
	}
	// Repeated and trailing slashes collapse, as many servers route them.
	kept := segs[:1]
	for _, seg := range segs[1:] {
		if seg != "" {
			kept = append(kept, seg)
		}
	}
	if len(kept) == 1 {
		return "/"
	}
	return strings.Join(kept, "/")
}
