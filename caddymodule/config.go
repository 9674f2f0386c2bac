// Package caddymodule is the Caddy glue of caddy-stepup: module
// registration, the `stepup` app (shared tiers, users and sessions), the
// `http.handlers.stepup` handler (a site's transaction sets) and their
// Caddyfile syntax. The engine itself lives in package stepup.
package caddymodule

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/radius"
	"github.com/caddy-stepup/caddy-stepup/stepup/store"
	"github.com/caddy-stepup/caddy-stepup/stepup/totp"
	"github.com/caddy-stepup/caddy-stepup/stepup/webauthn"
	"github.com/caddy-stepup/caddy-stepup/tiers"
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

	// Store selects where sessions, kept requests and counters live.
	// Default: memory.
	Store *StoreConfig `json:"store,omitempty"`

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
}

// StoreConfig selects the session store.
type StoreConfig struct {
	// Type of the store: "memory" (one instance; the default).
	Type string `json:"type,omitempty"`
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
	// Method that reaches the tier.
	Method MethodConfig `json:"method"`
	// MaxAge is how long the tier stays held; when it lapses, every tier
	// above it goes too.
	MaxAge caddy.Duration `json:"max_age"`
	// ACR is the name used in machine-readable challenges (acr_values);
	// default: the tier name.
	ACR string `json:"acr,omitempty"`
}

// MethodConfig selects and configures a tier's method.
type MethodConfig struct {
	// Type: "password" (the module's own users; at a root tier a sign-in,
	// above it a password confirmation), "external" (identity set earlier
	// in the route), "totp" (a security code from an authenticator app),
	// "radius" (a code checked by RADIUS servers) or "webauthn" (a security
	// key, or the device's biometrics or screen lock).
	Type string `json:"type"`
	// Enroll (totp, webauthn): "self" lets users set up their own
	// credential while they hold the tier's base tier; empty: credentials
	// are provisioned by the administrator (a user's totp_secret).
	Enroll string `json:"enroll,omitempty"`
	// Digits (totp) of a code: 6 (default), 7 or 8.
	Digits int `json:"digits,omitempty"`
	// Period (totp) of a time step. Default: 30s.
	Period caddy.Duration `json:"period,omitempty"`
	// Algorithm (totp) of the HMAC: SHA1 (default), SHA256 or SHA512.
	Algorithm string `json:"algorithm,omitempty"`
	// Skew (totp) is how many time steps before and after the current one
	// are accepted. Default: 1.
	Skew *int `json:"skew,omitempty"`
	// Issuer (totp) names the service in authenticator apps. Default: the
	// site's host name.
	Issuer string `json:"issuer,omitempty"`
	// Lockout (totp): wrong codes before a user's codes are locked, and for
	// how long (doubling at each further lock within a day, up to max).
	Lockout *LockoutConfig `json:"lockout,omitempty"`

	// Servers (radius) are tried in order; placeholders in secrets are
	// expanded.
	Servers []RADIUSServer `json:"servers,omitempty"`
	// Timeout (radius) of one attempt, default 3s; (webauthn) of a
	// ceremony, default 5m.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Retries (radius) per server after the first attempt. Default: 1.
	Retries *int `json:"retries,omitempty"`
	// DeadTime (radius): how long a server that timed out is skipped.
	// Default: 30s.
	DeadTime caddy.Duration `json:"dead_time,omitempty"`
	// NASIdentifier (radius) sent in NAS-Identifier. Default: caddy-stepup.
	NASIdentifier string `json:"nas_identifier,omitempty"`
	// NASIP (radius) sent in NAS-IP-Address.
	NASIP string `json:"nas_ip,omitempty"`
	// UserName (radius) is the User-Name sent: "{user}" is the user id
	// (the default); Caddy placeholders are expanded, e.g. "{user}@corp".
	UserName string `json:"username,omitempty"`

	// RPID (webauthn) is the relying party id, a registrable domain of the
	// site. Default: the request's host name. Keys are bound to it: change
	// it and registered keys no longer work.
	RPID string `json:"rp_id,omitempty"`
	// RPName (webauthn) is shown by browsers. Default: the RP id.
	RPName string `json:"rp_name,omitempty"`
	// Origins (webauthn) allowed in the browser's client data, such as
	// "https://app.example.com". Default: the request's own origin.
	Origins []string `json:"origins,omitempty"`
	// UserVerification (webauthn): "required" (default: biometrics or PIN),
	// "preferred" or "discouraged".
	UserVerification string `json:"user_verification,omitempty"`
	// Attestation (webauthn): "none" (default), "indirect" or "direct".
	Attestation string `json:"attestation,omitempty"`
	// ResidentKey (webauthn): "discouraged" (default), "preferred" or
	// "required".
	ResidentKey string `json:"resident_key,omitempty"`
	// Authenticators (webauthn), when set, allows only these AAGUIDs
	// (authenticator models) at registration.
	Authenticators []string `json:"authenticators,omitempty"`
	// User (external) is the placeholder holding the user id, such as
	// "{http.auth.user.id}" (basic_auth) or "{http.request.header.Remote-User}"
	// (a header copied by forward_auth). Default: {http.auth.user.id}.
	User string `json:"user,omitempty"`
	// Roles (external) is the placeholder holding the roles, separated by
	// commas or spaces, such as "{http.request.header.Remote-Groups}".
	Roles string `json:"roles,omitempty"`
}

