package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// maxCeremonyBody bounds a ceremony's JSON (a credential is a few KiB).
const maxCeremonyBody = 64 << 10

// jsonError answers a ceremony call with a message the page's script shows
// (in the request's language).
func jsonError(w http.ResponseWriter, r *http.Request, status int, msg text, extra ...string) error {
	body := map[string]any{"error": langOf(r).S(msg)}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i]] = extra[i+1]
	}
	writeJSON(w, status, body)
	return nil
}

// ceremonyRequest checks what every ceremony call needs: the tier's method,
// the CSRF token in X-CSRF-Token, a signed-in session, the walk's
// parameters, and a bounded JSON body. It answers and returns ok=false
// otherwise.
func (g *Gateway) ceremonyRequest(w http.ResponseWriter, r *http.Request, s *stepup.Session, tier, method string) (m stepup.Method, p challengeParams, body []byte, ok bool) {
	e := g.Engine
	m, found := e.Method(tier, method)
	if !found || m.Name() != method {
		_ = jsonError(w, r, http.StatusNotFound, tx("json.no_such_step"))
		return nil, p, nil, false
	}
	if !e.CSRF.Valid(r, r.Header.Get("X-CSRF-Token"), ownerOf(r)) {
		e.Log(r, s, stepup.Record{Event: stepup.EventDenied, Tier: tier, Result: "refused", Reason: "csrf_token_invalid"})
		_ = jsonError(w, r, http.StatusForbidden, tx("json.page_expired"))
		return nil, p, nil, false
	}
	q := r.URL.Query()
	if q.Get("tier") == "" && q.Get("target") == "" {
		q.Set("tier", tier)
	}
	p, valid := g.parseChallenge(q)
	if !valid || (p.target != tier && !e.Hierarchy.IsAbove(p.target, tier)) {
		_ = jsonError(w, r, http.StatusBadRequest, tx("msg.unknown_step.body"))
		return nil, p, nil, false
	}
	if s == nil || s.User == "" {
		_ = jsonError(w, r, http.StatusUnauthorized, tx("json.sign_in_first"), "next", e.Prefix+"/challenge?"+p.query().Encode())
		return nil, p, nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCeremonyBody))
	if err != nil {
		_ = jsonError(w, r, http.StatusRequestEntityTooLarge, tx("json.too_large"))
		return nil, p, nil, false
	}
	return m, p, body, true
}

// persisted is ceremonyRequest's session, stored so that the ceremony's
// challenge can be bound to it (an external identity may have none yet).
func (g *Gateway) persisted(w http.ResponseWriter, r *http.Request, s *stepup.Session) (*stepup.Session, bool) {
	s, err := g.persist(w, r, s)
	if err != nil {
		_ = jsonError(w, r, http.StatusInternalServerError, tx("json.went_wrong"))
		return nil, false
	}
	return s, true
}

// unusableAddress answers a ceremony the browser cannot run on this
// address (WebAuthn on an IP address).
func unusableAddress(w http.ResponseWriter, r *http.Request, m stepup.Method) error {
	return jsonError(w, r, http.StatusBadRequest, tx("json.unusable_address", "What", credentialName(langOf(r), m)))
}

// ceremonyStep serves POST /{method}/{tier}/begin and /finish: a step-up
// that runs in the browser (a method with a Ceremony).
func (g *Gateway) ceremonyStep(w http.ResponseWriter, r *http.Request, s *stepup.Session, method, tier, action string) error {
	e := g.Engine
	mm, p, body, ok := g.ceremonyRequest(w, r, s, tier, method)
	if !ok {
		return nil
	}
	m, ok := mm.(stepup.Ceremony)
	if !ok {
		return jsonError(w, r, http.StatusNotFound, tx("json.no_such_step"))
	}
	if s, ok = g.persisted(w, r, s); !ok {
		return nil
	}
	now := e.Now()
	if t, _ := e.Hierarchy.Get(tier); t.Base != "" && !s.Stack.Holds(e.Hierarchy, t.Base, now, 0) {
		return jsonError(w, r, http.StatusConflict, tx("json.base_expired"), "next", e.Prefix+"/challenge?"+p.query().Encode())
	}
	ip := e.ClientIP(r)
	if e.Limiter.Blocked(r.Context(), method, s.User, ip) {
		e.Log(r, s, stepup.Record{Event: stepup.EventRateLimited, Tier: tier, Result: "refused", Reason: "too_many_failures", AuthMethod: method})
		return jsonError(w, r, http.StatusTooManyRequests, tx("json.too_many"))
	}
	switch action {
	case "begin":
		opts, err := m.BeginLogin(r, tier, s.Owner, s.User)
		if errors.Is(err, stepup.ErrNoCredentials) {
			q := p.query()
			q.Set("step", tier)
			return jsonError(w, r, http.StatusConflict, tx("json.none_registered", "What", credentialName(langOf(r), mm)), "next", e.Prefix+"/enroll/"+method+"?"+q.Encode())
		}
		if errors.Is(err, stepup.ErrUnusableAddress) {
			return unusableAddress(w, r, mm)
		}
		if err != nil {
			return &HTTPError{http.StatusInternalServerError, err}
		}
		return writeRawJSON(w, opts)
	case "finish":
		res, err := e.CeremonyStep(w, r, s, mm, stepup.Step{Tier: tier, Pending: p.pending, Target: p.target}, func() (*stepup.Outcome, error) {
			return m.FinishLogin(r, tier, s.Owner, s.User, body)
		})
		return g.ceremonyAnswer(w, r, mm, p, res, err)
	}
	return jsonError(w, r, http.StatusNotFound, tx("json.not_found"))
}

