// Package caddymodule is the Caddy glue of caddy-stepup: module
// registration, the `stepup` app (shared tiers, users and sessions), the
// `http.handlers.stepup` handler (a site's transaction sets) and their
// Caddyfile syntax. The engine itself lives in package stepup.
package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/approval"
	"github.com/caddy-stepup/caddy-stepup/tiers"
	"github.com/caddy-stepup/caddy-stepup/web"
)

// Config is the shared part of the configuration: where sessions live, who
// the users are and which tiers exist. It is the body of the global `stepup`
// app, and may instead be given inline in a single site's handler.
type Config struct {
	// Secret keys the session cookies, CSRF tokens and secrets at rest; at
	// least 32 bytes. Placeholders such as {env.STEPUP_SECRET} are expanded.
	// When empty, a random secret is generated once and kept in Caddy
	// storage (key "stepup/secret"), so sessions survive restarts.
	Secret string `json:"secret,omitempty"`

	// StoreRaw is where sessions, kept requests and counters live: a
	// stepup.stores module: {"store": "local"} (a file in Caddy's data
	// directory, the default), {"store": "memory"} (nothing on disk) or
	// {"store": "redis", "addresses": [...]} (several instances).
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=stepup.stores inline_key=store"`

	// Prefix is the path under which the module serves its own pages.
	// Default: /_stepup.
	Prefix string `json:"prefix,omitempty"`

	// Users of the module's own directory, by user id (used by the
	// password method).
	Users map[string]*UserConfig `json:"users,omitempty"`

	// Tiers, each with at most one base tier; together they form a forest.
	Tiers []TierConfig `json:"tiers,omitempty"`

	// Session configures the session cookie and lifetimes.
	Session *SessionConfig `json:"session,omitempty"`

	// Limits bounds failed attempts (brute force).
	Limits *LimitsConfig `json:"limits,omitempty"`

	// Pending bounds the requests kept across a step-up.
	Pending *PendingConfig `json:"pending,omitempty"`

	// Approvals are the just-in-time approval policies that transaction
	// sets name (`approval NAME` in a set).
	Approvals []ApprovalConfig `json:"approvals,omitempty"`

	// UI brands the module's pages.
	UI *UIConfig `json:"ui,omitempty"`
}

// UIConfig brands the pages the module serves. Files are read when the
// configuration loads and served under the prefix (/_stepup/assets/brand/),
// so the pages keep their strict Content-Security-Policy and load nothing
// from elsewhere.
type UIConfig struct {
	// Title names the site in every page's title and header ("Example
	// Corp sign-in"). Default: "Step-up authentication".
	Title string `json:"title,omitempty"`
	// Logo is an image file (PNG, SVG, JPEG, WebP or GIF, at most 256
	// KiB) read at load when such a file exists, else a path on this site
	// starting with "/" (such as /static/logo.svg); shown above every page.
	Logo string `json:"logo,omitempty"`
	// CSS is a style sheet file (at most 256 KiB) loaded after the
	// module's own, to change colours and fonts. Keep WCAG contrast.
	CSS string `json:"css,omitempty"`
}

// UserConfig is one user of the module's directory.
type UserConfig struct {
	// Password is the hash printed by `caddy hash-password` (bcrypt or
	// argon2id). Placeholders are expanded.
	Password string `json:"password,omitempty"`
	// Roles of the user, available as {http.stepup.roles}.
	Roles []string `json:"roles,omitempty"`
	// TOTPSecret provisions a base32 TOTP secret (placeholders expanded).
	TOTPSecret string `json:"totp_secret,omitempty"`
}

// TierConfig is one tier.
type TierConfig struct {
	// Name of the tier.
	Name string `json:"name"`
	// Base is the tier that must be held (and fresh) before this one can be
	// reached; empty for a root tier.
	Base string `json:"base,omitempty"`
	// MethodRaw is the method that reaches the tier: a stepup.methods
	// module, e.g. {"method": "totp", "digits": 6} (password, external,
	// totp, radius, webauthn, or a third party's).
	MethodRaw json.RawMessage `json:"method,omitempty" caddy:"namespace=stepup.methods inline_key=method"`
	// MethodsRaw, instead of MethodRaw, lists alternatives: methods of
	// equal strength, any one of which reaches the tier (the step page
	// offers the choice; the first is the default). The Caddyfile gives
	// several method lines in one tier block.
	MethodsRaw []json.RawMessage `json:"methods,omitempty" caddy:"namespace=stepup.methods inline_key=method"`
	// MaxAge is how long the tier stays held; when it lapses, every tier
	// above it goes too.
	MaxAge caddy.Duration `json:"max_age"`
	// ACR is the name used in machine-readable challenges (acr_values);
	// default: the tier name.
	ACR string `json:"acr,omitempty"`
	// Label names the tier for people on the pages ("Security key",
	// "Security code"); default: what the tier's method calls itself.
	Label string `json:"label,omitempty"`
}

