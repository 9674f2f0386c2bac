package approval

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
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// Status of an approval request.
const (
	StatusPending  = "pending"
	StatusApproved = "approved"
	StatusDenied   = "denied"
	StatusExpired  = "expired"
	StatusUsed     = "used"
)

// Request is one action waiting for, or holding, an approval.
type Request struct {
	ID     string `json:"id"`
	Policy string `json:"policy"`
	Set    string `json:"set"`
	Risk   string `json:"risk,omitempty"`
	// Tier the set requires: approvers hold it (or the policy's
	// approver_tier) to decide.
	Tier string `json:"tier"`
	// User is the requester; Binding the session (or, for an identity
	// from earlier in the route, the user) the once-grant is bound to.
	User    string `json:"user"`
	Binding string `json:"binding"`
	// The action itself.
	Method      string `json:"method"`
	URI         string `json:"uri"`
	Host        string `json:"host"`
	ContentType string `json:"ct,omitempty"`
	Body        []byte `json:"body,omitempty"`
	Digest      string `json:"digest"`
	ClientIP    string `json:"client_ip"`
	// ReadAs are the other methods the application may read the request
	// as (override headers and fields), shown to approvers.
	ReadAs []string `json:"read_as,omitempty"`
	// Browser: the action was kept for a browser, which confirms and
	// replays it; an API client sends it again instead.
	Browser bool `json:"browser,omitempty"`
	// Link is the approval page's absolute URL (for notifications).
	Link          string            `json:"link"`
	Justification string            `json:"justification,omitempty"`
	Conditions    []ConditionResult `json:"conditions,omitempty"`
	Created       time.Time         `json:"created"`
	Expires       time.Time         `json:"expires"`
	Status        string            `json:"status"`
	Votes         []Vote            `json:"votes,omitempty"`
	Decided       time.Time         `json:"decided,omitempty"`
	// UseBy bounds an approved once-grant; GrantUntil a duration grant.
	UseBy      time.Time `json:"use_by,omitempty"`
	GrantUntil time.Time `json:"grant_until,omitempty"`
	// BreakGlass is the requester's reason when they approved it
	// themselves.
	BreakGlass string       `json:"break_glass,omitempty"`
	Radius     *RadiusState `json:"radius,omitempty"`
}

// Vote is one decision on a request.
type Vote struct {
	User     string    `json:"user"`
	Decision string    `json:"decision"` // approve or deny
	Comment  string    `json:"comment,omitempty"`
	Via      string    `json:"via"` // page, admin, radius, auto, break_glass
	At       time.Time `json:"at"`
}

// RadiusState is the progress of a RADIUS approval.
type RadiusState struct {
	// Status: asking, challenge, unavailable, answered.
	Status string `json:"status"`
	Prompt string `json:"prompt,omitempty"`
	State  []byte `json:"state,omitempty"`
	Reply  string `json:"reply,omitempty"`
	Class  string `json:"class,omitempty"`
}

// Waiting reports whether the request still waits for a decision.
func (q *Request) Waiting() bool { return q.Status == StatusPending }

// NeedsJustification reports whether approvers cannot decide yet.
func (q *Request) NeedsJustification(p *Policy) bool {
	return p.Justification == "required" && q.Justification == "" && q.Waiting()
}

// Approvals counts the approve votes.
func (q *Request) Approvals() int {
	n := 0
	for _, v := range q.Votes {
		if v.Decision == "approve" {
			n++
		}
	}
	return n
}

// VoteOf returns the user's vote, if any.
func (q *Request) VoteOf(user string) (Vote, bool) {
	for _, v := range q.Votes {
		if v.User == user {
			return v, true
		}
	}
	return Vote{}, false
}

// Kept is the action as a kept request, to show its form fields or replay it.
func (q *Request) Kept() *stepup.PendingRequest {
	return &stepup.PendingRequest{ID: q.ID, User: q.User, Method: q.Method, URI: q.URI, ContentType: q.ContentType, Body: q.Body, Set: q.Set, Tier: q.Tier, Created: q.Created}
}

// Errors of deciding and using approvals.
var (
	ErrNotFound         = errors.New("no such approval")
	ErrNotApprover      = errors.New("not an approver of this request")
	ErrSelfApproval     = errors.New("the requester cannot approve their own action")
	ErrAlreadyDecided   = errors.New("already decided by this approver")
	ErrNotPending       = errors.New("the request is no longer pending")
	ErrBadDecision      = errors.New("a decision is approve or deny")
	ErrApproverTier     = errors.New("the approver tier is not held")
	ErrJustification    = errors.New("a justification is required")
	ErrBreakGlassDenied = errors.New("break glass is not allowed by this policy")
	ErrCooldown         = errors.New("break glass was used recently")
	ErrReasonRequired   = errors.New("a reason is required")
	ErrBusy             = errors.New("approval changed concurrently; try again")
	ErrNotRequester     = errors.New("only the requester may do this")
	ErrNotApproved      = errors.New("the action is not approved")
	ErrOtherSession     = errors.New("the approval belongs to another session")
)