// ceremonyAnswer answers the finish of a ceremony in JSON.
func (g *Gateway) ceremonyAnswer(w http.ResponseWriter, r *http.Request, m stepup.Method, p challengeParams, res *stepup.StepResult, err error) error {
	e := g.Engine
	switch {
	case errors.Is(err, stepup.ErrUnusableAddress):
		return unusableAddress(w, r, m)
	case err != nil:
		return &HTTPError{http.StatusInternalServerError, err}
	}
	setSession(r, res.Session)
	next := e.Prefix + "/challenge?" + p.query().Encode()
	switch res.Kind {
	case stepup.StepDone, stepup.StepSuperseded:
		return writeJSONOK(w, map[string]string{"next": next})
	case stepup.StepBaseMissing:
		return jsonError(w, r, http.StatusConflict, tx("json.base_expired"), "next", next)
	case stepup.StepRateLimited, stepup.StepBusy:
		return jsonError(w, r, http.StatusTooManyRequests, tx("json.too_many"))
	}
	return jsonError(w, r, http.StatusUnauthorized, text{Raw: outcomeMessage(langOf(r), m, res.Outcome)})
}

// ceremonyEnrolPage serves GET /enroll/{method} for a method that
// registers credentials in the browser (CeremonyEnroller).
func (g *Gateway) ceremonyEnrolPage(w http.ResponseWriter, r *http.Request, s *stepup.Session, method string) error {
	e := g.Engine
	v := r.URL.Query()
	step, answered, err := g.enrolStep(w, r, v, method)
	if answered {
		return err
	}
	mm, _ := e.Method(step, method)
	m, ok := mm.(stepup.CeremonyEnroller)
	if !ok || mm.Name() != method {
		return g.noSuchSetup(w, r)
	}
	p, _, ok, err := g.enrolWalk(w, r, s, m, step, v)
	if !ok {
		return err
	}
	q := p.query()
	q.Set("step", step)
	rt := m.RegistrationText()
	l := langOf(r)
	k := "method." + method + ".register."
	d := &pageData{L: l, Tier: step, Return: p.ret,
		Heading: l.Or(k+"title", rt.Title), Help: l.Or(k+"help", rt.Help), NameLabel: l.Or(k+"name_label", rt.NameLabel),
		DefaultName: l.Or(k+"default_name", rt.DefaultName), Submit: l.Or(k+"submit", rt.Submit), ScriptText: scriptText(l),
		CeremonyBegin: e.Prefix + "/enroll/" + method + "/begin?" + q.Encode(), CeremonyFinish: e.Prefix + "/enroll/" + method + "/finish?" + q.Encode()}
	g.enrolProgress(l, d, step, p)
	return g.render(w, r, http.StatusOK, "enroll_ceremony", d)
}

