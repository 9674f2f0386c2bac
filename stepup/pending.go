package stepup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// PendingLimits bounds the requests kept across a step-up.
type PendingLimits struct {
	// MaxBody is the largest request body kept, in bytes.
	MaxBody int64
	// PerSession is how many requests one session may keep at once.
	PerSession int
	// TTL is how long a kept request waits for the step-up.
	TTL time.Duration
	// PerClient is how many requests one client IP may have kept per TTL.
	PerClient int
	// MaxTotal bounds the bytes of request bodies kept per TTL window by
	// all clients together, so that many clients cannot fill memory.
	MaxTotal int64
}

func (l *PendingLimits) defaults() {
	if l.MaxBody <= 0 {
		l.MaxBody = 64 << 10
	}
	if l.PerSession <= 0 {
		l.PerSession = 5
	}
	if l.TTL <= 0 {
		l.TTL = 10 * time.Minute
	}
	if l.PerClient <= 0 {
		l.PerClient = 50
	}
	if l.MaxTotal <= 0 {
		l.MaxTotal = 64 << 20
	}
}

// PendingRequest is a request that was missing a tier, kept server-side so
// it can be replayed, body intact, once the user has stepped up.
type PendingRequest struct {
	ID string `json:"id"`
	// User is who kept it ("" for a visitor not yet signed in, whose
	// request goes to whoever signs in on the walk it started). Nobody else
	// can see, send or discard it.
	User        string    `json:"user,omitempty"`
	Slot        int       `json:"slot"`
	Method      string    `json:"m"`
	URI         string    `json:"u"`
	ContentType string    `json:"ct,omitempty"`
	Body        []byte    `json:"b,omitempty"`
	Tier        string    `json:"t"`
	Set         string    `json:"s"`
	Created     time.Time `json:"c"`
	// Fresh: the set requires a step-up performed for this very request.
	Fresh bool `json:"f,omitempty"`
	// SteppedUp is when the step-up to Tier performed for this request
	// completed (zero until then).
	SteppedUp time.Time `json:"su,omitempty"`
}

// Errors of keeping a request.
var (
	ErrBodyTooLarge    = errors.New("request body too large to keep")
	ErrTooManyPending  = errors.New("too many requests waiting for step-up")
	ErrKeptBytesFull   = errors.New("too much request data waiting for step-up")
	ErrPendingNotFound = errors.New("no such pending request")
)

func pendingKey(owner, id string) string { return keyPending + owner + ":" + id }

// slotKey is one of the PerSession places an owner's kept request holds
// while it waits: what counts is what is waiting, not what was ever kept.
func slotKey(owner string, i int) string { return keyPending + owner + "#" + strconv.Itoa(i) }

// totalKey counts the body bytes kept in one TTL window by everyone: a kept
// request lives at most one TTL, so at most two windows' worth is held.
func (e *Engine) totalKey(now time.Time) string {
	return keyPending + "bytes#" + strconv.FormatInt(now.UnixNano()/int64(e.Pending.TTL), 10)
}

// Keep reads the request's body (up to the limit) and stores the request
// for the session's owner and user. The body is consumed.
func (e *Engine) Keep(ctx context.Context, s *Session, r *http.Request, m *Missing) (*PendingRequest, error) {
	var body []byte
	var err error
	if r.Body != nil && r.Body != http.NoBody {
		body, err = io.ReadAll(io.LimitReader(r.Body, e.Pending.MaxBody+1))
		if err != nil {
			return nil, fmt.Errorf("reading request body: %w", err)
		}
		if int64(len(body)) > e.Pending.MaxBody {
			return nil, ErrBodyTooLarge
		}
	}
	now := e.Now()
	if len(body) > 0 {
		n, err := e.Store.Add(ctx, e.totalKey(now), int64(len(body)), 2*e.Pending.TTL)
		if err != nil {
			return nil, fmt.Errorf("counting kept bytes: %w", err)
		}
		if n > e.Pending.MaxTotal {
			return nil, ErrKeptBytesFull
		}
	}
	p := &PendingRequest{
		ID: randomToken(18), User: s.User, Method: r.Method, URI: r.URL.RequestURI(),
		ContentType: r.Header.Get("Content-Type"), Body: body,
		Tier: m.Tier, Set: m.Set, Created: now, Fresh: m.PerRequest,
	}
	if p.Slot, err = e.claimSlot(ctx, s.Owner, p.ID, e.Pending.TTL); err != nil {
		return nil, err
	}
	if err := e.storePending(ctx, s.Owner, p, e.Pending.TTL); err != nil {
		return nil, err
	}
	return p, nil
}