// RADIUSServer is one RADIUS server.
type RADIUSServer struct {
	// Address is host:port (the authentication port, usually 1812).
	Address string `json:"address"`
	// Secret is the shared secret; placeholders such as {env.RADIUS_SECRET}
	// are expanded.
	Secret string `json:"secret"`
}

// LockoutConfig bounds wrong codes per user.
type LockoutConfig struct {
	// Failures: consecutive wrong codes that lock. Default: 5.
	Failures int `json:"failures,omitempty"`
	// Duration of the first lock. Default: 1m.
	Duration caddy.Duration `json:"duration,omitempty"`
	// Max is the longest lock. Default: 1h.
	Max caddy.Duration `json:"max,omitempty"`
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

// now is the clock of every engine; tests in this package replace it.
var now = time.Now

// stores keeps the session stores across config reloads, so a reload never
// drops a session.
var stores = caddy.NewUsagePool()

type pooledStore struct{ *store.Memory }

func (p pooledStore) Destruct() error { return p.Memory.Close() }

// previousHierarchies remembers the last hierarchy that loaded for each
// configuration owner ("app", "inline"), to refuse reloads that remove a
// tier still named as a base.
var previousHierarchies sync.Map

// built is a provisioned engine and what releases it.
type built struct {
	engine    *stepup.Engine
	hierarchy *tiers.Hierarchy
	storeKey  string
}

func (b *built) release() {
	if b == nil {
		return
	}
	if b.engine != nil {
		b.engine.Close()
	}
	if b.storeKey != "" {
		_, _ = stores.Delete(b.storeKey)
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
	keys, err := stepup.DeriveKeys([]byte(secret))
	if err != nil {
		return nil, fmt.Errorf("secret: %v", err)
	}
	b := &built{}
	st, key, err := c.openStore()
	if err != nil {
		return nil, err
	}
	b.storeKey = key
	env := methodEnv{users: users, keys: keys, store: st, storage: ctx.Storage}

	defs := make([]tiers.Tier, 0, len(c.Tiers))
	methods := make(map[string]stepup.Method, len(c.Tiers))
	for _, t := range c.Tiers {
		defs = append(defs, tiers.Tier{Name: t.Name, Base: t.Base, Method: t.Method.Type, MaxAge: time.Duration(t.MaxAge), ACR: t.ACR})
		m, err := env.build(t)
		if err != nil {
			b.release()
			return nil, err
		}
		if _, dup := methods[t.Name]; !dup {
			methods[t.Name] = m
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
		Hierarchy: h, Methods: methods, Store: st, Keys: keys, Prefix: c.Prefix,
		Audit:     stepup.NewAudit(ctx.Logger(auditLog{})),
		Now:       func() time.Time { return now() },
		ClientIP:  clientIP,
		RequestID: requestID,
		Scheme:    requestScheme,
		Blobs:     ctx.Storage(),
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
	if b.engine, err = stepup.NewEngine(ec); err != nil {
		b.release()
		return nil, err
	}
	return b, nil
}

// methodEnv is what the methods are built from.
type methodEnv struct {
	users   map[string]*stepup.User
	keys    stepup.Keys
	store   stepup.Store
	storage func() certmagic.Storage
}

func (env methodEnv) build(t TierConfig) (stepup.Method, error) {
	users := env.users
	mc := t.Method
	for _, o := range []struct {
		name    string
		set     bool
		methods string
	}{
		{"enroll", mc.Enroll != "", "totp webauthn"},
		{"digits", mc.Digits != 0, "totp"}, {"period", mc.Period != 0, "totp"}, {"algorithm", mc.Algorithm != "", "totp"},
		{"skew", mc.Skew != nil, "totp"}, {"issuer", mc.Issuer != "", "totp"}, {"lockout", mc.Lockout != nil, "totp"},
		{"servers", len(mc.Servers) > 0, "radius"}, {"timeout", mc.Timeout != 0, "radius webauthn"},
		{"retries", mc.Retries != nil, "radius"}, {"dead_time", mc.DeadTime != 0, "radius"},
		{"nas_identifier", mc.NASIdentifier != "", "radius"}, {"nas_ip", mc.NASIP != "", "radius"}, {"username", mc.UserName != "", "radius"},
		{"rp_id", mc.RPID != "", "webauthn"}, {"rp_name", mc.RPName != "", "webauthn"}, {"origins", len(mc.Origins) > 0, "webauthn"},
		{"user_verification", mc.UserVerification != "", "webauthn"}, {"attestation", mc.Attestation != "", "webauthn"},
		{"resident_key", mc.ResidentKey != "", "webauthn"}, {"authenticators", len(mc.Authenticators) > 0, "webauthn"},
	} {
		if o.set && !slices.Contains(strings.Fields(o.methods), mc.Type) {
			return nil, fmt.Errorf("tier %q: %s is an option of the %s method, not of %s", t.Name, o.name, strings.ReplaceAll(o.methods, " ", " and "), mc.Type)
		}
	}
	switch t.Method.Type {
	case "totp":
		if mc.Enroll != "" && mc.Enroll != "self" {
			return nil, fmt.Errorf("tier %q: enroll must be \"self\" (or absent for administrator-provisioned secrets), not %q", t.Name, mc.Enroll)
		}
		opts := totp.Options{Digits: mc.Digits, Period: time.Duration(mc.Period), Algorithm: mc.Algorithm}
		if mc.Skew != nil {
			opts.Skew, opts.SkewSet = *mc.Skew, true
		}
		provisioned := map[string][]byte{}
		for name, u := range users {
			if u.TOTPSecret == "" {
				continue
			}
			s, err := totp.ParseSecret(u.TOTPSecret)
			if err != nil {
				return nil, fmt.Errorf("user %q: totp_secret: %v", name, err)
			}
			provisioned[name] = s
		}
		if mc.Enroll == "" && len(provisioned) == 0 {
			return nil, fmt.Errorf("tier %q: no user has a totp_secret and enrolment is not self-service (enroll self): nobody could reach this tier", t.Name)
		}
		vault, err := totp.NewVault(env.storage(), env.keys.Records)
		if err != nil {
			return nil, err
		}
		lo := totp.Lockout{}
		if l := mc.Lockout; l != nil {
			lo = totp.Lockout{Failures: l.Failures, Duration: time.Duration(l.Duration), Max: time.Duration(l.Max)}
		}
		m, err := totp.New(totp.Config{Options: opts, SelfEnroll: mc.Enroll == "self", Issuer: mc.Issuer, Lockout: lo,
			Provisioned: provisioned, Vault: vault, Store: env.store, Now: func() time.Time { return now() }})
		if err != nil {
			return nil, fmt.Errorf("tier %q: method totp: %v", t.Name, err)
		}
		return m, nil
	case "radius":
		return env.buildRADIUS(t)
	case "webauthn":
		if mc.Enroll != "" && mc.Enroll != "self" {
			return nil, fmt.Errorf("tier %q: enroll must be \"self\" (or absent for keys registered by the administrator), not %q", t.Name, mc.Enroll)
		}
		m, err := webauthn.New(webauthn.Config{
			RPID: mc.RPID, RPName: mc.RPName, Origins: mc.Origins, UserVerification: mc.UserVerification,
			Attestation: mc.Attestation, ResidentKey: mc.ResidentKey, Authenticators: mc.Authenticators,
			SelfEnroll: mc.Enroll == "self", Timeout: time.Duration(mc.Timeout),
			Blobs: env.storage(), Store: env.store, UserKey: env.keys.Records, Now: func() time.Time { return now() },
		})
		if err != nil {
			return nil, fmt.Errorf("tier %q: method webauthn: %v", t.Name, err)
		}
		return m, nil
	case "password":
		if len(users) == 0 {
			return nil, fmt.Errorf("tier %q: method password needs at least one user", t.Name)
		}
		return stepup.NewPassword(users, t.Base == ""), nil
	case "external":
		userFrom := t.Method.User
		if userFrom == "" {
			userFrom = "{http.auth.user.id}"
		}
		return &stepup.External{UserFrom: userFrom, RolesFrom: t.Method.Roles, Resolve: resolvePlaceholder}, nil
	case "":
		return nil, fmt.Errorf("tier %q: missing method", t.Name)
	}
	return nil, fmt.Errorf("tier %q: unknown method %q (available: password, external, totp, radius, webauthn)", t.Name, t.Method.Type)
}

func (env methodEnv) buildRADIUS(t TierConfig) (stepup.Method, error) {
	mc := t.Method
	repl := caddy.NewReplacer()
	cc := radius.ClientConfig{Timeout: time.Duration(mc.Timeout), DeadTime: time.Duration(mc.DeadTime), Now: func() time.Time { return now() }}
	if mc.Retries != nil {
		cc.Retries, cc.RetriesSet = *mc.Retries, true
	}
	for _, s := range mc.Servers {
		secret := repl.ReplaceKnown(s.Secret, "")
		if secret == "" {
			return nil, fmt.Errorf("tier %q: radius server %q: empty shared secret (is the environment variable set?)", t.Name, s.Address)
		}
		cc.Servers = append(cc.Servers, radius.Server{Addr: s.Address, Secret: []byte(secret)})
	}
	mcfg := radius.MethodConfig{Client: cc, UserName: mc.UserName, Resolve: resolvePlaceholder, NASIdentifier: mc.NASIdentifier}
	if mc.NASIP != "" {
		if mcfg.NASIP = net.ParseIP(mc.NASIP).To4(); mcfg.NASIP == nil {
			return nil, fmt.Errorf("tier %q: nas_ip %q is not an IPv4 address", t.Name, mc.NASIP)
		}
	}
	m, err := radius.NewMethod(mcfg)
	if err != nil {
		return nil, fmt.Errorf("tier %q: method radius: %v", t.Name, err)
	}
	return m, nil
}

func (c *Config) openStore() (stepup.Store, string, error) {
	typ := "memory"
	if c.Store != nil && c.Store.Type != "" {
		typ = c.Store.Type
	}
	if typ != "memory" {
		return nil, "", fmt.Errorf("store: unknown type %q (available: memory)", typ)
	}
	key := "memory"
	v, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledStore{store.NewMemory(time.Minute, func() time.Time { return now() })}, nil
	})
	if err != nil {
		return nil, "", err
	}
	return v.(pooledStore).Memory, key, nil
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

// setVars publishes the http.stepup.* placeholders as one provider,
// resolved only when a placeholder is used: cheaper than four Set calls.
func setVars(r *http.Request, v *stepup.Vars) {
	if repl := replacer(r); repl != nil {
		repl.Map(v.Lookup)
	}
}
