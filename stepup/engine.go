package stepup

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddy-stepup/caddy-stepup/tiers"
)

// Engine holds what every site shares: the tier hierarchy and its methods,
// sessions, the store, CSRF, brute-force limits and the audit trail.
type Engine struct {
	Hierarchy *tiers.Hierarchy
	// Methods by tier name: the tier's first method.
	Methods map[string]Method
	// Alternatives by tier name: every method that reaches the tier (the
	// first is Methods'), any one of which is enough.
	Alternatives map[string][]Method
	Sessions     *Sessions
	Store        Store
	CSRF         *CSRF
	Limiter      *Limiter
	// KeepLimiter bounds the requests one client may have kept for replay.
	KeepLimiter *Limiter
	Audit       *Audit
	Pending     PendingLimits
	// Credentials records users' credential changes.
	Credentials *CredentialLog
	// Prefix of the module's own pages.
	Prefix string
	// PageCookie is a further cookie of the module's pages (the one-time
	// notice after an action): removed, like the session cookie, from
	// what reaches the upstream.
	PageCookie string
	// Now is the clock; tests replace it.
	Now func() time.Time
	// ClientIP returns the client address of a request.
	ClientIP func(*http.Request) string
	// RequestID returns the request id for audit records ("" if none).
	RequestID func(*http.Request) string
	// Scheme returns the scheme the client used, "http" or "https" (behind
	// a trusted TLS-terminating proxy, the one it reports).
	Scheme func(*http.Request) string
	// FlashKey signs the pages' one-time notices (Keys.Flash).
	FlashKey []byte

	external     RequestIdentity // the external root method, if any
	externalTier string
	directory    map[string]directoryEntry // see EngineConfig.Directory
	// directoryID names directory for Session.heldTo (maps cannot be
	// compared): a pointer of its own to it, made with it.
	directoryID *map[string]directoryEntry
}

// directoryEntry is what a session is held to of a directory user (see
// Engine.applyDirectory), computed once per configuration.
type directoryEntry struct {
	roles []string
	mark  string // PasswordHash.Mark
}

// EngineConfig is what NewEngine needs.
type EngineConfig struct {
	Hierarchy *tiers.Hierarchy
	Methods   map[string]Method
	// Alternatives are further methods of a tier, after its Methods one.
	Alternatives map[string][]Method
	Store        Store
	Keys         Keys
	Session      SessionConfig
	Limits       Limits
	Pending      PendingLimits
	Prefix       string
	Audit        *Audit
	Now          func() time.Time
	ClientIP     func(*http.Request) string
	RequestID    func(*http.Request) string
	Scheme       func(*http.Request) string
	// Blobs is where credential changes are recorded (Caddy storage).
	Blobs Blobs
	// Directory is the users of the configuration (the password method's):
	// a session signed in with a password follows it as it is now (see
	// Engine.applyDirectory). nil: no directory to follow.
	Directory map[string]*User
}

// reservedMethodNames are paths of the module's own pages: a method's pages
// live under its name.
var reservedMethodNames = map[string]bool{"assets": true, "approvals": true, "challenge": true, "verify": true, "logout": true, "resume": true, "enroll": true}

