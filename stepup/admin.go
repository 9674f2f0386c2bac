package stepup

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// What an operator sees and does through the admin API: the sessions in
// the store, ending them, and a user's credentials. A session is named by
// its owner handle (the `session` of audit records), never by its id or
// cookie, which would let whoever reads the answer use the session.

// EventRevoke is the audit event of a session ended by an administrator.
const EventRevoke = "revoke"

// maxListedSessions bounds a listing (and the work it costs the store).
const maxListedSessions = 100_000

// LevelInfo is one tier a session holds.
type LevelInfo struct {
	Tier    string    `json:"tier"`
	Method  string    `json:"method,omitempty"`
	At      time.Time `json:"at"`
	Expires time.Time `json:"expires"`
}

// SessionInfo describes a signed-in session without anything that would
// let a reader use it.
type SessionInfo struct {
	// Handle is the session's owner handle: stable across id rotations,
	// the `session` field of its audit records.
	Handle   string      `json:"handle"`
	User     string      `json:"user"`
	Roles    []string    `json:"roles,omitempty"`
	External bool        `json:"external,omitempty"`
	Tiers    []LevelInfo `json:"tiers"`
	Created  time.Time   `json:"created"`
	LastSeen time.Time   `json:"last_seen"`
}

// ErrNoSession is returned for a handle that names no live session.
var ErrNoSession = errors.New("no such session")

// sessionOf reads the live session of an owner handle.
func (e *Engine) sessionOf(ctx context.Context, owner string) (*Session, error) {
	if owner == "" || len(owner) > 64 || strings.ContainsAny(owner, ":/ ") {
		return nil, ErrNoSession
	}
	raw, err := e.Store.Get(ctx, keyRecord+owner)
	if err == nil {
		s := new(Session)
		if err := decodeSession(raw, s); err != nil || s.Owner != owner {
			return nil, fmt.Errorf("decoding session: %w", errWire)
		}
		s.record = keyRecord + owner
		return s, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	// A session the previous version stored: the owner's index names its
	// id's record.
	id, err := e.Store.Get(ctx, keyOwner+owner)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, err
	}
	raw, err = e.Store.Get(ctx, keySession+string(id))
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, err
	}
	s := new(Session)
	if err := decodeSession(raw, s); err != nil {
		return nil, fmt.Errorf("decoding session: %w", err)
	}
	if s.Owner != owner {
		// An index naming another owner's session (a store written by
		// hand, or corrupted): that session is not this handle's to end.
		return nil, ErrNoSession
	}
	s.ID, s.record = string(id), keySession+string(id)
	return s, nil
}

// sessionOwners lists the owners of the sessions in the store: those of
// the owners' records, and those the previous version indexed.
func (e *Engine) sessionOwners(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, prefix := range []string{keyRecord, keyOwner} {
		keys, err := e.Store.Keys(ctx, prefix, maxListedSessions)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if owner := strings.TrimPrefix(k, prefix); !seen[owner] {
				seen[owner] = true
				out = append(out, owner)
			}
		}
	}
	return out, nil
}

// CountSessions counts the sessions in a store, signed in or not (at most
// limit of each layout; one moving to the new layout may count twice for a
// moment).
func CountSessions(ctx context.Context, st Store, limit int) (int, error) {
	n := 0
	for _, prefix := range []string{keyRecord, keyOwner} {
		keys, err := st.Keys(ctx, prefix, limit)
		if err != nil {
			return 0, err
		}
		n += len(keys)
	}
	return n, nil
}

// info describes a session as it stands now: lapsed levels are left out,
// as the next request would drop them.
func (e *Engine) info(s *Session, now time.Time) (SessionInfo, bool) {
	stack, _ := s.Stack.Reconcile(e.Hierarchy, now)
	if s.User == "" || len(stack) == 0 {
		return SessionInfo{}, false
	}
	out := SessionInfo{Handle: s.Owner, User: s.User, Roles: s.Roles, External: s.External, Created: s.Created, LastSeen: s.Seen}
	for _, l := range stack {
		t, _ := e.Hierarchy.Get(l.Tier)
		out.Tiers = append(out.Tiers, LevelInfo{Tier: l.Tier, Method: l.Method, At: l.At, Expires: l.At.Add(t.MaxAge)})
	}
	return out, true
}

