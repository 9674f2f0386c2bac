package web

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

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
	return true, g.renderMessage(w, r, http.StatusForbidden, "Set-up needed",
		"This step needs "+withArticle(credentialName(m))+", and none is set up for your account. Ask your administrator to set one up for you.",
		g.Engine.Prefix+"/", "Your session")
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
		return g.renderMessage(w, r, http.StatusNotFound, "Not found", "There is no such set-up.", e.Prefix+"/", "Your session")
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
			return g.showFormEnrolment(w, r, s, m, method, p, step, "That set-up expired. Start again with what is shown below.", http.StatusUnauthorized)
		case err != nil:
			return &HTTPError{http.StatusInternalServerError, err}
		}
		setSession(r, res.Session)
		switch res.Kind {
		case stepup.StepRateLimited:
			return g.renderMessage(w, r, http.StatusTooManyRequests, "Too many attempts", "Too many failed attempts from your network. Try again later.", "", "")
		case stepup.StepRejected:
			return g.showFormEnrolment(w, r, s, m, method, p, step, res.Outcome.Message, http.StatusUnauthorized)
		}
		http.Redirect(w, r, e.Prefix+"/challenge?"+p.query().Encode(), http.StatusSeeOther)
		return nil
	}
	return g.showFormEnrolment(w, r, s, m, method, p, step, "", http.StatusOK)
}

// credentialName names a method's credential for people.
func credentialName(m stepup.Method) string {
	if n, ok := m.(stepup.CredentialNamer); ok {
		return n.CredentialName()
	}
	return "credential"
}

func withArticle(noun string) string {
	if noun != "" && strings.ContainsRune("aeiou", rune(noun[0])) {
		return "an " + noun
	}
	return "a " + noun
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
		return p, 0, false, g.renderMessage(w, r, http.StatusBadRequest, "Unknown step-up", "The step-up you asked for does not exist.", e.Prefix+"/", "Your session")
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
	return perm, false, g.renderMessage(w, r, http.StatusForbidden, "Set-up not available",
		"Credentials for this step are set up by your administrator. Ask them to set one up for you.", e.Prefix+"/", "Your session")
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
	d := &pageData{
		Title: view.Title, Error: errMsg, Tier: step, Target: p.target, Return: p.ret, Pending: p.pending,
		Enrolment: view, EnrolAction: g.Engine.Prefix + "/enroll/" + method,
	}
	if view.ImageAlt != "" {
		d.ImageURL = g.Engine.Prefix + "/enroll/" + method + "/qr.png?" + url.Values{"step": {step}}.Encode()
	}
	if p.maxAge > 0 {
		d.MaxAge = strconv.Itoa(int(p.maxAge.Seconds()))
	}
	return g.render(w, r, status, "enroll_form", d)
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