// NewEngine validates that every tier has a method and assembles the engine.
func NewEngine(c EngineConfig) (*Engine, error) {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Prefix == "" {
		c.Prefix = "/_stepup"
	}
	if c.ClientIP == nil {
		c.ClientIP = func(r *http.Request) string { return hostOnly(r.RemoteAddr) }
	}
	if c.RequestID == nil {
		c.RequestID = func(*http.Request) string { return "" }
	}
	if c.Scheme == nil {
		c.Scheme = RequestScheme
	}
	c.Pending.defaults()
	e := &Engine{
		Hierarchy: c.Hierarchy, Methods: c.Methods, Store: c.Store,
		CSRF: NewCSRF(c.Keys, ""), Limiter: NewLimiter(c.Limits, c.Store),
		KeepLimiter: NewLimiter(Limits{PerClient: c.Pending.PerClient, Window: c.Pending.TTL}, c.Store),
		Audit:       c.Audit, Pending: c.Pending, Prefix: c.Prefix, Now: c.Now,
		ClientIP: c.ClientIP, RequestID: c.RequestID, Scheme: c.Scheme, FlashKey: c.Keys.Flash,
	}
	e.CSRF.Scheme = c.Scheme
	if c.Directory != nil {
		d := make(map[string]directoryEntry, len(c.Directory))
		for name, u := range c.Directory {
			d[name] = directoryEntry{roles: u.Roles, mark: u.Hash.Mark()}
		}
		e.setDirectory(d)
	}
	e.Credentials = NewCredentialLog(c.Blobs, c.Keys)
	e.Alternatives = map[string][]Method{}
	for _, name := range c.Hierarchy.Names() {
		m, ok := c.Methods[name]
		if !ok {
			return nil, fmt.Errorf("tier %q: no method", name)
		}
		all := append([]Method{m}, c.Alternatives[name]...)
		seen := map[string]bool{}
		for _, alt := range all {
			switch _, external := alt.(RequestIdentity); {
			case reservedMethodNames[alt.Name()] || alt.Name() == "" || strings.ContainsAny(alt.Name(), "/?#%{}"):
				return nil, fmt.Errorf("tier %q: %q cannot name a method (the module's pages use it)", name, alt.Name())
			case seen[alt.Name()]:
				return nil, fmt.Errorf("tier %q: method %s given more than once", name, alt.Name())
			case alt.Identifies() != m.Identifies():
				return nil, fmt.Errorf("tier %q: methods %s and %s are not alternatives: one identifies the user, the other confirms them", name, m.Name(), alt.Name())
			case external && len(all) > 1:
				return nil, fmt.Errorf("tier %q: the external method has no alternatives (the identity comes from earlier in the route)", name)
			}
			seen[alt.Name()] = true
		}
		e.Alternatives[name] = all
		t, _ := c.Hierarchy.Get(name)
		if m.Identifies() != (t.Base == "") {
			if t.Base == "" {
				return nil, fmt.Errorf("tier %q: a root tier needs a method that identifies the user (password or external), not %s", name, m.Name())
			}
			return nil, fmt.Errorf("tier %q: method %s identifies a user, so it must be a root tier (no base)", name, m.Name())
		}
		if ri, ok := m.(RequestIdentity); ok {
			if e.external != nil {
				return nil, fmt.Errorf("tier %q: only one tier may use the external method (already %q)", name, e.externalTier)
			}
			e.external, e.externalTier = ri, name
		}
	}
	var err error
	e.Sessions, err = NewSessions(c.Session, c.Store, c.Keys, c.Now)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// RequestCookies is what one pass over a request's Cookie lines found
// (ScanCookies): the session cookie's value, read as Sessions.Load reads
// it, and whether the module's own cookies and others are there, which is
// all stripping them needs to know in the common cases.
type RequestCookies struct {
	// Session is the value of the first session cookie ("" if none).
	Session string
	// Own and Foreign say whether the module's cookies (session, CSRF,
	// page) and any other cookies are there.
	Own, Foreign bool
	scanned      bool
}

// ownNames are the names of the module's cookies on one request (the
// session and CSRF names depend on HTTPS).
type ownNames struct{ session, csrf, page string }

func (e *Engine) ownNames(r *http.Request) ownNames {
	return ownNames{e.Sessions.CookieName(r), e.CSRF.name(r), e.PageCookie}
}

// has reports whether a cookie of this name is one of the module's (an
// empty name counts as one: it is dropped with them).
func (o ownNames) has(name string) bool {
	return name == "" || name == o.session || name == o.csrf || name == o.page
}

// cookieParts calls f with the name, value and whether there was a value
// of every part of the request's Cookie lines, trimmed.
func cookieParts(lines []string, f func(part, name, value string, hasValue bool)) {
	for _, l := range lines {
		for rest := l; rest != ""; {
			var part string
			part, rest, _ = strings.Cut(rest, ";")
			part = strings.TrimSpace(part)
			name, v, hasValue := strings.Cut(part, "=")
			f(part, name, v, hasValue)
		}
	}
}

// ScanCookies reads the request's Cookie lines once, for both the session
// lookup (SessionFromCookies) and the stripping (StripScanned).
func (e *Engine) ScanCookies(r *http.Request) RequestCookies {
	c := RequestCookies{scanned: true}
	lines := r.Header["Cookie"]
	if len(lines) == 0 {
		return c
	}
	own := e.ownNames(r)
	found := false
	cookieParts(lines, func(_, name, v string, hasValue bool) {
		switch {
		case !own.has(name):
			c.Foreign = true
		case name == own.session && hasValue && !found:
			c.Own, c.Session, found = true, strings.Trim(v, `"`), true
		default:
			c.Own = true
		}
	})
	return c
}

// SessionFromCookies is SessionCheckedAt for a request whose cookies were
// scanned already (ScanCookies of this request, unchanged since).
func (e *Engine) SessionFromCookies(w http.ResponseWriter, r *http.Request, now time.Time, c RequestCookies) (*Session, error) {
	if !c.scanned {
		return e.SessionCheckedAt(w, r, now)
	}
	s, err := e.Sessions.loadValue(r, e.Sessions.CookieName(r), c.Session, now)
	if err != nil {
		return nil, err
	}
	return e.session(w, r, s, now), nil
}

// StripCookies removes the module's own cookies (session, CSRF, page) from
// a request before it goes upstream: the session cookie is a bearer
// credential the application behind has no use for and must not see.
// A request that carries only the module's cookies costs no allocation.
func (e *Engine) StripCookies(r *http.Request) { e.StripScanned(r, e.ScanCookies(r)) }

// StripScanned is StripCookies for a request whose cookies were scanned
// already (ScanCookies of this request, unchanged since; an unscanned
// one is scanned now): only the module's cookies, or none of them, is the
// common case and needs no second pass.
func (e *Engine) StripScanned(r *http.Request, c RequestCookies) {
	if !c.scanned {
		c = e.ScanCookies(r)
	}
	switch {
	case !c.Own:
		return
	case !c.Foreign:
		delete(r.Header, "Cookie") // the key is canonical: no canonicalisation per request
		return
	}
	own := e.ownNames(r)
	var b strings.Builder
	cookieParts(r.Header["Cookie"], func(part, name, _ string, _ bool) {
		if !own.has(name) {
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(part)
		}
	})
	r.Header["Cookie"] = []string{b.String()}
}

// Close releases the engine's caches.
func (e *Engine) Close() { e.Sessions.Close() }

// record fills the request fields of an audit record.
func (e *Engine) record(r *http.Request, s *Session, rec Record) Record {
	rec.Method, rec.Path = r.Method, r.URL.Path
	rec.ClientIP = e.ClientIP(r)
	rec.RequestID = e.RequestID(r)
	if s != nil {
		if rec.User == "" {
			rec.User = s.User
		}
		rec.Session = s.Owner
	}
	return rec
}

// Log writes an audit record with the request's fields filled in.
func (e *Engine) Log(r *http.Request, s *Session, rec Record) {
	e.Audit.Log(e.record(r, s, rec))
}

// Session returns the request's current session, or nil for an anonymous
// request. It applies the identity set earlier in the route (external
// method), drops lapsed, removed and re-parented levels (auditing them and
// rotating the session id), and ends a session whose external identity
// changed. A returned session is shared: Clone before changing it. A store
// that cannot answer reads as no session here; see SessionChecked.
func (e *Engine) Session(w http.ResponseWriter, r *http.Request) *Session {
	s, _ := e.SessionChecked(w, r)
	return s
}

// SessionChecked is Session that tells "no session" from "the store cannot
// say" (an error wrapping ErrStoreUnavailable, and no session): whatever
// needs a session decision must then fail closed, not treat the request as
// anonymous.
func (e *Engine) SessionChecked(w http.ResponseWriter, r *http.Request) (*Session, error) {
	return e.SessionCheckedAt(w, r, e.Now())
}

// SessionCheckedAt is SessionChecked at a time the caller read already.
func (e *Engine) SessionCheckedAt(w http.ResponseWriter, r *http.Request, now time.Time) (*Session, error) {
	s, err := e.Sessions.LoadCheckedAt(r, now)
	if err != nil {
		return nil, err
	}
	return e.session(w, r, s, now), nil
}

func (e *Engine) session(w http.ResponseWriter, r *http.Request, s *Session, now time.Time) *Session {
	if e.external != nil {
		s = e.applyExternal(w, r, s)
	}
	if s != nil && e.directory != nil && s.User != "" && !s.External {
		s = e.applyDirectory(w, r, s)
	}
	if s == nil {
		return nil
	}
	stack, drops := s.Stack.Reconcile(e.Hierarchy, now)
	if drops == nil {
		return s
	}
	for _, d := range drops {
		e.Log(r, s, Record{Event: EventLapse, Tier: d.Tier, Result: "closed", Reason: d.Reason})
	}
	next := s.Clone()
	next.Stack = stack
	if len(stack) == 0 {
		// The root went: the session is anonymous again, but keeps its
		// owner, so that the same user signing in again finds the requests
		// kept for a step-up (see Complete).
		if s.User != "" {
			next.LastUser = s.User
		}
		next.User, next.Roles, next.External = "", nil, false
	}
	if s.ephemeral {
		return next
	}
	if err := e.Sessions.Commit(w, r, next); err != nil {
		if errors.Is(err, ErrSessionChanged) {
			// A concurrent request rotated the session first: serve this
			// one the reduced stack, which holds less than the old one.
			return next
		}
		// Could not store the reduced stack: the old one must not be used.
		e.Sessions.End(w, r, s)
		return nil
	}
	return next
}

// setDirectory makes d the directory sessions are held to, under an
// identity of its own (a new pointer), so that no copy that agreed with
// an earlier one is taken to agree with it.
func (e *Engine) setDirectory(d map[string]directoryEntry) {
	e.directory, e.directoryID = d, &d
}

// applyDirectory holds a session signed in with a password to the users
// directory as the running configuration has it: a user removed from it
// (a reload) is signed out at their next request, and one whose roles
// changed holds the new ones from then on, so that a role taken away (an
// approver's, an approval condition's) does not outlive the reload in a
// live session. Sessions identified otherwise (an external identity, a
// third party's identifying method) are not the directory's.
func (e *Engine) applyDirectory(w http.ResponseWriter, r *http.Request, s *Session) *Session {
	if s.heldTo.Load() == e.directoryID {
		return s // this copy agreed with this very directory already
	}
	byPassword := false
	for _, l := range s.Stack {
		byPassword = byPassword || (l.Base == "" && l.Method == passwordMethod)
	}
	if !byPassword {
		s.heldTo.Store(e.directoryID)
		return s
	}
	u, ok := e.directory[s.User]
	if ok && slices.Equal(u.roles, s.Roles) && (s.PasswordMark == "" || s.PasswordMark == u.mark) {
		s.heldTo.Store(e.directoryID)
		return s
	}
	if !ok || (s.PasswordMark != "" && s.PasswordMark != u.mark) {
		reason := "user removed from the directory"
		if ok {
			// The password was changed (compromised, perhaps): whoever
			// signed in with the old one is signed out.
			reason = "password changed in the directory"
		}
		e.Log(r, s, Record{Event: EventIdentityChange, Result: "session_ended", Reason: reason, Tiers: strings.Join(s.Stack.Names(), ",")})
		e.Sessions.End(w, r, s)
		return nil
	}
	e.Log(r, s, Record{Event: EventIdentityChange, Result: "roles_changed", Reason: "roles changed in the directory"})
	next := s.Clone()
	next.Roles = slices.Clone(u.roles)
	if s.ephemeral {
		return next
	}
	if err := e.Sessions.Commit(w, r, next); err != nil {
		if errors.Is(err, ErrSessionChanged) {
			// A concurrent request changed the session first; it too
			// follows the directory.
			return next
		}
		e.Sessions.End(w, r, s) // the old roles must not be used
		return nil
	}
	return next
}

func (e *Engine) applyExternal(w http.ResponseWriter, r *http.Request, s *Session) *Session {
	user, roles, ok := e.external.Identify(r)
	if s != nil && s.User != "" && (!ok || s.User != user) && (s.External || ok) {
		// Whoever is behind this cookie is not who the route says: nothing
		// the session holds may carry over.
		e.Log(r, s, Record{Event: EventIdentityChange, Result: "session_ended", Reason: "external identity changed", Tiers: strings.Join(s.Stack.Names(), ",")})
		e.Sessions.End(w, r, s)
		s = nil
	}
	if !ok {
		return s
	}
	now := e.Now()
	if s == nil {
		s = &Session{User: user, Roles: roles, External: true, Created: now, Seen: now, ephemeral: true}
	} else {
		s = s.Clone()
		s.User, s.Roles, s.External = user, roles, true
	}
	// The route asserts the identity on every request: the external level
	// is always fresh.
	s.Stack, _ = s.Stack.Push(e.Hierarchy, tiers.Level{Tier: e.externalTier, Credential: user, At: now}, now)
	return s
}

// Method returns the tier's method of that name ("" for the first).
func (e *Engine) Method(tier, name string) (Method, bool) {
	for _, m := range e.Alternatives[tier] {
		if name == "" || m.Name() == name {
			return m, true
		}
	}
	return nil, false
}

// ErrNotAllowed is returned for a step-up whose base tier is not held.
var ErrNotAllowed = errors.New("step-up not allowed")

// Complete records a successful step-up: it pushes the level and commits
// the session under a new id. An identifying method that sets an identity
// (the browser had none, or another) starts a new session with a new
// owner: nothing kept for whoever used this browser before carries over,
// except the kept request the walk is for (pending) when it was kept by a
// visitor not yet signed in. The user who was signed in before the root
// lapsed keeps the owner, and so every request they kept. It returns the new
// session; ErrSessionChanged when a concurrent request changed the session
// first.
func (e *Engine) Complete(w http.ResponseWriter, r *http.Request, s *Session, tier string, o *Outcome, pending string) (*Session, error) {
	m, ok := e.Method(tier, o.Method)
	if !ok {
		return nil, ErrNotAllowed
	}
	now := e.Now()
	var next *Session
	switch {
	case m.Identifies() && s != nil && s.User == "" && s.LastUser != "" && s.LastUser == o.User:
		// The same user again after the root lapsed: the same owner.
		next = s.Clone()
		next.LastUser = ""
	case m.Identifies() && (s == nil || s.User != o.User):
		next = e.Sessions.New()
	case s == nil:
		return nil, ErrNotAllowed
	default:
		next = s.Clone()
	}
	if m.Identifies() {
		next.User, next.Roles = o.User, o.Roles
		next.PasswordMark = ""
		if u, ok := e.directory[o.User]; ok && m.Name() == passwordMethod {
			next.PasswordMark = u.mark
		}
	}
	if next.User == "" {
		return nil, ErrNotAllowed
	}
	stack, err := next.Stack.Push(e.Hierarchy, tiers.Level{Tier: tier, Method: m.Name(), Credential: o.Credential, At: now}, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotAllowed, err)
	}
	next.Stack = stack
	if s != nil && next.Owner != s.Owner && !s.ephemeral {
		// The previous session ends, whoever it was for; its cookie is
		// replaced by the new one below. A concurrent change of it wins.
		if err := e.Sessions.endSuperseded(r.Context(), s); err != nil {
			return nil, err
		}
	}
	if err := e.Sessions.Commit(w, r, next); err != nil {
		return nil, err
	}
	if s != nil && next.Owner != s.Owner && pending != "" {
		e.adoptPending(r.Context(), s.Owner, next.Owner, pending, next.User)
	}
	return next, nil
}

