package stepup

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// The engine's use cases: each call enforces every rule of one thing a
// user does, so that the pages only parse, call once and render.

// Step is one submitted step of a walk.
type Step struct {
	// Tier being reached, and Via the method chosen among its
	// alternatives ("" for the first).
	Tier, Via string
	// Form holds the submitted fields (username, password, code, ...).
	Form url.Values
	// Round is the id of a kept challenge round ("" on a first round).
	Round string
	// Pending is the kept request the walk is for ("" for none).
	Pending string
	// Target is the walk's target tier (the kept request is marked as
	// stepped up for when Tier is the target).
	Target string
}

// StepKind says how a step ended.
type StepKind int

const (
	// StepDone: the tier is reached (Session is the new session).
	StepDone StepKind = iota
	// StepRejected: the answer was wrong (Outcome.Message says so).
	StepRejected
	// StepNextRound: the method asks another round (RoundID, RoundPrompt).
	StepNextRound
	// StepUnavailable: the method could not decide; nothing counted.
	StepUnavailable
	// StepRateLimited: too many failures; nothing was verified.
	StepRateLimited
	// StepBusy: too many attempts of this user or client at once.
	StepBusy
	// StepBaseMissing: the tier's base is not held (out of order, or it
	// lapsed): the walk resumes.
	StepBaseMissing
	// StepRoundExpired: the round the form names is gone.
	StepRoundExpired
	// StepSuperseded: a concurrent request changed the session first; its
	// cookie is the browser's, and the walk resumes.
	StepSuperseded
)

// StepResult is the end of one step.
type StepResult struct {
	Kind    StepKind
	Outcome *Outcome
	// Session is the request's session after the step.
	Session *Session
	// Method is the method that took the step.
	Method Method
	// RoundID and RoundPrompt are the next round's.
	RoundID, RoundPrompt string
}

// ErrUnknownStep: the tier or method named does not exist.
var ErrUnknownStep = errors.New("unknown step")

// StepUp takes one step of a walk, with every rule of a step: the base
// tier held, the attempt counted before it is verified (per user and
// credential, and per client, with bounded concurrency), a challenge round
// taken once and only by its user, the level pushed with the session id
// rotated (a compare-and-swap), a sign-in starting a new owner, and every
// attempt audited.
func (e *Engine) StepUp(w http.ResponseWriter, r *http.Request, s *Session, st Step) (*StepResult, error) {
	ctx := r.Context()
	m, known := e.Method(st.Tier, st.Via)
	if !known {
		return nil, ErrUnknownStep
	}
	res := &StepResult{Session: s, Method: m}
	t, _ := e.Hierarchy.Get(st.Tier)
	if t.Base != "" && (s == nil || !s.Stack.Holds(e.Hierarchy, t.Base, e.Now(), 0)) {
		res.Kind = StepBaseMissing
		return res, nil
	}
	user := ""
	if s != nil && !m.Identifies() {
		user = s.User
	}
	limitUser := user
	if m.Identifies() {
		limitUser = strings.TrimSpace(st.Form.Get("username"))
	}
	// Failures count per user and credential (the method), not per tier:
	// two password tiers guess at one password, with one budget. A method
	// that locks users out itself is counted per client here; the user's
	// concurrent attempts are bounded all the same.
	ol, own := m.(OwnLockout)
	ip := e.ClientIP(r)
	rs, err := e.Limiter.Reserve(ctx, m.Name(), limitUser, ip, !(own && ol.OwnLockout()))
	if err != nil {
		reason := "too_many_failures"
		res.Kind = StepRateLimited
		if errors.Is(err, ErrBusy) {
			reason, res.Kind = "too_many_concurrent_attempts", StepBusy
		}
		e.Log(r, s, Record{Event: EventRateLimited, User: limitUser, Tier: st.Tier, Result: "refused", Reason: reason, AuthMethod: m.Name()})
		return res, nil
	}
	defer rs.Settle(ctx, Unavailable) // a panic or early return counts nothing
	a := &Attempt{Tier: st.Tier, User: user, Form: st.Form, ClientIP: ip, Request: r}
	if st.Round != "" {
		if s != nil {
			a.Round, _ = e.TakeRound(ctx, s, st.Round)
		}
		if a.Round == nil || a.Round.Tier != st.Tier || a.Round.Method != m.Name() {
			res.Kind = StepRoundExpired
			return res, nil
		}
	}
	o, err := m.Verify(ctx, a)
	if err != nil {
		o = &Outcome{Result: Unavailable, Reason: "method_error"}
	}
	o.Method = m.Name()
	res.Outcome = o
	rs.Settle(ctx, o.Result)
	rec := Record{Event: EventStepUp, User: o.User, Tier: st.Tier, Result: o.Result.String(), Reason: o.Reason, AuthMethod: m.Name()}
	if rec.User == "" {
		rec.User = limitUser
	}
	switch o.Result {
	case Accepted:
		return e.accepted(w, r, s, st, o, rec, res)
	case Challenged:
		if s, err = e.Persist(w, r, s); err != nil {
			return nil, err
		}
		res.Session = s
		if o.Round != nil {
			o.Round.Tier, o.Round.Method = st.Tier, m.Name()
		}
		if res.RoundID, err = e.KeepRound(ctx, s, o.Round); err != nil {
			return nil, err
		}
		res.Kind, res.RoundPrompt = StepNextRound, o.Round.Prompt
	case Unavailable:
		res.Kind = StepUnavailable
	default:
		res.Kind = StepRejected
	}
	e.Log(r, s, rec)
	return res, nil
}

