package stepup

import (
	"net/http/httptest"
	"testing"
)

// TestPathReadingsOfSlashes: a trailing or repeated slash is another
// reading of the path (frameworks route /pay/ and /pay// to /pay), so a
// set for /pay matches them too.
func TestPathReadingsOfSlashes(t *testing.T) {
	for path, want := range map[string]string{
		"/pay":       "",
		"/":          "",
		"/pay/":      "/pay",
		"/pay//":     "/pay",
		"/a//b":      "/a/b",
		"/a//b/":     "/a/b",
		"/pay;x/":    "/pay",
		"/reports/q": "",
	} {
		r := httptest.NewRequest("GET", "http://app.example"+path, nil)
		r.URL.Path = path // keep the path exactly as sent
		if got := ReadingsOf(r).Path; got != want {
			t.Errorf("%q: reading %q, want %q", path, got, want)
		}
	}
}
