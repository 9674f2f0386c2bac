package stepup

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/caddy-stepup/caddy-stepup/tiers"
)

// Session is the server-side state of one browser (or API client). The
// browser holds only a signed, encrypted cookie with the session's owner
// and id. It is one record in the store, keyed by the owner, which holds
// the current id: a cookie is good only while its id is that one.
// A *Session obtained from Sessions is shared through a cache and must be
// treated as immutable: change a copy (Clone) and Commit it.
type Session struct {
	// ID is the current session id; it rotates whenever the stack changes.
	ID string `json:"-"`
	// Owner is a stable, never-disclosed handle for records that must follow
	// the session across id rotations (pending requests, grants), and the
	// key of the session's own record.
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
	// PasswordMark fingerprints the directory's password hash of User when
	// a password signed them in (PasswordHash.Mark): a session does not
	// outlive a change of that password in the configuration. Empty for
	// other identities, and for sessions from before this field.
	PasswordMark string `json:"pm,omitempty"`
	// Stack holds the tiers reached.
	Stack tiers.Stack `json:"s,omitempty"`
	// Created and Seen bound the session's absolute and idle lifetimes.
	Created time.Time `json:"c"`
	Seen    time.Time `json:"l"`

	// record is the store key this copy was read from: the owner's record
	// (keyRecord), or, for a session the previous version stored, the
	// record of its id (keySession). Change marks are kept per record key.
	record string
	// gen orders a cached copy against this instance's writes of its
	// record and the changes other instances report.
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
	// heldTo is the users directory this copy was last found to agree
	// with (Engine.applyDirectory): a shared, immutable copy is checked
	// once per configuration, not on every request.
	heldTo atomic.Pointer[map[string]directoryEntry]
	vars   *Vars
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

// legacy reports whether the session was read from a record the previous
// version stored under the session's id: its next Commit moves it to the
// owner's record.
func (s *Session) legacy() bool { return strings.HasPrefix(s.record, keySession) }

// Clone returns a deep copy that may be changed and committed.
func (s *Session) Clone() *Session {
	c := &Session{
		ID: s.ID, Owner: s.Owner, User: s.User, External: s.External, LastUser: s.LastUser, PasswordMark: s.PasswordMark,
		Created: s.Created, Seen: s.Seen, record: s.record, ephemeral: s.ephemeral,
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
	at    int64 // Sessions.tick: when the entry may be forgotten
}

// maxTouchInterval is how stale Seen may get before a request refreshes it:
// writing on every request would put the store on the hot path. A short
// idle timeout touches more often (a quarter of it), so that a session in
// use never idles out.
const maxTouchInterval = time.Minute

// rotatedGrace is how long a rotated id still names its owner, for a
// request sent with it while the rotation happened.
const rotatedGrace = time.Minute

// casAttempts bounds the read-and-swap loops on the owner's record: a swap
// that fails because a touch refreshed the record meanwhile (same id) is
// tried again; one that finds another id has lost.
const casAttempts = 3

// errSessionGone is a touch's finding that the session's record is gone
// or holds another id: the copy touched is no longer the session. (A
// touch that lost a race with another touch is ErrSessionChanged alone.)
var errSessionGone = fmt.Errorf("%w: ended or rotated elsewhere", ErrSessionChanged)

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
	// changes records, per record key (the owner's record, or a record
	// of the previous version), this instance's last write (or the end of
	// the session) and the changes other instances report. The cache is an
	// optimisation only: a copy read before a write can land in the cache
	// after it. A cached copy older than its record's last change is never
	// served, under whatever cookie value it was cached: an old cookie's
	// copy falls with the rotation that made the cookie old.
	changes  sync.Map // record key -> change
	gen      atomic.Uint64
	stop     chan struct{}
	stopOnce sync.Once

	// base is the engine's clock when the manager was built: cache entries
	// and change marks are timed from it (see tick).
	base time.Time
	// latest is the latest tick a cached copy was read at: no change mark
	// is dated before it (see mark).
	latest atomic.Int64

	// shared is the store when several instances use it: the cache is
	// served only while it reports changes (Coherent), and only copies read
	// in the current epoch, which every reset of the reports ends.
	shared  SharedStore
	unwatch func()
	// peered: the store reports no changes, and the managers of this
	// process that use it mark each other's (see peers).
	peered bool
	epoch  atomic.Uint64
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
		touchEvery: min(maxTouchInterval, cfg.IdleTimeout/4), base: now()}
	m.sessions = newSessionCache(cfg.CacheEntries)
	if shared, ok := st.(SharedStore); ok {
		m.shared = shared
		m.cfg.CacheTTL = min(m.cfg.CacheTTL, sharedCacheTTL)
		m.unwatch = shared.Watch(m.changedElsewhere, m.resetCache)
	} else {
		m.unwatch = peers.join(st, m)
		m.peered = m.unwatch != nil
	}
	go m.forgetChanges()
	return m, nil
}