// claimSlot takes a free waiting place of the owner, atomically.
func (e *Engine) claimSlot(ctx context.Context, owner, id string, ttl time.Duration) (int, error) {
	for i := 0; i < e.Pending.PerSession; i++ {
		ok, err := e.Store.SetIfAbsent(ctx, slotKey(owner, i), []byte(id), ttl)
		if err != nil {
			return 0, fmt.Errorf("counting pending requests: %w", err)
		}
		if ok {
			return i, nil
		}
	}
	return 0, ErrTooManyPending
}

func (e *Engine) storePending(ctx context.Context, owner string, p *PendingRequest, ttl time.Duration) error {
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := e.Store.Set(ctx, pendingKey(owner, p.ID), raw, ttl); err != nil {
		return fmt.Errorf("keeping request: %w", err)
	}
	return nil
}

// mayUse reports whether the session may see and send a kept request: only
// the user who kept it (a visitor's request, only while still a visitor on
// that browser: signing in adopts it, see adoptPending). Sending it still
// goes through the decision, so a visitor's request passes only once its
// user has stepped up.
func (p *PendingRequest) mayUse(s *Session) bool {
	return s != nil && p.User == s.User
}

// PeekPending returns a kept request of the session without consuming it.
func (e *Engine) PeekPending(ctx context.Context, s *Session, id string) (*PendingRequest, error) {
	if s == nil {
		return nil, ErrPendingNotFound
	}
	raw, err := e.Store.Get(ctx, pendingKey(s.Owner, id))
	p, err := decodePending(raw, err)
	if err != nil {
		return nil, err
	}
	if !p.mayUse(s) {
		return nil, ErrPendingNotFound
	}
	return p, nil
}

// PendingWaiting reports whether a kept request waits under the session's
// owner, whoever kept it: a sign-in walk carries it on, and only the user
// who kept it will see it (PeekPending).
func (e *Engine) PendingWaiting(ctx context.Context, s *Session, id string) bool {
	if s == nil || id == "" {
		return false
	}
	_, err := e.Store.Get(ctx, pendingKey(s.Owner, id))
	return err == nil
}

// TakePending returns a kept request and removes it: it is replayed (or
// discarded) once, and only by the user who kept it.
func (e *Engine) TakePending(ctx context.Context, s *Session, id string) (*PendingRequest, error) {
	if s == nil {
		return nil, ErrPendingNotFound
	}
	if _, err := e.PeekPending(ctx, s, id); err != nil {
		return nil, err
	}
	raw, err := e.Store.Take(ctx, pendingKey(s.Owner, id))
	p, err := decodePending(raw, err)
	if err != nil {
		return nil, err
	}
	e.releaseSlot(ctx, s.Owner, p)
	return p, nil
}

func (e *Engine) releaseSlot(ctx context.Context, owner string, p *PendingRequest) {
	if raw, err := e.Store.Get(ctx, slotKey(owner, p.Slot)); err == nil && string(raw) == p.ID {
		_ = e.Store.Delete(ctx, slotKey(owner, p.Slot))
	}
}

// adoptPending moves the request a sign-in walk is for from the browser's
// previous owner to the new one: a visitor's request (kept before anyone
// signed in) goes to whoever signs in on its walk, a user's own request
// back to that user; anyone else's stays where it is and expires.
func (e *Engine) adoptPending(ctx context.Context, from, to, id, user string) {
	raw, err := e.Store.Get(ctx, pendingKey(from, id))
	p, err := decodePending(raw, err)
	if err != nil || (p.User != "" && p.User != user) {
		return
	}
	ttl := p.Created.Add(e.Pending.TTL).Sub(e.Now())
	if ttl <= 0 {
		return
	}
	if _, err = e.Store.Take(ctx, pendingKey(from, id)); err != nil {
		return
	}
	e.releaseSlot(ctx, from, p)
	p.User = user
	if p.Slot, err = e.claimSlot(ctx, to, p.ID, ttl); err != nil {
		return
	}
	_ = e.storePending(ctx, to, p, ttl)
}

func decodePending(raw []byte, err error) (*PendingRequest, error) {
	if errors.Is(err, ErrNotFound) {
		return nil, ErrPendingNotFound
	}
	if err != nil {
		return nil, err
	}
	p := new(PendingRequest)
	if err := json.Unmarshal(raw, p); err != nil {
		return nil, fmt.Errorf("decoding pending request: %w", err)
	}
	return p, nil
}

