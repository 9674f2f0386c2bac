package caddymodule

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-stepup/caddy-stepup/caddymodule/syntax"
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
//			store    local|memory|redis [{ … }]
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
//				label   <text>       # for people: "Security key"
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
//			ui {
//				title <text>
//				logo  <file>|/<path on the site>
//				css   <file>
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
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	// A set naming an approval policy that exists nowhere is an error at
	// its own line, not only when the configuration loads.
	known := map[string]bool{}
	for _, a := range handler.Approvals {
		known[a.Name] = true
	}
	if app, ok := h.Option("stepup").(httpcaddyfile.App); ok {
		var global App
		if err := json.Unmarshal(app.Value, &global); err == nil {
			for _, a := range global.Approvals {
				known[a.Name] = true
			}
		}
	}
	for _, t := range handler.Transactions {
		if t.Approval != "" && !known[t.Approval] {
			return nil, fmt.Errorf("%s:%d: transaction set %q: unknown approval policy %q", h.File(), t.approvalLine, t.Name, t.Approval)
		}
	}
	return handler, nil
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
//			label   <text>           # for people: "Admin area"
//			tier    <tier>
//			max_age <duration>
//			risk    low|medium|high|critical
//			approval <policy>
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
			if err := syntax.Once(d, seen, "default"); err != nil {
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
			if err := syntax.Once(d, seen, "tier"); err != nil {
				return t, err
			}
			if !d.AllArgs(&t.Tier) {
				return t, d.ArgErr()
			}
		case "max_age":
			if err := syntax.Once(d, seen, "max_age"); err != nil {
				return t, err
			}
			var dur caddy.Duration
			if err := syntax.Duration(d, &dur); err != nil {
				return t, err
			}
			t.MaxAge = &dur
		case "label":
			if err := syntax.Once(d, seen, "label"); err != nil {
				return t, err
			}
			if !d.AllArgs(&t.Label) {
				return t, d.ArgErr()
			}
		case "approval":
			if err := syntax.Once(d, seen, "approval"); err != nil {
				return t, err
			}
			if !d.AllArgs(&t.Approval) {
				return t, d.ArgErr()
			}
			t.approvalLine = d.Line()
		case "risk":
			if err := syntax.Once(d, seen, "risk"); err != nil {
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
		if err := syntax.Once(d, seen, name); err != nil {
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
		if err := syntax.Once(d, seen, name); err != nil {
			return true, err
		}
		raw, err := guestModule(d, "stepup.stores", "store")
		if err != nil {
			return true, err
		}
		c.StoreRaw = raw
	case "user":
		return true, c.unmarshalUser(d)
	case "ui":
		if err := syntax.Once(d, seen, name); err != nil {
			return true, err
		}
		if d.NextArg() {
			return true, d.ArgErr()
		}
		c.UI = new(UIConfig)
		uiSeen := map[string]bool{}
		return true, syntax.Block(d, func(sub string) error {
			if err := syntax.Once(d, uiSeen, sub); err != nil {
				return err
			}
			var v *string
			switch sub {
			case "title":
				v = &c.UI.Title
			case "logo":
				v = &c.UI.Logo
			case "css":
				v = &c.UI.CSS
			default:
				return d.Errf("ui: unknown subdirective %q", sub)
			}
			if !d.AllArgs(v) {
				return d.ArgErr()
			}
			return nil
		})
	case "approval":
		a, err := unmarshalApproval(d)
		if err != nil {
			return true, err
		}
		for _, prev := range c.Approvals {
			if prev.Name == a.Name {
				return true, d.Errf("approval %q: defined more than once", a.Name)
			}
		}
		c.Approvals = append(c.Approvals, a)
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
		if err := syntax.Once(d, seen, name); err != nil {
			return true, err
		}
		c.Session = new(SessionConfig)
		return true, syntax.Block(d, func(sub string) error {
			switch sub {
			case "cookie_name":
				if !d.AllArgs(&c.Session.CookieName) {
					return d.ArgErr()
				}
			case "idle_timeout":
				return syntax.Duration(d, &c.Session.IdleTimeout)
			case "lifetime":
				return syntax.Duration(d, &c.Session.Lifetime)
			default:
				return d.Errf("session: unknown subdirective %q", sub)
			}
			return nil
		})
	case "limits":
		if err := syntax.Once(d, seen, name); err != nil {
			return true, err
		}
		c.Limits = new(LimitsConfig)
		return true, syntax.Block(d, func(sub string) error {
			switch sub {
			case "per_user":
				return syntax.Int(d, &c.Limits.PerUser)
			case "per_client":
				return syntax.Int(d, &c.Limits.PerClient)
			case "window":
				return syntax.Duration(d, &c.Limits.Window)
			}
			return d.Errf("limits: unknown subdirective %q", sub)
		})
	case "pending":
		if err := syntax.Once(d, seen, name); err != nil {
			return true, err
		}
		c.Pending = new(PendingConfig)
		return true, syntax.Block(d, func(sub string) error {
			switch sub {
			case "max_body":
				var n int
				if err := syntax.Int(d, &n); err != nil {
					return err
				}
				c.Pending.MaxBody = int64(n)
			case "per_session":
				return syntax.Int(d, &c.Pending.PerSession)
			case "per_client":
				return syntax.Int(d, &c.Pending.PerClient)
			case "ttl":
				return syntax.Duration(d, &c.Pending.TTL)
			case "max_total":
				var n int
				if err := syntax.Int(d, &n); err != nil {
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
	err := syntax.Block(d, func(sub string) error {
		if err := syntax.Once(d, seen, sub); err != nil {
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
	var methods []json.RawMessage
	err := syntax.Block(d, func(sub string) error {
		if sub != "method" { // repeatable: alternatives, any one reaches the tier
			if err := syntax.Once(d, seen, sub); err != nil {
				return err
			}
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
		case "label":
			if !d.AllArgs(&t.Label) {
				return d.ArgErr()
			}
		case "max_age":
			return syntax.Duration(d, &t.MaxAge)
		case "method":
			raw, err := guestModule(d, "stepup.methods", "method")
			if err != nil {
				return fmt.Errorf("tier %q: %w", t.Name, err)
			}
			methods = append(methods, raw)
		default:
			return d.Errf("tier %q: unknown subdirective %q", t.Name, sub)
		}
		return nil
	})
	if err != nil {
		return t, err
	}
	switch len(methods) {
	case 0:
		return t, d.Errf("tier %q: missing method", t.Name)
	case 1:
		t.MethodRaw = methods[0]
	default:
		t.MethodsRaw = methods
	}
	if t.MaxAge <= 0 {
		return t, d.Errf("tier %q: missing max_age", t.Name)
	}
	return t, nil
}

// guestModule reads `<kind> <name> [{ … }]` as the guest module
// namespace.name, whose own UnmarshalCaddyfile reads its block, and returns
// its JSON with the name under inlineKey, as Caddy's own guest modules are
// written (reverse_proxy's transport, tls's issuers).
func guestModule(d *caddyfile.Dispenser, namespace, inlineKey string) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.Errf("%s: missing name", inlineKey)
	}
	name := d.Val()
	if _, err := caddy.GetModule(namespace + "." + name); err != nil {
		var known []string
		for _, m := range caddy.GetModules(namespace) {
			known = append(known, m.ID.Name())
		}
		return nil, d.Errf("unknown %s %q (available: %s)", inlineKey, name, strings.Join(known, ", "))
	}
	unm, err := caddyfile.UnmarshalModule(d, namespace+"."+name)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(unm, inlineKey, name, nil), nil
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
