package web

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/caddy-stepup/caddy-stepup/stepup"
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
	return true, g.renderMessage(w, r, http.StatusForbidden, tx("msg.setup_needed.title"),
		tx("msg.setup_needed.body", "What", credentialName(langOf(r), m)), g.Engine.Prefix+"/", tx("nav.session"))
}

// enrolForm serves /enroll/{method} for a method that sets its credential
// up with a form (FormEnroller): what the method shows, and the form whose
// answer confirms it.
func (g *Gateway) enrolForm(w http.ResponseWriter, r *http.Request, s *stepup.Session, method string) error {
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
	step, answered, err := g.enrolStep(w, r, v, method)
	if answered {
		return err
	}
	mm, _ := e.Method(step, method)
	m, ok := mm.(stepup.FormEnroller)
	if !ok || mm.Name() != method {
		return g.noSuchSetup(w, r)
	}
	p, _, ok, err := g.enrolWalk(w, r, s, m, step, v)
	if !ok {
		return err
	}
	// The waiting credential is bound to the session: it must be a stored one.
	if s, err = g.persist(w, r, s); err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	if r.Method == http.MethodPost {
		res, err := e.EnrolWithForm(w, r, s, m, stepup.Step{Tier: step, Pending: p.pending, Target: p.target}, r.PostForm)
		switch {
		case errors.Is(err, stepup.ErrEnrolmentExpired):
			return g.showFormEnrolment(w, r, s, m, method, p, step, langOf(r).T("enrol.expired"), http.StatusUnauthorized)
		case err != nil:
			return &HTTPError{http.StatusInternalServerError, err}
		}
		setSession(r, res.Session)
		switch res.Kind {
		case stepup.StepRateLimited:
			return g.renderMessage(w, r, http.StatusTooManyRequests, tx("msg.too_many_attempts.title"), tx("msg.too_many_attempts.body"), "", text{})
		case stepup.StepRejected:
			return g.showFormEnrolment(w, r, s, m, method, p, step, outcomeMessage(langOf(r), mm, res.Outcome), http.StatusUnauthorized)
		}
		if g.hasPrefixPath(p.ret) {
			g.setFlash(w, r, "flash.app_set_up")
		}
		http.Redirect(w, r, e.Prefix+"/challenge?"+p.query().Encode(), http.StatusSeeOther)
		return nil
	}
	return g.showFormEnrolment(w, r, s, m, method, p, step, "", http.StatusOK)
}

func (g *Gateway) noSuchSetup(w http.ResponseWriter, r *http.Request) error {
	return g.renderMessage(w, r, http.StatusNotFound, tx("msg.not_found.title"), tx("msg.no_such_setup"), g.Engine.Prefix+"/", tx("nav.session"))
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
		return "", true, g.noSuchSetup(w, r)
	case 1:
		v.Set("step", steps[0])
		return steps[0], false, nil
	}
	l := langOf(r)
	d := &pageData{L: l, Title: l.T("enrol.choose.title"), Notice: l.T("enrol.choose.body")}
	for _, step := range steps {
		d.Choices = append(d.Choices, choice{Label: g.tierLabel(l, step), URL: e.Prefix + "/enroll/" + method + "?" + url.Values{"step": {step}}.Encode()})
	}
	return "", true, g.render(w, r, http.StatusOK, "message", d)
}

// enrolWalk reads the walk an enrolment page is part of (the step's tier
// by default) and checks that the user may enrol now; when not, it has
// answered.
func (g *Gateway) enrolWalk(w http.ResponseWriter, r *http.Request, s *stepup.Session, m stepup.Enroller, step string, v url.Values) (challengeParams, stepup.EnrolPermission, bool, error) {
	e := g.Engine
	if v.Get("tier") == "" && v.Get("target") == "" {
		v.Set("tier", step)
	}
	p, ok := g.parseChallenge(v)
	if !ok || (p.target != step && !e.Hierarchy.IsAbove(p.target, step)) {
		return p, 0, false, g.unknownStep(w, r)
	}
	perm, ok, err := g.mayEnrol(w, r, s, m, step, p)
	return p, perm, ok, err
}

// mayEnrol applies the engine's EnrolCheck for a page: a user who must step up
// first is sent to the challenge (which comes back here), a refused one
// sees why.
func (g *Gateway) mayEnrol(w http.ResponseWriter, r *http.Request, s *stepup.Session, m stepup.Enroller, step string, p challengeParams) (stepup.EnrolPermission, bool, error) {
	e := g.Engine
	perm, need, err := g.Engine.EnrolCheck(r.Context(), s, m, step)
	if err != nil {
		return perm, false, &HTTPError{http.StatusInternalServerError, err}
	}
	switch perm {
	case stepup.EnrolFirst, stepup.EnrolChange:
		return perm, true, nil
	case stepup.EnrolNeedBase:
		q := p.query()
		q.Set("tier", step)
		http.Redirect(w, r, e.Prefix+"/challenge?"+q.Encode(), http.StatusSeeOther)
		return perm, false, nil
	case stepup.EnrolNeedTier:
		http.Redirect(w, r, g.freshStepURL(need, g.enrolPageURL(m, step, p)), http.StatusSeeOther)
		return perm, false, nil
	}
	e.Log(r, s, stepup.Record{Event: stepup.EventEnroll, Tier: step, Result: "refused", Reason: "self_enrolment_disabled"})
	return perm, false, g.renderMessage(w, r, http.StatusForbidden, tx("msg.setup_unavailable.title"), tx("msg.setup_unavailable.body"), e.Prefix+"/", tx("nav.session"))
}

