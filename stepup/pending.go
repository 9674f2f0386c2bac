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
}

// PendingRequest is a request that was missing a tier, kept server-side so
// it can be replayed, body intact, once the user has stepped up.
type PendingRequest struct {
	ID          string    `json:"id"`
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
	ErrPendingNotFound = errors.New("no such pending request")
)

func pendingKey(owner, id string) string { return keyPending + owner + ":" + id }

// Keep reads the request's body (up to the limit) and stores the request
// for the session owner. The body is consumed.
func (e *Engine) Keep(ctx context.Context, owner string, r *http.Request, m *Missing) (*PendingRequest, error) {
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
	n, err := e.Store.Incr(ctx, keyPending+owner+"#count", e.Pending.TTL)
	if err != nil {
		return nil, fmt.Errorf("counting pending requests: %w", err)
	}
	if n > int64(e.Pending.PerSession) {
		return nil, ErrTooManyPending
	}
	p := &PendingRequest{
		ID: randomToken(18), Method: r.Method, URI: r.URL.RequestURI(),
		ContentType: r.Header.Get("Content-Type"), Body: body,
		Tier: m.Tier, Set: m.Set, Created: e.Now(), Fresh: m.PerRequest,
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if err := e.Store.Set(ctx, pendingKey(owner, p.ID), raw, e.Pending.TTL); err != nil {
		return nil, fmt.Errorf("keeping request: %w", err)
	}
	return p, nil
}

// PeekPending returns a kept request of the owner without consuming it.
func (e *Engine) PeekPending(ctx context.Context, owner, id string) (*PendingRequest, error) {
	raw, err := e.Store.Get(ctx, pendingKey(owner, id))
	return decodePending(raw, err)
}

// TakePending returns a kept request and removes it: it is replayed once.
func (e *Engine) TakePending(ctx context.Context, owner, id string) (*PendingRequest, error) {
	raw, err := e.Store.Take(ctx, pendingKey(owner, id))
	return decodePending(raw, err)
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
func (e *Engine) MarkSteppedUp(ctx context.Context, owner, id string, at time.Time) error {
	p, err := e.PeekPending(ctx, owner, id)
	if err != nil {
		return err
	}
	p.SteppedUp = at
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	ttl := p.Created.Add(e.Pending.TTL).Sub(e.Now())
	if ttl <= 0 {
		return ErrPendingNotFound
	}
	return e.Store.Set(ctx, pendingKey(owner, id), raw, ttl)
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
// one-time grant for exactly that method and URI.

func grantKey(owner, method, uri string) string {
	sum := sha256.Sum256([]byte(method + " " + uri))
	return keyGrant + owner + ":" + hex.EncodeToString(sum[:16])
}

// Grant records that a step-up performed at since was for method+uri.
func (e *Engine) Grant(ctx context.Context, owner, method, uri string, since time.Time) error {
	raw, _ := since.MarshalText()
	return e.Store.Set(ctx, grantKey(owner, method, uri), raw, e.Pending.TTL)
}

// GrantSince returns the time of a grant for the request, if any.
func (e *Engine) GrantSince(ctx context.Context, owner string, r *http.Request) time.Time {
	raw, err := e.Store.Get(ctx, grantKey(owner, r.Method, r.URL.RequestURI()))
	var t time.Time
	if err == nil {
		_ = t.UnmarshalText(raw)
	}
	return t
}

// UseGrant consumes the grant for the request.
func (e *Engine) UseGrant(ctx context.Context, owner string, r *http.Request) {
	_ = e.Store.Delete(ctx, grantKey(owner, r.Method, r.URL.RequestURI()))
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// Rounds of multi-round methods are kept server-side; the form carries only
// a random id, so a client can neither forge nor replay a method's state.

func roundKey(owner, id string) string { return keyRound + owner + ":" + id }

// KeepRound stores the state of a challenged round and returns its id.
func (e *Engine) KeepRound(ctx context.Context, owner string, rd *Round) (string, error) {
	if rd == nil {
		return "", errors.New("challenged outcome without a round")
	}
	ttl := rd.Expires.Sub(e.Now())
	if rd.Expires.IsZero() || ttl > e.Pending.TTL {
		ttl = e.Pending.TTL
		rd.Expires = e.Now().Add(ttl)
	}
	raw, err := json.Marshal(rd)
	if err != nil {
		return "", err
	}
	id := randomToken(18)
	return id, e.Store.Set(ctx, roundKey(owner, id), raw, ttl)
}

// TakeRound returns a kept round once; an expired round is gone.
func (e *Engine) TakeRound(ctx context.Context, owner, id string) (*Round, error) {
	raw, err := e.Store.Take(ctx, roundKey(owner, id))
	if err != nil {
		return nil, err
	}
	rd := new(Round)
	if err := json.Unmarshal(raw, rd); err != nil {
		return nil, err
	}
	if !e.Now().Before(rd.Expires) {
		return nil, ErrNotFound
	}
	return rd, nil
}
