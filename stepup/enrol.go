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

// EnrolPermission applies the enrolment rules (see EnrolCheck).
func (e *Engine) EnrolPermission(ctx context.Context, s *Session, m Enroller, tier string) (EnrolPermission, error) {
	perm, _, err := e.EnrolCheck(ctx, s, m, tier)
	return perm, err
}

// EnrolCheck applies the enrolment rules to setting up or changing a
// credential of method m on the page of tier. A method's credential is the
// user's, not one tier's: it reaches every tier that lists the method. So
// the rules look at every such tier:
//
//   - a first credential (trust on first use) only while none of those
//     tiers has a credential for any of its methods (none enrolled, none
//     provisioned; a method that enrols nothing here counts as one), and
//     only where every one of them lets users enrol themselves, holding the
//     base tier of the page's tier;
//   - otherwise a change (replacing a secret, adding or removing a key)
//     needs each of those tiers that has a credential held and fresh: the
//     user proves what they have before changing what reaches it. The tier
//     to step up to comes back with EnrolNeedTier.
//
// A password alone never reaches a tier by enrolling a credential of the
// attacker's choice, at that tier or at another that shares the method.
//
// An enrolment link the session opened for this tier and method (see
// OpenEnrolLink) allows the enrolment without those rules, but never
// without the base tier: the administrator vouches for the user.
func (e *Engine) EnrolCheck(ctx context.Context, s *Session, m Enroller, tier string) (EnrolPermission, string, error) {
	perm, need, _, err := e.enrolCheck(ctx, s, m, tier)
	return perm, need, err
}

// enrolCheck is EnrolCheck, also returning the token of the enrolment link
// that allowed it ("" when the rules did).
func (e *Engine) enrolCheck(ctx context.Context, s *Session, m Enroller, tier string) (EnrolPermission, string, string, error) {
	now := e.Now()
	t, _ := e.Hierarchy.Get(tier)
	if s == nil || s.User == "" || (t.Base != "" && !s.Stack.Holds(e.Hierarchy, t.Base, now, 0)) {
		return EnrolNeedBase, tier, "", nil
	}
	name := m.(Method).Name()
	if token := e.linkedEnrolment(ctx, s, tier, name); token != "" {
		enrolled, err := m.Enrolled(ctx, s.User)
		if err != nil {
			return EnrolRefused, tier, "", err
		}
		if enrolled {
			return EnrolChange, tier, token, nil
		}
		return EnrolFirst, tier, token, nil
	}
	perm, need, err := e.enrolRules(ctx, s, m, name, tier, now)
	return perm, need, "", err
}

// enrolRules are the rules of EnrolCheck without a link.
func (e *Engine) enrolRules(ctx context.Context, s *Session, m Enroller, name, tier string, now time.Time) (EnrolPermission, string, error) {
	anyCredential, allSelf := false, true
	for _, other := range e.Hierarchy.Names() {
		alt, ok := e.Method(other, name)
		if !ok || alt.Name() != name {
			continue
		}
		if en, ok := alt.(Enroller); !ok || !en.SelfEnroll() {
			allSelf = false
		}
		has, err := e.HasCredential(ctx, s.User, other)
		if err != nil {
			return EnrolRefused, tier, err
		}
		if !has {
			continue
		}
		anyCredential = true
		if !s.Stack.Holds(e.Hierarchy, other, now, e.ChangeFreshness(other)) {
			return EnrolNeedTier, other, nil
		}
	}
	switch {
	case anyCredential:
		return EnrolChange, tier, nil
	case allSelf:
		return EnrolFirst, tier, nil
	}
	return EnrolRefused, tier, nil
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

// EnrolWithForm confirms a form enrolment (the answer that proves the new
// credential, such as a code from the new secret), with every rule of an
// enrolment (see enrol).
func (e *Engine) EnrolWithForm(w http.ResponseWriter, r *http.Request, s *Session, m FormEnroller, st Step, form url.Values) (*StepResult, error) {
	ol, own := m.(OwnLockout)
	return e.enrol(w, r, s, m, st, !(own && ol.OwnLockout()), "enrolled", func() (*Outcome, error) {
		return m.ConfirmFormEnrolment(r.Context(), s.Owner, s.User, form)
	})
}

// CeremonyEnrol registers a credential whose proof the browser gives in a
// ceremony (CeremonyEnroller.FinishRegistration), with every rule of an
// enrolment (see enrol).
func (e *Engine) CeremonyEnrol(w http.ResponseWriter, r *http.Request, s *Session, m CeremonyEnroller, st Step, finish func() (*Outcome, error)) (*StepResult, error) {
	return e.enrol(w, r, s, m, st, true, "registered", finish)
}

// enrol is an enrolment's rules: the permission checked again at the
// moment of the change (EnrolCheck), the attempt counted before it is
// verified, the change audited and recorded for the user's session page
// (a replacement, unless the method keeps several credentials), and the
// new credential's proof taken as a step-up to the tier.
func (e *Engine) enrol(w http.ResponseWriter, r *http.Request, s *Session, m Enroller, st Step, countUser bool, reason string, finish func() (*Outcome, error)) (*StepResult, error) {
	ctx := r.Context()
	method := m.(Method)
	res := &StepResult{Session: s, Method: method}
	perm, _, link, err := e.enrolCheck(ctx, s, m, st.Tier)
	if err != nil {
		return nil, err
	}
	if perm != EnrolFirst && perm != EnrolChange {
		res.Kind = StepBaseMissing
		return res, nil
	}
	rs, err := e.Limiter.Reserve(ctx, method.Name(), s.User, e.ClientIP(r), countUser)
	if err != nil {
		e.Log(r, s, Record{Event: EventRateLimited, Tier: st.Tier, Result: "refused", Reason: "too_many_failures", AuthMethod: method.Name()})
		res.Kind = StepRateLimited
		return res, nil
	}
	defer rs.Settle(ctx, Unavailable)
	restoreLink := func() {}
	if link != "" {
		// The link is spent before the credential is confirmed, so that
		// two enrolments cannot both use it; a failed one gives it back.
		restore, ok := e.spendEnrolLink(ctx, s, st.Tier, method.Name(), link)
		if !ok {
			e.Log(r, s, Record{Event: EventEnroll, Tier: st.Tier, AuthMethod: method.Name(), Result: "refused", Reason: "enrolment_link_used"})
			res.Kind = StepBaseMissing
			return res, nil
		}
		restoreLink = restore
	}
	o, err := finish()
	if err != nil {
		restoreLink()
		return nil, err // ErrEnrolmentExpired among others
	}
	rs.Settle(ctx, o.Result)
	res.Outcome = o
	if o.Result != Accepted {
		restoreLink()
		e.Log(r, s, Record{Event: EventEnroll, User: s.User, Tier: st.Tier, AuthMethod: method.Name(), Result: o.Result.String(), Reason: o.Reason})
		res.Kind = StepRejected
		return res, nil
	}
	o.Method = method.Name()
	kind := ChangeEnroll
	if _, several := m.(CredentialKeeper); perm == EnrolChange && !several {
		kind = ChangeReplace
	}
	e.CredentialChanged(ctx, func(rec Record) {
		if link != "" {
			rec.Reason = "enrolment_link"
		}
		e.Log(r, s, rec)
	}, s.User, kind, st.Tier, method.Name())
	return e.accepted(w, r, s, st, o, Record{Event: EventStepUp, Tier: st.Tier, AuthMethod: method.Name(), Result: "success", Reason: reason}, res)
}