// peers are the session managers of this process over one store that
// reports no changes (site handlers with the same inline configuration
// share the default store and its namespace, and each has its own
// manager and cache): a change one of them marks is marked in the others'
// caches at once, as a shared store's reports do across instances, so a
// logoff or revocation through one site holds on the others.
var peers = peerSet{m: map[Store][]*Sessions{}}

type peerSet struct {
	mu sync.Mutex
	m  map[Store][]*Sessions
}

// join adds m to the managers of st and returns its leave function. A
// store whose value cannot key a map (none of ours) has no peers.
func (p *peerSet) join(st Store, m *Sessions) func() {
	if !reflect.ValueOf(st).Comparable() {
		return nil
	}
	p.mu.Lock()
	p.m[st] = append(p.m[st], m)
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		rest := slices.DeleteFunc(p.m[st], func(o *Sessions) bool { return o == m })
		if len(rest) == 0 {
			delete(p.m, st)
		} else {
			p.m[st] = rest
		}
	}
}

// tell marks key in every other manager of st (which from joined).
func (p *peerSet) tell(st Store, from *Sessions, key string, ended bool) {
	p.mu.Lock()
	others := slices.Clone(p.m[st])
	p.mu.Unlock()
	for _, o := range others {
		if o != from {
			o.markHere(key, ended)
		}
	}
}

// changedElsewhere takes a shared store's report that a record changed (on
// any instance): a cached copy of that session read before it is refetched.
func (m *Sessions) changedElsewhere(key string) {
	if strings.HasPrefix(key, keyRecord) || strings.HasPrefix(key, keySession) {
		m.changed(key)
	}
}

// changed marks a record written: cached copies read before are refetched.
// It is called after the write (a copy read between a mark and its write
// would be the old one, and newer than the mark).
func (m *Sessions) changed(key string) { m.mark(key, false) }

// ended marks a record ended: no copy of it is served, nor fetched, while
// the mark lives (an ended owner's record is never written again: a new
// session gets a new owner). It is called before the delete.
func (m *Sessions) ended(key string) { m.mark(key, true) }

// mark records a change of a record. A mark is what keeps a superseded
// copy from being served, so it must outlive every copy it supersedes: it
// is dated no earlier than the latest tick a copy was read at (a clock
// that stepped back since would otherwise date it before that copy, and
// forgetChanges would drop it while the copy is still fresh).
func (m *Sessions) mark(key string, ended bool) {
	m.markHere(key, ended)
	if m.peered {
		peers.tell(m.store, m, key, ended)
	}
}

// markHere is mark in this manager only.
func (m *Sessions) markHere(key string, ended bool) {
	gen := m.gen.Add(1)
	at := max(m.tick(m.now()), m.latest.Load())
	m.changes.Store(key, change{gen: gen, ended: ended, at: at})
}

// tick is a time of the engine's clock as the cache and the change marks
// count it: nanoseconds, the base's Unix time plus the time elapsed since
// the base. Elapsed time is measured on the monotonic clock whenever the
// engine's clock carries it (time.Now does), so a step of the wall clock
// (NTP, a VM restored from a snapshot) neither stretches a cached copy's
// CacheTTL nor ages a change mark early; a clock without it (a test's)
// counts as its wall time.
func (m *Sessions) tick(t time.Time) int64 {
	return m.base.UnixNano() + int64(t.Sub(m.base))
}

