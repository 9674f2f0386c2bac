package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"

	"github.com/caddy-stepup/caddy-stepup/caddymodule/syntax"
	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/approval"
	"github.com/caddy-stepup/caddy-stepup/stepup/radius"
)

// ApprovalConfig is one just-in-time approval policy. A transaction set
// names it with `approval NAME`; its requests then pass only when the
// conditions hold at that moment and the action was approved.
type ApprovalConfig struct {
	// Name of the policy, used by transaction sets and in audit records.
	Name string `json:"name"`
	// Roles: the requester must have one of them.
	Roles []string `json:"roles,omitempty"`
	// Networks: CIDRs the client IP (as Caddy resolves it, trusted proxies
	// honoured) must be in.
	Networks []string `json:"networks,omitempty"`
	// Hours: weekly windows in which the action is allowed, each
	// "DAYS HH:MM-HH:MM [ZONE]", e.g. "Mon-Fri 08:00-18:00 Europe/Berlin"
	// (any window suffices; default zone UTC; a window whose end is not
	// after its start runs past midnight).
	Hours []string `json:"hours,omitempty"`
	// Rate: at most N actions of this policy per user per duration, "N/DURATION".
	Rate string `json:"rate,omitempty"`
	// MaxRisk: sets riskier than this (low, medium, high, critical) are
	// refused outright.
	MaxRisk string `json:"max_risk,omitempty"`
	// Approvers: "user:NAME" or "role:NAME". Never the requester.
	Approvers []string `json:"approvers,omitempty"`
	// Require: how many distinct approvers must approve. Default: 1.
	Require int `json:"require,omitempty"`
	// ApproverTier: the tier an approver must hold, fresh, when deciding.
	// Default: the tier of the set that asked.
	ApproverTier string `json:"approver_tier,omitempty"`
	// AutoApproveMaxRisk: sets at or below this risk need no human once
	// the conditions hold (a set without a risk never is).
	AutoApproveMaxRisk string `json:"auto_approve_max_risk,omitempty"`
	// Justification: "required", "optional" (default) or "none": text the
	// requester gives, shown to approvers and audited.
	Justification string `json:"justification,omitempty"`
	// Expire: how long a request waits for a decision. Default: 15m.
	Expire caddy.Duration `json:"expire,omitempty"`
	// ExecuteWithin: how long an approved once-grant may wait to be used.
	// Default: 5m.
	ExecuteWithin caddy.Duration `json:"execute_within,omitempty"`
	// Grant: "once" (default: the exact action, once, in the requester's
	// session) or a duration (every request of the set by that user
	// until it ends).
	Grant string `json:"grant,omitempty"`
	// LinkBase is the scheme and host of the links to approval pages that
	// notifications carry, e.g. "https://app.example.com". Without it a
	// link is built from the request's Host, which on a site that answers
	// any host (a catch-all or wildcard address) the requester chooses:
	// there, set it, or a requester can send approvers a link to a host of
	// their own that asks for their credentials.
	LinkBase string `json:"link_base,omitempty"`
	// BreakGlass, when given, lets a requester approve their own action
	// with a mandatory reason (flagged in the audit, every notifier told).
	BreakGlass *BreakGlassConfig `json:"break_glass,omitempty"`
	// Radius, when given, sends each action to RADIUS servers to approve.
	Radius *ApprovalRadiusConfig `json:"radius,omitempty"`
	// NotifiersRaw are told of every event (requested, decided, expired,
	// used, break_glass): stepup.notifiers modules, e.g.
	// {"notifier": "webhook", "url": "https://…", "secret": "…"}.
	NotifiersRaw []json.RawMessage `json:"notify,omitempty" caddy:"namespace=stepup.notifiers inline_key=notifier"`
}

// BreakGlassConfig configures self-approval.
type BreakGlassConfig struct {
	// Cooldown: the same user cannot break glass again within it.
	// Default: 1h.
	Cooldown caddy.Duration `json:"cooldown,omitempty"`
}

// ApprovalRadiusConfig configures RADIUS approval.
type ApprovalRadiusConfig struct {
	// Servers are tried in order; placeholders in secrets are expanded.
	Servers []RadiusServer `json:"servers"`
	// Timeout: how long a server may hold a request (a push approval)
	// before it shows as unavailable. Default: 60s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// NASIdentifier sent in NAS-Identifier. Default: caddy-stepup.
	NASIdentifier string `json:"nas_identifier,omitempty"`
}

// RadiusServer is one RADIUS server.
type RadiusServer struct {
	// Address is host:port.
	Address string `json:"address"`
	// Secret is the shared secret (placeholders such as {env.X} expanded).
	Secret string `json:"secret"`
}