// SessionConfig configures sessions.
type SessionConfig struct {
	// CookieName is the cookie's name; on HTTPS it gets the __Host- prefix.
	// Default: stepup_session.
	CookieName string `json:"cookie_name,omitempty"`
	// IdleTimeout ends a session unused this long. Default: 1h.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`
	// Lifetime ends a session this long after it began. Default: 12h.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`
}

// LimitsConfig bounds guessing.
type LimitsConfig struct {
	// PerUser: failed attempts allowed per user and tier per window.
	// Default: 5.
	PerUser int `json:"per_user,omitempty"`
	// PerClient: failed attempts allowed per client IP per window.
	// Default: 20.
	PerClient int `json:"per_client,omitempty"`
	// Window of the counts. Default: 15m.
	Window caddy.Duration `json:"window,omitempty"`
}

// PendingConfig bounds kept requests.
type PendingConfig struct {
	// MaxBody is the largest request body kept for replay, in bytes.
	// Default: 65536.
	MaxBody int64 `json:"max_body,omitempty"`
	// PerSession is how many requests one session may have waiting at
	// once (a sent or discarded one frees its place). Default: 5.
	PerSession int `json:"per_session,omitempty"`
	// TTL is how long a kept request waits. Default: 10m.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// PerClient is how many requests one client IP may have kept within
	// TTL, whatever its sessions. Default: 50.
	PerClient int `json:"per_client,omitempty"`
	// MaxTotal bounds the body bytes kept by all clients together per TTL
	// (at most twice this is held at once). Default: 67108864 (64 MiB).
	MaxTotal int64 `json:"max_total,omitempty"`
}

// auditLog names the audit logger ("http.handlers.stepup.audit") so that
// Caddy's log routing (a log's include and exclude lists) applies to it. It
// is not a registered module.
type auditLog struct{}

func (auditLog) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: stepup.AuditLoggerName, New: func() caddy.Module { return auditLog{} }}
}

// now is the clock of every engine (a wall clock read once a second and
// extended on the monotonic clock: one clock read per request fewer); tests
// in this package replace it.
var now = wallClock.Now

var wallClock stepup.WallClock

// previousHierarchies remembers the last hierarchy that loaded for each
// configuration owner ("app", "inline"), to refuse reloads that remove a
// tier still named as a base.
var previousHierarchies sync.Map

// built is a provisioned engine and what releases it.
type built struct {
	engine    *stepup.Engine
	hierarchy *tiers.Hierarchy
	approvals *approval.Service
	// users is the configuration's directory: approvers' roles for
	// decisions made through the admin API.
	users    map[string]*UserConfig
	branding *web.Branding
}

// release closes the engine's caches; the store and the methods are guest
// modules, which Caddy cleans up with the configuration.
func (b *built) release() {
	if b != nil {
		stepupMetrics.sessions.remove(b)
	}
	if b != nil && b.approvals != nil {
		b.approvals.Close()
	}
	if b != nil && b.engine != nil {
		b.engine.Close()
	}
}