// Accept records a step reached outside StepUp (an enrolment whose answer
// proves the new credential, a browser ceremony): the level is pushed, the
// step audited, and the walk's kept request marked as stepped up for.
func (e *Engine) Accept(w http.ResponseWriter, r *http.Request, s *Session, st Step, o *Outcome, rec Record) (*StepResult, error) {
	m, _ := e.Method(st.Tier, o.Method)
	return e.accepted(w, r, s, st, o, rec, &StepResult{Session: s, Method: m, Outcome: o})
}

func (e *Engine) accepted(w http.ResponseWriter, r *http.Request, s *Session, st Step, o *Outcome, rec Record, res *StepResult) (*StepResult, error) {
	next, err := e.Complete(w, r, s, st.Tier, o, st.Pending)
	switch {
	case errors.Is(err, ErrNotAllowed):
		// The base lapsed meanwhile: the walk asks again.
		res.Kind = StepBaseMissing
		return res, nil
	case errors.Is(err, ErrSessionChanged):
		rec.Result, rec.Reason = "superseded", "concurrent_change"
		e.Log(r, s, rec)
		res.Kind = StepSuperseded
		return res, nil
	case err != nil:
		return nil, fmt.Errorf("completing step-up: %w", err)
	}
	rec.Tiers = strings.Join(next.Stack.Names(), ",")
	e.Log(r, next, rec)
	if st.Pending != "" && st.Tier == st.Target {
		lvl, _ := next.Stack.Level(st.Tier)
		// The kept request may be gone (expired); the walk still ends.
		_ = e.MarkSteppedUp(r.Context(), next, st.Pending, lvl.At)
	}
	res.Kind, res.Session = StepDone, next
	return res, nil
}

// Errors of KeepRequest and LogOffAt.
var (
	// ErrCrossSite: another site started the request; it is never kept.
	ErrCrossSite = errors.New("request started by another site")
	// ErrKeepBudget: the client has too many requests kept already.
	ErrKeepBudget = errors.New("too many kept requests from this client")
	// ErrNotHeld: the session does not hold the tier to log off at.
	ErrNotHeld = errors.New("tier not held")
)

// KeepRequest keeps a request that lacks a tier, body and all, for replay
// after the step-up, with every rule of keeping: never a request another
// site started, the client's budget spent before anything is stored (a
// client without a cookie would otherwise get a fresh session, and a fresh
// allowance, each time), then the session's places and the global byte
// cap. It returns the kept request and the (now stored) session.
func (e *Engine) KeepRequest(w http.ResponseWriter, r *http.Request, s *Session, m *Missing) (*PendingRequest, *Session, error) {
	if CrossSite(r, e.Scheme(r)) {
		e.Log(r, s, Record{Event: EventDenied, Set: m.Set, Tier: m.Tier, Result: "refused", Reason: "cross_site_request_not_kept"})
		return nil, s, ErrCrossSite
	}
	if !e.KeepLimiter.Spend(r.Context(), e.ClientIP(r)) {
		e.Log(r, s, Record{Event: EventRateLimited, Set: m.Set, Tier: m.Tier, Result: "refused", Reason: "too_many_kept_requests_from_client"})
		return nil, s, ErrKeepBudget
	}
	s, err := e.Persist(w, r, s)
	if err != nil {
		return nil, nil, err
	}
	pr, err := e.Keep(r.Context(), s, r, m)
	if errors.Is(err, ErrKeptBytesFull) {
		e.Log(r, s, Record{Event: EventRateLimited, Set: m.Set, Tier: m.Tier, Result: "refused", Reason: "kept_bytes_full"})
	}
	return pr, s, err
}