// unmarshalApproval reads an `approval NAME { … }` block.
func unmarshalApproval(d *caddyfile.Dispenser) (ApprovalConfig, error) {
	var a ApprovalConfig
	if !d.NextArg() {
		return a, d.Err("approval: missing name")
	}
	a.Name = d.Val()
	if d.NextArg() {
		return a, d.ArgErr()
	}
	errf := func(format string, args ...any) error {
		return d.Errf("approval %q: "+format, append([]any{a.Name}, args...)...)
	}
	seen := map[string]bool{}
	err := syntax.Block(d, func(sub string) error {
		switch sub {
		case "hours", "notify":
		default:
			if err := syntax.Once(d, seen, sub); err != nil {
				return err
			}
		}
		switch sub {
		case "roles", "networks", "approvers":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			switch sub {
			case "roles":
				a.Roles = args
			case "networks":
				for _, n := range args {
					if _, err := parsePrefix(n); err != nil {
						return errf("networks: %v", err)
					}
				}
				a.Networks = args
			case "approvers":
				for _, ap := range args {
					if _, err := approval.ParseApprover(ap); err != nil {
						return errf("%v", err)
					}
				}
				a.Approvers = args
			}
		case "hours":
			args := d.RemainingArgs()
			if _, err := approval.ParseWindow(args); err != nil {
				return errf("hours: %v", err)
			}
			a.Hours = append(a.Hours, strings.Join(args, " "))
		case "rate", "max_risk", "approver_tier", "auto_approve_max_risk", "justification", "grant", "link_base":
			var v string
			if err := syntax.String(d, &v); err != nil {
				return err
			}
			switch sub {
			case "rate":
				if _, err := approval.ParseRate(v); err != nil {
					return errf("%v", err)
				}
				a.Rate = v
			case "max_risk", "auto_approve_max_risk":
				if !approval.ValidRisk(v) {
					return errf("%s must be low, medium, high or critical", sub)
				}
				if sub == "max_risk" {
					a.MaxRisk = v
				} else {
					a.AutoApproveMaxRisk = v
				}
			case "approver_tier":
				a.ApproverTier = v
			case "justification":
				a.Justification = v
			case "grant":
				if _, err := parseGrant(v); err != nil {
					return errf("%v", err)
				}
				a.Grant = v
			case "link_base":
				a.LinkBase = v
			}
		case "require":
			return syntax.Int(d, &a.Require)
		case "expire":
			return syntax.Duration(d, &a.Expire)
		case "execute_within":
			return syntax.Duration(d, &a.ExecuteWithin)
		case "break_glass":
			a.BreakGlass = new(BreakGlassConfig)
			if d.NextArg() {
				return d.ArgErr()
			}
			return syntax.Block(d, func(sub string) error {
				if sub != "cooldown" {
					return errf("break_glass has no option %q", sub)
				}
				return syntax.Duration(d, &a.BreakGlass.Cooldown)
			})
		case "radius":
			a.Radius = new(ApprovalRadiusConfig)
			if d.NextArg() {
				return d.ArgErr()
			}
			rseen := map[string]bool{}
			err := syntax.Block(d, func(sub string) error {
				switch sub {
				case "server":
					var s RadiusServer
					if !d.AllArgs(&s.Address, &s.Secret) {
						return d.Err("server <host:port> <shared secret>")
					}
					a.Radius.Servers = append(a.Radius.Servers, s)
					return nil
				case "timeout", "nas_identifier":
					if err := syntax.Once(d, rseen, sub); err != nil {
						return err
					}
					if sub == "timeout" {
						return syntax.Duration(d, &a.Radius.Timeout)
					}
					return syntax.String(d, &a.Radius.NASIdentifier)
				}
				return errf("radius has no option %q", sub)
			})
			if err == nil && len(a.Radius.Servers) == 0 {
				return errf("radius needs at least one server")
			}
			return err
		case "notify":
			unm, err := caddyfile.UnmarshalModule(d, "stepup.notifiers.webhook")
			if err != nil {
				return err
			}
			a.NotifiersRaw = append(a.NotifiersRaw, caddyconfig.JSONModuleObject(unm, "notifier", "webhook", nil))
		default:
			return errf("unknown subdirective %q", sub)
		}
		return nil
	})
	if err != nil {
		return a, err
	}
	// The checks that need no other part of the configuration, with the
	// policy's line.
	if _, err := a.policy(func(string) bool { return true }); err != nil {
		return a, errf("%v", err)
	}
	return a, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(ip, ip.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an IP address", s)
}

func parseGrant(v string) (time.Duration, error) {
	if v == "" || v == "once" {
		return 0, nil
	}
	d, err := caddy.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("grant must be once or a duration, not %q", v)
	}
	return d, nil
}

