package stepup

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/caddy-stepup/caddy-stepup/tiers"
)

// Session is the server-side state of one browser (or API client). The
// browser holds only a signed, encrypted cookie with the session id.
// A *Session obtained from Sessions is shared through a cache and must be
// treated as immutable: change a copy (Clone) and Commit it.
type Session struct {
	// ID is the current session id; it rotates whenever the stack changes.
	ID string `json:"-"`
	// Owner is a stable, never-disclosed handle for records that must follow
	// the session across id rotations (pending requests, grants).
	Owner string `json:"o"`
	// User is the authenticated identity, empty before the first login.
	User string `json:"u,omitempty"`
	// Roles of the user.
	Roles []string `json:"r,omitempty"`
	// External is set when the identity came from earlier in the route.
	External bool `json:"x,omitempty"`
	// LastUser is who was signed in before the root tier lapsed: signing in
	// again as that user keeps the session's owner, and with it the user's
	// kept requests; anyone else starts afresh.
	LastUser string `json:"lu,omitempty"`
	// Stack holds the tiers reached.
	Stack tiers.Stack `json:"s,omitempty"`
	// Created and Seen bound the session's absolute and idle lifetimes.
	Created time.Time `json:"c"`
	Seen    time.Time `json:"l"`

	// gen orders a cached copy against this instance's writes of its id
	// and the changes other instances report.
	gen uint64
	// epoch is the shared store's coherence epoch when the copy was read:
	// a copy from before the change reports last went down or came back is
	// never served.
	epoch uint64
	// ephemeral sessions exist only for one request (an external identity
	// with no stored state) and are never written to the store.
	ephemeral bool
	// vars caches the placeholder values derived from the session.
	varsOnce sync.Once
	vars     *Vars
}

// Placeholder names published for requests that pass.
const (
	VarUser  = "http.stepup.user"
	VarTier  = "http.stepup.tier"
	VarTiers = "http.stepup.tiers"
	VarRoles = "http.stepup.roles"
)

// Vars are the placeholder values of a session, computed once per cached
// session so that publishing them on every request does not allocate.
type Vars struct {
	User, Tier, Tiers, Roles string
	// Lookup resolves the placeholder names above (the shape of Caddy's
	// replacer functions).
	Lookup func(key string) (any, bool)
}

// NewVars returns the placeholder values with their lookup function.
func NewVars(user, tier, tiers, roles string) *Vars {
	v := &Vars{User: user, Tier: tier, Tiers: tiers, Roles: roles}
	boxed := [4]any{user, tier, tiers, roles}
	v.Lookup = func(key string) (any, bool) {
		switch key {
		case VarUser:
			return boxed[0], true
		case VarTier:
			return boxed[1], true
		case VarTiers:
			return boxed[2], true
		case VarRoles:
			return boxed[3], true
		}
		return nil, false
	}
	return v
}

// Stored reports whether the session is in the store (an identity from
// earlier in the route may exist for one request only).
func (s *Session) Stored() bool { return !s.ephemeral }

// Clone returns a deep copy that may be changed and committed.
func (s *Session) Clone() *Session {
	c := &Session{
		ID: s.ID, Owner: s.Owner, User: s.User, External: s.External, LastUser: s.LastUser,
		Created: s.Created, Seen: s.Seen, ephemeral: s.ephemeral,
	}
	c.Roles = append([]string(nil), s.Roles...)
	c.Stack = append(tiers.Stack(nil), s.Stack...)
	return c
}

// PlaceholderValues returns the values of the http.stepup.* placeholders,
// computed once per cached session so the hot path does not allocate them.
func (s *Session) PlaceholderValues(h *tiers.Hierarchy) *Vars {
	s.varsOnce.Do(func() {
		s.vars = NewVars(s.User, s.Stack.Highest(h), strings.Join(s.Stack.Names(), ","), strings.Join(s.Roles, ","))
	})
	return s.vars
}

// SessionConfig configures Sessions.
type SessionConfig struct {
	// CookieName is the base name of the cookie; on HTTPS it gets the
	// __Host- prefix.
	CookieName string
	// IdleTimeout ends a session not used for this long.
	IdleTimeout time.Duration
	// Lifetime ends a session this long after it was created, used or not.
	Lifetime time.Duration
	// CacheTTL bounds how long a decoded session is served from the
	// in-process cache without asking the store.
	CacheTTL time.Duration
	// CacheEntries bounds the in-process cache.
	CacheEntries int64
}