// noteRead records that a copy is being read at tick t, before the read:
// a mark made after the read is dated no earlier (see mark).
func (m *Sessions) noteRead(t int64) {
	for {
		cur := m.latest.Load()
		if t <= cur || m.latest.CompareAndSwap(cur, t) {
			return
		}
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
	return m.loadValue(r, name, cookieValue(r, name), now)
}

// loadValue is LoadCheckedAt for the session cookie's value, read already.
func (m *Sessions) loadValue(r *http.Request, name, value string, now time.Time) (*Session, error) {
	if value == "" {
		return nil, nil
	}
	tick := m.tick(now)
	s, ok := m.sessions.get(value, tick)
	if ok && (!m.cacheCoherent() || s.epoch != m.epoch.Load()) {
		ok = false // the cache may hold what another instance changed
	}
	if ok {
		if c, changed := m.changes.Load(s.record); changed {
			if c.(change).ended {
				return nil, nil
			}
			ok = s.gen >= c.(change).gen // else a copy from before the record's last change
		}
	}
	if ok && m.lapsed(s, now) {
		ok = false // the record may have been touched since: ask the store
	}
	if !ok {
		var raw []byte
		if err := m.codec.Decode(name, value, &raw); err != nil || len(raw) == 0 {
			return nil, nil
		}
		owner, id, valid := parseCookie(raw)
		if !valid {
			return nil, nil
		}
		key := keyRecord + owner
		if owner == "" {
			key = keySession + id // a cookie of the previous version
		}
		if c, changed := m.changes.Load(key); changed && c.(change).ended {
			return nil, nil
		}
		coherent := m.cacheCoherent() // before the read: see resetCache
		m.noteRead(tick)
		var err error
		if s, err = m.fetch(r.Context(), key, owner, id); s == nil {
			return nil, err
		}
		if m.lapsed(s, now) {
			m.forget(r.Context(), key)
			return nil, nil
		}
		if coherent {
			m.sessions.set(value, s, tick, tick+int64(m.cfg.CacheTTL))
		}
	}
	if now.Sub(s.Seen) >= m.touchEvery {
		s = s.Clone()
		s.Seen = now
		// A touch that could not be made (the store busy or down) only
		// shortens the idle lifetime; the request goes on. One that finds
		// the session ended or rotated away (on another instance, whose
		// report has not arrived) has learnt that this copy is no longer
		// the session: the request is refused, as it would be a moment
		// later, and the session is not brought back.
		if err := m.touch(r.Context(), s); errors.Is(err, errSessionGone) {
			m.changed(s.record)
			return nil, nil
		}
	}
	return s, nil
}

// lapsed reports whether a session is past its idle timeout or lifetime.
func (m *Sessions) lapsed(s *Session, now time.Time) bool {
	return now.Sub(s.Seen) >= m.cfg.IdleTimeout || now.Sub(s.Created) >= m.cfg.Lifetime
}

// cookiePayload is what the session cookie carries, signed and encrypted:
// the owner, whose record holds the session, and the id the cookie was
// issued for. Both are base64url, so '.' separates them.
func cookiePayload(owner, id string) []byte { return []byte(owner + "." + id) }

// parseCookie splits a cookie's payload. A payload without '.' is a cookie
// of the previous version, an id alone: owner is then empty.
func parseCookie(raw []byte) (owner, id string, ok bool) {
	o, i, found := strings.Cut(string(raw), ".")
	if !found {
		return "", o, o != ""
	}
	return o, i, o != "" && i != ""
}

// touch refreshes a session's idle time, only while its record holds the
// session's id: it never brings back an ended session, nor overwrites a
// rotation (or reverts a newer touch).
func (m *Sessions) touch(ctx context.Context, s *Session) error {
	if s.legacy() {
		// The previous version's record of this id: a rotation or an end
		// takes it away, so replacing it only while it exists suffices.
		raw, err := encodeLegacySession(s)
		if err != nil {
			return err
		}
		ttl, err := m.ttl(s)
		if err != nil {
			return err
		}
		ok, err := m.store.Replace(ctx, s.record, raw, ttl)
		if err != nil {
			return err
		}
		if !ok {
			return errSessionGone
		}
		m.changed(s.record)
		return nil
	}
	key := keyRecord + s.Owner
	for range casAttempts {
		cur, stored, err := m.read(ctx, key)
		if errors.Is(err, ErrNotFound) || (err == nil && !sameID(stored.ID, s.ID)) {
			return errSessionGone
		}
		if err != nil {
			return err
		}
		if !stored.Seen.Before(s.Seen) {
			return nil // touched already
		}
		stored.Seen = s.Seen
		raw, ttl, err := m.encode(stored)
		if err != nil {
			return err
		}
		ok, err := m.store.CompareAndSwap(ctx, key, cur, raw, ttl)
		if err != nil {
			return err
		}
		if ok {
			m.changed(key)
			return nil
		}
	}
	return ErrSessionChanged
}

// sameID compares ids in constant time.
func sameID(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// read returns the owner's record as stored and decoded; ErrNotFound when
// there is none (or it does not decode), an error wrapping
// ErrStoreUnavailable when the store cannot answer.
func (m *Sessions) read(ctx context.Context, key string) ([]byte, *Session, error) {
	raw, err := m.store.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: reading session: %v", ErrStoreUnavailable, err)
	}
	s := new(Session)
	if err := decodeSession(raw, s); err != nil || key != keyRecord+s.Owner || s.ID == "" {
		return nil, nil, ErrNotFound
	}
	s.record = key
	return raw, s, nil
}

// fetch reads the session a cookie names: the owner's record, accepted
// only if it holds the cookie's id; or, for a cookie of the previous
// version (owner empty), the record of its id. It returns nil and no error
// when there is none, nil and an error wrapping ErrStoreUnavailable when
// the store cannot answer.
func (m *Sessions) fetch(ctx context.Context, key, owner, id string) (*Session, error) {
	// Both taken before the read: a write or a reset after it is newer.
	gen, epoch := m.gen.Add(1), m.epoch.Load()
	var s *Session
	if owner != "" {
		var err error
		if _, s, err = m.read(ctx, key); errors.Is(err, ErrNotFound) {
			return nil, nil
		} else if err != nil {
			return nil, err
		}
		if !sameID(s.ID, id) {
			return nil, nil // an id the owner does not hold (rotated away, or never its own)
		}
	} else {
		raw, err := m.store.Get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: reading session: %v", ErrStoreUnavailable, err)
		}
		s = new(Session)
		if err := decodeSession(raw, s); err != nil || s.ID != "" {
			return nil, nil
		}
		s.ID, s.record = id, key
	}
	s.gen, s.epoch = gen, epoch
	return s, nil
}