// policy builds the engine's policy from the configuration (without its
// notifiers, which are modules).
func (a *ApprovalConfig) policy(hasTier func(string) bool) (*approval.Policy, error) {
	p := &approval.Policy{
		Name: a.Name, Roles: a.Roles, MaxRisk: a.MaxRisk, Require: a.Require, ApproverTier: a.ApproverTier,
		AutoApproveMaxRisk: a.AutoApproveMaxRisk, Justification: a.Justification,
		Expire: time.Duration(a.Expire), ExecuteWithin: time.Duration(a.ExecuteWithin),
	}
	if a.Name == "" {
		return nil, errors.New("missing name")
	}
	for _, n := range a.Networks {
		pr, err := parsePrefix(n)
		if err != nil {
			return nil, fmt.Errorf("networks: %v", err)
		}
		p.Networks = append(p.Networks, pr)
	}
	for _, h := range a.Hours {
		w, err := approval.ParseWindow(strings.Fields(h))
		if err != nil {
			return nil, fmt.Errorf("hours %q: %v", h, err)
		}
		p.Hours = append(p.Hours, w)
	}
	if a.Rate != "" {
		r, err := approval.ParseRate(a.Rate)
		if err != nil {
			return nil, err
		}
		p.Rate = r
	}
	for _, s := range a.Approvers {
		ap, err := approval.ParseApprover(s)
		if err != nil {
			return nil, err
		}
		p.Approvers = append(p.Approvers, ap)
	}
	var err error
	if p.Grant, err = parseGrant(a.Grant); err != nil {
		return nil, err
	}
	if a.LinkBase != "" {
		if p.LinkBase, err = parseBaseURL(a.LinkBase); err != nil {
			return nil, fmt.Errorf("link_base: %v", err)
		}
	}
	if a.BreakGlass != nil {
		p.BreakGlass = &approval.BreakGlass{Cooldown: time.Duration(a.BreakGlass.Cooldown)}
	}
	if a.Radius != nil {
		if len(a.Radius.Servers) == 0 {
			return nil, errors.New("radius needs at least one server")
		}
		repl := caddy.NewReplacer()
		cc := radius.ClientConfig{Timeout: time.Duration(a.Radius.Timeout), Retries: 0, RetriesSet: true, Now: func() time.Time { return now() }}
		if cc.Timeout <= 0 {
			cc.Timeout = 60 * time.Second
		}
		for _, s := range a.Radius.Servers {
			secret := repl.ReplaceKnown(s.Secret, "")
			if secret == "" {
				secret = "unset" // checked at provision, where the environment is known
			}
			cc.Servers = append(cc.Servers, radius.Server{Addr: s.Address, Secret: []byte(secret)})
		}
		client, err := radius.NewClient(cc)
		if err != nil {
			return nil, fmt.Errorf("radius: %v", err)
		}
		p.Radius = &approval.Radius{Client: client, Timeout: cc.Timeout, NASIdentifier: a.Radius.NASIdentifier}
	}
	if err := p.Validate(hasTier); err != nil {
		return nil, err
	}
	return p, nil
}

// buildApprovals provisions the approval policies of a configuration: nil
// when there are none.
func (c *Config) buildApprovals(ctx caddy.Context, e *stepup.Engine) (*approval.Service, error) {
	if len(c.Approvals) == 0 {
		return nil, nil
	}
	policies := map[string]*approval.Policy{}
	for i := range c.Approvals {
		a := &c.Approvals[i]
		if _, dup := policies[a.Name]; dup {
			return nil, fmt.Errorf("approval %q: defined more than once", a.Name)
		}
		if a.Radius != nil {
			repl := caddy.NewReplacer()
			for _, s := range a.Radius.Servers {
				if repl.ReplaceKnown(s.Secret, "") == "" {
					return nil, fmt.Errorf("approval %q: radius server %q: empty shared secret (is the environment variable set?)", a.Name, s.Address)
				}
			}
		}
		p, err := a.policy(e.Hierarchy.Has)
		if err != nil {
			return nil, fmt.Errorf("approval %q: %v", a.Name, err)
		}
		if len(a.NotifiersRaw) > 0 {
			mods, err := ctx.LoadModule(a, "NotifiersRaw")
			if err != nil {
				return nil, fmt.Errorf("approval %q: notify: %v", a.Name, err)
			}
			for _, m := range mods.([]any) {
				n, ok := m.(stepup.Notifier)
				if !ok {
					return nil, fmt.Errorf("approval %q: module %T is not a notifier", a.Name, m)
				}
				p.Notifiers = append(p.Notifiers, n)
			}
		}
		policies[a.Name] = p
	}
	var emit func(string, map[string]any)
	if eventsApp, err := ctx.App("events"); err == nil {
		if events, ok := eventsApp.(*caddyevents.App); ok {
			emit = func(name string, data map[string]any) { events.Emit(ctx, name, data) }
		}
	}
	return approval.NewService(e, policies, emit), nil
}
