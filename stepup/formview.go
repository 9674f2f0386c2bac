package stepup

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// FormField is one field of a kept form as the confirmation page shows it:
// what the user is about to send, with secrets masked.
type FormField struct {
	Name  string
	Value string
	// Masked: the name says the value is a secret (password, token, ...);
	// Value is a fixed placeholder that tells nothing of its length.
	Masked bool
	// Truncated: Value is the beginning of a longer value.
	Truncated bool
	// File: the field is an uploaded file; Value describes it.
	File bool
}

// Bounds of what the confirmation page shows.
const (
	maxShownFields = 100
	maxShownValue  = 200
	maskedValue    = "••••••••"
)

// secretNames are name fragments whose values are never shown.
var secretNames = []string{"pass", "secret", "token", "pin", "otp", "code", "key", "cvv", "cvc", "ssn", "auth", "credential", "csrf", "session", "cookie", "iban", "card"}

// IsSecretName reports whether a form field's name says its value is a
// secret, so that it is masked wherever a kept action is shown.
func IsSecretName(name string) bool {
	n := strings.ToLower(name)
	for _, s := range secretNames {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// FormFields decodes the kept body for display: the fields of a URL-encoded
// or multipart form, in the order sent, values of secret-like names masked
// and long values truncated. ok is false for a body that is not a form
// (shown by size and type instead); more counts fields beyond the shown ones.
func (p *PendingRequest) FormFields() (fields []FormField, more int, ok bool) {
	mediaType, params, err := mime.ParseMediaType(p.ContentType)
	if err != nil {
		return nil, 0, false
	}
	add := func(f FormField) {
		if len(fields) >= maxShownFields {
			more++
			return
		}
		if IsSecretName(f.Name) && !f.File {
			f.Value, f.Masked = maskedValue, true
		}
		f.Name, _ = shorten(f.Name)
		if !f.Masked {
			f.Value, f.Truncated = shorten(f.Value)
		}
		fields = append(fields, f)
	}
	switch mediaType {
	case "application/x-www-form-urlencoded":
		for _, pair := range strings.Split(string(p.Body), "&") {
			if pair == "" {
				continue
			}
			k, v, _ := strings.Cut(pair, "=")
			name, err1 := url.QueryUnescape(k)
			value, err2 := url.QueryUnescape(v)
			if err1 != nil || err2 != nil {
				return nil, 0, false
			}
			add(FormField{Name: name, Value: value})
		}
		return fields, more, true
	case "multipart/form-data":
		mr := multipart.NewReader(bytes.NewReader(p.Body), params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				return fields, more, true
			}
			if err != nil {
				return nil, 0, false
			}
			data, err := io.ReadAll(part)
			if err != nil {
				return nil, 0, false
			}
			if fn := part.FileName(); fn != "" {
				add(FormField{Name: part.FormName(), Value: fn + " (" + strconv.Itoa(len(data)) + " bytes)", File: true})
				continue
			}
			add(FormField{Name: part.FormName(), Value: string(data)})
		}
	}
	return nil, 0, false
}

// shorten cuts s to maxShownValue characters, on a character boundary, and
// replaces invalid UTF-8 so that the page shows text.
func shorten(s string) (string, bool) {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= maxShownValue {
		return s, false
	}
	n := 0
	for i := range s {
		if n == maxShownValue {
			return s[:i] + "…", true
		}
		n++
	}
	return s, false
}

// maxPreview bounds the body preview of a kept action that is not a form.
const maxPreview = 4000

// BodyPreview shows a kept body that is not a form, for people deciding on
// it: JSON indented, the values of secret-like keys masked at any depth;
// other text as it is. Both are bounded and valid UTF-8. ok is false for
// a body shown by size only (binary, or JSON that does not parse).
func (p *PendingRequest) BodyPreview() (text string, truncated, ok bool) {
	if len(p.Body) == 0 {
		return "", false, false
	}
	mediaType, _, err := mime.ParseMediaType(p.ContentType)
	if err != nil {
		return "", false, false
	}
	var out string
	switch {
	case mediaType == "application/json" || strings.HasSuffix(mediaType, "+json"):
		dec := json.NewDecoder(bytes.NewReader(p.Body))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return "", false, false
		}
		pretty, err := json.MarshalIndent(maskJSON(v), "", "  ")
		if err != nil {
			return "", false, false
		}
		out = string(pretty)
	case strings.HasPrefix(mediaType, "text/") && utf8.Valid(p.Body):
		out = string(p.Body)
	default:
		return "", false, false
	}
	if len(out) > maxPreview {
		cut := maxPreview
		for cut > 0 && !utf8.RuneStart(out[cut]) {
			cut--
		}
		out, truncated = out[:cut], true
	}
	return strings.ToValidUTF8(out, "\uFFFD"), truncated, true
}

// maskJSON replaces the values of secret-like keys, at any depth.
func maskJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			if IsSecretName(k) {
				t[k] = maskedValue
			} else {
				t[k] = maskJSON(val)
			}
		}
	case []any:
		for i := range t {
			t[i] = maskJSON(t[i])
		}
	}
	return v
}