// Limits of what people write.
const (
	maxText = 1000
	// retention keeps decided requests visible in the inbox and on the
	// requester's page for a while after they end.
	retention = time.Hour
	// maxPendingPerUser bounds the requests one user may have waiting per
	// policy expiry window, so nobody floods approvers or the store.
	maxPendingPerUser = 20
)

// Key prefixes in the store.
const (
	keyRequest  = "ap:"     // id -> Request
	keyAction   = "ak:"     // binding:policy:digest -> id
	keyOnce     = "ag1:"    // binding:policy:digest -> id, one use
	keyDuration = "agd:"    // user:policy:set -> id
	keyCooldown = "abg:"    // user:policy -> break-glass cooldown
	keyRate     = "arate:"  // policy:user -> actions in the window
	keyFlood    = "aflood:" // user:policy -> requests created in the window
	keyDraft    = "adr:"    // owner:id -> a decision waiting for a step-up
)

// Service holds the approval policies and their state.
type Service struct {
	Engine   *stepup.Engine
	Policies map[string]*Policy
	// Emit sends a Caddy event (approval.requested, ...); nil for none.
	Emit func(name string, data map[string]any)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	radius chan struct{} // bounds the RADIUS exchanges in flight
}

// NewService starts the service: background RADIUS exchanges and the
// expiry sweep run until Close.
func NewService(e *stepup.Engine, policies map[string]*Policy, emit func(string, map[string]any)) *Service {
	s := &Service{Engine: e, Policies: policies, Emit: emit, radius: make(chan struct{}, 64)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.sweepEvery(15 * time.Second)
	return s
}

// Close stops the background work.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

func (s *Service) now() time.Time { return s.Engine.Now() }

// Get returns a request, applying its expiry first.
func (s *Service) Get(ctx context.Context, id string) (*Request, *Policy, error) {
	if id == "" || len(id) > 64 {
		return nil, nil, ErrNotFound
	}
	raw, err := s.Engine.Store.Get(ctx, keyRequest+id)
	if errors.Is(err, stepup.ErrNotFound) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	q := new(Request)
	if err := json.Unmarshal(raw, q); err != nil {
		return nil, nil, fmt.Errorf("decoding approval: %w", err)
	}
	p, ok := s.Policies[q.Policy]
	if !ok {
		// The policy was removed by a reload: nothing more happens to it.
		return nil, nil, ErrNotFound
	}
	if s.expired(q) {
		if q2, err := s.expire(ctx, id); err == nil && q2 != nil {
			q = q2
		}
	}
	return q, p, nil
}

func (s *Service) expired(q *Request) bool {
	now := s.now()
	return (q.Status == StatusPending && !now.Before(q.Expires)) ||
		(q.Status == StatusApproved && !q.UseBy.IsZero() && !now.Before(q.UseBy))
}

// update is a read-modify-write of a request that loses no concurrent
// change (compare and swap). change returns an error to abort.
func (s *Service) update(ctx context.Context, id string, change func(*Request, *Policy) error) (*Request, *Policy, error) {
	for range 50 {
		raw, err := s.Engine.Store.Get(ctx, keyRequest+id)
		if errors.Is(err, stepup.ErrNotFound) {
			return nil, nil, ErrNotFound
		}
		if err != nil {
			return nil, nil, err
		}
		q := new(Request)
		if err := json.Unmarshal(raw, q); err != nil {
			return nil, nil, err
		}
		p, ok := s.Policies[q.Policy]
		if !ok {
			return nil, nil, ErrNotFound
		}
		if err := change(q, p); err != nil {
			return q, p, err
		}
		next, err := json.Marshal(q)
		if err != nil {
			return nil, nil, err
		}
		ok, err = s.Engine.Store.CompareAndSwap(ctx, keyRequest+id, raw, next, s.ttl(q))
		if err != nil {
			return nil, nil, err
		}
		if ok {
			return q, p, nil
		}
	}
	return nil, nil, ErrBusy
}

// ttl keeps a request until its last use can happen, then a while for the
// record.
func (s *Service) ttl(q *Request) time.Duration {
	end := q.Expires
	for _, t := range []time.Time{q.UseBy, q.GrantUntil} {
		if t.After(end) {
			end = t
		}
	}
	return end.Add(retention).Sub(s.now())
}

func (s *Service) save(ctx context.Context, q *Request) error {
	raw, err := json.Marshal(q)
	if err != nil {
		return err
	}
	return s.Engine.Store.Set(ctx, keyRequest+q.ID, raw, s.ttl(q))
}

// expire ends a pending request past its expiry, or an approval not used in
// time, once (whichever instance sees it first audits it).
func (s *Service) expire(ctx context.Context, id string) (*Request, error) {
	var was string
	q, p, err := s.update(ctx, id, func(q *Request, _ *Policy) error {
		if !s.expired(q) {
			return errUnchanged
		}
		was = q.Status
		q.Status = StatusExpired
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return q, nil
	}
	if err != nil {
		return nil, err
	}
	reason := "not decided in time"
	if was == StatusApproved {
		reason = "approved but not used in time"
		_ = s.Engine.Store.Delete(ctx, keyOnce+q.Binding+":"+q.Policy+":"+q.Digest)
	}
	s.Engine.Audit.Log(stepup.Record{Event: stepup.EventApprovalExpired, User: q.User, Set: q.Set, Method: q.Method, Path: stepup.PathOf(q.URI),
		ClientIP: q.ClientIP, Result: StatusExpired, Reason: reason, Approval: q.ID, Policy: q.Policy})
	s.notify(p, q, "expired", map[string]any{"reason": reason})
	return q, nil
}

var errUnchanged = errors.New("unchanged")

func (s *Service) sweepEvery(d time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.Sweep(s.ctx)
		}
	}
}

