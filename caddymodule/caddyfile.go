package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("stepup", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("stepup", parseHandlerDirective)
	// After the authentication directives (an external identity comes from
	// them) and before everything that routes or responds, so that neither
	// handle blocks nor reverse_proxy can run ahead of the check.
	httpcaddyfile.RegisterDirectiveOrder("stepup", httpcaddyfile.After, "forward_auth")
}

// parseGlobalOption parses the global `stepup` option.
//
// Syntax:
//
//	{
//		stepup {
//			secret   <secret>
//			store    memory
//			prefix   <path>
//			user <id> {
//				password    <hash>
//				roles       <role...>
//				totp_secret <base32>
//			}
//			tier <name> {
//				base    <tier>
//				method  password
//				method  external {
//					user  <placeholder>
//					roles <placeholder>
//				}
//				method  totp {
//					enroll    self
//					digits    6|7|8
//					period    <duration>
//					algorithm SHA1|SHA256|SHA512
//					skew      <steps>
//					issuer    <name>
//					lockout   <failures> <duration> [<max>]
//				}
//				method  radius {
//					server         <host:port> <secret>   # repeatable, tried in order
//					timeout        <duration>
//					retries        <n>
//					dead_time      <duration>
//					nas_identifier <name>
//					nas_ip         <ipv4>
//					username       <template>              # {user} = the user id
//				}
//				method  webauthn {
//					rp_id             <domain>
//					rp_name           <name>
//					origins           <origin...>
//					user_verification required|preferred|discouraged
//					attestation       none|indirect|direct
//					resident_key      discouraged|preferred|required
//					authenticators    <aaguid...>
//					enroll            self
//					timeout           <duration>
//				}
//				max_age <duration>
//				acr     <name>
//			}
//			session {
//				cookie_name  <name>
//				idle_timeout <duration>
//				lifetime     <duration>
//			}
//			limits {
//				per_user   <n>
//				per_client <n>
//				window     <duration>
//			}
//			pending {
//				max_body    <bytes>
//				per_session <n>
//				per_client  <n>
//				ttl         <duration>
//				max_total   <bytes>
//			}
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("stepup: global option given more than once")
	}
	var app App
	d.Next()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		ok, err := app.Config.unmarshalSubdirective(d, seen)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, d.Errf("stepup: unknown subdirective %q", d.Val())
		}
	}
	return httpcaddyfile.App{Name: "stepup", Value: caddyconfig.JSON(app, nil)}, nil
}

func parseHandlerDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile parses the `stepup` handler directive.
//
// Syntax:
//
//	stepup [<matcher>] {
//		default public|<tier>
//		transaction <name> {
//			match {
//				<any request matchers>
//			}
//			tier    <tier>
//			max_age <duration>
//			risk    low|medium|high|critical
//		}
//		# single-site configurations only: the global option's subdirectives
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	names := map[string]bool{}
	for d.NextBlock(0) {
		switch d.Val() {
		case "default":
			if err := once(d, seen, "default"); err != nil {
				return err
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Default = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "transaction":
			t, err := unmarshalTransaction(d)
			if err != nil {
				return err
			}
			if names[t.Name] {
				return d.Errf("transaction set %q: defined more than once", t.Name)
			}
			names[t.Name] = true
			h.Transactions = append(h.Transactions, t)
		default:
			ok, err := h.Config.unmarshalSubdirective(d, seen)
			if err != nil {
				return err
			}
			if !ok {
				return d.Errf("stepup: unknown subdirective %q", d.Val())
			}
		}
	}
	return nil
}