// build validates the configuration and assembles the engine.
func (c *Config) build(ctx caddy.Context, owner string) (*built, error) {
	repl := caddy.NewReplacer()
	if len(c.Tiers) == 0 {
		return nil, errors.New("no tiers configured")
	}
	if p := c.Prefix; p != "" && (!strings.HasPrefix(p, "/") || p == "/" || strings.HasSuffix(p, "/") || strings.ContainsAny(p, "?#%\\") || strings.Contains(p, "..")) {
		return nil, fmt.Errorf("prefix %q: want a path such as /_stepup (leading slash, no trailing slash)", p)
	}
	users := make(map[string]*stepup.User, len(c.Users))
	names := make([]string, 0, len(c.Users))
	for name := range c.Users {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		u := c.Users[name]
		if u == nil || u.Password == "" {
			return nil, fmt.Errorf("user %q: missing password hash", name)
		}
		h, err := stepup.ParsePasswordHash(repl.ReplaceKnown(u.Password, ""))
		if err != nil {
			return nil, fmt.Errorf("user %q: %v", name, err)
		}
		users[name] = &stepup.User{Name: name, Hash: h, Roles: u.Roles, TOTPSecret: repl.ReplaceKnown(u.TOTPSecret, "")}
	}

	secret, err := c.secret(ctx, repl)
	if err != nil {
		return nil, err
	}
	// Site handlers with inline configurations share the generated secret
	// and the default store: each gets keys and a store namespace of its
	// own, so that a session (or approval, link, counter) of one site is
	// nothing to another.
	ns := ""
	if owner == "inline" {
		ns = c.inlineNamespace()
	}
	keys, err := stepup.DeriveKeys([]byte(secret + ns))
	if err != nil {
		return nil, fmt.Errorf("secret: %v", err)
	}
	b := &built{}
	st, err := c.openStore(ctx)
	if err == nil {
		st = stepup.Namespaced(st, ns)
	}
	if err != nil {
		return nil, err
	}
	clock := func() time.Time { return now() }
	defs := make([]tiers.Tier, 0, len(c.Tiers))
	methods := make(map[string]stepup.Method, len(c.Tiers))
	alternatives := make(map[string][]stepup.Method)
	for i := range c.Tiers {
		t := &c.Tiers[i]
		env := stepup.MethodEnv{
			Tier: t.Name, Root: t.Base == "", Users: users, Keys: keys, Store: st, Blobs: storageBlobs{ctx},
			Now: clock, Resolve: resolvePlaceholder,
		}
		var mods []any
		switch {
		case len(t.MethodRaw) > 0 && len(t.MethodsRaw) > 0:
			return nil, fmt.Errorf("tier %q: give method or methods, not both", t.Name)
		case len(t.MethodRaw) > 0:
			mod, err := ctx.LoadModule(t, "MethodRaw")
			if err != nil {
				return nil, fmt.Errorf("tier %q: %v", t.Name, err)
			}
			mods = []any{mod}
		case len(t.MethodsRaw) > 0:
			loaded, err := ctx.LoadModule(t, "MethodsRaw")
			if err != nil {
				return nil, fmt.Errorf("tier %q: %v", t.Name, err)
			}
			mods = loaded.([]any)
		default:
			return nil, fmt.Errorf("tier %q: missing method", t.Name)
		}
		var built []stepup.Method
		var names []string
		for _, mod := range mods {
			builder, ok := mod.(stepup.MethodBuilder)
			if !ok {
				return nil, fmt.Errorf("tier %q: module %T is not a step-up method", t.Name, mod)
			}
			m, err := builder.NewMethod(env)
			if err != nil {
				return nil, fmt.Errorf("tier %q: %v", t.Name, err)
			}
			built = append(built, m)
			names = append(names, m.Name())
		}
		defs = append(defs, tiers.Tier{Name: t.Name, Base: t.Base, Method: strings.Join(names, " or "), MaxAge: time.Duration(t.MaxAge), ACR: t.ACR, Label: t.Label})
		if _, dup := methods[t.Name]; !dup {
			methods[t.Name], alternatives[t.Name] = built[0], built[1:]
		}
	}
	var previous *tiers.Hierarchy
	if p, ok := previousHierarchies.Load(owner); ok {
		previous = p.(*tiers.Hierarchy)
	}
	h, err := tiers.New(defs, previous)
	if err != nil {
		b.release()
		return nil, err
	}
	b.hierarchy = h

	ec := stepup.EngineConfig{
		Hierarchy: h, Methods: methods, Alternatives: alternatives, Store: st, Keys: keys, Prefix: c.Prefix,
		Audit:     stepup.NewAudit(ctx.Logger(auditLog{})),
		Now:       clock,
		ClientIP:  clientIP,
		RequestID: requestID,
		Scheme:    requestScheme,
		Blobs:     storageBlobs{ctx},
		Directory: users,
	}
	if s := c.Session; s != nil {
		ec.Session = stepup.SessionConfig{CookieName: s.CookieName, IdleTimeout: time.Duration(s.IdleTimeout), Lifetime: time.Duration(s.Lifetime)}
	}
	if l := c.Limits; l != nil {
		ec.Limits = stepup.Limits{PerUser: l.PerUser, PerClient: l.PerClient, Window: time.Duration(l.Window)}
	}
	if p := c.Pending; p != nil {
		ec.Pending = stepup.PendingLimits{MaxBody: p.MaxBody, PerSession: p.PerSession, TTL: time.Duration(p.TTL), PerClient: p.PerClient, MaxTotal: p.MaxTotal}
	}
	if err := c.checkBounds(); err != nil {
		b.release()
		return nil, err
	}
	if b.branding, err = c.UI.branding(); err != nil {
		b.release()
		return nil, err
	}
	if b.engine, err = stepup.NewEngine(ec); err != nil {
		b.release()
		return nil, err
	}
	b.engine.PageCookie = web.FlashCookie
	if b.approvals, err = c.buildApprovals(ctx, b.engine); err != nil {
		b.release()
		return nil, err
	}
	b.users = c.Users
	if err := b.observe(ctx); err != nil {
		b.release()
		return nil, err
	}
	return b, nil
}

