package web

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/totp"
)

// needsEnrolment decides what a step page shows for a method the user has
// no credential for yet: the enrolment page when users may enrol
// themselves, otherwise a page that sends them to their administrator.
// It reports whether it answered.
func (g *Gateway) needsEnrolment(w http.ResponseWriter, r *http.Request, s *stepup.Session, p challengeParams, tier string) (bool, error) {
	en, ok := g.Engine.Methods[tier].(stepup.Enroller)
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
		http.Redirect(w, r, g.Engine.Prefix+"/enroll/"+g.Engine.Methods[tier].Name()+"?"+q.Encode(), http.StatusSeeOther)
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
	step := v.Get("step")
	m, ok := e.Methods[step].(*totp.Method)
	if !ok {
		return g.renderMessage(w, r, http.StatusNotFound, "Not found", "There is no such set-up.", e.Prefix+"/", "Your session")
	}
	p, ok, err := g.enrolWalk(w, r, s, m, step, v)
	if !ok {
		return err
	}
	// The waiting secret is bound to the session: it must be a stored one.
	if s, err = e.Persist(w, r, s); err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	ctx := r.Context()
	if r.Method == http.MethodPost {
		if e.Limiter.Blocked(ctx, step, "", e.ClientIP(r)) {
			e.Log(r, s, stepup.Record{Event: stepup.EventRateLimited, Tier: step, Result: "refused", Reason: "too_many_failures"})
			return g.renderMessage(w, r, http.StatusTooManyRequests, "Too many attempts", "Too many failed attempts from your network. Try again later.", "", "")
		}
		o, err := m.ConfirmEnrolment(ctx, s.Owner, s.User, r.PostForm.Get("code"))
		if errors.Is(err, totp.ErrEnrolmentExpired) {
			return g.showTOTPEnrolment(w, r, s, m, p, step, "That set-up expired. Scan the new code below.", http.StatusUnauthorized)
		}
		if err != nil {
			return &HTTPError{http.StatusInternalServerError, err}
		}
		rec := stepup.Record{Event: stepup.EventEnroll, Tier: step, Result: o.Result.String(), Reason: o.Reason}
		if o.Result != stepup.Accepted {
			e.Limiter.Failed(ctx, step, "", e.ClientIP(r))
			e.Log(r, s, rec)
			return g.showTOTPEnrolment(w, r, s, m, p, step, o.Message, http.StatusUnauthorized)
		}
		e.Log(r, s, rec)
		// The confirming code proves possession of the new secret: it is
		// a step-up to the tier.
		if _, err := g.accept(w, r, s, step, p, o, stepup.Record{Event: stepup.EventStepUp, Tier: step, Result: "success", Reason: "enrolled"}); err != nil {
			return err
		}
		http.Redirect(w, r, e.Prefix+"/challenge?"+p.query().Encode(), http.StatusSeeOther)
		return nil
	}
	return g.showTOTPEnrolment(w, r, s, m, p, step, "", http.StatusOK)
}

// Whether a user may enrol a credential for a tier.
type enrolPermission int

const (
	enrolAllowed  enrolPermission = iota
	enrolNeedBase                 // sign in / reach the base tier first
	enrolRefused                  // credentials are provisioned by the administrator
)

// enrolPermissionFor: enrolment needs the tier's base held and fresh and
// self-service enrolment, or the tier itself held (replacing or adding to
// one's own credentials).
func (g *Gateway) enrolPermissionFor(s *stepup.Session, m stepup.Enroller, step string) enrolPermission {
	e := g.Engine
	now := e.Now()
	t, _ := e.Hierarchy.Get(step)
	switch {
	case s == nil || s.User == "" || (t.Base != "" && !s.Stack.Holds(e.Hierarchy, t.Base, now, 0)):
		return enrolNeedBase
	case s.Stack.Holds(e.Hierarchy, step, now, 0) || m.SelfEnroll():
		return enrolAllowed
	}
	return enrolRefused
}

// enrolWalk reads the walk an enrolment page is part of (the step's tier
// by default) and checks that the user may enrol now; when not, it has
// answered.
func (g *Gateway) enrolWalk(w http.ResponseWriter, r *http.Request, s *stepup.Session, m stepup.Enroller, step string, v url.Values) (challengeParams, bool, error) {
	e := g.Engine
	if v.Get("tier") == "" && v.Get("target") == "" {
		v.Set("tier", step)
	}
	p, ok := g.parseChallenge(v)
	if !ok || (p.target != step && !e.Hierarchy.IsAbove(p.target, step)) {
		return p, false, g.renderMessage(w, r, http.StatusBadRequest, "Unknown step-up", "The step-up you asked for does not exist.", e.Prefix+"/", "Your session")
	}
	ok, err := g.mayEnrol(w, r, s, m, step, p)
	return p, ok, err
}

// mayEnrol applies enrolPermissionFor for a page: a user who must step up
// first is sent to the challenge (which comes back here), a refused one
// sees why.
func (g *Gateway) mayEnrol(w http.ResponseWriter, r *http.Request, s *stepup.Session, m stepup.Enroller, step string, p challengeParams) (bool, error) {
	e := g.Engine
	switch g.enrolPermissionFor(s, m, step) {
	case enrolAllowed:
		return true, nil
	case enrolNeedBase:
		q := p.query()
		q.Set("tier", step)
		http.Redirect(w, r, e.Prefix+"/challenge?"+q.Encode(), http.StatusSeeOther)
		return false, nil
	}
	e.Log(r, s, stepup.Record{Event: stepup.EventEnroll, Tier: step, Result: "refused", Reason: "self_enrolment_disabled"})
	return false, g.renderMessage(w, r, http.StatusForbidden, "Set-up not available",
		"Credentials for this step are set up by your administrator. Ask them to set one up for you.", e.Prefix+"/", "Your session")
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
	m, ok := g.Engine.Methods[r.URL.Query().Get("step")].(*totp.Method)
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
