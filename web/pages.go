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
	// Confirm is a confirmation form on a message page (a key's removal,
	// signing out): a second step that needs no script.
	Confirm *confirmForm

	// L says the page's words in the request's language; the branding
	// and the one-time notice of the last action.
	L                            *lang
	SiteTitle, LogoURL, BrandCSS string
	Flash                        string

	// step page: the method shown, and the tier's other methods
	Via          string
	Alternatives []choice

	// step page
	Chain       []chainStep
	Step, Steps int
	StepText    string
	Heading     string
	Help        string
	Submit      string
	Inputs      []input
	ScriptText  []input
	Tier        string
	Target      string
	Return      string
	MaxAge      string
	Pending     string
	SetName     string
	State       string
	RoundPrompt string
	Prompt      stepup.Prompt
	// what asked for the step, and why; where the user goes on to
	Asked, AskedPath      string
	KeptForm              bool
	SignOutURL, CancelURL string

	PendingReq  *stepup.PendingRequest
	Fields      []stepup.FormField
	MoreFields  int
	IsForm      bool
	Changes     []string
	User, Roles string
	Tiers       []tierRow
	RootLinks   []choice
	SignOutTier string

	// form enrolment page
	Enrolment              *stepup.EnrolmentView
	EnrolAction            string
	ImageURL, ImageAlt     string
	SecretLabel, Details   string
	EnrolNotice            string
	NameLabel, DefaultName string

	// ceremonies, and credentials of methods that keep several
	CeremonyBegin, CeremonyFinish string
	Keys                          []keyRow

	// approval pages: a request, the inbox; Refresh reloads a waiting page
	// every so many seconds (no script).
	Approval      *approvalView
	Inbox, Recent []inboxRow
	Refresh       int
}

// confirmForm is the form of a confirmation page.
type confirmForm struct {
	Action, Submit, Back, BackURL string
	Fields                        []input
	Danger                        bool
}

// input is one input of a form (or one name, value pair).
type input struct {
	Name, Label, Type, Autocomplete, InputMode, Value string
	Focus                                             bool
}

type chainStep struct{ Label, State, StateText string }

// choice is one of several pages a user may go on to.
type choice struct{ Label, URL string }

type tierRow struct {
	Name, Label, BaseLabel, Method, Left string
	Held, CanReach                       bool
	// Stricter says where a transaction set asks for the tier again
	// sooner than it lapses.
	Stricter []string
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
	if d.L == nil {
		d.L = langOf(r)
	}
	g.brand(d)
	if id := g.takeFlash(w, r); id != "" {
		d.Flash = d.L.T(id)
	}
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", d.L.Tag)
	if d.Refresh > 0 {
		// A Refresh header, not a meta element, and the page offers to
		// stop it (WCAG 2.2.1: a time limit the user can turn off).
		w.Header().Set("Refresh", strconv.Itoa(d.Refresh))
	}
	w.Header().Add("Vary", "Accept-Language")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	return pages[page].ExecuteTemplate(w, "layout", d)
}

