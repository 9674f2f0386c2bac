package stepup

import (
	"net/url"
	"strings"
	"testing"
)

func TestSafeReturn(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"/", "/", true},
		{"/reports/q1?year=2026", "/reports/q1?year=2026", true},
		{"/a#frag", "/a", true},
		{"/a%20b", "/a%20b", true},
		{"", "", false},
		{"reports", "", false},
		{"//evil.example/x", "", false},
		{"/\\evil.example", "", false},
		{"/x\\y", "", false},
		{"https://evil.example/", "", false},
		{"javascript:alert(1)", "", false},
		{"/%2F%2Fevil.example", "", false},
		{"/%2f%5cevil.example", "", false},
		{"/a\r\nSet-Cookie: x=y", "", false},
		{"/a\x00", "", false},
		{"/_stepup/logout", "", false},
		{"/_stepup", "", false},
		{"/_stepupx", "/_stepupx", true},
		{"/" + strings.Repeat("a", 3000), "", false},
	}
	for _, tt := range tests {
		got, ok := SafeReturn(tt.in, "/_stepup")
		if ok != tt.ok || got != tt.want {
			t.Errorf("SafeReturn(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzSafeReturn: whatever comes in, an accepted URL is a same-origin path
// that a browser resolving it against our origin keeps on our origin.
func FuzzSafeReturn(f *testing.F) {
	for _, s := range []string{"/", "//x", "/\\x", "/%2F%2Fx", "http://x", "/a?b#c", "/_stepup/x", "\t/x"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://app.example/start")
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := SafeReturn(in, "/_stepup")
		if !ok {
			if out != "" {
				t.Fatalf("rejected with output %q", out)
			}
			return
		}
		if !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") || strings.ContainsAny(out, "\\\r\n\x00") {
			t.Fatalf("%q -> unsafe %q", in, out)
		}
		u, err := base.Parse(out)
		if err != nil || u.Host != "app.example" || u.Scheme != "https" {
			t.Fatalf("%q -> %q resolves off-origin: %v", in, out, u)
		}
		if p := u.Path; p == "/_stepup" || strings.HasPrefix(p, "/_stepup/") {
			t.Fatalf("%q -> %q loops into the module's pages", in, out)
		}
	})
}