func (c *SessionConfig) defaults() {
	if c.CookieName == "" {
		c.CookieName = "stepup_session"
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = time.Hour
	}
	if c.Lifetime <= 0 {
		c.Lifetime = 12 * time.Hour
	}
	if c.CacheTTL <= 0 {
		c.CacheTTL = 30 * time.Second
	}
	if c.CacheEntries <= 0 {
		c.CacheEntries = 100_000
	}
}

// change is an entry of Sessions.changes.
type change struct {
	gen   uint64
	ended bool
	at    time.Time // wall clock: when the entry may be forgotten
}

// maxTouchInterval is how stale Seen may get before a request refreshes it:
// writing on every request would put the store on the hot path. A short
// idle timeout touches more often (a quarter of it), so that a session in
// use never idles out.
const maxTouchInterval = time.Minute

// rotatedGrace is how long a rotated id still names its owner, for a
// request sent with it while the rotation happened.
const rotatedGrace = time.Minute

// ErrSessionChanged is returned by Commit when another request rotated or
// ended the session first: exactly one of several concurrent changes wins.
var ErrSessionChanged = errors.New("session changed concurrently")

// Sessions issues, loads, rotates and ends sessions. It implements
// gorilla/sessions' Store, whose cookie options and codecs it uses; the hot
// path (Load) bypasses gorilla's per-request registry to stay allocation-free.
type Sessions struct {
	cfg        SessionConfig
	hostCookie string // "__Host-" + the cookie name, for HTTPS, built once
	touchEvery time.Duration
	store      Store
	codec      securecookie.Codec
	now        func() time.Time

	// sessions caches decoded sessions by cookie value, which saves both
	// the cookie's decryption and the store on the hot path.
	sessions *sessionCache
	// changes records, per session id, this instance's last write (or the
	// end of the session). The cache is an optimisation only: a copy read
	// before a write can land in the cache after it. A cached copy older
	// than the id's last change is never served.
	changes  sync.Map // session id -> change
	gen      atomic.Uint64
	stop     chan struct{}
	stopOnce sync.Once

	// shared is the store when several instances use it: the cache is
	// served only while it reports changes (Coherent), and only copies read
	// in the current epoch, which every reset of the reports ends.
	shared  SharedStore
	unwatch func()
	epoch   atomic.Uint64
}

// sharedCacheTTL caps the cache's lifetime in front of a shared store: the
// staleness bound should a change report be lost without the channel
// noticing (a partition between cluster nodes). Reports normally arrive
// within milliseconds, and a silent channel is noticed within a couple of
// seconds (see store.Redis).
const sharedCacheTTL = 5 * time.Second

// NewSessions builds the session manager. now may be nil.
func NewSessions(cfg SessionConfig, st Store, keys Keys, now func() time.Time) (*Sessions, error) {
	cfg.defaults()
	if now == nil {
		now = time.Now
	}
	codec := securecookie.New(keys.CookieHash, keys.CookieBlock)
	codec.SetSerializer(securecookie.NopEncoder{})
	codec.MaxAge(int(cfg.Lifetime / time.Second))
	codec.MaxLength(1024)
	m := &Sessions{cfg: cfg, hostCookie: "__Host-" + cfg.CookieName, store: st, codec: codec, now: now, stop: make(chan struct{}),
		touchEvery: min(maxTouchInterval, cfg.IdleTimeout/4)}
	m.sessions = newSessionCache(cfg.CacheEntries)
	if shared, ok := st.(SharedStore); ok {
		m.shared = shared
		m.cfg.CacheTTL = min(m.cfg.CacheTTL, sharedCacheTTL)
		m.unwatch = shared.Watch(m.changedElsewhere, m.resetCache)
	}
	go m.forgetChanges()
	return m, nil
}

// changedElsewhere takes a shared store's report that a record changed (on
// any instance): a cached copy of that session read before it is refetched.
func (m *Sessions) changedElsewhere(key string) {
	if id, ok := strings.CutPrefix(key, keySession); ok {
		m.changes.Store(id, change{gen: m.gen.Add(1), at: time.Now()})
	}
}

// resetCache drops every cached session: changes may have gone unreported.
func (m *Sessions) resetCache() {
	m.epoch.Add(1)
	m.sessions.clear()
}

