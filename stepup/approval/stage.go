package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"strings"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// Stage enforces the approval policies of one site's transaction sets,
// after the tier check.
type Stage struct {
	svc *Service
	// mask is the bit set of the sets that name a policy.
	mask uint64
}

// NewStage checks that every set's policy exists and returns the stage for
// the site. A set naming no policy costs nothing on the hot path.
func (s *Service) NewStage(sets []stepup.TransactionSet) (*Stage, error) {
	st := &Stage{svc: s}
	for i, set := range sets {
		if set.Approval == "" {
			continue
		}
		if s == nil || s.Policies[set.Approval] == nil {
			return nil, fmt.Errorf("transaction set %q: unknown approval policy %q", set.Name, set.Approval)
		}
		st.mask |= 1 << uint(i)
	}
	return st, nil
}

// Evaluate implements stepup.Stage.
func (st *Stage) Evaluate(ev *stepup.Evaluation) error {
	matched := ev.Decision.Matched & st.mask
	if matched == 0 {
		return nil
	}
	s := ev.Session
	r := ev.Request
	sets := ev.Policy.Sets
	if s == nil || s.User == "" {
		// Approval needs to know who asks; a set that names a policy but
		// requires no identifying tier is refused.
		ev.Decision.Denial = &stepup.Denial{Set: sets[bits.TrailingZeros64(matched)].Name, Reason: "approval_requires_identity", Detail: "Sign in first: this action needs an approval.", Status: http.StatusForbidden, Message: "denial.sign_in_first"}
		return nil
	}
	body, err := readBody(r, st.svc.Engine.Pending.MaxBody)
	if errors.Is(err, errTooLarge) {
		ev.Decision.Denial = &stepup.Denial{Set: sets[bits.TrailingZeros64(matched)].Name, Reason: "approval_body_too_large", Detail: "The data you sent is too large to hold for an approval.", Status: http.StatusRequestEntityTooLarge, Message: "denial.body_too_large"}
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the body of an action needing approval: %w", err)
	}
	digest := Digest(actionOf(r, ev.Readings), r.Host, r.URL.RequestURI(), r.Header.Get("Content-Type"), body)
	var takes []string
	for _, set := range RiskiestPerPolicy(sets, matched) {
		once, denial, err := st.svc.check(ev, set, digest, body)
		if err != nil {
			return err
		}
		if denial != nil {
			ev.Decision.Denial = denial
			return nil
		}
		if once != "" {
			takes = append(takes, once)
		}
	}
	// Every policy holds: spend the once-grants, atomically. Of requests
	// racing for one grant, one passes.
	for _, id := range takes {
		if denial := st.svc.use(ev, id, digest); denial != nil {
			ev.Decision.Denial = denial
			return nil
		}
	}
	return nil
}

// RiskiestPerPolicy returns, for each policy the matched sets name, the
// riskiest of its matched sets (the first among equals): a request that
// matches a harmless and a critical set of one policy is judged, granted
// and approved as the critical one.
func RiskiestPerPolicy(sets []stepup.TransactionSet, matched uint64) []*stepup.TransactionSet {
	var out []*stepup.TransactionSet
	for i := range sets {
		if matched&(1<<uint(i)) == 0 {
			continue
		}
		s := &sets[i]
		found := false
		for j, have := range out {
			if have.Approval == s.Approval {
				found = true
				if riskRank(s.Risk) > riskRank(have.Risk) {
					out[j] = s
				}
			}
		}
		if !found {
			out = append(out, s)
		}
	}
	return out
}

// actionOf is the method an action is approved as: the request's, and
// every other way the upstream may read it (override headers and fields),
// so that an approval of a POST is not spent on a POST the application
// runs as DELETE.
func actionOf(r *http.Request, rd stepup.Readings) string {
	if len(rd.Methods) == 0 && rd.Path == "" {
		return r.Method
	}
	return r.Method + " as " + strings.Join(rd.Methods, ",") + " " + rd.Path
}

