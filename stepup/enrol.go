package stepup

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// EnrolPermission says whether a user may set up or change a credential of
// a tier now.
type EnrolPermission int

const (
	// EnrolFirst: a first credential, trust on first use.
	EnrolFirst EnrolPermission = iota
	// EnrolChange: another or a new credential, with the tier itself held
	// and fresh.
	EnrolChange
	// EnrolNeedBase: sign in, or reach the base tier, first.
	EnrolNeedBase
	// EnrolNeedTier: a credential exists: step up to the tier itself,
	// freshly, first.
	EnrolNeedTier
	// EnrolRefused: credentials are provisioned by the administrator.
	EnrolRefused
)

// CredentialChangeMaxAge is how recently the tier itself must have been
// reached to replace its credential, add a further key or remove one: the
// user proves they hold the current credential just before changing it.
const CredentialChangeMaxAge = 5 * time.Minute

// ChangeFreshness is CredentialChangeMaxAge, or the tier's own max age
// when that is shorter.
func (e *Engine) ChangeFreshness(tier string) time.Duration {
	t, _ := e.Hierarchy.Get(tier)
	return min(CredentialChangeMaxAge, t.MaxAge)
}

// EnrolPermission applies the enrolment rules: a user with no credential
// for the tier (none enrolled and none provisioned, for any of its
// methods) may set up a first one while holding the base tier, where the
// method allows self-enrolment (trust on first use). Once a credential
// exists, changing one (replacing a secret, adding a further key) needs
// the tier itself, held and fresh: a password alone never reaches a tier
// by enrolling a credential of the attacker's choice.
func (e *Engine) EnrolPermission(ctx context.Context, s *Session, m Enroller, tier string) (EnrolPermission, error) {
	now := e.Now()
	t, _ := e.Hierarchy.Get(tier)
	if s == nil || s.User == "" || (t.Base != "" && !s.Stack.Holds(e.Hierarchy, t.Base, now, 0)) {
		return EnrolNeedBase, nil
	}
	enrolled, err := e.HasCredential(ctx, s.User, tier)
	if err != nil {
		return EnrolRefused, err
	}
	switch {
	case enrolled && s.Stack.Holds(e.Hierarchy, tier, now, e.ChangeFreshness(tier)):
		return EnrolChange, nil
	case enrolled:
		return EnrolNeedTier, nil
	case m.SelfEnroll():
		return EnrolFirst, nil
	}
	return EnrolRefused, nil
}

// HasCredential reports whether the user has a credential for any of the
// tier's methods. A method that enrols nothing here (a password, RADIUS, a
// third party's) counts as one: trust on first use must never let a key
// of the attacker's choice stand in for a credential held elsewhere.
func (e *Engine) HasCredential(ctx context.Context, user, tier string) (bool, error) {
	for _, m := range e.Alternatives[tier] {
		en, ok := m.(Enroller)
		if !ok {
			return true, nil
		}
		enrolled, err := en.Enrolled(ctx, user)
		if err != nil || enrolled {
			return enrolled, err
		}
	}
	return false, nil
}

// EnrolWithForm confirms a form enrolment with every rule of it: the
// permission (checked again at the moment of the change), the attempt
// counted before it is verified, the change audited and recorded for the
// user's session page, and the confirming answer taken as a step-up to
// the tier.
func (e *Engine) EnrolWithForm(w http.ResponseWriter, r *http.Request, s *Session, m FormEnroller, st Step, form url.Values) (*StepResult, error) {
	ctx := r.Context()
	method := m.(Method).Name()
	res := &StepResult{Session: s, Method: m.(Method)}
	perm, err := e.EnrolPermission(ctx, s, m, st.Tier)
	if err != nil {
		return nil, err
	}
	if perm != EnrolFirst && perm != EnrolChange {
		res.Kind = StepBaseMissing
		return res, nil
	}
	rs, err := e.Limiter.Reserve(ctx, method, s.User, e.ClientIP(r), false)
	if err != nil {
		e.Log(r, s, Record{Event: EventRateLimited, Tier: st.Tier, Result: "refused", Reason: "too_many_failures", AuthMethod: method})
		res.Kind = StepRateLimited
		return res, nil
	}
	defer rs.Settle(ctx, Unavailable)
	o, err := m.ConfirmFormEnrolment(ctx, s.Owner, s.User, form)
	if err != nil {
		return nil, err // ErrEnrolmentExpired among others
	}
	rs.Settle(ctx, o.Result)
	res.Outcome = o
	if o.Result != Accepted {
		e.Log(r, s, Record{Event: EventEnroll, Tier: st.Tier, AuthMethod: method, Result: o.Result.String(), Reason: o.Reason})
		res.Kind = StepRejected
		return res, nil
	}
	o.Method = method
	kind := ChangeEnroll
	if perm == EnrolChange {
		kind = ChangeReplace
	}
	e.CredentialChanged(ctx, func(rec Record) { e.Log(r, s, rec) }, s.User, kind, st.Tier, method)
	return e.accepted(w, r, s, st, o, Record{Event: EventStepUp, Tier: st.Tier, AuthMethod: method, Result: "success", Reason: "enrolled"}, res)
}