// freshStepURL is the challenge that reaches step freshly enough to change
// its credentials, then returns to ret.
func (g *Gateway) freshStepURL(step, ret string) string {
	q := url.Values{"tier": {step}, "max_age": {strconv.Itoa(int(g.Engine.ChangeFreshness(step).Seconds()))}, "return": {ret}}
	return g.Engine.Prefix + "/challenge?" + q.Encode()
}

// enrolPageURL is the enrolment page of a step within a walk.
func (g *Gateway) enrolPageURL(m stepup.Enroller, step string, p challengeParams) string {
	q := p.query()
	q.Set("step", step)
	return g.Engine.Prefix + "/enroll/" + m.(stepup.Method).Name() + "?" + q.Encode()
}

func (g *Gateway) showFormEnrolment(w http.ResponseWriter, r *http.Request, s *stepup.Session, m stepup.FormEnroller, method string, p challengeParams, step, errMsg string, status int) error {
	view, err := m.BeginFormEnrolment(r.Context(), s.Owner, s.User, hostOnly(r.Host))
	if err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	l := langOf(r)
	mm := m.(stepup.Method)
	k := "method." + method + ".enrol."
	d := &pageData{
		L: l, Error: errMsg, Tier: step, Target: p.target, Return: p.ret, Pending: p.pending,
		Enrolment: view, EnrolAction: g.Engine.Prefix + "/enroll/" + method,
		Heading: l.Or(k+"title", view.Title), Help: l.Or(k+"help", view.Help), ImageAlt: l.Or(k+"image_alt", view.ImageAlt),
		SecretLabel: l.Or(k+"secret_label", view.SecretLabel), Details: view.Details, EnrolNotice: l.Or(k+"notice", view.Notice),
		Submit: l.Or(k+"submit", view.Prompt.Submit),
	}
	if view.Notice == "" {
		d.EnrolNotice = ""
	}
	d.Inputs = inputs(l, mm, view.Prompt.Fields, nil)
	for i := range d.Inputs {
		d.Inputs[i].Label = l.Or(k+"field."+d.Inputs[i].Name, d.Inputs[i].Label)
	}
	g.enrolProgress(l, d, step, p)
	if view.ImageAlt != "" {
		d.ImageURL = g.Engine.Prefix + "/enroll/" + method + "/qr.png?" + url.Values{"step": {step}}.Encode()
	}
	if p.maxAge > 0 {
		d.MaxAge = strconv.Itoa(int(p.maxAge.Seconds()))
	}
	return g.render(w, r, status, "enroll_form", d)
}

// enrolProgress says where an enrolment page is in its walk, its title,
// and where Cancel goes: back to the session page it came from, or to
// discarding the walk's kept request.
func (g *Gateway) enrolProgress(l *lang, d *pageData, step string, p challengeParams) {
	chain, _ := g.Engine.Hierarchy.Chain(p.target)
	for i, name := range chain {
		if name == step && len(chain) > 1 {
			d.StepText = l.T("enrol.n_of_m", "Step", i+1, "Steps", len(chain), "Tier", g.tierLabel(l, step))
		}
	}
	d.Title = d.Heading
	if d.StepText != "" {
		d.Title = d.StepText
	}
	d.CancelURL = g.cancelURL(p, "")
}

// cancelURL is where a walk's Cancel goes: a kept request is discarded
// (after a confirmation), a walk from the session page goes back there,
// anything else to the site's home.
func (g *Gateway) cancelURL(p challengeParams, here string) string {
	e := g.Engine
	switch {
	case p.pending != "":
		q := url.Values{"return": {p.ret}}
		if here != "" {
			q.Set("then", here)
		}
		return e.Prefix + "/cancel/" + p.pending + "?" + q.Encode()
	case g.hasPrefixPath(p.ret):
		return p.ret
	}
	return "/"
}

// enrolImage serves the image (a QR code) of the session's waiting
// enrolment.
func (g *Gateway) enrolImage(w http.ResponseWriter, r *http.Request, s *stepup.Session, method string) error {
	mm, _ := g.Engine.Method(r.URL.Query().Get("step"), method)
	m, ok := mm.(stepup.FormEnroller)
	if !ok || mm.Name() != method || s == nil || s.User == "" {
		http.NotFound(w, r)
		return nil
	}
	img, err := m.EnrolmentImage(r.Context(), s.Owner, s.User, hostOnly(r.Host))
	if err != nil {
		http.NotFound(w, r)
		return nil
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