// LogOffAt closes the tier and every tier above it (at a root tier the
// session ends), and audits it. A logoff never loses to a concurrent
// step-up: when one changed the session first, the whole session ends. A
// request whose session was rotated a moment ago (s nil, rotatedOwner the
// owner it had) ends that owner's session. It returns the closed tiers.
func (e *Engine) LogOffAt(w http.ResponseWriter, r *http.Request, s *Session, rotatedOwner, tier string) ([]string, error) {
	if s == nil {
		if rotatedOwner == "" {
			return nil, nil
		}
		if err := e.Sessions.End(w, r, &Session{Owner: rotatedOwner}); err != nil {
			return nil, err
		}
		e.Log(r, nil, Record{Event: EventLogOff, Tier: tier, Result: "closed", Reason: "session_rotated_concurrently", Session: rotatedOwner})
		return nil, nil
	}
	if _, held := s.Stack.Level(tier); !held {
		return nil, ErrNotHeld
	}
	_, closed, err := e.LogOff(w, r, s, tier)
	if errors.Is(err, ErrSessionChanged) {
		closed = s.Stack.Names()
		if err := e.Sessions.End(w, r, s); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	e.Log(r, s, Record{Event: EventLogOff, Tier: tier, Result: "closed", Tiers: strings.Join(closed, ",")})
	return closed, nil
}

// Resume takes a kept request to send or discard it: only the user who
// kept it, once, audited. To send it, the request r becomes the kept one
// (Replay) and the returned evaluation is decided again like any request
// (on every reading, fresh from the step-up performed for it); discarding
// returns none.
func (e *Engine) Resume(r *http.Request, s *Session, id string, send bool) (*Evaluation, error) {
	kept, err := e.TakePending(r.Context(), s, id)
	if err != nil {
		return nil, err
	}
	if !send {
		e.Log(r, s, Record{Event: EventReplay, Set: kept.Set, Tier: kept.Tier, Result: "discarded"})
		return nil, nil
	}
	if err := kept.Replay(r); err != nil {
		return nil, err
	}
	e.Log(r, s, Record{Event: EventReplay, Set: kept.Set, Tier: kept.Tier, Result: "replayed"})
	return &Evaluation{Request: r, Session: s, Now: e.Now(), FreshSince: kept.SteppedUp}, nil
}

// CeremonyStep takes a step whose answer the browser gives in a ceremony
// (Ceremony.FinishLogin), with the rules of StepUp: the base tier held,
// the attempt counted before it is checked, the level pushed, audited.
// finish runs the method's check.
func (e *Engine) CeremonyStep(w http.ResponseWriter, r *http.Request, s *Session, m Method, st Step, finish func() (*Outcome, error)) (*StepResult, error) {
	ctx := r.Context()
	res := &StepResult{Session: s, Method: m}
	t, _ := e.Hierarchy.Get(st.Tier)
	if s == nil || s.User == "" || (t.Base != "" && !s.Stack.Holds(e.Hierarchy, t.Base, e.Now(), 0)) {
		res.Kind = StepBaseMissing
		return res, nil
	}
	rs, err := e.Limiter.Reserve(ctx, m.Name(), s.User, e.ClientIP(r), true)
	if err != nil {
		res.Kind = StepRateLimited
		if errors.Is(err, ErrBusy) {
			res.Kind = StepBusy
		}
		e.Log(r, s, Record{Event: EventRateLimited, Tier: st.Tier, Result: "refused", Reason: "too_many_failures", AuthMethod: m.Name()})
		return res, nil
	}
	defer rs.Settle(ctx, Unavailable)
	o, err := finish()
	if err != nil {
		return nil, err
	}
	rs.Settle(ctx, o.Result)
	o.Method, res.Outcome = m.Name(), o
	rec := Record{Event: EventStepUp, User: s.User, Tier: st.Tier, Result: o.Result.String(), Reason: o.Reason, AuthMethod: m.Name()}
	if o.Result != Accepted {
		e.Log(r, s, rec)
		res.Kind = StepRejected
		return res, nil
	}
	return e.accepted(w, r, s, st, o, rec, res)
}
