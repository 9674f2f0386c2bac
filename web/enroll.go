package web

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/totp"
)

// needsEnrolment decides what a step page shows for a method the user has
// no credential for yet: the enrolment page when users may enrol
// themselves, otherwise a page that sends them to their administrator.
// It reports whether it answered.
func (g *Gateway) needsEnrolment(w http.ResponseWriter, r *http.Request, s *stepup.Session, p challengeParams, tier string) (bool, error) {
	m := g.stepMethod(r, s, tier, p.via)
	en, ok := m.(stepup.Enroller)
	if !ok || s == nil || s.User == "" {
		return false, nil
	}
	enrolled, err := en.Enrolled(r.Context(), s.User)
	if err != nil {
		return true, &HTTPError{http.StatusInternalServerError, err}
	}
	if enrolled {
		return false, nil
	}
	if en.SelfEnroll() {
		q := p.query()
		q.Set("step", tier)
		http.Redirect(w, r, g.Engine.Prefix+"/enroll/"+m.Name()+"?"+q.Encode(), http.StatusSeeOther)
		return true, nil
	}
	g.Engine.Log(r, s, stepup.Record{Event: stepup.EventDenied, Tier: tier, Result: "refused", Reason: "not_enrolled"})
	return true, g.renderMessage(w, r, http.StatusForbidden, "Set-up needed",
		"This step needs an authenticator app, and none is set up for your account. Ask your administrator to set one up for you.",
		g.Engine.Prefix+"/", "Your session")
}

// enrolTOTP serves /enroll/totp: the QR code and key of a new secret, and
// the form whose code confirms it.
func (g *Gateway) enrolTOTP(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
	e := g.Engine
	var v url.Values
	if r.Method == http.MethodPost {
		if err := g.parseFormOrAnswer(w, r); err != nil {
			return nil
		}
		v = r.PostForm
	} else {
		v = r.URL.Query()
	}
	step, answered, err := g.enrolStep(w, r, v, "totp")
	if answered {
		return err
	}
	m, ok := methodOf[*totp.Method](e, step)
	if !ok {
		return g.renderMessage(w, r, http.StatusNotFound, "Not found", "There is no such set-up.", e.Prefix+"/", "Your session")
	}
	p, perm, ok, err := g.enrolWalk(w, r, s, m, step, v)
	if !ok {
		return err
	}
	// The waiting secret is bound to the session: it must be a stored one.
	if s, err = g.persist(w, r, s); err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	ctx := r.Context()
	if r.Method == http.MethodPost {
		rs, err := e.Limiter.Reserve(ctx, m.Name(), s.User, e.ClientIP(r), false)
		if err != nil {
			e.Log(r, s, stepup.Record{Event: stepup.EventRateLimited, Tier: step, Result: "refused", Reason: "too_many_failures"})
			return g.renderMessage(w, r, http.StatusTooManyRequests, "Too many attempts", "Too many failed attempts from your network. Try again later.", "", "")
		}
		defer rs.Settle(ctx, stepup.Unavailable)
		o, err := m.ConfirmEnrolment(ctx, s.Owner, s.User, r.PostForm.Get("code"))
		if errors.Is(err, totp.ErrEnrolmentExpired) {
			return g.showTOTPEnrolment(w, r, s, m, p, step, "That set-up expired. Scan the new code below.", http.StatusUnauthorized)
		}
		if err != nil {
			return &HTTPError{http.StatusInternalServerError, err}
		}
		rs.Settle(ctx, o.Result)
		if o.Result != stepup.Accepted {
			e.Log(r, s, stepup.Record{Event: stepup.EventEnroll, Tier: step, AuthMethod: m.Name(), Result: o.Result.String(), Reason: o.Reason})
			return g.showTOTPEnrolment(w, r, s, m, p, step, o.Message, http.StatusUnauthorized)
		}
		o.Method = m.Name()
		kind := stepup.ChangeEnroll
		if perm == enrolChange {
			kind = stepup.ChangeReplace
		}
		e.CredentialChanged(ctx, func(rec stepup.Record) { e.Log(r, s, rec) }, s.User, kind, step, m.Name())
		// The confirming code proves possession of the new secret: it is
		// a step-up to the tier.
		if _, err := g.accept(w, r, s, step, p, o, stepup.Record{Event: stepup.EventStepUp, Tier: step, AuthMethod: m.Name(), Result: "success", Reason: "enrolled"}); err != nil {
			return err
		}
		http.Redirect(w, r, e.Prefix+"/challenge?"+p.query().Encode(), http.StatusSeeOther)
		return nil
	}
	return g.showTOTPEnrolment(w, r, s, m, p, step, "", http.StatusOK)
}

