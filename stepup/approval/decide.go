package approval

import (
	"context"
	"net/http"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// Role is how a session relates to a request.
type Role int

// Roles of a viewer.
const (
	RoleNone Role = iota
	RoleRequester
	RoleApprover
)

// RoleOf says whether the session's user asked for the request, may decide
// it, or neither (who then learns nothing about it). User ids compare
// exactly, as sessions store them.
func RoleOf(q *Request, p *Policy, s *stepup.Session) Role {
	switch {
	case s == nil || s.User == "":
		return RoleNone
	case s.User == q.User:
		return RoleRequester
	case p.MayApprove(s.User, s.Roles):
		return RoleApprover
	}
	return RoleNone
}

// ApproverTier is the tier an approver of the request must hold, fresh.
// p may be nil (a page that read the request again after it ended, or
// when the store could not answer): the set's tier is then where the
// approver is sent, and deciding checks the policy's tier again anyway.
func (q *Request) ApproverTier(p *Policy) string {
	if p != nil && p.ApproverTier != "" {
		return p.ApproverTier
	}
	return q.Tier
}

// Decide records an approver's decision from a page: the approver must be
// one of the policy's, not the requester, hold the approver tier fresh
// now, and not have decided before. Deny ends the request; enough
// distinct approvals approve it.
func (s *Service) Decide(r *http.Request, sess *stepup.Session, id, decision, comment string) (*Request, error) {
	q, p, err := s.Get(r.Context(), id)
	if err != nil {
		return nil, err
	}
	switch RoleOf(q, p, sess) {
	case RoleRequester:
		return q, ErrSelfApproval
	case RoleNone:
		return q, ErrNotApprover
	}
	if decision != "approve" && decision != "deny" {
		return q, ErrBadDecision
	}
	if !q.Waiting() {
		return q, ErrNotPending
	}
	if !sess.Stack.Holds(s.Engine.Hierarchy, q.ApproverTier(p), s.now(), 0) {
		return q, ErrApproverTier
	}
	return s.vote(r.Context(), r, sess, id, Vote{User: sess.User, Decision: decision, Comment: clip(comment), Via: "page"})
}

// DecideAsAdmin records a decision made through the admin API, in the name
// of the given approver (who must be one of the policy's, and not the
// requester).
func (s *Service) DecideAsAdmin(ctx context.Context, id, approver string, roles []string, decision, comment string) (*Request, error) {
	q, p, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if approver == q.User {
		return q, ErrSelfApproval
	}
	if !p.MayApprove(approver, roles) {
		return q, ErrNotApprover
	}
	return s.vote(ctx, nil, nil, id, Vote{User: approver, Decision: decision, Comment: clip(comment), Via: "admin"})
}

// vote adds one decision and applies the threshold, atomically.
func (s *Service) vote(ctx context.Context, r *http.Request, sess *stepup.Session, id string, v Vote) (*Request, error) {
	if v.Decision != "approve" && v.Decision != "deny" {
		return nil, ErrBadDecision
	}
	var ended bool
	q, p, err := s.update(ctx, id, func(q *Request, p *Policy) error {
		ended = false
		if !q.Waiting() || s.expired(q) {
			return ErrNotPending
		}
		if q.NeedsJustification(p) {
			return ErrJustification
		}
		if _, done := q.VoteOf(v.User); done {
			return ErrAlreadyDecided
		}
		v.At = s.now()
		q.Votes = append(q.Votes, v)
		switch {
		case v.Decision == "deny":
			q.Status, q.Decided, ended = StatusDenied, v.At, true
		case q.Approvals() >= p.Require:
			s.approve(q, p, v.At, 0)
			ended = true
		}
		return nil
	})
	if err != nil {
		return q, err
	}
	rec := stepup.Record{Event: stepup.EventApprovalVote, User: q.User, Set: q.Set, Result: v.Decision, Approval: q.ID, Policy: q.Policy, Approver: v.User, Comment: v.Comment, Reason: "via_" + v.Via}
	if ended {
		rec.Event, rec.Result = stepup.EventApprovalDecided, q.Status
	}
	s.log(r, sess, rec)
	if ended {
		s.granted(ctx, q)
		s.notify(p, q, "decided", map[string]any{"decision": q.Status, "approver": v.User, "comment": v.Comment})
	}
	return q, nil
}

// approve marks a request approved at now: a once-grant to use within
// execute_within, or a duration grant (capped, when cap > 0).
func (s *Service) approve(q *Request, p *Policy, now time.Time, cap time.Duration) {
	q.Status, q.Decided = StatusApproved, now
	if p.Grant > 0 {
		d := p.Grant
		if cap > 0 && cap < d {
			d = cap
		}
		q.GrantUntil = now.Add(d)
		return
	}
	q.UseBy = now.Add(p.ExecuteWithin)
}

// granted writes the grant of a request just approved.
func (s *Service) granted(ctx context.Context, q *Request) {
	store := s.Engine.Store
	switch {
	case q.Status != StatusApproved:
	case !q.GrantUntil.IsZero():
		_ = store.Set(ctx, keyDuration+q.User+":"+q.Policy+":"+q.Set, []byte(q.ID), q.GrantUntil.Sub(s.now()))
	default:
		ttl := q.UseBy.Sub(s.now())
		_ = store.Set(ctx, keyOnce+q.Binding+":"+q.Policy+":"+q.Digest, []byte(q.ID), ttl)
		// The action's index lives as long as the approval may be used.
		_ = store.Set(ctx, keyAction+q.Binding+":"+q.Policy+":"+q.Digest, []byte(q.ID), ttl)
	}
}

func (s *Service) log(r *http.Request, sess *stepup.Session, rec stepup.Record) {
	if r != nil {
		s.Engine.Log(r, sess, rec)
		return
	}
	s.Engine.Audit.Log(rec)
}

// Justify records the requester's justification (once), after which
// approvers can decide and are told.
func (s *Service) Justify(r *http.Request, sess *stepup.Session, id, text string) (*Request, error) {
	text = clip(text)
	if text == "" {
		return nil, ErrJustification
	}
	var first bool
	q, p, err := s.update(r.Context(), id, func(q *Request, p *Policy) error {
		if sess == nil || sess.User != q.User {
			return ErrNotRequester
		}
		if !q.Waiting() {
			return ErrNotPending
		}
		first = q.Justification == ""
		if !first {
			return errUnchanged
		}
		q.Justification = text
		return nil
	})
	if err == errUnchanged {
		return q, nil
	}
	if err != nil {
		return q, err
	}
	s.Engine.Log(r, sess, stepup.Record{Event: stepup.EventApprovalRequested, Set: q.Set, Result: "justified", Approval: q.ID, Policy: q.Policy, Justification: q.Justification})
	if first && p.Justification == "required" {
		s.requested(p, q)
	}
	return q, nil
}

// BreakGlass lets the requester approve their own action with a reason,
// where the policy allows it: they must hold the approver tier fresh, and
// may not do it again within the cooldown. Every notifier hears of it and
// the audit record is flagged.
func (s *Service) BreakGlass(r *http.Request, sess *stepup.Session, id, reason string) (*Request, error) {
	ctx := r.Context()
	q, p, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case sess == nil || sess.User != q.User:
		return q, ErrNotRequester
	case p.BreakGlass == nil:
		return q, ErrBreakGlassDenied
	case !q.Waiting():
		return q, ErrNotPending
	}
	reason = clip(reason)
	if reason == "" {
		return q, ErrReasonRequired
	}
	if !sess.Stack.Holds(s.Engine.Hierarchy, q.ApproverTier(p), s.now(), 0) {
		return q, ErrApproverTier
	}
	cool := keyCooldown + q.User + ":" + p.Name
	ok, err := s.Engine.Store.SetIfAbsent(ctx, cool, []byte(q.ID), p.BreakGlass.Cooldown)
	if err != nil {
		return q, err
	}
	if !ok {
		s.Engine.Log(r, sess, stepup.Record{Event: stepup.EventBreakGlass, Set: q.Set, Result: "refused", Reason: "cooldown", Approval: q.ID, Policy: q.Policy, Comment: reason, BreakGlass: true})
		return q, ErrCooldown
	}
	q, p, err = s.update(ctx, id, func(q *Request, p *Policy) error {
		if !q.Waiting() || s.expired(q) {
			return ErrNotPending
		}
		now := s.now()
		q.Votes = append(q.Votes, Vote{User: q.User, Decision: "approve", Comment: reason, Via: "break_glass", At: now})
		q.BreakGlass = reason
		s.approve(q, p, now, 0)
		return nil
	})
	if err != nil {
		// Nothing was approved: the cooldown is not spent.
		_ = s.Engine.Store.Delete(ctx, cool)
		return q, err
	}
	s.granted(ctx, q)
	s.Engine.Log(r, sess, stepup.Record{Event: stepup.EventBreakGlass, Set: q.Set, Result: StatusApproved, Approval: q.ID, Policy: q.Policy, Approver: q.User, Comment: reason, BreakGlass: true})
	s.notify(p, q, "break_glass", map[string]any{"reason": reason, "approvers": p.ApproverNames()})
	return q, nil
}