// inlineNamespace names an inline configuration by what identifies its
// users: its directory (each user's name, password hash, roles and TOTP
// secret), tiers and prefix. Two sites with the same ones share sessions
// (they are one directory); editing them starts afresh. Names alone are
// not enough: two sites that each call their first user "admin", with
// passwords and roles of their own, are two directories, and a session of
// one must be nothing to the other.
func (c *Config) inlineNamespace() string {
	h := sha256.New()
	names := make([]string, 0, len(c.Users))
	for name := range c.Users {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, n := range names {
		h.Write([]byte("u\x00" + n + "\x00"))
		if u := c.Users[n]; u != nil {
			h.Write([]byte("h\x00" + u.Password + "\x00s\x00" + u.TOTPSecret + "\x00"))
			for _, r := range u.Roles {
				h.Write([]byte("r\x00" + r + "\x00"))
			}
		}
	}
	for _, t := range c.Tiers {
		h.Write([]byte("t\x00" + t.Name + "\x00" + t.Base + "\x00"))
	}
	h.Write([]byte("p\x00" + c.Prefix))
	return "i" + hex.EncodeToString(h.Sum(nil)[:6]) + ":"
}

// storageBlobs is Caddy storage as stepup.Blobs, looked up at each use, so
// that a configuration whose methods store no credentials needs none.
type storageBlobs struct{ ctx caddy.Context }

func (b storageBlobs) Load(ctx context.Context, key string) ([]byte, error) {
	return b.ctx.Storage().Load(ctx, key)
}

func (b storageBlobs) Store(ctx context.Context, key string, value []byte) error {
	return b.ctx.Storage().Store(ctx, key, value)
}

func (b storageBlobs) Delete(ctx context.Context, key string) error {
	return b.ctx.Storage().Delete(ctx, key)
}

// openStore loads the configured store module (local by default).
func (c *Config) openStore(ctx caddy.Context) (stepup.Store, error) {
	var mod any
	var err error
	if len(c.StoreRaw) == 0 {
		mod, err = ctx.LoadModuleByID("stepup.stores.local", json.RawMessage("{}"))
	} else {
		mod, err = ctx.LoadModule(c, "StoreRaw")
	}
	if err != nil {
		return nil, fmt.Errorf("store: %v", err)
	}
	sp, ok := mod.(stepup.StoreProvider)
	if !ok {
		return nil, fmt.Errorf("store: module %T is not a store", mod)
	}
	st, err := sp.OpenStore(func() time.Time { return now() })
	if err != nil {
		return nil, fmt.Errorf("store: %v", err)
	}
	return st, nil
}

// secretStorageKey is where a generated secret is kept.
const secretStorageKey = "stepup/secret"

func (c *Config) secret(ctx caddy.Context, repl *caddy.Replacer) (string, error) {
	if c.Secret != "" {
		s := repl.ReplaceKnown(c.Secret, "")
		if len(s) < stepup.MinSecretLength {
			return "", fmt.Errorf("secret: must be at least %d bytes long (is the environment variable set?)", stepup.MinSecretLength)
		}
		return s, nil
	}
	st := ctx.Storage()
	if raw, err := st.Load(ctx, secretStorageKey); err == nil && len(raw) >= stepup.MinSecretLength {
		return string(raw), nil
	}
	s := stepup.NewSecret()
	if err := st.Store(ctx, secretStorageKey, []byte(s)); err != nil {
		return "", fmt.Errorf("secret: storing generated secret: %v", err)
	}
	// Another instance sharing the storage may have raced us: use what is
	// stored, so that every instance signs with the same key.
	if raw, err := st.Load(ctx, secretStorageKey); err == nil && len(raw) >= stepup.MinSecretLength {
		return string(raw), nil
	}
	return s, nil
}

func replacer(r *http.Request) *caddy.Replacer {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	return repl
}

func resolvePlaceholder(r *http.Request, expr string) string {
	repl := replacer(r)
	if repl == nil {
		return ""
	}
	return repl.ReplaceKnown(expr, "")
}

// requestScheme is the scheme the client used: TLS to Caddy, or what a
// trusted proxy (Caddy's trusted_proxies) reports in X-Forwarded-Proto.
func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
			return p
		}
	}
	return "http"
}

