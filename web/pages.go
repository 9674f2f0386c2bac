package web

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/tiers"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

var pages = map[string]*template.Template{}

func init() {
	for _, name := range []string{"step", "status", "message", "confirm", "enroll_form", "enroll_ceremony", "approval", "approvals"} {
		pages[name] = template.Must(template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
}

// maxFormBytes bounds the forms the pages accept.
const maxFormBytes = 64 << 10

// securityHeaders are sent with every page: nothing cached, nothing framed,
// no script but the module's own files, no referrer across origins.
func securityHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
}

// pageData is what every page template sees.
type pageData struct {
	Title, CSRF, Prefix string
	Error, Notice       string
	Link, LinkText      string
	Choices             []choice
	// step page: the method shown, and the tier's other methods
	Via          string
	Alternatives []choice

	// step page
	Chain       []chainStep
	Step, Steps int
	Tier        string
	TierLabel   string
	Target      string
	Return      string
	MaxAge      string
	Pending     string
	State       string
	RoundPrompt string
	Prompt      stepup.Prompt
	PendingReq  *stepup.PendingRequest
	Fields      []stepup.FormField
	MoreFields  int
	IsForm      bool
	Changes     []changeRow
	User, Roles string
	Tiers       []tierRow
	Roots       []string

	// form enrolment page
	Enrolment   *stepup.EnrolmentView
	EnrolAction string
	ImageURL    string
	// ceremony enrolment page
	Registration stepup.RegistrationText

	// ceremonies, and credentials of methods that keep several
	CeremonyBegin, CeremonyFinish string
	Keys                          []keyRow

	// approval pages: a request, the inbox; Refresh reloads a waiting page
	// every so many seconds (no script).
	Approval      *approvalView
	Inbox, Recent []inboxRow
	Refresh       int
}

type chainStep struct{ Label, State string }

// choice is one of several pages a user may go on to.
type choice struct{ Label, URL string }

type tierRow struct {
	Name, Base, Method, Left string
	Held, CanReach           bool
	// Enrol links to setting up (or replacing) the tier's credentials.
	Enrol []choice
}

func (g *Gateway) render(w http.ResponseWriter, r *http.Request, status int, page string, d *pageData) error {
	if st := stateOf(r); st != nil && st.s != nil && !st.s.Stored() {
		// An identity from earlier in the route, never stored: store it now,
		// so that the token is bound to the session the page's forms and
		// ceremonies will present.
		if s, err := g.Engine.Persist(w, r, st.s); err == nil {
			st.s = s
		}
	}
	d.CSRF = g.Engine.CSRF.Token(w, r, ownerOf(r))
	d.Prefix = g.Engine.Prefix
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	return pages[page].ExecuteTemplate(w, "layout", d)
}

func (g *Gateway) renderMessage(w http.ResponseWriter, r *http.Request, status int, title, text, link, linkText string) error {
	d := &pageData{Title: title, Link: link, LinkText: linkText}
	if status >= 400 {
		d.Error = text
	} else {
		d.Notice = text
	}
	return g.render(w, r, status, "message", d)
}

// serveOwn serves the pages under the prefix. A confirmed replay of a kept
// request continues through the decision and on to next.
func (g *Gateway) serveOwn(w http.ResponseWriter, r *http.Request, next Next) error {
	e := g.Engine
	if name, ok := strings.CutPrefix(r.URL.Path, e.Prefix+"/assets/"); ok {
		return g.serveAsset(w, r, name)
	}
	s, err := e.SessionChecked(w, r)
	if err != nil {
		// No page can be served for a session nobody can read; the
		// assets above need none.
		return g.unavailable(w, r, err)
	}
	withSession(r, s)
	st := stateOf(r)
	st.next = next
	g.routes().ServeHTTP(w, r)
	return st.err
}

func (g *Gateway) serveAsset(w http.ResponseWriter, r *http.Request, name string) error {
	b, err := fs.ReadFile(assetFS, "assets/"+name)
	if err != nil || strings.Contains(name, "..") {
		http.NotFound(w, r)
		return nil
	}
	switch {
	case strings.HasSuffix(name, ".css"):
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case strings.HasSuffix(name, ".js"):
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, err = w.Write(b)
	return err
}

// challengeParams are the parameters a step-up walk carries from page to
// page: the target tier, where to return, a stricter max age, a kept request.
type challengeParams struct {
	target  string
	ret     string
	maxAge  time.Duration
	pending string
	// via names the method chosen for the current step, among its tier's
	// alternatives ("" for the default).
	via string
}

func (g *Gateway) parseChallenge(v url.Values) (challengeParams, bool) {
	e := g.Engine
	p := challengeParams{target: v.Get("tier"), pending: v.Get("pending"), via: v.Get("via")}
	if len(p.via) > 64 {
		p.via = ""
	}
	if p.target == "" {
		p.target = v.Get("target")
	}
	if !e.Hierarchy.Has(p.target) {
		return p, false
	}
	p.ret = "/"
	if raw := v.Get("return"); raw != "" {
		if u, ok := stepup.SafeReturn(raw, e.Prefix); ok {
			p.ret = u
		}
	}
	if n, err := strconv.Atoi(v.Get("max_age")); err == nil && n > 0 && n < 366*24*3600 {
		p.maxAge = time.Duration(n) * time.Second
	}
	if len(p.pending) > 64 {
		p.pending = ""
	}
	return p, true
}

func (p challengeParams) query() url.Values {
	q := url.Values{"tier": {p.target}, "return": {p.ret}}
	if p.maxAge > 0 {
		q.Set("max_age", strconv.Itoa(int(p.maxAge.Seconds())))
	}
	if p.pending != "" {
		q.Set("pending", p.pending)
	}
	if p.via != "" {
		q.Set("via", p.via)
	}
	return q
}

// stepMethod is the method a step is taken with: the one the walk chose
// (via), else the first the user has a credential for, else the first the
// user may set up, else the first.
func (g *Gateway) stepMethod(r *http.Request, s *stepup.Session, tier, via string) stepup.Method {
	e := g.Engine
	if m, ok := e.Method(tier, via); ok && via != "" {
		return m
	}
	alts := e.Alternatives[tier]
	if len(alts) > 1 && s != nil && s.User != "" {
		for _, m := range alts {
			en, enrols := m.(stepup.Enroller)
			if !enrols {
				return m
			}
			if ok, err := en.Enrolled(r.Context(), s.User); err == nil && ok {
				return m
			}
		}
		// Nothing set up yet: the first the user may set up themselves.
		for _, m := range alts {
			if en, ok := m.(stepup.Enroller); ok && en.SelfEnroll() {
				return m
			}
		}
	}
	return alts[0]
}

// methodLabel names a method for people: its prompt's title.
func methodLabel(m stepup.Method) string {
	if t := m.Prompt("").Title; t != "" {
		return t
	}
	return m.Name()
}

// challenge walks the chain from what the session holds to the target tier:
// it shows the first missing step, or finishes when nothing is missing.
func (g *Gateway) challenge(w http.ResponseWriter, r *http.Request, s *stepup.Session, v url.Values, errMsg string, status int) error {
	e := g.Engine
	p, ok := g.parseChallenge(v)
	if !ok {
		return g.renderMessage(w, r, http.StatusBadRequest, "Unknown step-up", "The step-up you asked for does not exist.", e.Prefix+"/", "Your session")
	}
	var stack tiers.Stack
	if s != nil {
		stack = s.Stack
	}
	now := e.Now()
	next, err := stack.Next(e.Hierarchy, p.target, now, p.maxAge)
	if err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	var kept *stepup.PendingRequest
	if p.pending != "" && s != nil {
		kept, _ = e.PeekPending(r.Context(), s, p.pending)
		if kept == nil && !e.PendingWaiting(r.Context(), s, p.pending) {
			p.pending = ""
		}
	}
	// A per-request requirement: the target must be reached after the
	// request was made, whatever the stack held before.
	if next == "" && kept != nil && kept.Fresh && kept.SteppedUp.IsZero() {
		next = p.target
	}
	if next == "" {
		return g.finish(w, r, s, p, kept)
	}
	if answered, err := g.needsEnrolment(w, r, s, p, next); answered {
		return err
	}
	return g.renderStep(w, r, s, p, next, errMsg, status, nil)
}

// renderStep shows the form of one step of the chain.
func (g *Gateway) renderStep(w http.ResponseWriter, r *http.Request, s *stepup.Session, p challengeParams, tier, errMsg string, status int, round *roundView) error {
	e := g.Engine
	chain, _ := e.Hierarchy.Chain(p.target)
	d := &pageData{Title: "Step up", Tier: tier, Target: p.target, Return: p.ret, Pending: p.pending, Error: errMsg, Steps: len(chain)}
	if p.maxAge > 0 {
		d.MaxAge = strconv.Itoa(int(p.maxAge.Seconds()))
	}
	state := "done"
	for i, name := range chain {
		if name == tier {
			d.Step = i + 1
			state = "current"
		}
		d.Chain = append(d.Chain, chainStep{Label: name, State: state})
		if state == "current" {
			state = "todo"
		}
	}
	user := ""
	if s != nil {
		user = s.User
	}
	m := g.stepMethod(r, s, tier, p.via)
	d.Prompt = m.Prompt(user)
	d.TierLabel = tier + " (" + m.Name() + ")"
	if alts := e.Alternatives[tier]; len(alts) > 1 {
		d.Via = m.Name()
		for _, alt := range alts {
			if alt.Name() == m.Name() {
				continue
			}
			q := p.query()
			q.Set("via", alt.Name())
			d.Alternatives = append(d.Alternatives, choice{Label: "Use " + strings.ToLower(methodLabel(alt)) + " instead", URL: e.Prefix + "/challenge?" + q.Encode()})
		}
	}
	if round != nil {
		d.RoundPrompt, d.State = round.prompt, round.id
	}
	if d.Prompt.Ceremony {
		d.CeremonyBegin, d.CeremonyFinish = ceremonyURLs(e.Prefix, m.Name(), tier, p)
	}
	if status == 0 {
		status = http.StatusOK
		if _, ok := m.(stepup.RequestIdentity); ok {
			status = http.StatusUnauthorized // nothing to fill in here
		}
	}
	return g.render(w, r, status, "step", d)
}

type roundView struct{ id, prompt string }

// finish ends a walk: a kept navigation gets its one-time grant, a kept
// form goes to the confirmation page, anything else returns.
func (g *Gateway) finish(w http.ResponseWriter, r *http.Request, s *stepup.Session, p challengeParams, kept *stepup.PendingRequest) error {
	e := g.Engine
	if kept == nil {
		http.Redirect(w, r, p.ret, http.StatusSeeOther)
		return nil
	}
	if kept.Method == http.MethodGet || kept.Method == http.MethodHead {
		if _, err := e.TakePending(r.Context(), s, kept.ID); err != nil {
			return g.challengeExpired(w, r)
		}
		// The kept URI came from a request line: only a same-origin path
		// is followed ("//host/…" would leave the site).
		target, ok := stepup.SafeReturn(kept.URI, e.Prefix)
		if !ok {
			http.Redirect(w, r, p.ret, http.StatusSeeOther)
			return nil
		}
		if err := e.Grant(r.Context(), s, kept.Method, kept.URI, kept.SteppedUp); err != nil {
			return &HTTPError{http.StatusInternalServerError, err}
		}
		http.Redirect(w, r, target, http.StatusSeeOther)
		return nil
	}
	http.Redirect(w, r, e.Prefix+"/resume/"+kept.ID, http.StatusSeeOther)
	return nil
}

func (g *Gateway) challengeExpired(w http.ResponseWriter, r *http.Request) error {
	return g.renderMessage(w, r, http.StatusGone, "Request expired", "The request held for your step-up has expired or was already sent. Please try again.", "/", "Home")
}

var errFormRejected = errors.New("form rejected")

// verify takes one submitted step (Engine.StepUp enforces every rule of
// it) and renders where the walk goes next.
func (g *Gateway) verify(w http.ResponseWriter, r *http.Request, s *stepup.Session, tier string) error {
	e := g.Engine
	if err := g.parseFormOrAnswer(w, r); err != nil {
		return nil
	}
	form := r.PostForm
	if form.Get("tier") == "" && form.Get("target") == "" {
		// Only the documented fields: the step is the walk's target.
		form.Set("target", tier)
	}
	p, ok := g.parseChallenge(form)
	if !ok || !(tier == p.target || e.Hierarchy.IsAbove(p.target, tier)) {
		return g.unknownStep(w, r)
	}
	res, err := e.StepUp(w, r, s, stepup.Step{Tier: tier, Via: form.Get("via"), Form: form, Round: form.Get("state"), Pending: p.pending, Target: p.target})
	if errors.Is(err, stepup.ErrUnknownStep) {
		return g.unknownStep(w, r)
	}
	if err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	setSession(r, res.Session)
	p.via = res.Method.Name()
	if len(e.Alternatives[tier]) < 2 {
		p.via = ""
	}
	s = res.Session
	switch res.Kind {
	case stepup.StepDone, stepup.StepBaseMissing, stepup.StepSuperseded:
		http.Redirect(w, r, e.Prefix+"/challenge?"+p.query().Encode(), http.StatusSeeOther)
		return nil
	case stepup.StepRateLimited:
		return g.renderStep(w, r, s, p, tier, "Too many failed attempts. Try again in "+strconv.Itoa(int(e.Limiter.Window().Minutes()))+" minutes.", http.StatusTooManyRequests, nil)
	case stepup.StepBusy:
		return g.renderStep(w, r, s, p, tier, "Another attempt is being checked. Wait a moment and try again.", http.StatusTooManyRequests, nil)
	case stepup.StepRoundExpired:
		return g.renderStep(w, r, s, p, tier, "That step has expired. Start again.", http.StatusUnauthorized, nil)
	case stepup.StepNextRound:
		return g.renderStep(w, r, s, p, tier, "", http.StatusUnauthorized, &roundView{id: res.RoundID, prompt: res.RoundPrompt})
	case stepup.StepUnavailable:
		return g.renderStep(w, r, s, p, tier, "The authentication service is unavailable. Try again in a moment.", http.StatusServiceUnavailable, nil)
	}
	msg := res.Outcome.Message
	if msg == "" {
		msg = "That did not work. Try again."
	}
	return g.renderStep(w, r, s, p, tier, msg, http.StatusUnauthorized, nil)
}

func (g *Gateway) unknownStep(w http.ResponseWriter, r *http.Request) error {
	return g.renderMessage(w, r, http.StatusBadRequest, "Unknown step-up", "The step-up you asked for does not exist.", g.Engine.Prefix+"/", "Your session")
}

// parseFormOrAnswer parses and checks the form; when it fails the answer
// has been written and errFormRejected returned.
func (g *Gateway) parseFormOrAnswer(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		_ = g.renderMessage(w, r, http.StatusBadRequest, "Bad request", "The form could not be read.", "", "")
		return errFormRejected
	}
	if !g.Engine.CSRF.Valid(r, r.PostForm.Get("csrf_token"), ownerOf(r)) {
		g.Engine.Log(r, nil, stepup.Record{Event: stepup.EventDenied, Result: "refused", Reason: "csrf_token_invalid"})
		_ = g.renderMessage(w, r, http.StatusForbidden, "Form expired", "This form has expired or did not come from this site. Go back, reload the page and try again.", "", "")
		return errFormRejected
	}
	return nil
}

// logout closes a tier and everything above it.
func (g *Gateway) logout(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
	e := g.Engine
	var rotated string
	if s == nil {
		// The cookie may name a session a concurrent step-up rotated a
		// moment ago: the logoff (its token bound to that session) must not
		// lose to it.
		if rotated = e.Sessions.RotatedOwner(r); rotated != "" {
			setSession(r, &stepup.Session{Owner: rotated})
		}
	}
	if err := g.parseFormOrAnswer(w, r); err != nil {
		return nil
	}
	_, err := e.LogOffAt(w, r, s, rotated, r.PostForm.Get("tier"))
	if errors.Is(err, stepup.ErrNotHeld) {
		return g.renderMessage(w, r, http.StatusBadRequest, "Not held", "You do not hold that tier.", e.Prefix+"/", "Your session")
	}
	if errors.Is(err, stepup.ErrStoreUnavailable) {
		return g.unavailable(w, r, err)
	}
	if err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	http.Redirect(w, r, e.Prefix+"/", http.StatusSeeOther)
	return nil
}

// status shows who the user is and what they hold.
func (g *Gateway) status(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
	e := g.Engine
	d := &pageData{Title: "Your session", Roots: e.Hierarchy.Roots()}
	now := e.Now()
	if s != nil && s.User != "" {
		d.User, d.Roles = s.User, strings.Join(s.Roles, ", ")
		for _, name := range e.Hierarchy.Names() {
			t, _ := e.Hierarchy.Get(name)
			row := tierRow{Name: name, Base: t.Base, Method: t.Method}
			held := s.Stack.Holds(e.Hierarchy, name, now, 0)
			if held {
				row.Held = true
				row.Left = s.Stack.Remaining(e.Hierarchy, name, now).Round(time.Second).String()
			} else {
				row.CanReach = true
			}
			baseHeld := t.Base == "" || s.Stack.Holds(e.Hierarchy, t.Base, now, 0)
			for _, m := range e.Alternatives[name] {
				en, ok := m.(stepup.Enroller)
				if !ok {
					continue
				}
				enrolled, _ := en.Enrolled(r.Context(), s.User)
				_, several := m.(stepup.CredentialKeeper)
				name := credentialName(m)
				// Changing an existing credential asks for the tier itself
				// first (the enrolment page sends the user there).
				label := ""
				switch {
				case enrolled && several:
					label = "Add " + name
				case enrolled:
					label = "Replace " + name
				case en.SelfEnroll() && baseHeld && several:
					label = "Register " + name
				case en.SelfEnroll() && baseHeld:
					label = "Set up " + name
				}
				if label != "" {
					row.Enrol = append(row.Enrol, choice{Label: label, URL: e.Prefix + "/enroll/" + m.Name() + "?" + url.Values{"step": {name}}.Encode()})
				}
			}
			d.Tiers = append(d.Tiers, row)
		}
	}
	if s != nil && s.User != "" {
		d.Keys = g.credentialRows(r, s)
		changes, _ := e.Credentials.Changes(r.Context(), s.User)
		for _, c := range changes {
			d.Changes = append(d.Changes, changeRow{Text: g.describeChange(c), At: c.At.UTC().Format("2006-01-02 15:04 UTC")})
		}
	}
	return g.render(w, r, http.StatusOK, "status", d)
}

// changeRow is a credential change on the status page.
type changeRow struct{ Text, At string }

// describeChange says what happened to a credential, in words.
func (g *Gateway) describeChange(c stepup.CredentialChange) string {
	what, several := "Credential", false
	if m, ok := g.Engine.Method(c.Tier, c.Method); ok && m.Name() == c.Method {
		what = upperFirst(credentialName(m))
		_, several = m.(stepup.CredentialKeeper)
	}
	switch c.Kind {
	case stepup.ChangeEnroll:
		if several {
			return what + " added"
		}
		return what + " set up"
	case stepup.ChangeReplace:
		return what + " replaced"
	case stepup.ChangeRemove:
		return what + " removed"
	}
	return what + " changed"
}

// confirm shows a kept request before it is sent.
func (g *Gateway) confirm(w http.ResponseWriter, r *http.Request, s *stepup.Session, id string) error {
	if s == nil {
		return g.challengeExpired(w, r)
	}
	kept, err := g.Engine.PeekPending(r.Context(), s, id)
	if err != nil {
		return g.challengeExpired(w, r)
	}
	d := &pageData{Title: "Confirm your action", PendingReq: kept}
	d.Fields, d.MoreFields, d.IsForm = kept.FormFields()
	return g.render(w, r, http.StatusOK, "confirm", d)
}

// resume replays (or discards) a kept request after its confirmation.
func (g *Gateway) resume(w http.ResponseWriter, r *http.Request, s *stepup.Session, id string, next Next) error {
	e := g.Engine
	if err := g.parseFormOrAnswer(w, r); err != nil {
		return nil
	}
	if s == nil {
		return g.challengeExpired(w, r)
	}
	ev, err := e.Resume(r, s, id, r.PostForm.Get("action") != "discard")
	switch {
	case errors.Is(err, stepup.ErrPendingNotFound):
		return g.challengeExpired(w, r)
	case err != nil:
		return &HTTPError{http.StatusInternalServerError, err}
	case ev == nil:
		http.Redirect(w, r, e.Prefix+"/", http.StatusSeeOther)
		return nil
	}
	return g.decide(w, r, ev, next)
}