// LogOff closes the tier and every tier above it; at a root tier the
// session ends. It returns the remaining session (nil when ended) and the
// closed tiers.
func (e *Engine) LogOff(w http.ResponseWriter, r *http.Request, s *Session, tier string) (*Session, []string, error) {
	stack, closed, ended := s.Stack.LogOff(e.Hierarchy, tier)
	if len(closed) == 0 {
		return s, nil, nil
	}
	if ended {
		if err := e.Sessions.End(w, r, s); err != nil {
			return s, nil, err
		}
		return nil, closed, nil
	}
	next := s.Clone()
	next.Stack = stack
	if err := e.Sessions.Commit(w, r, next); err != nil {
		return s, nil, err
	}
	return next, closed, nil
}

// Persist returns a stored session for the request, to which owner-keyed
// state (kept requests, challenge rounds, enrolments, ceremonies) can be
// bound: the request's own, or, for a visitor with none yet or an
// identity from earlier in the route that was never stored, one stored now.
func (e *Engine) Persist(w http.ResponseWriter, r *http.Request, s *Session) (*Session, error) {
	if s != nil && !s.ephemeral {
		return s, nil
	}
	var next *Session
	if s != nil {
		next = s.Clone()
	} else {
		next = e.Sessions.New()
	}
	if err := e.Sessions.Commit(w, r, next); err != nil {
		return nil, err
	}
	return next, nil
}

func hostOnly(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			h := addr[:i]
			if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
				return h[1 : len(h)-1]
			}
			return h
		}
	}
	return addr
}