// ttl is how long the store keeps a session written now: its idle
// timeout, or what is left of its lifetime.
func (m *Sessions) ttl(s *Session) (time.Duration, error) {
	ttl := min(m.cfg.IdleTimeout, s.Created.Add(m.cfg.Lifetime).Sub(m.now()))
	if ttl <= 0 {
		return 0, errors.New("session expired")
	}
	return ttl, nil
}

// encode returns the owner's record of a session and its time to live.
func (m *Sessions) encode(s *Session) ([]byte, time.Duration, error) {
	raw, err := encodeSession(s)
	if err != nil {
		return nil, 0, err
	}
	ttl, err := m.ttl(s)
	if err != nil {
		return nil, 0, err
	}
	return raw, ttl, nil
}

// forget ends a record everywhere this instance can see it, and in the
// store (an error when the store could not delete it: another instance
// may still accept it).
func (m *Sessions) forget(ctx context.Context, key string) error {
	m.ended(key)
	if err := m.store.Delete(ctx, key); err != nil {
		return fmt.Errorf("%w: ending session: %v", ErrStoreUnavailable, err)
	}
	return nil
}

// forgetChanges drops the change marks once no cached copy can predate them
// (a cached copy lives at most CacheTTL after it was read, on the same
// clock: see tick and mark).
func (m *Sessions) forgetChanges() {
	t := time.NewTicker(m.cfg.CacheTTL)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			cutoff := m.tick(m.now()) - int64(2*m.cfg.CacheTTL)
			m.changes.Range(func(k, v any) bool {
				if v.(change).at < cutoff {
					m.changes.Delete(k)
				}
				return true
			})
		}
	}
}