// MarkSteppedUp records that the step-up performed for a kept request
// completed at at.
func (e *Engine) MarkSteppedUp(ctx context.Context, s *Session, id string, at time.Time) error {
	p, err := e.PeekPending(ctx, s, id)
	if err != nil {
		return err
	}
	p.SteppedUp = at
	ttl := p.Created.Add(e.Pending.TTL).Sub(e.Now())
	if ttl <= 0 {
		return ErrPendingNotFound
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	// Only while it is still waiting: a request sent meanwhile stays sent.
	if ok, err := e.Store.Replace(ctx, pendingKey(s.Owner, id), raw, ttl); err != nil || !ok {
		return ErrPendingNotFound
	}
	return nil
}

// Replay turns the request that confirmed a kept request into the kept
// request itself, in place, as Caddy's rewrite does: placeholders and
// upstream handlers hold this very *http.Request. Cookies, connection and
// client address stay those of the confirming request.
func (p *PendingRequest) Replay(r *http.Request) error {
	u, err := r.URL.Parse(p.URI)
	if err != nil {
		return err
	}
	r.Method = p.Method
	r.URL = u
	r.RequestURI = p.URI
	// The kept request is what was decided on: no method override of the
	// confirming request may come along.
	for _, h := range overrideHeaders {
		r.Header.Del(h)
	}
	r.Header.Del("Content-Type")
	if p.ContentType != "" {
		r.Header.Set("Content-Type", p.ContentType)
	}
	r.Body = io.NopCloser(bytesReader(p.Body))
	r.ContentLength = int64(len(p.Body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytesReader(p.Body)), nil }
	r.Header.Del("Content-Length")
	r.Form, r.PostForm, r.MultipartForm = nil, nil, nil
	return nil
}

// Grants: a per-request step-up for a navigation (GET) is remembered as a
// one-time grant for exactly that method and URI, for that user.

func grantKey(owner, method, uri string) string {
	sum := sha256.Sum256([]byte(method + " " + uri))
	return keyGrant + owner + ":" + hex.EncodeToString(sum[:16])
}

type grant struct {
	User  string    `json:"u"`
	Since time.Time `json:"t"`
}

// Grant records that a step-up performed at since was for method+uri.
func (e *Engine) Grant(ctx context.Context, s *Session, method, uri string, since time.Time) error {
	raw, err := json.Marshal(grant{User: s.User, Since: since})
	if err != nil {
		return err
	}
	return e.Store.Set(ctx, grantKey(s.Owner, method, uri), raw, e.Pending.TTL)
}

// TakeGrant consumes the grant for the request, atomically: of several
// requests racing for one grant, one gets it. It returns when the step-up
// it records was performed (zero when there is none for this user).
func (e *Engine) TakeGrant(ctx context.Context, s *Session, r *http.Request) time.Time {
	raw, err := e.Store.Take(ctx, grantKey(s.Owner, r.Method, r.URL.RequestURI()))
	var g grant
	if err != nil || json.Unmarshal(raw, &g) != nil || g.User == "" || g.User != s.User {
		return time.Time{}
	}
	return g.Since
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// Rounds of multi-round methods are kept server-side; the form carries only
// a random id, so a client can neither forge nor replay a method's state.

func roundKey(owner, id string) string { return keyRound + owner + ":" + id }

// KeepRound stores the state of a challenged round for the session's user
// and returns its id.
func (e *Engine) KeepRound(ctx context.Context, s *Session, rd *Round) (string, error) {
	if rd == nil {
		return "", errors.New("challenged outcome without a round")
	}
	ttl := rd.Expires.Sub(e.Now())
	if rd.Expires.IsZero() || ttl > e.Pending.TTL {
		ttl = e.Pending.TTL
		rd.Expires = e.Now().Add(ttl)
	}
	rd.User = s.User
	raw, err := json.Marshal(rd)
	if err != nil {
		return "", err
	}
	id := randomToken(18)
	return id, e.Store.Set(ctx, roundKey(s.Owner, id), raw, ttl)
}

// TakeRound returns a kept round once, to the user it was kept for; an
// expired round is gone.
func (e *Engine) TakeRound(ctx context.Context, s *Session, id string) (*Round, error) {
	raw, err := e.Store.Take(ctx, roundKey(s.Owner, id))
	if err != nil {
		return nil, err
	}
	rd := new(Round)
	if err := json.Unmarshal(raw, rd); err != nil {
		return nil, err
	}
	if !e.Now().Before(rd.Expires) || rd.User != s.User {
		return nil, ErrNotFound
	}
	return rd, nil
}
