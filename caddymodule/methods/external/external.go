// Package external is the method module stepup.methods.external: the
// identity established earlier in the Caddy route, by basic_auth,
// forward_auth or any handler that sets a placeholder or header.
package external

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-stepup/caddy-stepup/caddymodule/syntax"
	"github.com/caddy-stepup/caddy-stepup/stepup"
)

func init() {
	caddy.RegisterModule(External{})
}

// External reads the user (and roles) from placeholders on every request.
// It can only be a root tier's method, and only one tier may use it.
//
// Syntax:
//
//	method external {
//		user  <placeholder>
//		roles <placeholder>
//	}
type External struct {
	// User is the placeholder holding the user id, such as
	// "{http.auth.user.id}" (basic_auth) or "{http.request.header.Remote-User}"
	// (a header copied by forward_auth). Default: {http.auth.user.id}.
	User string `json:"user,omitempty"`
	// Roles is the placeholder holding the roles, separated by commas or
	// spaces, such as "{http.request.header.Remote-Groups}".
	Roles string `json:"roles,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (External) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "stepup.methods.external", New: func() caddy.Module { return new(External) }}
}

// Provision fills the default user placeholder.
func (e *External) Provision(caddy.Context) error {
	if e.User == "" {
		e.User = "{http.auth.user.id}"
	}
	return nil
}

// UnmarshalCaddyfile reads the method's block.
func (e *External) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return syntax.Options(d, func(sub string) error {
		switch sub {
		case "user":
			return syntax.String(d, &e.User)
		case "roles":
			return syntax.String(d, &e.Roles)
		}
		return d.Errf("method external has no option %q", sub)
	})
}

// NewMethod implements stepup.MethodBuilder.
func (e *External) NewMethod(env stepup.MethodEnv) (stepup.Method, error) {
	return &stepup.External{UserFrom: e.User, RolesFrom: e.Roles, Resolve: env.Resolve}, nil
}

var (
	_ caddy.Provisioner     = (*External)(nil)
	_ stepup.MethodBuilder  = (*External)(nil)
	_ caddyfile.Unmarshaler = (*External)(nil)
)