// cacheCoherent reports whether the cache may be used now.
func (m *Sessions) cacheCoherent() bool { return m.shared == nil || m.shared.Coherent() }

// Close releases the caches.
func (m *Sessions) Close() {
	m.stopOnce.Do(func() {
		if m.unwatch != nil {
			m.unwatch()
		}
		close(m.stop)
		m.sessions.clear()
	})
}

// CookieName is the name of the session cookie for this request.
func (m *Sessions) CookieName(r *http.Request) string {
	if r.TLS != nil {
		return m.hostCookie
	}
	return m.cfg.CookieName
}

// options are the cookie attributes: HttpOnly, SameSite=Lax, and on HTTPS
// Secure with Path=/ and no Domain as the __Host- prefix demands.
func (m *Sessions) options(r *http.Request, maxAge int) *sessions.Options {
	return &sessions.Options{
		Path:     "/",
		MaxAge:   maxAge,
		Secure:   r.TLS != nil,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

// Load returns the request's session, or nil when it has none that is valid
// (no cookie, a forged or expired cookie, an ended or idle session, or a
// store that cannot answer).
func (m *Sessions) Load(r *http.Request) *Session {
	s, _ := m.LoadChecked(r)
	return s
}

// LoadChecked is Load that tells "no session" from "the store cannot say":
// the error wraps ErrStoreUnavailable, and the session is nil, so that a
// caller that needs the session fails closed.
func (m *Sessions) LoadChecked(r *http.Request) (*Session, error) {
	return m.LoadCheckedAt(r, m.now())
}

// LoadCheckedAt is LoadChecked at a time the caller read already (one
// clock read per request on the hot path).
func (m *Sessions) LoadCheckedAt(r *http.Request, now time.Time) (*Session, error) {
	name := m.CookieName(r)
	value := cookieValue(r, name)
	if value == "" {
		return nil, nil
	}
	s, ok := m.sessions.get(value, now.UnixNano())
	if ok && (!m.cacheCoherent() || s.epoch != m.epoch.Load()) {
		ok = false // the cache may hold what another instance changed
	}
	if ok {
		if c, changed := m.changes.Load(s.ID); changed {
			if c.(change).ended {
				return nil, nil
			}
			ok = s.gen >= c.(change).gen // else a copy from before this instance's last write
		}
	}
	if !ok {
		var raw []byte
		if err := m.codec.Decode(name, value, &raw); err != nil || len(raw) == 0 {
			return nil, nil
		}
		id := string(raw)
		if c, changed := m.changes.Load(id); changed && c.(change).ended {
			return nil, nil
		}
		coherent := m.cacheCoherent() // before the read: see resetCache
		var err error
		if s, err = m.fetch(r.Context(), id); s == nil {
			return nil, err
		}
		if coherent {
			m.sessions.set(value, s, now.UnixNano(), now.Add(m.cfg.CacheTTL).UnixNano())
		}
	}
	if now.Sub(s.Seen) >= m.cfg.IdleTimeout || now.Sub(s.Created) >= m.cfg.Lifetime {
		m.forget(r.Context(), s.ID)
		return nil, nil
	}
	if now.Sub(s.Seen) >= m.touchEvery {
		s = s.Clone()
		s.Seen = now
		// A failed touch only shortens the idle lifetime; the request goes
		// on. A session rotated or ended meanwhile is not brought back.
		_ = m.touch(r.Context(), s)
	}
	return s, nil
}

// touch refreshes a session's idle time under its current id, only if that
// id is still live.
func (m *Sessions) touch(ctx context.Context, s *Session) error {
	raw, ttl, err := m.encode(s)
	if err != nil {
		return err
	}
	ok, err := m.store.Replace(ctx, keySession+s.ID, raw, ttl)
	if err != nil || !ok {
		return ErrSessionChanged
	}
	m.changes.Store(s.ID, change{gen: m.gen.Add(1), at: time.Now()})
	return nil
}

// fetch reads a session from the store: nil and no error when there is
// none, nil and an error wrapping ErrStoreUnavailable when the store cannot
// answer.
func (m *Sessions) fetch(ctx context.Context, id string) (*Session, error) {
	// Both taken before the read: a write or a reset after it is newer.
	gen, epoch := m.gen.Add(1), m.epoch.Load()
	raw, err := m.store.Get(ctx, keySession+id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading session: %v", ErrStoreUnavailable, err)
	}
	s := new(Session)
	if err := decodeSession(raw, s); err != nil {
		return nil, nil
	}
	s.ID, s.gen, s.epoch = id, gen, epoch
	return s, nil
}

// encode returns a session's stored form and its time to live.
func (m *Sessions) encode(s *Session) ([]byte, time.Duration, error) {
	raw, err := encodeSession(s)
	if err != nil {
		return nil, 0, err
	}
	ttl := min(m.cfg.IdleTimeout, s.Created.Add(m.cfg.Lifetime).Sub(m.now()))
	if ttl <= 0 {
		return nil, 0, errors.New("session expired")
	}
	return raw, ttl, nil
}

func (m *Sessions) put(ctx context.Context, s *Session) error {
	raw, ttl, err := m.encode(s)
	if err != nil {
		return err
	}
	if err := m.store.Set(ctx, keySession+s.ID, raw, ttl); err != nil {
		return fmt.Errorf("saving session: %w", err)
	}
	// Invalidate rather than update (a request that read the session
	// before this write may cache its copy after it): cached copies older than this write are refetched.
	m.changes.Store(s.ID, change{gen: m.gen.Add(1), at: time.Now()})
	return nil
}

// forget ends a session id everywhere this instance can see it, and in
// the store (an error when the store could not delete it: another instance
// may still accept it).
func (m *Sessions) forget(ctx context.Context, id string) error {
	m.changes.Store(id, change{gen: m.gen.Add(1), ended: true, at: time.Now()})
	if err := m.store.Delete(ctx, keySession+id); err != nil {
		return fmt.Errorf("%w: ending session: %v", ErrStoreUnavailable, err)
	}
	return nil
}

// forgetChanges drops the change marks once no cached copy can predate them
// (a cached copy lives at most CacheTTL after it was read).
func (m *Sessions) forgetChanges() {
	t := time.NewTicker(m.cfg.CacheTTL)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			cutoff := time.Now().Add(-2 * m.cfg.CacheTTL)
			m.changes.Range(func(k, v any) bool {
				if v.(change).at.Before(cutoff) {
					m.changes.Delete(k)
				}
				return true
			})
		}
	}
}

