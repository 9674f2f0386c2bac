package approval

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// FuzzBodyPreview feeds arbitrary bodies to what approvers are shown of an
// action that is not a form: nothing may panic, the preview is bounded
// valid UTF-8, and no value of a secret-like JSON key shows.
func FuzzBodyPreview(f *testing.F) {
	f.Add("application/json", []byte(`{"amount":100,"password":"hunter2","nested":{"api_token":"abc"},"list":[{"pin":"1234"}]}`))
	f.Add("application/json; charset=utf-8", []byte(`[1,2,3]`))
	f.Add("text/plain", []byte("hello\xff"))
	f.Add("application/problem+json", []byte(`{"detail":"x"}`))
	f.Add("application/octet-stream", []byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		p := &stepup.PendingRequest{ContentType: ct, Body: body}
		text, _, ok := p.BodyPreview()
		if !ok {
			return
		}
		if !utf8.ValidString(text) || len(text) > 4000+len("\uFFFD") {
			t.Fatalf("preview not bounded valid UTF-8: %d bytes", len(text))
		}
		var v any
		if json.Unmarshal(body, &v) == nil {
			checkMasked(t, v, text)
		}
	})
}

// checkMasked fails when the string value of a secret-like key (long
// enough to be recognised) appears in the preview.
func checkMasked(t *testing.T, v any, text string) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && stepup.IsSecretName(k) && len(s) >= 8 && !strings.Contains("••••••••", s) {
				if strings.Contains(text, s) {
					t.Fatalf("the value of %q shows in the preview", k)
				}
			}
			checkMasked(t, val, text)
		}
	case []any:
		for _, e := range x {
			checkMasked(t, e, text)
		}
	}
}

// FuzzParseWindow: any hours line parses or fails cleanly, and a parsed
// window answers for any instant.
func FuzzParseWindow(f *testing.F) {
	f.Add("Mon-Fri 08:00-18:00 Europe/Berlin")
	f.Add("Sat-Mon,Wed 22:00-06:00")
	f.Add("Sun 00:00-24:00 UTC")
	f.Fuzz(func(t *testing.T, line string) {
		w, err := ParseWindow(strings.Fields(line))
		if err != nil {
			return
		}
		for _, at := range []time.Time{time.Unix(0, 0), time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC), time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC)} {
			_ = w.Open(at)
		}
	})
}