func unmarshalTransaction(d *caddyfile.Dispenser) (Transaction, error) {
	var t Transaction
	if !d.NextArg() {
		return t, d.Err("transaction: missing name")
	}
	t.Name = d.Val()
	if d.NextArg() {
		return t, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "match":
			set, err := caddyhttp.ParseCaddyfileNestedMatcherSet(d)
			if err != nil {
				return t, d.Errf("transaction set %q: %v", t.Name, err)
			}
			t.MatcherSetsRaw = append(t.MatcherSetsRaw, set)
		case "tier":
			if err := once(d, seen, "tier"); err != nil {
				return t, err
			}
			if !d.AllArgs(&t.Tier) {
				return t, d.ArgErr()
			}
		case "max_age":
			if err := once(d, seen, "max_age"); err != nil {
				return t, err
			}
			dur, err := durationArg(d)
			if err != nil {
				return t, err
			}
			t.MaxAge = &dur
		case "risk":
			if err := once(d, seen, "risk"); err != nil {
				return t, err
			}
			if !d.AllArgs(&t.Risk) {
				return t, d.ArgErr()
			}
			switch t.Risk {
			case "low", "medium", "high", "critical":
			default:
				return t, d.Errf("transaction set %q: risk must be low, medium, high or critical", t.Name)
			}
		default:
			return t, d.Errf("transaction set %q: unknown subdirective %q", t.Name, d.Val())
		}
	}
	if t.Tier == "" {
		return t, d.Errf("transaction set %q: missing tier", t.Name)
	}
	if len(t.MatcherSetsRaw) == 0 {
		return t, d.Errf("transaction set %q: missing match block", t.Name)
	}
	return t, nil
}

// unmarshalSubdirective parses one subdirective of the shared
// configuration; it reports false for a name it does not know.
func (c *Config) unmarshalSubdirective(d *caddyfile.Dispenser, seen map[string]bool) (bool, error) {
	name := d.Val()
	switch name {
	case "secret", "prefix":
		if err := once(d, seen, name); err != nil {
			return true, err
		}
		var v string
		if !d.AllArgs(&v) {
			return true, d.ArgErr()
		}
		if name == "secret" {
			c.Secret = v
		} else {
			c.Prefix = v
		}
	case "store":
		if err := once(d, seen, name); err != nil {
			return true, err
		}
		var typ string
		if !d.AllArgs(&typ) {
			return true, d.ArgErr()
		}
		c.Store = &StoreConfig{Type: typ}
	case "user":
		return true, c.unmarshalUser(d)
	case "tier":
		t, err := unmarshalTier(d)
		if err != nil {
			return true, err
		}
		for _, prev := range c.Tiers {
			if prev.Name == t.Name {
				return true, d.Errf("tier %q: defined more than once", t.Name)
			}
		}
		c.Tiers = append(c.Tiers, t)
	case "session":
		if err := once(d, seen, name); err != nil {
			return true, err
		}
		c.Session = new(SessionConfig)
		return true, block(d, func(sub string) error {
			switch sub {
			case "cookie_name":
				if !d.AllArgs(&c.Session.CookieName) {
					return d.ArgErr()
				}
			case "idle_timeout":
				return durationInto(d, &c.Session.IdleTimeout)
			case "lifetime":
				return durationInto(d, &c.Session.Lifetime)
			default:
				return d.Errf("session: unknown subdirective %q", sub)
			}
			return nil
		})
	case "limits":
		if err := once(d, seen, name); err != nil {
			return true, err
		}
		c.Limits = new(LimitsConfig)
		return true, block(d, func(sub string) error {
			switch sub {
			case "per_user":
				return intInto(d, &c.Limits.PerUser)
			case "per_client":
				return intInto(d, &c.Limits.PerClient)
			case "window":
				return durationInto(d, &c.Limits.Window)
			}
			return d.Errf("limits: unknown subdirective %q", sub)
		})
	case "pending":
		if err := once(d, seen, name); err != nil {
			return true, err
		}
		c.Pending = new(PendingConfig)
		return true, block(d, func(sub string) error {
			switch sub {
			case "max_body":
				var n int
				if err := intInto(d, &n); err != nil {
					return err
				}
				c.Pending.MaxBody = int64(n)
			case "per_session":
				return intInto(d, &c.Pending.PerSession)
			case "per_client":
				return intInto(d, &c.Pending.PerClient)
			case "ttl":
				return durationInto(d, &c.Pending.TTL)
			case "max_total":
				var n int
				if err := intInto(d, &n); err != nil {
					return err
				}
				c.Pending.MaxTotal = int64(n)
			default:
				return d.Errf("pending: unknown subdirective %q", sub)
			}
			return nil
		})
	default:
		return false, nil
	}
	return true, nil
}