// ceremonyEnrol serves POST /enroll/{method}/begin and /finish.
func (g *Gateway) ceremonyEnrol(w http.ResponseWriter, r *http.Request, s *stepup.Session, method, action string) error {
	e := g.Engine
	step := r.URL.Query().Get("step")
	if step == "" {
		steps := g.tiersUsing(method)
		if len(steps) != 1 {
			return jsonError(w, r, http.StatusBadRequest, tx("json.name_step"))
		}
		step = steps[0]
	}
	mm, p, body, ok := g.ceremonyRequest(w, r, s, step, method)
	if !ok {
		return nil
	}
	m, ok := mm.(stepup.CeremonyEnroller)
	if !ok {
		return jsonError(w, r, http.StatusNotFound, tx("msg.no_such_setup"))
	}
	if s, ok = g.persisted(w, r, s); !ok {
		return nil
	}
	perm, need, err := g.Engine.EnrolCheck(r.Context(), s, m, step)
	if err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	switch perm {
	case stepup.EnrolNeedBase:
		q := p.query()
		q.Set("tier", step)
		return jsonError(w, r, http.StatusConflict, tx("json.step_up_first"), "next", e.Prefix+"/challenge?"+q.Encode())
	case stepup.EnrolNeedTier:
		return jsonError(w, r, http.StatusConflict, tx("json.confirm_first"), "next", g.freshStepURL(need, g.enrolPageURL(m, step, p)))
	case stepup.EnrolRefused:
		e.Log(r, s, stepup.Record{Event: stepup.EventEnroll, Tier: step, Result: "refused", Reason: "self_enrolment_disabled"})
		return jsonError(w, r, http.StatusForbidden, tx("json.admin_registers"))
	}
	ip := e.ClientIP(r)
	if e.Limiter.Blocked(r.Context(), method, s.User, ip) {
		return jsonError(w, r, http.StatusTooManyRequests, tx("json.too_many"))
	}
	switch action {
	case "begin":
		var req struct {
			Nickname string `json:"nickname"`
		}
		if len(body) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				return jsonError(w, r, http.StatusBadRequest, tx("json.unreadable"))
			}
		}
		opts, err := m.BeginRegistration(r, step, s.Owner, s.User, req.Nickname)
		if errors.Is(err, stepup.ErrUnusableAddress) {
			return unusableAddress(w, r, mm)
		}
		if err != nil {
			return jsonError(w, r, http.StatusBadRequest, tx("json.name_too_long"))
		}
		return writeRawJSON(w, opts)
	case "finish":
		res, err := e.CeremonyEnrol(w, r, s, m, stepup.Step{Tier: step, Pending: p.pending, Target: p.target}, func() (*stepup.Outcome, error) {
			return m.FinishRegistration(r, step, s.Owner, s.User, body)
		})
		if err == nil && res.Kind == stepup.StepDone && g.hasPrefixPath(p.ret) {
			g.setFlash(w, r, "flash.key_added")
		}
		return g.ceremonyAnswer(w, r, mm, p, res, err)
	}
	return jsonError(w, r, http.StatusNotFound, tx("json.not_found"))
}

// credentialRemove serves POST /{method}/remove (form: csrf_token, step,
// id): remove one of one's credentials of a method that keeps several
// (CredentialKeeper), never the last one while a tier relies on the
// administrator to register them.
func (g *Gateway) credentialRemove(w http.ResponseWriter, r *http.Request, s *stepup.Session, method string) error {
	e := g.Engine
	if err := g.parseFormOrAnswer(w, r); err != nil {
		return nil
	}
	step, id := r.PostForm.Get("step"), r.PostForm.Get("id")
	mm, _ := e.Method(step, method)
	m, ok := mm.(stepup.CredentialKeeper)
	if !ok || mm.Name() != method || s == nil || s.User == "" {
		return g.renderMessage(w, r, http.StatusBadRequest, tx("msg.not_possible.title"), tx("msg.no_such_credential"), e.Prefix+"/", tx("nav.session"))
	}
	// The last one stays while the administrator registers them: refused
	// whatever the user holds.
	creds, err := m.CredentialList(r.Context(), s.User)
	if err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	name := credentialName(langOf(r), mm)
	if len(creds) == 1 && creds[0].ID == id && g.adminRegisters(method) {
		return g.renderMessage(w, r, http.StatusConflict, tx("msg.last_credential.title", "What", name), tx("msg.last_credential.body", "What", name), e.Prefix+"/", tx("nav.session"))
	}
	// Removing a credential is a credential change: it needs every tier
	// the method's credentials reach held and fresh, as adding one does.
	if en, ok := mm.(stepup.Enroller); ok {
		perm, need, err := g.Engine.EnrolCheck(r.Context(), s, en, step)
		if err != nil {
			return &HTTPError{http.StatusInternalServerError, err}
		}
		if perm == stepup.EnrolNeedTier || perm == stepup.EnrolNeedBase {
			http.Redirect(w, r, g.freshStepURL(need, e.Prefix+"/"), http.StatusSeeOther)
			return nil
		}
	} else if !s.Stack.Holds(e.Hierarchy, step, e.Now(), e.ChangeFreshness(step)) {
		http.Redirect(w, r, g.freshStepURL(step, e.Prefix+"/"), http.StatusSeeOther)
		return nil
	}
	removed, err := m.Remove(r.Context(), s.User, id)
	if err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	if !removed {
		return g.renderMessage(w, r, http.StatusNotFound, tx("msg.not_found.title"), tx("msg.no_such_credential"), e.Prefix+"/", tx("nav.session"))
	}
	e.CredentialChanged(r.Context(), func(rec stepup.Record) { e.Log(r, s, rec) }, s.User, stepup.ChangeRemove, step, method)
	g.setFlash(w, r, "flash.key_removed")
	http.Redirect(w, r, e.Prefix+"/", http.StatusSeeOther)
	return nil
}