// Random handles: 144 bits each, far beyond guessing, in 24 characters.
const (
	// sessionIDBytes is the length of a session id.
	sessionIDBytes = 18
	// ownerBytes is the length of an owner handle (the key of a million
	// sessions' records).
	ownerBytes = 18
)

// New returns a fresh, unsaved session with a new owner.
func (m *Sessions) New() *Session {
	now := m.now()
	return &Session{Owner: randomToken(ownerBytes), Created: now, Seen: now}
}

// Commit stores the session under a new id and sets the cookie. Every
// change of identity or tier stack goes through Commit, so the id rotates
// whenever the stack grows or shrinks. Rotation is a compare-and-swap of
// the owner's record from the one that holds the previous id: of several
// requests that change one session at once, exactly one wins; the others
// get ErrSessionChanged and change nothing. A session the previous version
// stored moves to the owner's record.
func (m *Sessions) Commit(w http.ResponseWriter, r *http.Request, s *Session) error {
	ctx := r.Context()
	s.ephemeral = false
	old, oldOwner, oldRecord := s.ID, s.Owner, s.record
	if s.Owner == "" {
		// A session that was never stored (an external identity) gets its
		// own owner now: owner-keyed records are never shared.
		s.Owner = randomToken(ownerBytes)
	}
	s.ID = randomToken(sessionIDBytes)
	s.Seen = m.now()
	var err error
	switch {
	case old == "":
		err = m.create(ctx, s)
	case s.legacy():
		err = m.migrate(ctx, s, old)
	default:
		err = m.rotate(ctx, s, old)
	}
	if err != nil {
		s.ID, s.Owner, s.record = old, oldOwner, oldRecord
		return err
	}
	s.record = keyRecord + s.Owner
	value, err := m.codec.Encode(m.CookieName(r), cookiePayload(s.Owner, s.ID))
	if err != nil {
		return fmt.Errorf("encoding session cookie: %w", err)
	}
	http.SetCookie(w, sessions.NewCookie(m.CookieName(r), value, m.options(r, 0)))
	return nil
}

// create claims the record of a new session's owner. No copy of a record
// that did not exist can be cached, so there is nothing to mark.
func (m *Sessions) create(ctx context.Context, s *Session) error {
	for attempt := 1; ; attempt++ {
		raw, ttl, err := m.encode(s)
		if err != nil {
			return err
		}
		ok, err := m.store.SetIfAbsent(ctx, keyRecord+s.Owner, raw, ttl)
		if err != nil {
			return fmt.Errorf("saving session: %w", err)
		}
		if ok {
			return nil
		}
		// The owner names another session (144 random bits do not collide
		// by chance): never share it, take another.
		if attempt == casAttempts {
			return errors.New("saving session: the owner handle is taken")
		}
		s.Owner = randomToken(ownerBytes)
	}
}

// rotate swaps the owner's record for s, only from a record that holds the
// previous id: a touch meanwhile (same id) is read again, another id or
// none has won.
func (m *Sessions) rotate(ctx context.Context, s *Session, old string) error {
	key := keyRecord + s.Owner
	raw, ttl, err := m.encode(s)
	if err != nil {
		return err
	}
	for range casAttempts {
		cur, stored, err := m.read(ctx, key)
		if errors.Is(err, ErrNotFound) {
			return ErrSessionChanged
		}
		if err != nil {
			return fmt.Errorf("rotating session: %w", err)
		}
		if !sameID(stored.ID, old) {
			return ErrSessionChanged
		}
		ok, err := m.store.CompareAndSwap(ctx, key, cur, raw, ttl)
		if err != nil {
			return fmt.Errorf("rotating session: %w", err)
		}
		if ok {
			m.changed(key)
			m.rotated(ctx, old, s.Owner)
			return nil
		}
	}
	return ErrSessionChanged
}

// rotated notes that old was the owner's id until now: a request that
// presents it a moment later (a logoff sent alongside this change) can
// still find whose session it was.
func (m *Sessions) rotated(ctx context.Context, old, owner string) {
	_ = m.store.Set(ctx, keyRotated+old, []byte(owner), rotatedGrace)
}

