package stepup

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzKeptRequest feeds arbitrary stored records to what restores a kept
// request: decoding, the confirmation page's form view and the replay.
// Nothing may panic; masked values never appear; a replay carries exactly
// the kept body.
func FuzzKeptRequest(f *testing.F) {
	f.Add([]byte(`{"id":"a","m":"POST","u":"/x?y=1","ct":"application/x-www-form-urlencoded","b":"cGFzc3dvcmQ9aHVudGVyMiZuYW1lPWNhcm9s"}`))
	f.Add([]byte(`{"id":"a","m":"POST","u":"/x","ct":"multipart/form-data; boundary=XX","b":"LS1YWA0KQ29udGVudC1EaXNwb3NpdGlvbjogZm9ybS1kYXRhOyBuYW1lPSJ0b2tlbiINCg0Kc2VjcmV0DQotLVhYLS0NCg=="}`))
	f.Add([]byte(`{"id":"a","m":"GET","u":"//evil.example/x"}`))
	f.Add([]byte(`{"u":"%zz"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := decodePending(raw, nil)
		if err != nil {
			return
		}
		fields, _, _ := p.FormFields()
		for _, fl := range fields {
			if IsSecretName(fl.Name) && !fl.File && (!fl.Masked || fl.Value != maskedValue) {
				t.Fatalf("secret-like field %q shown as %q", fl.Name, fl.Value)
			}
		}
		r := httptest.NewRequest("POST", "http://app.example/_stepup/resume/a", strings.NewReader("x"))
		if err := p.Replay(r); err != nil {
			return
		}
		body, _ := io.ReadAll(r.Body)
		if string(body) != string(p.Body) || r.ContentLength != int64(len(p.Body)) {
			t.Fatalf("replayed body %q, kept %q", body, p.Body)
		}
	})
}