// credentialRemovePage asks before removing a credential: the session
// page's Remove leads here, and only the button here removes it.
func (g *Gateway) credentialRemovePage(w http.ResponseWriter, r *http.Request, s *stepup.Session, method string) error {
	e := g.Engine
	l := langOf(r)
	q := r.URL.Query()
	step, id := q.Get("step"), q.Get("id")
	mm, _ := e.Method(step, method)
	m, ok := mm.(stepup.CredentialKeeper)
	if !ok || mm.Name() != method || s == nil || s.User == "" {
		return g.renderMessage(w, r, http.StatusBadRequest, tx("msg.not_possible.title"), tx("msg.no_such_credential"), e.Prefix+"/", tx("nav.session"))
	}
	creds, err := m.CredentialList(r.Context(), s.User)
	if err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	for _, c := range creds {
		if c.ID != id {
			continue
		}
		what := credentialName(l, mm)
		d := &pageData{L: l, Title: l.T("remove.title", "What", what), Notice: l.T("remove.body", "Name", c.Name, "What", what),
			Confirm: &confirmForm{Action: e.Prefix + "/" + method + "/remove", Submit: l.T("remove.submit"), Back: l.T("action.keep"), BackURL: e.Prefix + "/",
				Danger: true, Fields: []input{{Name: "step", Value: step}, {Name: "id", Value: id}}}}
		return g.render(w, r, http.StatusOK, "message", d)
	}
	return g.renderMessage(w, r, http.StatusNotFound, tx("msg.not_found.title"), tx("msg.no_such_credential"), e.Prefix+"/", tx("nav.session"))
}

// adminRegisters reports whether some tier using the method does not let
// users register credentials themselves.
func (g *Gateway) adminRegisters(method string) bool {
	for _, alts := range g.Engine.Alternatives {
		for _, m := range alts {
			if en, ok := m.(stepup.Enroller); ok && m.Name() == method && !en.SelfEnroll() {
				return true
			}
		}
	}
	return false
}

// keyRow is a registered credential on the status page.
type keyRow struct {
	Method, Step, ID, Nickname, Created, LastUsed, RemoveURL string
	Removable                                                bool
}

// credentialRows lists the user's credentials of methods that keep several,
// for the status page; a method's credentials belong to the user, whichever
// of its tiers lists them.
func (g *Gateway) credentialRows(r *http.Request, s *stepup.Session) []keyRow {
	var rows []keyRow
	seen := map[string]bool{}
	for _, name := range g.Engine.Hierarchy.Names() {
		for _, mm := range g.Engine.Alternatives[name] {
			m, ok := mm.(stepup.CredentialKeeper)
			if !ok || seen[mm.Name()] {
				continue
			}
			seen[mm.Name()] = true
			creds, err := m.CredentialList(r.Context(), s.User)
			if err != nil {
				continue
			}
			for _, c := range creds {
				row := keyRow{Method: mm.Name(), Step: name, ID: c.ID, Nickname: c.Name, Created: c.Created.UTC().Format("2006-01-02 15:04 UTC"), LastUsed: langOf(r).T("status.key_never"),
					RemoveURL: g.Engine.Prefix + "/" + mm.Name() + "/remove?" + url.Values{"step": {name}, "id": {c.ID}}.Encode()}
				if !c.LastUsed.IsZero() {
					row.LastUsed = c.LastUsed.UTC().Format("2006-01-02 15:04 UTC")
				}
				row.Removable = len(creds) > 1 || !g.adminRegisters(mm.Name())
				rows = append(rows, row)
			}
		}
	}
	return rows
}

func writeRawJSON(w http.ResponseWriter, raw []byte) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, err := w.Write(raw)
	return err
}

func writeJSONOK(w http.ResponseWriter, v any) error {
	writeJSON(w, http.StatusOK, v)
	return nil
}

// ceremonyURLs are the begin and finish URLs of a step's ceremony.
func ceremonyURLs(prefix, method, tier string, p challengeParams) (string, string) {
	q := p.query().Encode()
	base := prefix + "/" + url.PathEscape(method) + "/" + url.PathEscape(tier)
	return base + "/begin?" + q, base + "/finish?" + q
}