// migrate moves a session the previous version stored (its id's record
// and the owner's index) to the owner's record. Claiming the record, then
// taking the old one, makes it a rotation like any other: of several
// requests that change the session at once, exactly one wins.
func (m *Sessions) migrate(ctx context.Context, s *Session, old string) error {
	key := keyRecord + s.Owner
	raw, ttl, err := m.encode(s)
	if err != nil {
		return err
	}
	ok, err := m.store.SetIfAbsent(ctx, key, raw, ttl)
	if err != nil {
		return fmt.Errorf("saving session: %w", err)
	}
	if !ok {
		return ErrSessionChanged // moved by a concurrent request
	}
	if _, err := m.store.Take(ctx, keySession+old); err != nil {
		// Rotated or ended meanwhile (by an instance of the previous
		// version, or an EndOwner): the claim is undone. No cookie names
		// the claimed record yet, so nothing can have cached it.
		_ = m.store.Delete(ctx, key)
		if errors.Is(err, ErrNotFound) {
			return ErrSessionChanged
		}
		return fmt.Errorf("rotating session: %w", err)
	}
	m.ended(keySession + old)
	m.rotated(ctx, old, s.Owner)
	_ = m.store.Delete(ctx, keyOwner+s.Owner)
	return nil
}

// End deletes the owner's session, whatever id it holds now, and clears
// the cookie. It reports a store that could not delete it: the session
// then still holds on other instances.
func (m *Sessions) End(w http.ResponseWriter, r *http.Request, s *Session) error {
	var err error
	if s != nil {
		err = m.EndOwner(r.Context(), s.Owner)
		if s.legacy() {
			// The presented id's record, even if the owner's index went.
			err = errors.Join(err, m.forget(r.Context(), s.record))
		}
	}
	http.SetCookie(w, sessions.NewCookie(m.CookieName(r), "", m.options(r, -1)))
	return err
}

// endSuperseded ends a session that a sign-in as someone else replaces,
// only if it is still the one the request read: ErrSessionChanged when a
// concurrent request rotated or ended it first.
func (m *Sessions) endSuperseded(ctx context.Context, s *Session) error {
	if s.legacy() {
		if _, err := m.store.Take(ctx, s.record); errors.Is(err, ErrNotFound) {
			return ErrSessionChanged
		} else if err != nil {
			return fmt.Errorf("%w: ending session: %v", ErrStoreUnavailable, err)
		}
		m.ended(s.record)
	} else {
		_, stored, err := m.read(ctx, keyRecord+s.Owner)
		if errors.Is(err, ErrNotFound) || (err == nil && !sameID(stored.ID, s.ID)) {
			return ErrSessionChanged
		}
		if err != nil {
			return err
		}
	}
	return m.EndOwner(ctx, s.Owner)
}

// RotatedOwner returns the owner of the session whose id the request's
// cookie held until a moment ago ("" when it names none): only an id that
// was rotated away within rotatedGrace, and only for the owner the cookie
// names.
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
	owner, id, ok := parseCookie(raw)
	if !ok {
		return ""
	}
	was, err := m.store.Get(r.Context(), keyRotated+id)
	if err != nil || (owner != "" && string(was) != owner) {
		return ""
	}
	return string(was)
}

// EndOwner ends the owner's session: its record, and an index and record
// the previous version stored.
func (m *Sessions) EndOwner(ctx context.Context, owner string) error {
	if owner == "" {
		return nil
	}
	// The previous version's first: a migration running meanwhile then
	// either fails to take the old record, or has claimed the owner's
	// record before it is deleted below.
	var errs error
	raw, err := m.store.Take(ctx, keyOwner+owner)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		errs = fmt.Errorf("%w: ending session: %v", ErrStoreUnavailable, err)
	default:
		if err := m.forget(ctx, keySession+string(raw)); err != nil {
			// The session record is still there: put its index back, so
			// that ending it again (a retried revocation) finds it.
			_, _ = m.store.SetIfAbsent(ctx, keyOwner+owner, raw, m.cfg.Lifetime)
			errs = err
		}
	}
	return errors.Join(errs, m.forget(ctx, keyRecord+owner))
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