// methodOf returns the tier's method of type T, among its alternatives.
func methodOf[T stepup.Method](e *stepup.Engine, tier string) (T, bool) {
	for _, m := range e.Alternatives[tier] {
		if t, ok := m.(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}

// tiersUsing lists the tiers whose method has the name, in hierarchy order.
func (g *Gateway) tiersUsing(method string) []string {
	var out []string
	for _, name := range g.Engine.Hierarchy.Names() {
		if _, ok := g.Engine.Method(name, method); ok {
			out = append(out, name)
		}
	}
	return out
}

// enrolStep is the tier an enrolment page is for: the one named by step,
// else the only tier using the method. When several do, it answers with
// the choice; when none does, with not found.
func (g *Gateway) enrolStep(w http.ResponseWriter, r *http.Request, v url.Values, method string) (string, bool, error) {
	if step := v.Get("step"); step != "" {
		return step, false, nil
	}
	e := g.Engine
	steps := g.tiersUsing(method)
	switch len(steps) {
	case 0:
		return "", true, g.renderMessage(w, r, http.StatusNotFound, "Not found", "There is no such set-up.", e.Prefix+"/", "Your session")
	case 1:
		v.Set("step", steps[0])
		return steps[0], false, nil
	}
	d := &pageData{Title: "Choose what to set up", Notice: "Several steps use this kind of sign-in. Which one do you want to set up?"}
	for _, step := range steps {
		d.Choices = append(d.Choices, choice{Label: step, URL: e.Prefix + "/enroll/" + method + "?" + url.Values{"step": {step}}.Encode()})
	}
	return "", true, g.render(w, r, http.StatusOK, "message", d)
}

// Whether a user may enrol a credential for a tier.
type enrolPermission int

const (
	enrolFirst    enrolPermission = iota // a first credential, trust on first use
	enrolChange                          // another or a new credential, the tier fresh
	enrolNeedBase                        // sign in / reach the base tier first
	enrolNeedTier                        // a credential exists: step up to the tier itself first
	enrolRefused                         // credentials are provisioned by the administrator
)

// CredentialChangeMaxAge is how recently the tier itself must have been
// reached to replace its credential, add a further key or remove one: the
// user proves they hold the current credential just before changing it.
const CredentialChangeMaxAge = 5 * time.Minute

// changeFreshness is CredentialChangeMaxAge, or the tier's own max age when
// that is shorter.
func (g *Gateway) changeFreshness(step string) time.Duration {
	t, _ := g.Engine.Hierarchy.Get(step)
	return min(CredentialChangeMaxAge, t.MaxAge)
}

// enrolPermissionFor: a user with no credential for the tier (none enrolled
// and none provisioned) may set up a first one while holding the base tier,
// where the tier says enroll self (trust on first use). Once a credential
// exists, changing it (replacing a secret, adding a further key) needs the
// tier itself, held and fresh: a password alone never reaches a tier by
// enrolling a credential of the attacker's choice.
func (g *Gateway) enrolPermissionFor(r *http.Request, s *stepup.Session, m stepup.Enroller, step string) (enrolPermission, error) {
	e := g.Engine
	now := e.Now()
	t, _ := e.Hierarchy.Get(step)
	if s == nil || s.User == "" || (t.Base != "" && !s.Stack.Holds(e.Hierarchy, t.Base, now, 0)) {
		return enrolNeedBase, nil
	}
	enrolled, err := g.hasCredential(r, s.User, step)
	if err != nil {
		return enrolRefused, err
	}
	switch {
	case enrolled && s.Stack.Holds(e.Hierarchy, step, now, g.changeFreshness(step)):
		return enrolChange, nil
	case enrolled:
		return enrolNeedTier, nil
	case m.SelfEnroll():
		return enrolFirst, nil
	}
	return enrolRefused, nil
}

// hasCredential reports whether the user has a credential for any of the
// tier's methods. A method that enrols nothing here (a password, RADIUS, a
// third party's) counts as one: trust on first use must never let a key
// of the attacker's choice stand in for a credential held elsewhere.
func (g *Gateway) hasCredential(r *http.Request, user, tier string) (bool, error) {
	for _, m := range g.Engine.Alternatives[tier] {
		en, ok := m.(stepup.Enroller)
		if !ok {
			return true, nil
		}
		enrolled, err := en.Enrolled(r.Context(), user)
		if err != nil || enrolled {
			return enrolled, err
		}
	}
	return false, nil
}

// enrolWalk reads the walk an enrolment page is part of (the step's tier
// by default) and checks that the user may enrol now; when not, it has
// answered.
func (g *Gateway) enrolWalk(w http.ResponseWriter, r *http.Request, s *stepup.Session, m stepup.Enroller, step string, v url.Values) (challengeParams, enrolPermission, bool, error) {
	e := g.Engine
	if v.Get("tier") == "" && v.Get("target") == "" {
		v.Set("tier", step)
	}
	p, ok := g.parseChallenge(v)
	if !ok || (p.target != step && !e.Hierarchy.IsAbove(p.target, step)) {
		return p, 0, false, g.renderMessage(w, r, http.StatusBadRequest, "Unknown step-up", "The step-up you asked for does not exist.", e.Prefix+"/", "Your session")
	}
	perm, ok, err := g.mayEnrol(w, r, s, m, step, p)
	return p, perm, ok, err
}

// mayEnrol applies enrolPermissionFor for a page: a user who must step up
// first is sent to the challenge (which comes back here), a refused one
// sees why.
func (g *Gateway) mayEnrol(w http.ResponseWriter, r *http.Request, s *stepup.Session, m stepup.Enroller, step string, p challengeParams) (enrolPermission, bool, error) {
	e := g.Engine
	perm, err := g.enrolPermissionFor(r, s, m, step)
	if err != nil {
		return perm, false, &HTTPError{http.StatusInternalServerError, err}
	}
	switch perm {
	case enrolFirst, enrolChange:
		return perm, true, nil
	case enrolNeedBase:
		q := p.query()
		q.Set("tier", step)
		http.Redirect(w, r, e.Prefix+"/challenge?"+q.Encode(), http.StatusSeeOther)
		return perm, false, nil
	case enrolNeedTier:
		http.Redirect(w, r, g.freshStepURL(step, g.enrolPageURL(m, step, p)), http.StatusSeeOther)
		return perm, false, nil
	}
	e.Log(r, s, stepup.Record{Event: stepup.EventEnroll, Tier: step, Result: "refused", Reason: "self_enrolment_disabled"})
	return perm, false, g.renderMessage(w, r, http.StatusForbidden, "Set-up not available",
		"Credentials for this step are set up by your administrator. Ask them to set one up for you.", e.Prefix+"/", "Your session")
}

// freshStepURL is the challenge that reaches step freshly enough to change
// its credentials, then returns to ret.
func (g *Gateway) freshStepURL(step, ret string) string {
	q := url.Values{"tier": {step}, "max_age": {strconv.Itoa(int(g.changeFreshness(step).Seconds()))}, "return": {ret}}
	return g.Engine.Prefix + "/challenge?" + q.Encode()
}

// enrolPageURL is the enrolment page of a step within a walk.
func (g *Gateway) enrolPageURL(m stepup.Enroller, step string, p challengeParams) string {
	q := p.query()
	q.Set("step", step)
	return g.Engine.Prefix + "/enroll/" + m.(stepup.Method).Name() + "?" + q.Encode()
}

func (g *Gateway) showTOTPEnrolment(w http.ResponseWriter, r *http.Request, s *stepup.Session, m *totp.Method, p challengeParams, step, errMsg string, status int) error {
	en, err := m.BeginEnrolment(r.Context(), s.Owner, s.User, hostOnly(r.Host))
	if err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	o := m.Options()
	d := &pageData{
		Title: "Set up your authenticator app", Error: errMsg, Tier: step, Target: p.target, Return: p.ret, Pending: p.pending,
		QRURL:     g.Engine.Prefix + "/enroll/totp/qr.png?" + url.Values{"step": {step}}.Encode(),
		ManualKey: totp.ManualKey(en.Secret), KeyURI: en.URI,
		KeyDetails: "Time-based, " + strconv.Itoa(o.Digits) + " digits, every " + strconv.Itoa(int(o.Period.Seconds())) + " seconds, " + o.Algorithm + ".",
	}
	if p.maxAge > 0 {
		d.MaxAge = strconv.Itoa(int(p.maxAge.Seconds()))
	}
	return g.render(w, r, status, "enroll_totp", d)
}

// enrolTOTPQR serves the QR code of the session's waiting enrolment.
func (g *Gateway) enrolTOTPQR(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
	m, ok := methodOf[*totp.Method](g.Engine, r.URL.Query().Get("step"))
	if !ok || s == nil || s.User == "" {
		http.NotFound(w, r)
		return nil
	}
	en, err := m.PendingEnrolment(r.Context(), s.Owner, s.User, hostOnly(r.Host))
	if err != nil {
		http.NotFound(w, r)
		return nil
	}
	img, err := totp.QRCode(en.URI, 240)
	if err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "image/png")
	_, err = w.Write(img)
	return err
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}