// bound is one sanity bound of a number in the configuration.
type bound struct {
	field    string
	value    int64
	min, max int64
	unit     string
}

// checkBounds refuses values that cannot be meant: a body limit of 100 GB,
// a counting window of a nanosecond. 0 means the default everywhere.
func (c *Config) checkBounds() error {
	var bs []bound
	dur := func(field string, d caddy.Duration, min, max time.Duration) {
		bs = append(bs, bound{field, int64(d), int64(min), int64(max), "duration"})
	}
	num := func(field string, n, min, max int64, unit string) { bs = append(bs, bound{field, n, min, max, unit}) }
	if p := c.Pending; p != nil {
		num("pending: max_body", p.MaxBody, 1, 16<<20, "bytes")
		num("pending: max_total", p.MaxTotal, 1<<10, 4<<30, "bytes")
		num("pending: per_session", int64(p.PerSession), 1, 100, "")
		num("pending: per_client", int64(p.PerClient), 1, 100_000, "")
		dur("pending: ttl", p.TTL, 10*time.Second, 24*time.Hour)
		if p.MaxTotal != 0 && p.MaxBody > p.MaxTotal {
			return fmt.Errorf("pending: max_body %d is larger than max_total %d", p.MaxBody, p.MaxTotal)
		}
	}
	if l := c.Limits; l != nil {
		num("limits: per_user", int64(l.PerUser), 1, 1000, "")
		num("limits: per_client", int64(l.PerClient), 1, 100_000, "")
		dur("limits: window", l.Window, time.Second, 24*time.Hour)
	}
	if s := c.Session; s != nil {
		dur("session: idle_timeout", s.IdleTimeout, 10*time.Second, 30*24*time.Hour)
		dur("session: lifetime", s.Lifetime, time.Minute, 366*24*time.Hour)
		if s.IdleTimeout != 0 && s.Lifetime != 0 && s.IdleTimeout > s.Lifetime {
			return fmt.Errorf("session: idle_timeout %s is longer than lifetime %s", time.Duration(s.IdleTimeout), time.Duration(s.Lifetime))
		}
	}
	for _, b := range bs {
		if b.value == 0 {
			continue
		}
		if b.value >= b.min && b.value <= b.max {
			continue
		}
		if b.unit == "duration" {
			return fmt.Errorf("%s %s is out of range: between %s and %s", b.field, time.Duration(b.value), time.Duration(b.min), time.Duration(b.max))
		}
		return fmt.Errorf("%s %d is out of range: between %d and %d %s", b.field, b.value, b.min, b.max, b.unit)
	}
	return nil
}

func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	return r.RemoteAddr
}

func requestID(r *http.Request) string {
	repl := replacer(r)
	if repl == nil {
		return ""
	}
	id, _ := repl.GetString("http.request.uuid")
	return id
}

// logFields adds the decision to the request's access-log entry
// (stepup_user, stepup_set, stepup_tier, stepup_decision), when Caddy logs
// the request. They never carry a secret.
func logFields(r *http.Request, user, sets, tier, decision string) {
	extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields)
	if !ok {
		return
	}
	// One field whose members are inlined: Add costs a reset of the
	// entry's handler cache each time, so it is called once.
	extra.Add(zap.Inline(&decisionFields{user, sets, tier, decision}))
}

// decisionFields are the stepup_* fields of an access-log entry.
type decisionFields struct{ user, sets, tier, decision string }

func (f *decisionFields) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	for _, kv := range [...]struct{ k, v string }{{"stepup_user", f.user}, {"stepup_set", f.sets}, {"stepup_tier", f.tier}, {"stepup_decision", f.decision}} {
		if kv.v != "" {
			enc.AddString(kv.k, kv.v)
		}
	}
	return nil
}

// setVars publishes the http.stepup.* placeholders as one provider,
// resolved only when a placeholder is used: cheaper than four Set calls.
func setVars(r *http.Request, v *stepup.Vars) {
	if repl := replacer(r); repl != nil {
		repl.Map(v.Lookup)
	}
}
