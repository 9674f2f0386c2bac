package web

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

func TestIsAPI(t *testing.T) {
	tests := []struct {
		accept, xrw string
		api         bool
	}{
		{"text/html,application/xhtml+xml,*/*;q=0.8", "", false},
		{"application/json", "", true},
		{"*/*", "", true}, // curl and most API clients
		{"", "", true},
		{"text/html", "XMLHttpRequest", true},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Accept", tt.accept)
		if tt.xrw != "" {
			r.Header.Set("X-Requested-With", tt.xrw)
		}
		if got := stepup.IsAPI(r); got != tt.api {
			t.Errorf("Accept %q X-Requested-With %q: isAPI = %v", tt.accept, tt.xrw, got)
		}
	}
}

func TestStripStepupHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("X-Stepup-User", "mallory")
	h["x-stepup-tiers"] = []string{"key"} // not canonicalised by the client
	h.Set("X-Stepupish", "kept")
	h.Set("Accept", "kept")
	scanHeaders(h)
	if len(h) != 2 || h.Get("X-Stepupish") == "" || h.Get("Accept") == "" {
		t.Fatalf("headers after stripping: %v", h)
	}
}

// TestStripStepupHeadersWithUnderscores: CGI, PHP-FPM, WSGI and Rack read
// X-Stepup_User and X_Stepup-User as HTTP_X_STEPUP_USER, the variable the
// gateway's own X-Stepup-User becomes, so a client must not get one through.
func TestStripStepupHeadersWithUnderscores(t *testing.T) {
	h := http.Header{}
	for _, k := range []string{"X-Stepup_User", "X_Stepup_Tiers", "X_STEPUP-ROLES", "x_stepup_user"} {
		h[k] = []string{"mallory"}
	}
	h.Set("X-Stepup", "kept: no dash after the prefix")
	h.Set("X-Stepupper-User", "kept")
	scanHeaders(h)
	if len(h) != 2 {
		t.Fatalf("headers after stripping: %v", h)
	}
}

func TestReturnForUsesSameOriginReferer(t *testing.T) {
	tests := []struct{ referer, want string }{
		{"http://app.example/admin/list?page=2", "/admin/list?page=2"},
		{"https://evil.example/admin/", "/"},
		{"http://app.example/_stepup/challenge", "/"},
		{"", "/"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "http://app.example/admin/users", nil)
		r.Header.Set("Referer", tt.referer)
		if got := returnFor(r, "/_stepup"); got != tt.want {
			t.Errorf("Referer %q: %q, want %q", tt.referer, got, tt.want)
		}
	}
}

// trailingBody hands out its trailers when it reaches the end, as the
// server does for a chunked request body, declared in advance or not.
type trailingBody struct {
	r    *http.Request
	data *strings.Reader
}

func (b *trailingBody) Read(p []byte) (int, error) {
	n, err := b.data.Read(p)
	if err == io.EOF {
		b.r.Trailer = http.Header{"X-Stepup-User": {"admin"}}
	}
	return n, err
}

func (b *trailingBody) Close() error { return nil }

func TestUndeclaredTrailersAreDropped(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/x", nil)
	r.TransferEncoding = []string{"chunked"}
	r.Body = &trailingBody{r: r, data: strings.NewReader("hello")}
	stripTrailers(r, false)
	if _, err := io.ReadAll(r.Body); err != nil {
		t.Fatal(err)
	}
	if r.Trailer != nil {
		t.Fatalf("trailers after the body: %v", r.Trailer)
	}
}

// The decision's duration is measured from the request's own clock reading
// when that is the real clock (one read fewer per request), and from a
// fresh reading when a test clock supplied it, which would measure nothing.
func TestMetricsStartReusesOnlyARealClockReading(t *testing.T) {
	real := time.Now()
	if got := metricsStart(real); got != real {
		t.Fatal("a real clock reading was not reused")
	}
	frozen := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := metricsStart(frozen); got == frozen || time.Since(got) > time.Minute {
		t.Fatalf("a test clock's reading was used as the start: %v", got)
	}
}

// The one pass over header names reports exactly what ReadingsOf and the
// trailer check would look up: a request's readings are the same whether
// they are computed from the scan or from the headers themselves, for
// every override header, in any company, and none is missed when a
// stripped X-Stepup-* header sits beside it.
func TestScanHeadersFindsWhatReadingsLookFor(t *testing.T) {
	names := []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}
	others := []string{"Accept", "X-Stepup-User", "X-Forwarded-For", "X-Http-Methods", "X-Method", "Trailer", "User-Agent"}
	for mask := 0; mask < 1<<len(names); mask++ {
		for i, other := range others {
			r := httptest.NewRequest(http.MethodPost, "/pay", nil)
			for j, n := range names {
				if mask&(1<<j) != 0 {
					r.Header[n] = []string{[]string{"DELETE", "PUT", "PATCH"}[j]}
				}
			}
			r.Header[other] = []string{"x"}
			if i%2 == 0 {
				r.Header["X-Stepup_Tier"] = []string{"key"}
			}
			_, declared := r.Header["Trailer"]
			want := stepup.ReadingsOf(r.Clone(r.Context()))
			overrides, trailer := scanHeaders(r.Header)
			if trailer != declared {
				t.Fatalf("Trailer reported %v, present %v", trailer, declared)
			}
			if overrides != (mask != 0) {
				t.Fatalf("override headers %b: reported %v", mask, overrides)
			}
			got := stepup.ReadingsOfScanned(r, overrides)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("override headers %b with %s: readings %v from the scan, %v from the headers", mask, other, got, want)
			}
		}
	}
}