// ListSessions returns the signed-in sessions (of one user, when user is
// not empty), most recently seen first. Anonymous sessions (a visitor's
// kept request before signing in) are not listed.
func (e *Engine) ListSessions(ctx context.Context, user string) ([]SessionInfo, error) {
	owners, err := e.sessionOwners(ctx)
	if err != nil {
		return nil, err
	}
	now := e.Now()
	out := []SessionInfo{}
	for _, owner := range owners {
		s, err := e.sessionOf(ctx, owner)
		if errors.Is(err, ErrNoSession) {
			continue // ended meanwhile
		}
		if err != nil {
			return nil, err
		}
		if user != "" && s.User != user {
			continue
		}
		if si, ok := e.info(s, now); ok {
			out = append(out, si)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastSeen.Equal(out[j].LastSeen) {
			return out[i].LastSeen.After(out[j].LastSeen)
		}
		return out[i].Handle < out[j].Handle
	})
	return out, nil
}

// SessionByHandle describes one live session.
func (e *Engine) SessionByHandle(ctx context.Context, handle string) (*Session, error) {
	return e.sessionOf(ctx, handle)
}

// RevokeSession ends the session of a handle: its current id is deleted
// from the store, so the browser that holds it is anonymous at its next
// request, on every instance that shares the store. by names who asked
// (audited).
func (e *Engine) RevokeSession(ctx context.Context, handle, by string) (SessionInfo, error) {
	s, err := e.sessionOf(ctx, handle)
	if err != nil {
		return SessionInfo{}, err
	}
	si, _ := e.info(s, e.Now())
	si.Handle, si.User = s.Owner, s.User
	if err := e.Sessions.EndOwner(ctx, s.Owner); err != nil {
		// Not ended: say so, so that the operator does not believe a
		// stolen session is gone.
		e.Audit.Log(Record{Event: EventRevoke, User: s.User, Session: s.Owner, Result: "failed", Reason: "store_unavailable", Approver: by})
		return si, fmt.Errorf("session %s not ended: %w", s.Owner, err)
	}
	e.Audit.Log(Record{Event: EventRevoke, User: s.User, Session: s.Owner, Result: "session_ended", Reason: "revoked_by_admin",
		Tiers: strings.Join(s.Stack.Names(), ","), Approver: by})
	return si, nil
}

// RevokeUser ends every session of a user and returns those it ended.
func (e *Engine) RevokeUser(ctx context.Context, user, by string) ([]SessionInfo, error) {
	if user == "" {
		return nil, errors.New("no user given")
	}
	owners, err := e.sessionOwners(ctx)
	if err != nil {
		return nil, err
	}
	out := []SessionInfo{}
	var failed []error
	for _, owner := range owners {
		s, err := e.sessionOf(ctx, owner)
		if errors.Is(err, ErrNoSession) {
			continue // ended meanwhile
		}
		if err != nil {
			failed = append(failed, fmt.Errorf("session %s not read: %w", owner, err))
			continue
		}
		if s.User != user && s.LastUser != user {
			continue
		}
		si, err := e.RevokeSession(ctx, s.Owner, by)
		if errors.Is(err, ErrNoSession) {
			continue
		}
		if err != nil {
			failed = append(failed, err)
			continue
		}
		out = append(out, si)
	}
	if len(failed) > 0 {
		// Every session that could not be ended is named: the operator
		// must not believe the user is signed out everywhere.
		return out, fmt.Errorf("%w: %w", ErrStoreUnavailable, errors.Join(failed...))
	}
	return out, nil
}

// CredentialResetter is implemented by methods whose per-user credentials
// an administrator can remove (a lost phone, a lost key): every one the
// user enrolled. Credentials given in the configuration stay.
type CredentialResetter interface {
	ResetCredentials(ctx context.Context, user string) (removed int, err error)
}

// Provisioner is implemented by methods whose credential may come from the
// configuration (a TOTP secret given for the user), which no reset removes.
type Provisioner interface {
	Provisioned(user string) bool
}

// MethodCredentials is one method of a tier and the user's credentials
// for it: names and dates, never a secret.
type MethodCredentials struct {
	Method string `json:"method"`
	// Kind names the credential for people ("security key").
	Kind string `json:"kind,omitempty"`
	// Enrolls: the method keeps per-user credentials (false: a password,
	// RADIUS, whose credential lives elsewhere).
	Enrolls bool `json:"enrolls"`
	// Enrolled: the user has a usable credential.
	Enrolled bool `json:"enrolled"`
	// SelfEnroll: users may set one up themselves.
	SelfEnroll bool `json:"self_enroll"`
	// Provisioned: the credential is given in the configuration.
	Provisioned bool                `json:"provisioned,omitempty"`
	Credentials []CredentialSummary `json:"credentials,omitempty"`
}