// New returns a fresh, unsaved session with a new owner.
// sessionIDBytes is the length of a session id: 144 random bits, far
// beyond guessing, in 24 characters (a million sessions keep a million of
// them as keys).
const sessionIDBytes = 18

func (m *Sessions) New() *Session {
	now := m.now()
	return &Session{Owner: randomToken(18), Created: now, Seen: now}
}

// Commit stores the session under a new id and sets the cookie. Every
// change of identity or tier stack goes through Commit, so the id rotates
// whenever the stack grows or shrinks. Rotation is a compare-and-swap on the
// previous id: of several requests that change one session at once, exactly
// one wins; the others get ErrSessionChanged and change nothing.
func (m *Sessions) Commit(w http.ResponseWriter, r *http.Request, s *Session) error {
	ctx := r.Context()
	s.ephemeral = false
	if s.Owner == "" {
		// A session that was never stored (an external identity) gets its
		// own owner now: owner-keyed records are never shared.
		s.Owner = randomToken(18)
	}
	old := s.ID
	s.ID = randomToken(sessionIDBytes)
	s.Seen = m.now()
	if err := m.put(ctx, s); err != nil {
		s.ID = old
		return err
	}
	// The owner's current id, so that ending the session ends whatever id
	// the owner holds now, not only the one a request presented. A new
	// owner claims it; a rotation replaces it only while it exists, so that
	// an EndOwner that ran meanwhile (it removes the index) is not undone.
	if old == "" {
		_, _ = m.store.SetIfAbsent(ctx, keyOwner+s.Owner, []byte(s.ID), m.cfg.Lifetime)
	} else {
		if _, err := m.store.Take(ctx, keySession+old); err != nil {
			m.forget(ctx, s.ID)
			s.ID = old
			if errors.Is(err, ErrNotFound) {
				return ErrSessionChanged
			}
			return fmt.Errorf("rotating session: %w", err)
		}
		m.changes.Store(old, change{gen: m.gen.Add(1), ended: true, at: time.Now()})
		// A request that presents the old id a moment later (a logoff sent
		// alongside this change) can still find whose session it was.
		_ = m.store.Set(ctx, keyRotated+old, []byte(s.Owner), rotatedGrace)
		if ok, err := m.store.Replace(ctx, keyOwner+s.Owner, []byte(s.ID), m.cfg.Lifetime); err != nil || !ok {
			m.forget(ctx, s.ID)
			s.ID = old
			return ErrSessionChanged
		}
	}
	value, err := m.codec.Encode(m.CookieName(r), []byte(s.ID))
	if err != nil {
		return fmt.Errorf("encoding session cookie: %w", err)
	}
	http.SetCookie(w, sessions.NewCookie(m.CookieName(r), value, m.options(r, 0)))
	return nil
}