// Sendable returns the approved action for the requester's browser to
// confirm and replay: only in the session it was asked from, while its
// once-grant is unused and in time. The replay is decided again, and the
// approval stage spends the grant then.
func (s *Service) Sendable(ctx context.Context, sess *stepup.Session, id string) (*Request, error) {
	q, _, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case sess == nil || sess.User != q.User:
		return nil, ErrNotFound
	case Binding(sess) != q.Binding:
		return q, ErrOtherSession
	case q.Status != StatusApproved || q.UseBy.IsZero():
		return q, ErrNotApproved
	}
	return q, nil
}

// Withdraw ends a waiting request at the requester's wish (the Cancel of
// the status page), or discards an approved action not yet used.
func (s *Service) Withdraw(r *http.Request, sess *stepup.Session, id string) error {
	var was string
	q, p, err := s.update(r.Context(), id, func(q *Request, _ *Policy) error {
		if sess == nil || sess.User != q.User {
			return ErrNotRequester
		}
		if q.Status != StatusPending && q.Status != StatusApproved {
			return ErrNotPending
		}
		was = q.Status
		q.Status = StatusExpired
		return nil
	})
	if err != nil {
		return err
	}
	s.deleteIf(r.Context(), keyOnce+q.Binding+":"+q.Policy+":"+q.Digest, q.ID)
	s.deleteIf(r.Context(), keyDuration+q.User+":"+q.Policy+":"+q.Set, q.ID)
	s.Engine.Log(r, sess, stepup.Record{Event: stepup.EventApprovalExpired, Set: q.Set, Result: "withdrawn", Reason: "withdrawn_by_requester_while_" + was, Approval: q.ID, Policy: q.Policy})
	s.notify(p, q, "expired", map[string]any{"reason": "withdrawn by the requester"})
	return nil
}

// deleteIf removes a grant only while it is this request's. (Between the
// read and the delete a new approval of the same action could write it:
// that one is then lost and asked for again, which fails closed.)
func (s *Service) deleteIf(ctx context.Context, key, id string) {
	if raw, err := s.Engine.Store.Get(ctx, key); err == nil && string(raw) == id {
		_ = s.Engine.Store.Delete(ctx, key)
	}
}