// CredentialSummary is one of several credentials (a security key): its
// name and dates.
type CredentialSummary struct {
	Name     string    `json:"name"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used,omitempty"`
}

// TierCredentials is a user's credentials for one tier.
type TierCredentials struct {
	Tier    string              `json:"tier"`
	Base    string              `json:"base,omitempty"`
	Methods []MethodCredentials `json:"methods"`
}

// UserCredentials lists a user's credentials per tier, in hierarchy order.
func (e *Engine) UserCredentials(ctx context.Context, user string) ([]TierCredentials, error) {
	var out []TierCredentials
	for _, name := range e.Hierarchy.Names() {
		t, _ := e.Hierarchy.Get(name)
		tc := TierCredentials{Tier: name, Base: t.Base}
		for _, m := range e.Alternatives[name] {
			mc := MethodCredentials{Method: m.Name()}
			if n, ok := m.(CredentialNamer); ok {
				mc.Kind = n.CredentialName()
			}
			if en, ok := m.(Enroller); ok {
				mc.Enrolls, mc.SelfEnroll = true, en.SelfEnroll()
				enrolled, err := en.Enrolled(ctx, user)
				if err != nil {
					return nil, fmt.Errorf("tier %q, method %s: %w", name, m.Name(), err)
				}
				mc.Enrolled = enrolled
			}
			if p, ok := m.(Provisioner); ok {
				mc.Provisioned = p.Provisioned(user)
			}
			if k, ok := m.(CredentialKeeper); ok {
				list, err := k.CredentialList(ctx, user)
				if err != nil {
					return nil, fmt.Errorf("tier %q, method %s: %w", name, m.Name(), err)
				}
				for _, c := range list {
					mc.Credentials = append(mc.Credentials, CredentialSummary{Name: c.Name, Created: c.Created, LastUsed: c.LastUsed})
				}
			}
			tc.Methods = append(tc.Methods, mc)
		}
		out = append(out, tc)
	}
	return out, nil
}

// ResetResult says what a reset removed.
type ResetResult struct {
	Tier string `json:"tier"`
	// Removed counts credentials removed, per method.
	Removed map[string]int `json:"removed"`
	// Provisioned names the methods whose credential comes from the
	// configuration and stays.
	Provisioned []string `json:"provisioned,omitempty"`
	// AlsoAffects names the other tiers that use a reset method: a
	// method's credential is the user's, not one tier's.
	AlsoAffects []string `json:"also_affects,omitempty"`
}

// ErrNotResettable is returned for a tier none of whose methods keeps
// credentials an administrator can remove.
var ErrNotResettable = errors.New("no method of this tier keeps credentials that can be reset")

// ResetCredentials removes the user's credentials for every method of the
// tier (what a user removes on their session page, for all of them at
// once), audited and recorded in the user's credential log. The user
// then sets up a new one as on first use, where the method lets them, or
// with an enrolment link.
func (e *Engine) ResetCredentials(ctx context.Context, user, tier, by string) (*ResetResult, error) {
	if !e.Hierarchy.Has(tier) {
		return nil, fmt.Errorf("unknown tier %q", tier)
	}
	res := &ResetResult{Tier: tier, Removed: map[string]int{}}
	resettable := false
	for _, m := range e.Alternatives[tier] {
		rs, ok := m.(CredentialResetter)
		if !ok {
			continue
		}
		resettable = true
		n, err := rs.ResetCredentials(ctx, user)
		if err != nil {
			return nil, fmt.Errorf("method %s: %w", m.Name(), err)
		}
		res.Removed[m.Name()] = n
		if p, ok := m.(Provisioner); ok && p.Provisioned(user) {
			res.Provisioned = append(res.Provisioned, m.Name())
		}
		if n > 0 {
			e.CredentialChanged(ctx, func(rec Record) {
				rec.Reason, rec.Approver = "reset_by_admin", by
				e.Audit.Log(rec)
			}, user, ChangeRemove, tier, m.Name())
		}
		for _, other := range e.Hierarchy.Names() {
			if alt, ok := e.Method(other, m.Name()); ok && other != tier && alt.Name() == m.Name() {
				res.AlsoAffects = append(res.AlsoAffects, other)
			}
		}
	}
	if !resettable {
		return nil, ErrNotResettable
	}
	return res, nil
}