// Sweep expires what is due (audited and notified); Get does the same for
// the one request it reads.
func (s *Service) Sweep(ctx context.Context) {
	keys, err := s.Engine.Store.Keys(ctx, keyRequest, 10000)
	if err != nil {
		return
	}
	for _, k := range keys {
		_, _, _ = s.Get(ctx, strings.TrimPrefix(k, keyRequest))
	}
}

// List returns the requests, newest first (for the inbox and the admin
// API).
func (s *Service) List(ctx context.Context) ([]*Request, error) {
	keys, err := s.Engine.Store.Keys(ctx, keyRequest, 10000)
	if err != nil {
		return nil, err
	}
	out := make([]*Request, 0, len(keys))
	for _, k := range keys {
		if q, _, err := s.Get(ctx, strings.TrimPrefix(k, keyRequest)); err == nil {
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b *Request) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// Binding is what a once-grant is bound to: the session's stable owner,
// or, for an identity asserted earlier in the route on every request
// (which may keep no cookie), the user.
func Binding(s *stepup.Session) string {
	if s.External || s.Owner == "" {
		return "x:" + s.User
	}
	return s.Owner
}

// Digest identifies one action: method (with every other reading of it),
// host, URI, content type (a multipart boundary changes what the body
// says) and the body's hash.
func Digest(method, host, uri, contentType string, body []byte) string {
	b := sha256.Sum256(body)
	h := sha256.New()
	for _, part := range []string{method, host, uri, contentType, hex.EncodeToString(b[:])} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:20])
}

// readBody reads the request's body (up to max) to digest it, and puts it
// back for the upstream.
func readBody(r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > max {
		return nil, errTooLarge
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return body, nil
}

var errTooLarge = errors.New("request body too large for an approval")

// clip bounds what people write, as valid UTF-8 cut on a character
// boundary, so that the audit trail, notifications and pages show the
// same text.
func clip(s string) string {
	s = strings.ToValidUTF8(strings.TrimSpace(s), "\uFFFD")
	if len(s) > maxText {
		cut := maxText
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// notify tells the policy's notifiers and Caddy's events of an event. It
// never blocks: notifiers queue on their own.
func (s *Service) notify(p *Policy, q *Request, event string, extra map[string]any) {
	data := map[string]any{
		"id": q.ID, "policy": q.Policy, "set": q.Set, "risk": q.Risk, "requester": q.User,
		"method": q.Method, "path": stepup.PathOf(q.URI), "host": q.Host, "status": q.Status,
		"link": q.Link, "created": q.Created, "expires": q.Expires,
	}
	if q.Justification != "" {
		data["justification"] = q.Justification
	}
	for k, v := range extra {
		data[k] = v
	}
	at := s.now()
	for _, n := range p.Notifiers {
		// A notifier queues and logs its own failures (rate-limited): an
		// outage must not flood the audit trail with a record per event.
		_ = n.Notify(s.ctx, stepup.Notification{Event: event, ID: q.ID, At: at, Data: data})
	}
	if s.Emit != nil {
		s.Emit("approval."+event, data)
	}
}