// check decides one policy for the action: a grant that covers it (a once
// grant is returned as the key to spend), a request already waiting, the
// conditions, automatic approval, or a new request.
func (s *Service) check(ev *stepup.Evaluation, set *stepup.TransactionSet, digest string, body []byte) (string, *stepup.Denial, error) {
	ctx := ev.Request.Context()
	e := s.Engine
	r, sess := ev.Request, ev.Session
	p := s.Policies[set.Approval]
	store := e.Store
	now := ev.Now
	clientIP := e.ClientIP(r)

	// The conditions hold at the moment of the action: when it is asked
	// for, and again when an approval or a grant lets it through.
	results := p.staticConditions(sess.Roles, clientIP, now, set.Risk)
	if failed := firstFailed(results); failed != "" {
		return "", s.refused(ev, set, p, results, failed), nil
	}

	if id, err := store.Get(ctx, keyDuration+sess.User+":"+p.Name+":"+set.Name); err == nil {
		e.Log(r, sess, stepup.Record{Event: stepup.EventApprovalUsed, Set: set.Name, Result: "allowed", Reason: "duration_grant", Approval: string(id), Policy: p.Name})
		return "", nil, nil
	} else if !errors.Is(err, stepup.ErrNotFound) {
		return "", nil, err
	}
	binding := Binding(sess)
	action := p.Name + ":" + digest
	if id, err := store.Get(ctx, keyOnce+binding+":"+action); err == nil && len(id) > 0 {
		return string(id), nil, nil
	} else if err != nil && !errors.Is(err, stepup.ErrNotFound) {
		return "", nil, err
	}
	if id, err := store.Get(ctx, keyAction+binding+":"+action); err == nil {
		if q, _, err := s.Get(ctx, string(id)); err == nil {
			switch {
			case q.Status == StatusPending:
				return "", s.pendingDenial(q), nil
			case q.Status == StatusDenied:
				return "", deniedDenial(q), nil
			case q.Status == StatusApproved && !q.UseBy.IsZero():
				// Approved a moment ago, its grant being written: the
				// record itself is the grant (use checks it again).
				return q.ID, nil, nil
			}
		}
	} else if !errors.Is(err, stepup.ErrNotFound) {
		return "", nil, err
	}

	if stepup.CrossSite(r, e.Scheme(r)) {
		// Another site must not make a user ask for approval of an action
		// they never meant (approvers would see it as theirs), nor spend
		// the user's rate.
		e.Log(r, sess, stepup.Record{Event: stepup.EventDenied, Set: set.Name, Result: "refused", Reason: "cross_site_request_not_kept", Policy: p.Name})
		return "", &stepup.Denial{Set: set.Name, Reason: "cross_site", Detail: "This action came from another website, so it was not carried out. If you meant to do it, open the site yourself and start it again there.", Status: http.StatusForbidden, Message: "denial.cross_site"}, nil
	}
	if p.Rate != nil {
		n, err := store.Incr(ctx, keyRate+p.Name+":"+sess.User, p.Rate.Per)
		if err != nil {
			return "", nil, err
		}
		ok := n <= int64(p.Rate.N)
		results = append(results, ConditionResult{CondRate, ok, fmt.Sprintf("at most %d such actions per %s", p.Rate.N, p.Rate.Per),
			"denial.condition.rate", []any{"N", p.Rate.N, "Per", p.Rate.Per}})
		if !ok {
			return "", s.refused(ev, set, p, results, CondRate), nil
		}
	}
	summary := Summary(results)
	if p.autoApproves(set.Risk) {
		e.Log(r, sess, stepup.Record{Event: stepup.EventApprovalDecided, Set: set.Name, Result: StatusApproved, Reason: "auto_approved_low_risk", Policy: p.Name, Conditions: summary, Approver: "policy"})
		return "", nil, nil
	}
	if !e.KeepLimiter.Spend(ctx, clientIP) {
		return "", &stepup.Denial{Set: set.Name, Reason: "too_many_requests", Detail: "Too many requests are waiting. Try again later.", Status: http.StatusTooManyRequests, Message: "denial.too_many_waiting"}, nil
	}
	if n, err := store.Incr(ctx, keyFlood+sess.User+":"+p.Name, p.Expire); err != nil {
		return "", nil, err
	} else if n > maxPendingPerUser {
		e.Log(r, sess, stepup.Record{Event: stepup.EventRateLimited, Set: set.Name, Result: "refused", Reason: "too_many_approval_requests", Policy: p.Name})
		return "", &stepup.Denial{Set: set.Name, Reason: "too_many_requests", Detail: "You have asked for too many approvals. Wait for the ones you asked for.", Status: http.StatusTooManyRequests, Message: "denial.too_many_approvals"}, nil
	}
	q := &Request{
		ID: stepup.RandomID(), Policy: p.Name, Set: set.Name, Risk: set.Risk, Tier: set.Tier,
		User: sess.User, Binding: binding, Method: r.Method, URI: r.URL.RequestURI(), Host: r.Host,
		ContentType: r.Header.Get("Content-Type"), Body: body, Digest: digest, ClientIP: clientIP, ReadAs: ev.Readings.Methods,
		Browser: !stepup.IsAPI(r), Conditions: results, Created: now, Expires: now.Add(p.Expire), Status: StatusPending,
	}
	base := p.LinkBase
	if base == "" {
		base = e.Scheme(r) + "://" + r.Host
	}
	q.Link = base + e.Prefix + "/approvals/" + q.ID
	if err := s.save(ctx, q); err != nil {
		return "", nil, err
	}
	claimed, err := store.SetIfAbsent(ctx, keyAction+binding+":"+action, []byte(q.ID), p.Expire)
	if err != nil {
		return "", nil, err
	}
	if !claimed {
		// The same action, asked for concurrently (or again after an
		// earlier request ended): the newest waiting one answers.
		if id, err := store.Get(ctx, keyAction+binding+":"+action); err == nil {
			if other, _, err := s.Get(ctx, string(id)); err == nil && other.Waiting() {
				_ = store.Delete(ctx, keyRequest+q.ID)
				return "", s.pendingDenial(other), nil
			}
		}
		if err := store.Set(ctx, keyAction+binding+":"+action, []byte(q.ID), p.Expire); err != nil {
			return "", nil, err
		}
	}
	e.Log(r, sess, stepup.Record{Event: stepup.EventApprovalRequested, Set: set.Name, Result: StatusPending, Approval: q.ID, Policy: p.Name, Conditions: summary})
	if !q.NeedsJustification(p) {
		s.requested(p, q)
	}
	return "", s.pendingDenial(q), nil
}