// End deletes the session, and the owner's current id if it is another
// one, and clears the cookie. It reports a store that could not delete
// them: the session then still holds on other instances.
func (m *Sessions) End(w http.ResponseWriter, r *http.Request, s *Session) error {
	var err error
	if s != nil {
		err = m.EndOwner(r.Context(), s.Owner)
		if s.ID != "" {
			err = errors.Join(err, m.forget(r.Context(), s.ID))
		}
	}
	http.SetCookie(w, sessions.NewCookie(m.CookieName(r), "", m.options(r, -1)))
	return err
}

// RotatedOwner returns the owner of the session whose id the request's
// cookie held until a moment ago ("" when it names none).
func (m *Sessions) RotatedOwner(r *http.Request) string {
	name := m.CookieName(r)
	value := cookieValue(r, name)
	if value == "" {
		return ""
	}
	var raw []byte
	if err := m.codec.Decode(name, value, &raw); err != nil || len(raw) == 0 {
		return ""
	}
	owner, err := m.store.Get(r.Context(), keyRotated+string(raw))
	if err != nil {
		return ""
	}
	return string(owner)
}

// EndOwner ends the owner's current session id.
func (m *Sessions) EndOwner(ctx context.Context, owner string) error {
	if owner == "" {
		return nil
	}
	raw, err := m.store.Take(ctx, keyOwner+owner)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("%w: ending session: %v", ErrStoreUnavailable, err)
	}
	if err := m.forget(ctx, string(raw)); err != nil {
		// The session record is still there: put its index back, so that
		// ending it again (a retried revocation) finds it.
		_, _ = m.store.SetIfAbsent(ctx, keyOwner+owner, raw, m.cfg.Lifetime)
		return err
	}
	return nil
}

// cookieValue finds a cookie's value without allocating, unlike
// r.Cookie, which parses every cookie of the request.
func cookieValue(r *http.Request, name string) string {
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if ok && k == name {
				return strings.Trim(v, `"`)
			}
		}
	}
	return ""
}

// The gorilla/sessions Store interface, for code that prefers its API: the
// session's Values carry the *Session under the key "stepup".

// New (gorilla) loads the request's session or starts a new one.
func (m *Sessions) NewGorilla(r *http.Request, name string) (*sessions.Session, error) {
	gs := sessions.NewSession(gorillaStore{m}, name)
	gs.Options = m.options(r, 0)
	gs.IsNew = true
	if s := m.Load(r); s != nil {
		gs.ID, gs.IsNew = s.ID, false
		gs.Values["stepup"] = s.Clone()
	} else {
		gs.Values["stepup"] = m.New()
	}
	return gs, nil
}

// gorillaStore adapts Sessions to sessions.Store.
type gorillaStore struct{ m *Sessions }

func (g gorillaStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(g, name)
}

func (g gorillaStore) New(r *http.Request, name string) (*sessions.Session, error) {
	return g.m.NewGorilla(r, name)
}

func (g gorillaStore) Save(r *http.Request, w http.ResponseWriter, gs *sessions.Session) error {
	s, ok := gs.Values["stepup"].(*Session)
	if !ok {
		return errors.New("stepup: session values carry no *stepup.Session")
	}
	if gs.Options != nil && gs.Options.MaxAge < 0 {
		return g.m.End(w, r, s)
	}
	if err := g.m.Commit(w, r, s); err != nil {
		return err
	}
	gs.ID = s.ID
	return nil
}

// GorillaStore exposes the session manager as a gorilla/sessions Store.
func (m *Sessions) GorillaStore() sessions.Store { return gorillaStore{m} }
