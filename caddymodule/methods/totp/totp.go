// Package totp is the method module stepup.methods.totp: a security code
// from an authenticator app (RFC 6238), with provisioned or self-enrolled
// secrets, a replay guard and a growing lockout.
package totp

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-stepup/caddy-stepup/caddymodule/syntax"
	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/totp"
)

func init() {
	caddy.RegisterModule(TOTP{})
}

// TOTP configures the security-code method of a tier.
//
// Syntax:
//
//	method totp {
//		enroll    self
//		digits    6|7|8
//		period    <duration>
//		algorithm SHA1|SHA256|SHA512
//		skew      <steps>
//		issuer    <name>
//		lockout   <failures> <duration> [<max>]
//	}
type TOTP struct {
	// Enroll: "self" lets users set up their own authenticator app while
	// they hold the tier's base tier and have none yet; empty: secrets are
	// provisioned by the administrator (a user's totp_secret).
	Enroll string `json:"enroll,omitempty"`
	// Digits of a code: 6 (default), 7 or 8.
	Digits int `json:"digits,omitempty"`
	// Period of a time step. Default: 30s.
	Period caddy.Duration `json:"period,omitempty"`
	// Algorithm of the HMAC: SHA1 (default), SHA256 or SHA512.
	Algorithm string `json:"algorithm,omitempty"`
	// Skew is how many time steps before and after the current one are
	// accepted. Default: 1.
	Skew *int `json:"skew,omitempty"`
	// Issuer names the service in authenticator apps. Default: the site's
	// host name.
	Issuer string `json:"issuer,omitempty"`
	// Lockout: wrong codes before a user's codes are locked, and for how
	// long (doubling at each further lock within a day, up to max).
	Lockout *Lockout `json:"lockout,omitempty"`

	opts totp.Options
}

// Lockout bounds wrong codes per user.
type Lockout struct {
	// Failures: consecutive wrong codes that lock. Default: 5.
	Failures int `json:"failures,omitempty"`
	// Duration of the first lock. Default: 1m.
	Duration caddy.Duration `json:"duration,omitempty"`
	// Max is the longest lock. Default: 1h.
	Max caddy.Duration `json:"max,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (TOTP) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "stepup.methods.totp", New: func() caddy.Module { return new(TOTP) }}
}

// Provision fills the code parameters' defaults.
func (m *TOTP) Provision(caddy.Context) error {
	opts := totp.Options{Digits: m.Digits, Period: time.Duration(m.Period), Algorithm: m.Algorithm}
	if m.Skew != nil {
		opts.Skew, opts.SkewSet = *m.Skew, true
	}
	var err error
	m.opts, err = opts.WithDefaults()
	return err
}

// Validate checks the options.
func (m *TOTP) Validate() error {
	if m.Enroll != "" && m.Enroll != "self" {
		return fmt.Errorf("enroll must be \"self\" (or absent for administrator-provisioned secrets), not %q", m.Enroll)
	}
	return nil
}

// UnmarshalCaddyfile reads the method's block.
func (m *TOTP) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return syntax.Options(d, func(sub string) error {
		switch sub {
		case "enroll":
			if err := syntax.String(d, &m.Enroll); err != nil {
				return err
			}
			if m.Enroll != "self" {
				return d.Err("enroll: want \"self\"")
			}
		case "digits":
			return syntax.Int(d, &m.Digits)
		case "period":
			return syntax.Duration(d, &m.Period)
		case "algorithm":
			return syntax.String(d, &m.Algorithm)
		case "skew":
			return syntax.Count(d, "skew", &m.Skew)
		case "issuer":
			return syntax.String(d, &m.Issuer)
		case "lockout":
			args := d.RemainingArgs()
			if len(args) < 2 || len(args) > 3 {
				return d.Err("lockout <failures> <duration> [<max>]")
			}
			l := &Lockout{}
			n, err := strconv.Atoi(args[0])
			if err != nil || n <= 0 {
				return d.Errf("lockout: %q is not a positive number of failures", args[0])
			}
			l.Failures = n
			for i, dst := range []*caddy.Duration{&l.Duration, &l.Max}[:len(args)-1] {
				v, err := caddy.ParseDuration(args[i+1])
				if err != nil || v <= 0 {
					return d.Errf("lockout: %q is not a positive duration", args[i+1])
				}
				*dst = caddy.Duration(v)
			}
			m.Lockout = l
		default:
			return d.Errf("method totp has no option %q", sub)
		}
		return nil
	})
}

// NewMethod implements stepup.MethodBuilder.
func (m *TOTP) NewMethod(env stepup.MethodEnv) (stepup.Method, error) {
	provisioned := map[string][]byte{}
	for name, u := range env.Users {
		if u.TOTPSecret == "" {
			continue
		}
		s, err := totp.ParseSecret(u.TOTPSecret)
		if err != nil {
			return nil, fmt.Errorf("user %q: totp_secret: %v", name, err)
		}
		provisioned[name] = s
	}
	if m.Enroll == "" && len(provisioned) == 0 {
		return nil, errors.New("no user has a totp_secret and enrolment is not self-service (enroll self): nobody could reach this tier")
	}
	vault, err := totp.NewVault(env.Blobs, env.Keys.Records)
	if err != nil {
		return nil, err
	}
	lo := totp.Lockout{}
	if l := m.Lockout; l != nil {
		lo = totp.Lockout{Failures: l.Failures, Duration: time.Duration(l.Duration), Max: time.Duration(l.Max)}
	}
	method, err := totp.New(totp.Config{Options: m.opts, SelfEnroll: m.Enroll == "self", Issuer: m.Issuer, Lockout: lo,
		Provisioned: provisioned, Vault: vault, Store: env.Store, Now: env.Now})
	if err != nil {
		return nil, fmt.Errorf("method totp: %v", err)
	}
	return method, nil
}

var (
	_ caddy.Provisioner     = (*TOTP)(nil)
	_ caddy.Validator       = (*TOTP)(nil)
	_ stepup.MethodBuilder  = (*TOTP)(nil)
	_ caddyfile.Unmarshaler = (*TOTP)(nil)
)
