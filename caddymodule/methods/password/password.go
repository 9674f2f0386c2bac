// Package password is the method module stepup.methods.password: the
// module's own users and their password hashes. At a root tier it signs
// the user in; above one it re-confirms the signed-in user's password
// ("sudo mode").
package password

import (
	"errors"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-stepup/caddy-stepup/caddymodule/syntax"
	"github.com/caddy-stepup/caddy-stepup/stepup"
)

func init() {
	caddy.RegisterModule(Password{})
}

// Password checks a password against the users of the stepup app. It has
// no options: the users are configured with `user` in the app.
//
// Syntax:
//
//	method password
type Password struct{}

// CaddyModule returns the Caddy module information.
func (Password) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "stepup.methods.password", New: func() caddy.Module { return new(Password) }}
}

// UnmarshalCaddyfile reads `password` (no arguments, no block).
func (p *Password) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return syntax.Options(d, func(sub string) error {
		return d.Errf("method password has no option %q", sub)
	})
}

// NewMethod implements stepup.MethodBuilder.
func (p *Password) NewMethod(env stepup.MethodEnv) (stepup.Method, error) {
	if len(env.Users) == 0 {
		return nil, errors.New("method password needs at least one user")
	}
	return stepup.NewPassword(env.Users, env.Root), nil
}

var (
	_ stepup.MethodBuilder  = (*Password)(nil)
	_ caddyfile.Unmarshaler = (*Password)(nil)
)
