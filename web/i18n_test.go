package web

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// usedIDs are the message ids the pages use: in the templates
// ({{.L.T "id"}}), in the Go code (tx("id"), l.T("id"), setFlash), and
// those built from a fixed list of suffixes.
func usedIDs(t *testing.T) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	// scan finds the message IDs in the files of glob (tests left out)
	// that match the patterns.
	scan := func(glob string, patterns ...string) {
		files, _ := filepath.Glob(glob)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range patterns {
				for _, m := range regexp.MustCompile(p).FindAllStringSubmatch(string(b), -1) {
					ids[m[1]] = true
				}
			}
		}
	}
	scan("templates/*.html", `\.T "([a-z0-9_.]+)"`)
	scan("*.go", `(?:tx\(|\.T\(|setFlash\(w, r, )"([a-z0-9_.]+[a-z0-9])"`, `"((?:approval\.err|flash)\.[a-z_]+)"`)
	// Refusals carry their message IDs from the approval stage
	// (stepup.Denial.Message).
	scan("../stepup/approval/*.go", `"(denial\.[a-z_.]+[a-z])"`)
	for _, s := range []string{"done", "current", "todo"} {
		ids["step.state_"+s] = true
	}
	for _, s := range []string{"pending", "approved", "denied", "expired", "used"} {
		ids["approval.status_"+s] = true
	}
	for _, s := range []string{"approve", "deny"} {
		ids["approval.decision_"+s] = true
	}
	for _, s := range []string{"unsupported", "cancelled", "exists", "address", "failed", "refused"} {
		ids["webauthn.js_"+s] = true
	}
	return ids
}

func catalogue(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := localeFS.ReadFile("locales/" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s.json: %v", name, err)
	}
	return m
}

// TestCataloguesComplete proves that every message the pages use exists in
// English and German, that both catalogues hold the same messages with the
// same plural forms and placeholders, and that no message is left unused.
func TestCataloguesComplete(t *testing.T) {
	en, de := catalogue(t, "en"), catalogue(t, "de")
	used := usedIDs(t)
	var missing []string
	for id := range used {
		for name, c := range map[string]map[string]any{"en": en, "de": de} {
			if _, ok := c[id]; !ok {
				missing = append(missing, name+":"+id)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("messages used but missing from a catalogue:\n%s", strings.Join(missing, "\n"))
	}
	placeholders := regexp.MustCompile(`\{\{\.([A-Za-z]+)\}\}`)
	names := func(v any) []string {
		b, _ := json.Marshal(v)
		var out []string
		for _, m := range placeholders.FindAllStringSubmatch(string(b), -1) {
			out = append(out, m[1])
		}
		sort.Strings(out)
		return compactStrings(out)
	}
	for id, v := range en {
		w, ok := de[id]
		if !ok {
			t.Errorf("de lacks %s", id)
			continue
		}
		if _, plural := v.(map[string]any); plural != isMap(w) {
			t.Errorf("%s: plural in one catalogue only", id)
		}
		if a, b := names(v), names(w); strings.Join(a, ",") != strings.Join(b, ",") {
			t.Errorf("%s: placeholders differ: en %v, de %v", id, a, b)
		}
		// Messages a method or a tier names for itself are looked up by
		// name (method.totp.title); the others must be used.
		if !used[id] && !strings.HasPrefix(id, "method.") && !strings.HasPrefix(id, "outcome.") &&
			!strings.HasPrefix(id, "tier.") && !strings.HasPrefix(id, "credential.") {
			t.Errorf("%s is in the catalogues but never used", id)
		}
	}
	for id := range de {
		if _, ok := en[id]; !ok {
			t.Errorf("en lacks %s", id)
		}
	}
}

func isMap(v any) bool { _, ok := v.(map[string]any); return ok }

func compactStrings(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// TestLanguageFromAcceptLanguage: German when the browser prefers it,
// English otherwise, and durations in plain words in both.
func TestLanguageFromAcceptLanguage(t *testing.T) {
	for _, tc := range []struct {
		accept, tag, hours string
		d                  time.Duration
	}{
		{"de-DE,de;q=0.9,en;q=0.8", "de", "8 Stunden", 8 * time.Hour},
		{"fr-CH, fr;q=0.9, de;q=0.7", "de", "1 Stunde", time.Hour},
		{"en-GB", "en", "4 minutes", 4 * time.Minute},
		{"", "en", "2 hours 30 minutes", 150 * time.Minute},
		{"xx-nonsense;q=abc", "en", "45 seconds", 45 * time.Second},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Accept-Language", tc.accept)
		l := langOf(r)
		if l.Tag != tc.tag {
			t.Errorf("%q: language %s, want %s", tc.accept, l.Tag, tc.tag)
		}
		if got := l.Duration(tc.d); got != tc.hours {
			t.Errorf("%q: %s says %q, want %q", tc.accept, tc.d, got, tc.hours)
		}
	}
}
