// Package webauthn is the method module stepup.methods.webauthn: a
// security key, or the device's biometrics or screen lock (WebAuthn).
package webauthn

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-stepup/caddy-stepup/caddymodule/syntax"
	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/webauthn"
)

func init() {
	caddy.RegisterModule(WebAuthn{})
}

// WebAuthn configures the security-key method of a tier.
//
// Syntax:
//
//	method webauthn {
//		rp_id             <domain>
//		rp_name           <name>
//		origins           <origin...>
//		user_verification required|preferred|discouraged
//		attestation       none|indirect|direct
//		resident_key      discouraged|preferred|required
//		authenticators    <aaguid...>
//		enroll            self
//		timeout           <duration>
//	}
type WebAuthn struct {
	// RPID is the relying party id, a registrable domain of the site.
	// Default: the request's host name. Keys are bound to it: change it and
	// registered keys no longer work.
	RPID string `json:"rp_id,omitempty"`
	// RPName is shown by browsers. Default: the RP id.
	RPName string `json:"rp_name,omitempty"`
	// Origins allowed in the browser's client data, such as
	// "https://app.example.com". Default: the request's own origin.
	Origins []string `json:"origins,omitempty"`
	// UserVerification: "required" (default: biometrics or PIN),
	// "preferred" or "discouraged".
	UserVerification string `json:"user_verification,omitempty"`
	// Attestation: "none" (default), "indirect" or "direct".
	Attestation string `json:"attestation,omitempty"`
	// ResidentKey: "discouraged" (default), "preferred" or "required".
	ResidentKey string `json:"resident_key,omitempty"`
	// Authenticators, when set, allows only these AAGUIDs (authenticator
	// models) at registration.
	Authenticators []string `json:"authenticators,omitempty"`
	// Enroll: "self" lets users register their first key while they hold
	// the tier's base tier; empty: keys are registered by the administrator.
	Enroll string `json:"enroll,omitempty"`
	// Timeout of a ceremony in the browser. Default: 5m.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (WebAuthn) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "stepup.methods.webauthn", New: func() caddy.Module { return new(WebAuthn) }}
}

// Validate checks the options that need no environment.
func (m *WebAuthn) Validate() error {
	if m.Enroll != "" && m.Enroll != "self" {
		return fmt.Errorf("enroll must be \"self\" (or absent for keys registered by the administrator), not %q", m.Enroll)
	}
	return nil
}

// UnmarshalCaddyfile reads the method's block.
func (m *WebAuthn) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return syntax.Options(d, func(sub string) error {
		switch sub {
		case "rp_id":
			return syntax.String(d, &m.RPID)
		case "rp_name":
			return syntax.String(d, &m.RPName)
		case "origins":
			if m.Origins = d.RemainingArgs(); len(m.Origins) == 0 {
				return d.ArgErr()
			}
		case "user_verification":
			return syntax.String(d, &m.UserVerification)
		case "attestation":
			return syntax.String(d, &m.Attestation)
		case "resident_key":
			return syntax.String(d, &m.ResidentKey)
		case "authenticators":
			if m.Authenticators = d.RemainingArgs(); len(m.Authenticators) == 0 {
				return d.ArgErr()
			}
		case "enroll":
			if err := syntax.String(d, &m.Enroll); err != nil {
				return err
			}
			if m.Enroll != "self" {
				return d.Err("enroll: want \"self\"")
			}
		case "timeout":
			return syntax.Duration(d, &m.Timeout)
		default:
			return d.Errf("method webauthn has no option %q", sub)
		}
		return nil
	})
}

// NewMethod implements stepup.MethodBuilder.
func (m *WebAuthn) NewMethod(env stepup.MethodEnv) (stepup.Method, error) {
	method, err := webauthn.New(webauthn.Config{
		RPID: m.RPID, RPName: m.RPName, Origins: m.Origins, UserVerification: m.UserVerification,
		Attestation: m.Attestation, ResidentKey: m.ResidentKey, Authenticators: m.Authenticators,
		SelfEnroll: m.Enroll == "self", Timeout: time.Duration(m.Timeout),
		Blobs: env.Blobs, Store: env.Store, UserKey: env.Keys.Records, Now: env.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("method webauthn: %v", err)
	}
	return method, nil
}

var (
	_ caddy.Validator       = (*WebAuthn)(nil)
	_ stepup.MethodBuilder  = (*WebAuthn)(nil)
	_ caddyfile.Unmarshaler = (*WebAuthn)(nil)
)