func firstFailed(rs []ConditionResult) string {
	for _, c := range rs {
		if !c.OK {
			return c.Name
		}
	}
	return ""
}

// refused answers an action whose condition failed, audited with every
// condition's result.
func (s *Service) refused(ev *stepup.Evaluation, set *stepup.TransactionSet, p *Policy, results []ConditionResult, failed string) *stepup.Denial {
	s.Engine.Log(ev.Request, ev.Session, stepup.Record{Event: stepup.EventApprovalRefused, Set: set.Name, Result: "denied", Reason: "condition_failed:" + failed, Policy: p.Name, Conditions: Summary(results)})
	var cond ConditionResult
	for _, c := range results {
		if c.Name == failed {
			cond = c
		}
	}
	return &stepup.Denial{Set: set.Name, Reason: "approval_condition_failed", Condition: failed, Detail: "This action is not allowed now: " + cond.Detail + ".",
		Status: http.StatusForbidden, Message: cond.Message, Args: cond.Args}
}

// requested tells approvers (and the RADIUS server) that a request can be
// decided: at once, or once its required justification is given.
func (s *Service) requested(p *Policy, q *Request) {
	s.notify(p, q, "requested", map[string]any{"approvers": p.ApproverNames(), "require": p.Require})
	if p.Radius != nil {
		s.askRadius(p, q, "", nil)
	}
}

func (s *Service) pendingDenial(q *Request) *stepup.Denial {
	return &stepup.Denial{Set: q.Set, Reason: "approval_pending", Approval: q.ID, Detail: "This action waits for approval.", Status: http.StatusAccepted, Message: "denial.pending"}
}

func deniedDenial(q *Request) *stepup.Denial {
	d := &stepup.Denial{Set: q.Set, Reason: "approval_denied", Approval: q.ID, Detail: "This action was denied.", Status: http.StatusForbidden, Message: "denial.denied"}
	for _, v := range q.Votes {
		if v.Decision == "deny" && v.Comment != "" {
			// The approver's own words, in whatever language they wrote.
			d.Detail, d.Message, d.Args = "This action was denied: "+v.Comment, "denial.denied_comment", []any{"Comment", v.Comment}
		}
	}
	return d
}

// use spends the once-grant of approval id for the request being decided:
// a compare-and-swap of its record from approved to used (of requests
// racing for one approval, one wins), checked against it (in time, this
// session and user, this very action).
func (s *Service) use(ev *stepup.Evaluation, id, digest string) *stepup.Denial {
	ctx := ev.Request.Context()
	var used *Request
	q, p, err := s.update(ctx, id, func(q *Request, _ *Policy) error {
		if q.Status != StatusApproved || !s.now().Before(q.UseBy) || q.Binding != Binding(ev.Session) || q.User != ev.Session.User || q.Digest != digest {
			return ErrNotApproved
		}
		q.Status = StatusUsed
		used = q
		return nil
	})
	if err != nil || used == nil {
		return &stepup.Denial{Reason: "approval_used", Detail: "This approval was already used, or can no longer be used.", Status: http.StatusForbidden, Message: "denial.used"}
	}
	s.deleteIf(ctx, keyOnce+q.Binding+":"+q.Policy+":"+q.Digest, q.ID)
	s.Engine.Log(ev.Request, ev.Session, stepup.Record{Event: stepup.EventApprovalUsed, Set: q.Set, Result: "allowed", Approval: q.ID, Policy: q.Policy})
	s.notify(p, q, "used", nil)
	return nil
}

// Draft is a decision kept while its approver steps up.
type Draft struct {
	Decision string `json:"d"`
	Comment  string `json:"c,omitempty"`
}

// KeepDraft keeps an approver's decision while they step up.
func (s *Service) KeepDraft(ctx context.Context, owner, id string, d Draft) error {
	raw, _ := json.Marshal(d)
	return s.Engine.Store.Set(ctx, keyDraft+owner+":"+id, raw, s.Engine.Pending.TTL)
}

// PeekDraft returns a kept decision, if any.
func (s *Service) PeekDraft(ctx context.Context, owner, id string) (Draft, bool) {
	var d Draft
	raw, err := s.Engine.Store.Get(ctx, keyDraft+owner+":"+id)
	return d, err == nil && json.Unmarshal(raw, &d) == nil
}

// DropDraft forgets a kept decision.
func (s *Service) DropDraft(ctx context.Context, owner, id string) {
	_ = s.Engine.Store.Delete(ctx, keyDraft+owner+":"+id)
}
