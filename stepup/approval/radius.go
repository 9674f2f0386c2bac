package approval

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"layeh.com/radius"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	stepradius "github.com/caddy-stepup/caddy-stepup/stepup/radius"
)

// RADIUS approval: the action goes to a RADIUS server as an Access-Request
// (requester, client IP, site, set, METHOD /path), which approves,
// denies, or asks the requester something (Access-Challenge), possibly
// after holding the request while someone approves on a phone. No HTTP
// request waits for it: the exchange runs in the background, and the
// requester's page shows its progress.

// askRadius starts an exchange for the request: the first, or the
// requester's answer to a challenge.
func (s *Service) askRadius(p *Policy, q *Request, answer string, state []byte) {
	select {
	case s.radius <- struct{}{}:
	default:
		// Too many exchanges in flight: the request shows the service
		// unavailable, and the requester may try again.
		s.setRadius(q.ID, &RadiusState{Status: "unavailable"})
		return
	}
	s.setRadius(q.ID, &RadiusState{Status: "asking"})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.radius }()
		s.exchange(p, q, answer, state)
	}()
}

func (s *Service) exchange(p *Policy, q *Request, answer string, state []byte) {
	ctx, cancel := context.WithTimeout(s.ctx, p.Radius.Timeout)
	defer cancel()
	resp, err := p.Radius.Client.Exchange(ctx, stepradius.Request{
		UserName: q.User, Password: answer, State: state,
		NASIdentifier: p.Radius.NASIdentifier, CallingStation: q.ClientIP,
		CalledStation: q.Host, NASPortID: q.Set, ConnectInfo: q.Method + " " + stepup.PathOf(q.URI),
	})
	if s.ctx.Err() != nil {
		return
	}
	if err != nil {
		// Silence past the timeout: the request stays pending, shown as
		// the approval service being unavailable.
		s.setRadius(q.ID, &RadiusState{Status: "unavailable"})
		s.Engine.Audit.Log(stepup.Record{Event: stepup.EventApprovalVote, User: q.User, Set: q.Set, Result: "unavailable", Reason: radiusReason(err), Approval: q.ID, Policy: q.Policy, Approver: "radius"})
		return
	}
	switch resp.Code {
	case radius.CodeAccessChallenge:
		s.setRadius(q.ID, &RadiusState{Status: "challenge", Prompt: resp.ReplyMessage, State: resp.State})
		s.Engine.Audit.Log(stepup.Record{Event: stepup.EventApprovalVote, User: q.User, Set: q.Set, Result: "challenge", Approval: q.ID, Policy: q.Policy, Approver: "radius"})
	case radius.CodeAccessAccept, radius.CodeAccessReject:
		decision := "approve"
		if resp.Code == radius.CodeAccessReject {
			decision = "deny"
		}
		cap := time.Duration(resp.SessionTimeout) * time.Second
		s.radiusDecided(q.ID, decision, resp, cap)
	}
}

func radiusReason(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, stepradius.ErrUnavailable) {
		return "no_answer_in_time"
	}
	return "radius_error"
}

// setRadius records the exchange's progress on the request (while it waits).
func (s *Service) setRadius(id string, st *RadiusState) {
	_, _, _ = s.update(s.ctx, id, func(q *Request, _ *Policy) error {
		if !q.Waiting() {
			return errUnchanged
		}
		q.Radius = st
		return nil
	})
}

// radiusDecided applies the server's answer: an Access-Accept approves (its
// Session-Timeout caps a duration grant, its Class is audited), an
// Access-Reject denies, with the Reply-Message as the comment.
func (s *Service) radiusDecided(id, decision string, resp *stepradius.Response, cap time.Duration) {
	var ended bool
	q, p, err := s.update(s.ctx, id, func(q *Request, p *Policy) error {
		if !q.Waiting() || s.expired(q) {
			return ErrNotPending
		}
		now := s.now()
		q.Votes = append(q.Votes, Vote{User: "radius", Decision: decision, Comment: clip(resp.ReplyMessage), Via: "radius", At: now})
		q.Radius = &RadiusState{Status: "answered", Reply: clip(resp.ReplyMessage), Class: fmt.Sprintf("%x", resp.Class)}
		if decision == "deny" {
			q.Status, q.Decided = StatusDenied, now
		} else {
			s.approve(q, p, now, cap)
		}
		ended = true
		return nil
	})
	if err != nil || !ended {
		return
	}
	s.granted(s.ctx, q)
	rec := stepup.Record{Event: stepup.EventApprovalDecided, User: q.User, Set: q.Set, Method: q.Method, Path: stepup.PathOf(q.URI), ClientIP: q.ClientIP,
		Result: q.Status, Approval: q.ID, Policy: q.Policy, Approver: "radius", Comment: q.Radius.Reply, Reason: "radius_class=" + q.Radius.Class}
	s.Engine.Audit.Log(rec)
	s.notify(p, q, "decided", map[string]any{"decision": q.Status, "approver": "radius", "comment": q.Radius.Reply})
}

// AnswerRadius sends the requester's answer to a RADIUS challenge, or
// asks again after the service was unavailable.
func (s *Service) AnswerRadius(r *http.Request, sess *stepup.Session, id, answer string) (*Request, error) {
	q, p, err := s.Get(r.Context(), id)
	if err != nil {
		return nil, err
	}
	switch {
	case sess == nil || sess.User != q.User:
		return q, ErrNotRequester
	case !q.Waiting() || p.Radius == nil || q.Radius == nil:
		return q, ErrNotPending
	case q.Radius.Status == "challenge":
		s.Engine.Log(r, sess, stepup.Record{Event: stepup.EventApprovalVote, Set: q.Set, Result: "challenge_answered", Approval: q.ID, Policy: q.Policy, Approver: "radius"})
		s.askRadius(p, q, answer, q.Radius.State)
	case q.Radius.Status == "unavailable":
		s.askRadius(p, q, "", nil)
	default:
		return q, ErrNotPending
	}
	q, _, err = s.Get(r.Context(), id)
	return q, err
}