func (c *Config) unmarshalUser(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Err("user: missing user id")
	}
	id := d.Val()
	if c.Users == nil {
		c.Users = map[string]*UserConfig{}
	}
	if _, dup := c.Users[id]; dup {
		return d.Errf("user %q: defined more than once", id)
	}
	u := new(UserConfig)
	c.Users[id] = u
	if d.NextArg() { // user <id> <hash>
		u.Password = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	seen := map[string]bool{}
	err := block(d, func(sub string) error {
		if err := once(d, seen, sub); err != nil {
			return err
		}
		switch sub {
		case "password":
			if !d.AllArgs(&u.Password) {
				return d.ArgErr()
			}
		case "roles":
			u.Roles = d.RemainingArgs()
			if len(u.Roles) == 0 {
				return d.ArgErr()
			}
		case "totp_secret":
			if !d.AllArgs(&u.TOTPSecret) {
				return d.ArgErr()
			}
		default:
			return d.Errf("user %q: unknown subdirective %q", id, sub)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if u.Password == "" {
		return d.Errf("user %q: missing password hash (from `caddy hash-password`)", id)
	}
	return nil
}

func unmarshalTier(d *caddyfile.Dispenser) (TierConfig, error) {
	var t TierConfig
	if !d.NextArg() {
		return t, d.Err("tier: missing name")
	}
	t.Name = d.Val()
	if d.NextArg() {
		return t, d.ArgErr()
	}
	seen := map[string]bool{}
	err := block(d, func(sub string) error {
		if err := once(d, seen, sub); err != nil {
			return err
		}
		switch sub {
		case "base":
			if !d.AllArgs(&t.Base) {
				return d.ArgErr()
			}
		case "acr":
			if !d.AllArgs(&t.ACR) {
				return d.ArgErr()
			}
		case "max_age":
			return durationInto(d, &t.MaxAge)
		case "method":
			return unmarshalMethod(d, &t)
		default:
			return d.Errf("tier %q: unknown subdirective %q", t.Name, sub)
		}
		return nil
	})
	if err != nil {
		return t, err
	}
	if t.Method.Type == "" {
		return t, d.Errf("tier %q: missing method", t.Name)
	}
	if t.MaxAge <= 0 {
		return t, d.Errf("tier %q: missing max_age", t.Name)
	}
	return t, nil
}

func unmarshalMethod(d *caddyfile.Dispenser, t *TierConfig) error {
	if !d.NextArg() {
		return d.Errf("tier %q: method: missing name", t.Name)
	}
	m := &t.Method
	m.Type = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	switch m.Type {
	case "password":
		return block(d, func(sub string) error {
			return d.Errf("tier %q: method password has no option %q", t.Name, sub)
		})
	case "external":
		return block(d, func(sub string) error {
			switch sub {
			case "user":
				if !d.AllArgs(&m.User) {
					return d.ArgErr()
				}
			case "roles":
				if !d.AllArgs(&m.Roles) {
					return d.ArgErr()
				}
			default:
				return d.Errf("tier %q: method external has no option %q", t.Name, sub)
			}
			return nil
		})
	case "totp":
		seen := map[string]bool{}
		return block(d, func(sub string) error {
			if err := once(d, seen, sub); err != nil {
				return err
			}
			switch sub {
			case "enroll":
				if !d.AllArgs(&m.Enroll) {
					return d.ArgErr()
				}
				if m.Enroll != "self" {
					return d.Errf("tier %q: enroll: want \"self\"", t.Name)
				}
			case "digits":
				return intInto(d, &m.Digits)
			case "period":
				return durationInto(d, &m.Period)
			case "algorithm":
				if !d.AllArgs(&m.Algorithm) {
					return d.ArgErr()
				}
			case "skew":
				var s string
				if !d.AllArgs(&s) {
					return d.ArgErr()
				}
				n, err := strconv.Atoi(s)
				if err != nil || n < 0 {
					return d.Errf("tier %q: skew: want a number of steps (0 or more)", t.Name)
				}
				m.Skew = &n
			case "issuer":
				if !d.AllArgs(&m.Issuer) {
					return d.ArgErr()
				}
			case "lockout":
				args := d.RemainingArgs()
				if len(args) < 2 || len(args) > 3 {
					return d.Errf("tier %q: lockout <failures> <duration> [<max>]", t.Name)
				}
				l := &LockoutConfig{}
				n, err := strconv.Atoi(args[0])
				if err != nil || n <= 0 {
					return d.Errf("tier %q: lockout: %q is not a positive number of failures", t.Name, args[0])
				}
				l.Failures = n
				for i, dst := range []*caddy.Duration{&l.Duration, &l.Max}[:len(args)-1] {
					v, err := caddy.ParseDuration(args[i+1])
					if err != nil || v <= 0 {
						return d.Errf("tier %q: lockout: %q is not a positive duration", t.Name, args[i+1])
					}
					*dst = caddy.Duration(v)
				}
				m.Lockout = l
			default:
				return d.Errf("tier %q: method totp has no option %q", t.Name, sub)
			}
			return nil
		})
	case "radius":
		seen := map[string]bool{}
		err := block(d, func(sub string) error {
			if sub != "server" {
				if err := once(d, seen, sub); err != nil {
					return err
				}
			}
			switch sub {
			case "server":
				var s RADIUSServer
				if !d.AllArgs(&s.Address, &s.Secret) {
					return d.Errf("tier %q: server <host:port> <shared secret>", t.Name)
				}
				m.Servers = append(m.Servers, s)
			case "timeout":
				return durationInto(d, &m.Timeout)
			case "dead_time":
				return durationInto(d, &m.DeadTime)
			case "retries":
				var s string
				if !d.AllArgs(&s) {
					return d.ArgErr()
				}
				n, err := strconv.Atoi(s)
				if err != nil || n < 0 {
					return d.Errf("tier %q: retries: want 0 or more", t.Name)
				}
				m.Retries = &n
			case "nas_identifier":
				if !d.AllArgs(&m.NASIdentifier) {
					return d.ArgErr()
				}
			case "nas_ip":
				if !d.AllArgs(&m.NASIP) {
					return d.ArgErr()
				}
			case "username":
				if !d.AllArgs(&m.UserName) {
					return d.ArgErr()
				}
			default:
				return d.Errf("tier %q: method radius has no option %q", t.Name, sub)
			}
			return nil
		})
		if err == nil && len(m.Servers) == 0 {
			return d.Errf("tier %q: method radius needs at least one server", t.Name)
		}
		return err
	case "webauthn":
		seen := map[string]bool{}
		return block(d, func(sub string) error {
			if err := once(d, seen, sub); err != nil {
				return err
			}
			one := func(dst *string) error {
				if !d.AllArgs(dst) {
					return d.ArgErr()
				}
				return nil
			}
			switch sub {
			case "rp_id":
				return one(&m.RPID)
			case "rp_name":
				return one(&m.RPName)
			case "origins":
				if m.Origins = d.RemainingArgs(); len(m.Origins) == 0 {
					return d.ArgErr()
				}
			case "user_verification":
				return one(&m.UserVerification)
			case "attestation":
				return one(&m.Attestation)
			case "resident_key":
				return one(&m.ResidentKey)
			case "authenticators":
				if m.Authenticators = d.RemainingArgs(); len(m.Authenticators) == 0 {
					return d.ArgErr()
				}
			case "enroll":
				if err := one(&m.Enroll); err != nil {
					return err
				}
				if m.Enroll != "self" {
					return d.Errf("tier %q: enroll: want \"self\"", t.Name)
				}
			case "timeout":
				return durationInto(d, &m.Timeout)
			default:
				return d.Errf("tier %q: method webauthn has no option %q", t.Name, sub)
			}
			return nil
		})
	}
	return d.Errf("tier %q: unknown method %q (available: password, external, totp, radius, webauthn)", t.Name, m.Type)
}

// block runs f for every subdirective of the current block.
func block(d *caddyfile.Dispenser, f func(sub string) error) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := f(d.Val()); err != nil {
			return err
		}
	}
	return nil
}

func once(d *caddyfile.Dispenser, seen map[string]bool, name string) error {
	if seen[name] {
		return d.Errf("%s: given more than once", name)
	}
	seen[name] = true
	return nil
}

func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	v, err := caddy.ParseDuration(s)
	if err != nil {
		return 0, d.Errf("%s: %v", d.Val(), err)
	}
	if v < 0 {
		return 0, d.Errf("%s: negative duration", s)
	}
	return caddy.Duration(v), nil
}

func durationInto(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	v, err := durationArg(d)
	if err == nil {
		*dst = v
	}
	return err
}

func intInto(d *caddyfile.Dispenser, dst *int) error {
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return d.Errf("%q: want a positive number", s)
	}
	*dst = n
	return nil
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