// renderMessage shows a page that says one thing (an error from status
// 400 on), with a link to go on.
func (g *Gateway) renderMessage(w http.ResponseWriter, r *http.Request, status int, title, body text, link string, linkText text) error {
	l := langOf(r)
	d := &pageData{L: l, Title: l.S(title), Link: link, LinkText: l.S(linkText)}
	if status >= 400 {
		d.Error = l.S(body)
	} else {
		d.Notice = l.S(body)
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
	if brand, ok := isBrandAsset(name); ok {
		if !g.serveBrand(w, r, brand) {
			http.NotFound(w, r)
		}
		return nil
	}
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

// challenge walks the chain from what the session holds to the target tier:
// it shows the first missing step, or finishes when nothing is missing.
func (g *Gateway) challenge(w http.ResponseWriter, r *http.Request, s *stepup.Session, v url.Values, errMsg string, status int) error {
	e := g.Engine
	p, ok := g.parseChallenge(v)
	if !ok {
		return g.unknownStep(w, r)
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

// stepContext says on a step page what asked for the walk and why, and
// where the user goes on to.
func (g *Gateway) stepContext(r *http.Request, s *stepup.Session, p challengeParams, d *pageData) {
	l := d.L
	var kept *stepup.PendingRequest
	if p.pending != "" && s != nil {
		kept, _ = g.Engine.PeekPending(r.Context(), s, p.pending)
	}
	t, _ := g.Engine.Hierarchy.Get(p.target)
	maxAge, perRequest := p.maxAge, false
	switch {
	case kept != nil:
		d.KeptForm = kept.Method != http.MethodGet && kept.Method != http.MethodHead
		perRequest = kept.Fresh
		d.Asked = g.why(l, g.setLabel(kept.Set), d.KeptForm, p.target, maxAge, perRequest)
		d.AskedPath = kept.Method + " " + stepup.PathOf(kept.URI)
		if !d.KeptForm {
			d.AskedPath = stepup.PathOf(kept.URI)
		}
	case p.ret != "/" && !g.hasPrefixPath(p.ret):
		if set, ok := g.askedFor(r, p.target, p.ret, maxAge); ok {
			d.Asked = g.why(l, g.setLabel(set), false, p.target, maxAge, false)
			d.AskedPath = stepup.PathOf(p.ret)
		} else {
			d.Asked = g.why(l, "", false, p.target, maxAge, false)
		}
	case t.Base == "" && s == nil || s != nil && s.User == "":
		d.Asked = l.T("step.why_signin")
	default:
		d.Asked = g.why(l, "", false, p.target, maxAge, false)
	}
	if maxAge == 0 && !perRequest && t.MaxAge > 0 && d.Asked != l.T("step.why_signin") {
		d.Asked += " " + l.T("step.valid_for", "Age", l.Duration(t.MaxAge))
	}
}

// renderStep shows the form of one step of the chain.
func (g *Gateway) renderStep(w http.ResponseWriter, r *http.Request, s *stepup.Session, p challengeParams, tier, errMsg string, status int, round *roundView) error {
	e := g.Engine
	l := langOf(r)
	chain, _ := e.Hierarchy.Chain(p.target)
	d := &pageData{L: l, Tier: tier, Target: p.target, Return: p.ret, Pending: p.pending, Error: errMsg, Steps: len(chain)}
	if p.maxAge > 0 {
		d.MaxAge = strconv.Itoa(int(p.maxAge.Seconds()))
	}
	state := "done"
	for i, name := range chain {
		if name == tier {
			d.Step = i + 1
			state = "current"
		}
		d.Chain = append(d.Chain, chainStep{Label: g.tierLabel(l, name), State: state, StateText: l.T("step.state_" + state)})
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
	mk := methodKey(m)
	d.Heading = l.Or(mk+".title", d.Prompt.Title)
	if d.Prompt.Help != "" {
		d.Help = l.Or(mk+".help", d.Prompt.Help, "User", user)
	}
	d.Submit = l.Or(mk+".submit", d.Prompt.Submit)
	values := map[string]string{}
	if errMsg != "" && r.Method == http.MethodPost && r.PostForm != nil {
		// A failed sign-in keeps what is not a secret (the user name).
		for _, f := range d.Prompt.Fields {
			if f.Type != "password" && !stepup.IsSecretName(f.Name) && len(r.PostForm.Get(f.Name)) <= 256 {
				values[f.Name] = r.PostForm.Get(f.Name)
			}
		}
	}
	d.Inputs = inputs(l, m, d.Prompt.Fields, values)
	if d.Steps > 1 {
		d.StepText = l.T("step.n_of_m", "Step", d.Step, "Steps", d.Steps, "Tier", g.tierLabel(l, tier))
	}
	d.Title = d.Heading
	if d.StepText != "" {
		d.Title = d.StepText
	}
	if alts := e.Alternatives[tier]; len(alts) > 1 {
		d.Via = m.Name()
		for _, alt := range alts {
			if alt.Name() == m.Name() {
				continue
			}
			q := p.query()
			q.Set("via", alt.Name())
			d.Alternatives = append(d.Alternatives, choice{Label: l.T("step.use_instead", "Method", lowerFirst(l, methodTitle(l, alt))), URL: e.Prefix + "/challenge?" + q.Encode()})
		}
	}
	if round != nil {
		d.RoundPrompt, d.State = round.prompt, round.id
	}
	if d.Prompt.Ceremony {
		d.CeremonyBegin, d.CeremonyFinish = ceremonyURLs(e.Prefix, m.Name(), tier, p)
		d.ScriptText = scriptText(l)
	}
	g.stepContext(r, s, p, d)
	d.User = user
	here := e.Prefix + "/challenge?" + p.query().Encode()
	d.SignOutURL = e.Prefix + "/signout?" + url.Values{"then": {here}}.Encode()
	d.CancelURL = g.cancelURL(p, here)
	if status == 0 {
		status = http.StatusOK
		if _, ok := m.(stepup.RequestIdentity); ok {
			status = http.StatusUnauthorized // nothing to fill in here
		}
	}
	return g.render(w, r, status, "step", d)
}

// scriptText is what the WebAuthn script says, in the page's language.
func scriptText(l *lang) []input {
	var out []input
	for _, k := range []string{"unsupported", "cancelled", "exists", "address", "failed", "refused"} {
		out = append(out, input{Name: k, Value: l.T("webauthn.js_" + k)})
	}
	return out
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
	http.Redirect(w, r, e.Prefix+"/resume/"+kept.ID+"?"+url.Values{"return": {p.ret}}.Encode(), http.StatusSeeOther)
	return nil
}

// challengeExpired answers for a kept request that is gone: sent (the Back
// button after sending comes here), discarded or expired. It says that
// nothing more will be sent, so that Back does not invite a duplicate.
func (g *Gateway) challengeExpired(w http.ResponseWriter, r *http.Request) error {
	return g.renderMessage(w, r, http.StatusGone, tx("msg.request_gone.title"), tx("msg.request_gone.body"), "/", tx("nav.site"))
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
	l := langOf(r)
	switch res.Kind {
	case stepup.StepDone, stepup.StepBaseMissing, stepup.StepSuperseded:
		http.Redirect(w, r, e.Prefix+"/challenge?"+p.query().Encode(), http.StatusSeeOther)
		return nil
	case stepup.StepRateLimited:
		return g.renderStep(w, r, s, p, tier, l.T("step.rate_limited", "Count", int(e.Limiter.Window().Minutes())), http.StatusTooManyRequests, nil)
	case stepup.StepBusy:
		return g.renderStep(w, r, s, p, tier, l.T("step.busy"), http.StatusTooManyRequests, nil)
	case stepup.StepRoundExpired:
		return g.renderStep(w, r, s, p, tier, l.T("step.round_expired"), http.StatusUnauthorized, nil)
	case stepup.StepNextRound:
		return g.renderStep(w, r, s, p, tier, "", http.StatusUnauthorized, &roundView{id: res.RoundID, prompt: res.RoundPrompt})
	case stepup.StepUnavailable:
		return g.renderStep(w, r, s, p, tier, l.T("step.unavailable"), http.StatusServiceUnavailable, nil)
	}
	return g.renderStep(w, r, s, p, tier, outcomeMessage(l, res.Method, res.Outcome), http.StatusUnauthorized, nil)
}

func (g *Gateway) unknownStep(w http.ResponseWriter, r *http.Request) error {
	return g.renderMessage(w, r, http.StatusBadRequest, tx("msg.unknown_step.title"), tx("msg.unknown_step.body"), g.Engine.Prefix+"/", tx("nav.session"))
}

// parseFormOrAnswer parses and checks the form; when it fails the answer
// has been written and errFormRejected returned.
func (g *Gateway) parseFormOrAnswer(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		_ = g.renderMessage(w, r, http.StatusBadRequest, tx("msg.bad_request.title"), tx("msg.bad_request.body"), "", text{})
		return errFormRejected
	}
	if !g.Engine.CSRF.Valid(r, r.PostForm.Get("csrf_token"), ownerOf(r)) {
		g.Engine.Log(r, nil, stepup.Record{Event: stepup.EventDenied, Result: "refused", Reason: "csrf_token_invalid"})
		_ = g.renderMessage(w, r, http.StatusForbidden, tx("msg.form_expired.title"), tx("msg.form_expired.body"), "", text{})
		return errFormRejected
	}
	return nil
}

// logout closes a tier and everything above it. A sign-out ("Not you?")
// may name where to go on (then: a walk's step page), and every logoff
// ends on a page that says what happened.
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
	tier := r.PostForm.Get("tier")
	_, err := e.LogOffAt(w, r, s, rotated, tier)
	if errors.Is(err, stepup.ErrNotHeld) {
		return g.renderMessage(w, r, http.StatusBadRequest, tx("msg.not_held.title"), tx("msg.not_held.body"), e.Prefix+"/", tx("nav.session"))
	}
	if errors.Is(err, stepup.ErrStoreUnavailable) {
		return g.unavailable(w, r, err)
	}
	if err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	if t, ok := e.Hierarchy.Get(tier); ok && t.Base == "" {
		g.setFlash(w, r, "flash.signed_out")
	} else {
		g.setFlash(w, r, "flash.logged_off")
	}
	to := e.Prefix + "/"
	if then := r.PostForm.Get("then"); then != "" {
		if p, ok := g.walkURL(then); ok {
			to = p
		}
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// walkURL accepts a step page of the module (a walk to go on with after
// signing out), rebuilt from its parsed parameters.
func (g *Gateway) walkURL(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Path != g.Engine.Prefix+"/challenge" {
		return "", false
	}
	p, ok := g.parseChallenge(u.Query())
	if !ok {
		return "", false
	}
	p.pending = "" // a kept request belongs to the session that signed out
	return g.Engine.Prefix + "/challenge?" + p.query().Encode(), true
}

// signout asks before signing out ("Not you?" on a step page): a page with
// one button, no script needed.
func (g *Gateway) signout(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
	e := g.Engine
	l := langOf(r)
	if s == nil || s.User == "" {
		http.Redirect(w, r, e.Prefix+"/", http.StatusSeeOther)
		return nil
	}
	then, ok := g.walkURL(r.URL.Query().Get("then"))
	back := e.Prefix + "/"
	fields := []input{{Name: "tier", Value: rootOf(e.Hierarchy, s.Stack)}}
	if ok {
		fields = append(fields, input{Name: "then", Value: then})
		back = r.URL.Query().Get("then")
		if b, ok := g.walkURL(back); ok {
			back = b
		}
	}
	d := &pageData{L: l, Title: l.T("signout.title"), Notice: l.T("signout.body", "User", s.User),
		Confirm: &confirmForm{Action: e.Prefix + "/logout", Submit: l.T("status.sign_out"), Back: l.T("action.back"), BackURL: back, Fields: fields}}
	return g.render(w, r, http.StatusOK, "message", d)
}

// status shows who the user is and what they hold.
func (g *Gateway) status(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
	e := g.Engine
	l := langOf(r)
	d := &pageData{L: l, Title: l.T("status.title")}
	now := e.Now()
	if s == nil || s.User == "" {
		for _, root := range e.Hierarchy.Roots() {
			d.RootLinks = append(d.RootLinks, choice{Label: l.T("status.sign_in_with", "Tier", g.tierLabel(l, root)),
				URL: e.Prefix + "/challenge?" + url.Values{"tier": {root}, "return": {e.Prefix + "/"}}.Encode()})
		}
		if len(d.RootLinks) == 1 {
			d.RootLinks[0].Label = l.T("status.sign_in")
		}
		return g.render(w, r, http.StatusOK, "status", d)
	}
	d.User, d.Roles = s.User, strings.Join(s.Roles, ", ")
	d.SignOutTier = rootOf(e.Hierarchy, s.Stack)
	back := e.Prefix + "/"
	for _, name := range e.Hierarchy.Names() {
		t, _ := e.Hierarchy.Get(name)
		row := tierRow{Name: name, Label: g.tierLabel(l, name)}
		if t.Base != "" {
			row.BaseLabel = g.tierLabel(l, t.Base)
		}
		var methods []string
		for _, m := range e.Alternatives[name] {
			if how := l.Or("tier."+m.Name(), methodTitle(l, m)); how != row.Label {
				methods = append(methods, how)
			}
		}
		row.Method = strings.Join(methods, " · ")
		held := s.Stack.Holds(e.Hierarchy, name, now, 0)
		if held {
			row.Held = true
			row.Left = l.Duration(s.Stack.Remaining(e.Hierarchy, name, now))
		} else {
			row.CanReach = true
		}
		row.Stricter = g.stricterNotes(l, s, name, t.MaxAge, held, now)
		baseHeld := t.Base == "" || s.Stack.Holds(e.Hierarchy, t.Base, now, 0)
		for _, m := range e.Alternatives[name] {
			en, ok := m.(stepup.Enroller)
			if !ok {
				continue
			}
			enrolled, _ := en.Enrolled(r.Context(), s.User)
			_, several := m.(stepup.CredentialKeeper)
			cred := credentialName(l, m)
			// Changing an existing credential asks for the tier itself
			// first (the enrolment page sends the user there).
			label := ""
			switch {
			case enrolled && several:
				label = l.T("status.add", "What", cred)
			case enrolled:
				label = l.T("status.replace", "What", cred)
			case en.SelfEnroll() && baseHeld && several:
				label = l.T("status.register", "What", cred)
			case en.SelfEnroll() && baseHeld:
				label = l.T("status.set_up", "What", cred)
			}
			if label != "" {
				row.Enrol = append(row.Enrol, choice{Label: label, URL: e.Prefix + "/enroll/" + m.Name() + "?" + url.Values{"step": {name}, "return": {back}}.Encode()})
			}
		}
		d.Tiers = append(d.Tiers, row)
	}
	d.Keys = g.credentialRows(r, s)
	changes, _ := e.Credentials.Changes(r.Context(), s.User)
	for _, c := range changes {
		d.Changes = append(d.Changes, l.T("status.change_at", "What", g.describeChange(l, c), "At", c.At.UTC().Format("2006-01-02 15:04 UTC")))
	}
	return g.render(w, r, http.StatusOK, "status", d)
}

// stricterNotes say where a transaction set of this site asks for a tier
// again sooner than the tier lapses, so that the time left is honest.
func (g *Gateway) stricterNotes(l *lang, s *stepup.Session, tier string, tierAge time.Duration, held bool, now time.Time) []string {
	if g.Policy == nil {
		return nil
	}
	var at time.Time
	if lv, ok := s.Stack.Level(tier); ok && held {
		at = lv.At
	}
	var notes []string
	for i := range g.Policy.Sets {
		st := &g.Policy.Sets[i]
		if st.Tier != tier || !st.HasMaxAge || st.MaxAge >= tierAge {
			continue
		}
		name := st.Label
		if name == "" {
			name = st.Name
		}
		switch {
		case st.MaxAge == 0:
			notes = append(notes, l.T("status.stricter_each", "Set", name))
		case !at.IsZero() && now.Sub(at) >= st.MaxAge:
			notes = append(notes, l.T("status.stricter_now", "Set", name, "Age", l.Duration(st.MaxAge)))
		case !at.IsZero():
			notes = append(notes, l.T("status.stricter_left", "Set", name, "Age", l.Duration(st.MaxAge), "Left", l.Duration(st.MaxAge-now.Sub(at))))
		default:
			notes = append(notes, l.T("status.stricter", "Set", name, "Age", l.Duration(st.MaxAge)))
		}
	}
	return notes
}

// describeChange says what happened to a credential, in words.
func (g *Gateway) describeChange(l *lang, c stepup.CredentialChange) string {
	what, several := l.T("credential.generic"), false
	if m, ok := g.Engine.Method(c.Tier, c.Method); ok && m.Name() == c.Method {
		what = upperFirst(credentialName(l, m))
		_, several = m.(stepup.CredentialKeeper)
	}
	switch c.Kind {
	case stepup.ChangeEnroll:
		if several {
			return l.T("change.added", "What", what)
		}
		return l.T("change.set_up", "What", what)
	case stepup.ChangeReplace:
		return l.T("change.replaced", "What", what)
	case stepup.ChangeRemove:
		return l.T("change.removed", "What", what)
	}
	return l.T("change.changed", "What", what)
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
	l := langOf(r)
	d := &pageData{L: l, Title: l.T("confirm.title"), PendingReq: kept, Return: "/"}
	if ret, ok := stepup.SafeReturn(r.URL.Query().Get("return"), g.Engine.Prefix); ok {
		d.Return = ret
	}
	if label := g.setLabel(kept.Set); label != "" {
		d.Asked = l.T("confirm.asked", "Set", label)
	}
	d.Fields, d.MoreFields, d.IsForm = kept.FormFields()
	return g.render(w, r, http.StatusOK, "confirm", d)
}

// resume replays (or discards) a kept request after its confirmation.
// Discarding (Cancel) returns where the user came from.
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
		g.setFlash(w, r, "flash.discarded")
		to := e.Prefix + "/"
		if ret, ok := stepup.SafeReturn(r.PostForm.Get("return"), e.Prefix); ok {
			to = ret
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
		return nil
	}
	return g.decide(w, r, ev, next)
}

// cancel asks before discarding a kept request from a step page (its
// Cancel): nothing is sent, and the user goes back where they came from.
func (g *Gateway) cancel(w http.ResponseWriter, r *http.Request, s *stepup.Session, id string) error {
	e := g.Engine
	if s == nil {
		return g.challengeExpired(w, r)
	}
	kept, err := e.PeekPending(r.Context(), s, id)
	if err != nil {
		return g.challengeExpired(w, r)
	}
	l := langOf(r)
	ret := "/"
	if u, ok := stepup.SafeReturn(r.URL.Query().Get("return"), e.Prefix); ok {
		ret = u
	}
	back := ret
	if b, ok := g.walkURL(r.URL.Query().Get("then")); ok {
		q, _ := url.ParseQuery(strings.SplitN(b, "?", 2)[1])
		q.Set("pending", id)
		back = e.Prefix + "/challenge?" + q.Encode()
	}
	d := &pageData{L: l, Title: l.T("cancel.title"), Notice: l.T("cancel.body", "Action", kept.Method+" "+stepup.PathOf(kept.URI)),
		Confirm: &confirmForm{Action: e.Prefix + "/resume/" + id, Submit: l.T("cancel.submit"), Back: l.T("cancel.back"), BackURL: back,
			Fields: []input{{Name: "action", Value: "discard"}, {Name: "return", Value: ret}}}}
	return g.render(w, r, http.StatusOK, "message", d)
}

// rootOf is the root tier the session holds (signing out logs off there).
func rootOf(h *tiers.Hierarchy, st tiers.Stack) string {
	name := st.Highest(h)
	for name != "" {
		t, ok := h.Get(name)
		if !ok || t.Base == "" {
			return name
		}
		name = t.Base
	}
	if roots := h.Roots(); len(roots) > 0 {
		return roots[0]
	}
	return ""
}
