package caddymodule

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// FuzzCaddyfile: no token stream makes the `stepup` global option or
// handler directive panic, and what either accepts is JSON that decodes
// into the module's configuration again. The seeds are the demo's blocks,
// the integration tests' blocks and every method's syntax.
func FuzzCaddyfile(f *testing.F) {
	demo, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		f.Fatal(err)
	}
	demoGlobal, demoSite, _ := strings.Cut(string(demo), "http://localhost:8080 {")
	// Seeds that parse, so that the round-trip property runs from the
	// start.
	for _, src := range []string{stepupBlock(demoGlobal), global(f)} {
		if _, err := parseGlobalOption(caddyfile.NewTestDispenser(src), nil); err != nil {
			f.Fatalf("global option seed: %v", err)
		}
	}
	for _, src := range []string{stepupBlock(demoSite), site} {
		if err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err != nil {
			f.Fatalf("handler seed: %v", err)
		}
	}
	for _, seed := range []string{
		stepupBlock(demoGlobal), stepupBlock(demoSite), global(f), site,
		`stepup {
			tier sudo {
				base login
				method totp {
					enroll self
					digits 8
					period 30s
					algorithm SHA256
					skew 1
					issuer "Example Corp"
					lockout 5 1m 1h
				}
				method radius {
					server 127.0.0.1:1812 secret
					timeout 2s
					retries 0
					dead_time 30s
					nas_identifier caddy
					nas_ip 127.0.0.1
					username {user}@example
				}
				method webauthn {
					rp_id example.com
					rp_name Example
					origins https://example.com https://app.example.com
					user_verification preferred
					attestation direct
					resident_key required
					authenticators cb69481e-8ff7-4039-93ec-0a2729a154a8
					enroll self
					timeout 2m
				}
				method external {
					user {http.auth.user.id}
					roles {http.auth.user.roles}
				}
				max_age 30m
				acr urn:example:sudo
			}
			session {
				cookie_name sid
				idle_timeout 1h
				lifetime 12h
			}
			limits {
				per_user 3
				per_client 10
				window 15m
			}
			pending {
				max_body 1MB
				per_session 3
				per_client 10
				ttl 5m
			}
		}`,
		"stepup",
		"stepup {\n}",
		"stepup {\n\ttransaction x {\n\t\tmatch {\n\t\t\tnot path /a\n\t\t}\n\t\tmax_age 0\n\t}\n}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		// NewTestDispenser exits the process on input that does not lex;
		// the parsers only ever see tokens.
		tokens, err := caddyfile.Tokenize([]byte(src), "Caddyfile")
		if err != nil || len(tokens) == 0 {
			return
		}
		if v, err := parseGlobalOption(caddyfile.NewDispenser(tokens), nil); err == nil {
			app, ok := v.(httpcaddyfile.App)
			if !ok || app.Name != "stepup" || json.Unmarshal(app.Value, new(App)) != nil {
				t.Fatalf("global option %q parsed to %#v", src, v)
			}
		}
		h := new(Handler)
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err == nil {
			raw, err := json.Marshal(h)
			if err != nil || json.Unmarshal(raw, new(Handler)) != nil {
				t.Fatalf("handler %q parsed to a configuration that does not round-trip: %v", src, err)
			}
		}
	})
}

// stepupBlock cuts the first `stepup { … }` block out of a Caddyfile.
func stepupBlock(src string) string {
	start := strings.Index(src, "stepup {")
	if start < 0 {
		return ""
	}
	depth := 0
	for i := start; i < len(src); i++ {
		switch src[i] {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				return src[start : i+1]
			}
		}
	}
	return src[start:]
}
