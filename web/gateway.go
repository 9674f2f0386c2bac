// Package web is the HTTP face of caddy-stepup: the gateway middleware that
// lets a request through or sends it to step up (303 for browsers, 401 with a
// machine-readable challenge for APIs, a kept and later replayed request for
// forms), and the pages the module serves under its prefix, rendered from
// embedded templates with no external resources.
package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/approval"
)

// Next calls the rest of the handler chain.
type Next interface {
	ServeHTTP(http.ResponseWriter, *http.Request) error
}

// anonymousVars are the placeholder values of a request without a session:
// empty, never left unexpanded.
var anonymousVars = stepup.NewVars("", "", "", "")

// Gateway enforces one site's policy with the shared engine.
type Gateway struct {
	Engine *stepup.Engine
	Policy *stepup.Policy
	// Approvals serves the approval pages and decides approvals (nil when
	// no policy is configured).
	Approvals *approval.Service
	// Branding is the operator's title, logo and style sheet (nil: none).
	Branding *Branding
	// SetVars publishes the placeholder values (stepup.VarUser, ...) of a request
	// that passes (to Caddy's replacer).
	SetVars func(r *http.Request, v *stepup.Vars)
	// LogFields adds the decision to the request's access-log entry
	// (Caddy's extra log fields): user, matched sets, tier, decision.
	LogFields func(r *http.Request, user, sets, tier, decision string)

	// Metrics counts decisions and times them (nil: none).
	Metrics *DecisionMetrics

	muxOnce sync.Once
	mux     *http.ServeMux
}

// Counter and Observer are what the gateway needs of a Prometheus counter
// and a histogram of durations.
type (
	Counter  interface{ Inc() }
	Observer interface{ ObserveDuration(time.Duration) }
)

// DecisionMetrics are the counters of decisions by result, resolved once
// when the site is provisioned (no label lookup per request), and the
// histogram of how long deciding took.
type DecisionMetrics struct {
	Allowed, StepUpRequired, ApprovalPending, Denied, Error Counter
	Duration                                                Observer
}

// metricsStart is when a decision started, for its duration: the clock
// reading the request already took, unless that came from a test's clock
// (no monotonic reading), which measures nothing. time.Now costs two clock
// reads and time.Since one; on a VM they are a fair part of the hot path.
func metricsStart(now time.Time) time.Time {
	if now != now.Round(0) { // Round(0) strips only the monotonic reading
		return now
	}
	return time.Now()
}

// observe counts a decision and its duration.
func (m *DecisionMetrics) observe(c Counter, start time.Time) {
	if m == nil {
		return
	}
	c.Inc()
	m.Duration.ObserveDuration(time.Since(start))
}

func (m *DecisionMetrics) denial(d *stepup.Decision) Counter {
	switch {
	case d.Missing != nil:
		return m.StepUpRequired
	case d.Denial != nil && d.Denial.Reason == "approval_pending":
		return m.ApprovalPending
	}
	return m.Denied
}

// HTTPError carries a status for the caller's error handling (Caddy's
// handle_errors): internal details stay in Err, never in a page.
type HTTPError struct {
	Status int
	Err    error
}

func (e *HTTPError) Error() string { return fmt.Sprintf("%d: %v", e.Status, e.Err) }
func (e *HTTPError) Unwrap() error { return e.Err }

// ServeHTTP handles one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request, next Next) error {
	overrides, trailer := scanHeaders(r.Header)
	stripTrailers(r, trailer)
	e := g.Engine
	p := r.URL.Path
	if strings.HasPrefix(p, e.Prefix) && (len(p) == len(e.Prefix) || p[len(e.Prefix)] == '/') {
		return g.serveOwn(w, r, next)
	}
	now := e.Now()
	cookies := e.ScanCookies(r)
	s, err := e.SessionFromCookies(w, r, now, cookies)
	ev := evaluations.Get().(*stepup.Evaluation) // zero: reset before every Put
	ev.Request, ev.Session, ev.Now, ev.Cookies = r, s, now, cookies
	if len(g.Policy.Sets) > 0 {
		ev.Readings, ev.HaveReadings = stepup.ReadingsOfScanned(r, overrides), true
	}
	if err != nil {
		err = g.storeUnavailable(w, r, ev, next, err)
	} else {
		err = g.decide(w, r, ev, next)
	}
	*ev = stepup.Evaluation{}
	evaluations.Put(ev)
	return err
}

// evaluations recycles the per-request decision state: it escapes to the
// heap (stages see it through an interface), and the hot path should not
// allocate.
var evaluations = sync.Pool{New: func() any { return new(stepup.Evaluation) }}

// decide runs the policy and either passes the request on or denies it.
// Every request it decides, a replayed one included, is matched on every
// way the upstream may read it.
func (g *Gateway) decide(w http.ResponseWriter, r *http.Request, ev *stepup.Evaluation, next Next) error {
	e := g.Engine
	var start time.Time
	if g.Metrics != nil {
		start = metricsStart(ev.Now)
	}
	if len(g.Policy.Sets) > 0 && !ev.HaveReadings {
		ev.Readings = stepup.ReadingsOf(r)
	}
	if err := g.Policy.Decide(ev); err != nil {
		if g.Metrics != nil {
			g.Metrics.observe(g.Metrics.Error, start)
		}
		e.Log(r, ev.Session, stepup.Record{Event: stepup.EventDenied, Result: "error", Reason: "matcher_error"})
		return &HTTPError{http.StatusInternalServerError, err}
	}
	d := &ev.Decision
	// A per-request requirement may be met by a grant from a step-up just
	// performed for this very navigation. Taking it is atomic: of requests
	// racing for one grant, one passes.
	if d.Missing != nil && d.Missing.PerRequest && ev.Session != nil && ev.FreshSince.IsZero() {
		if since := e.TakeGrant(r.Context(), ev.Session, r); !since.IsZero() {
			ev.FreshSince = since
			if err := g.Policy.Decide(ev); err != nil {
				if g.Metrics != nil {
					g.Metrics.observe(g.Metrics.Error, start)
				}
				return &HTTPError{http.StatusInternalServerError, err}
			}
		}
	}
	if !d.Allowed {
		if g.Metrics != nil {
			g.Metrics.observe(g.Metrics.denial(d), start)
		}
		return g.deny(w, r, ev)
	}
	if g.Metrics != nil {
		g.Metrics.observe(g.Metrics.Allowed, start)
	}
	v := anonymousVars
	if s := ev.Session; s != nil {
		v = s.PlaceholderValues(e.Hierarchy)
	}
	if d.Matched != 0 {
		// A pass is recorded in the request's own access-log entry, with no
		// write of its own; a risky set's pass gets an audit record too.
		sets := g.Policy.MatchedNames(d.Matched)
		if g.LogFields != nil {
			g.LogFields(r, v.User, sets, v.Tier, "allowed")
		}
		if g.Policy.HighRisk(d.Matched) && e.Audit.Enabled() {
			e.Log(r, ev.Session, stepup.Record{Event: stepup.EventAllowed, Set: sets, Result: "allowed", Tiers: v.Tiers})
		}
	}
	if g.SetVars != nil {
		g.SetVars(r, v)
	}
	e.StripScanned(r, ev.Cookies)
	return next.ServeHTTP(w, r)
}

// deny answers a request that lacks a tier (or was refused by a stage).
func (g *Gateway) deny(w http.ResponseWriter, r *http.Request, ev *stepup.Evaluation) error {
	e := g.Engine
	d := &ev.Decision
	if g.LogFields != nil {
		user, set, tier, decision := "", "", "", "denied"
		if ev.Session != nil {
			user = ev.Session.User
		}
		if d.Denial != nil {
			set = d.Denial.Set
			if d.Denial.Reason == "approval_pending" {
				decision = "approval_pending"
			}
		} else if d.Missing != nil {
			set, tier, decision = d.Missing.Set, d.Missing.Tier, "step_up_required"
		}
		g.LogFields(r, user, set, tier, decision)
	}
	if d.Denial != nil {
		if g.Approvals != nil {
			// The approval stage audits its own answers.
			if err := g.approvalAnswer(w, r, d.Denial); err != errNotApproval {
				return err
			}
		}
		e.Log(r, ev.Session, stepup.Record{Event: stepup.EventDenied, Set: d.Denial.Set, Result: "denied", Reason: d.Denial.Reason})
		status := d.Denial.Status
		if status == 0 {
			status = http.StatusForbidden
		}
		if stepup.IsAPI(r) {
			writeJSON(w, status, map[string]any{"error": "access_denied", "reason": d.Denial.Reason, "detail": d.Denial.Detail})
			return nil
		}
		return g.renderMessage(w, r, status, tx("msg.not_allowed.title"), denialText(d.Denial), "", text{})
	}
	m := d.Missing
	e.Log(r, ev.Session, stepup.Record{Event: stepup.EventDenied, Set: m.Set, Tier: m.Tier, Result: "step_up_required", Reason: "tier_missing"})
	q := url.Values{"tier": {m.Tier}}
	if t, _ := e.Hierarchy.Get(m.Tier); m.MaxAge > 0 && m.MaxAge < t.MaxAge {
		q.Set("max_age", strconv.Itoa(int(m.MaxAge.Seconds())))
	}
	if stepup.IsAPI(r) {
		q.Set("return", r.URL.RequestURI())
		// Which set asked is for the audit trail and signed-in users, not
		// for anyone probing the site's configuration.
		signedIn := ev.Session != nil && ev.Session.User != ""
		return g.challengeAPI(w, m, e.Prefix+"/challenge?"+q.Encode(), signedIn)
	}
	safe := r.Method == http.MethodGet || r.Method == http.MethodHead
	if safe && !m.PerRequest {
		q.Set("return", r.URL.RequestURI())
		http.Redirect(w, r, e.Prefix+"/challenge?"+q.Encode(), http.StatusSeeOther)
		return nil
	}
	pr, _, err := e.KeepRequest(w, r, ev.Session, m)
	switch {
	case errors.Is(err, stepup.ErrCrossSite):
		return g.renderMessage(w, r, http.StatusForbidden, tx("msg.cross_site.title"), tx("msg.cross_site.body"), "/", tx("nav.site"))
	case errors.Is(err, stepup.ErrKeepBudget):
		return g.renderMessage(w, r, http.StatusTooManyRequests, tx("msg.keep_budget.title"), tx("msg.keep_budget.body"), "", text{})
	case errors.Is(err, stepup.ErrBodyTooLarge):
		q.Set("return", returnFor(r, e.Prefix))
		return g.renderMessage(w, r, http.StatusRequestEntityTooLarge, tx("msg.too_large.title"), tx("msg.too_large.body"),
			e.Prefix+"/challenge?"+q.Encode(), tx("msg.step_up"))
	case errors.Is(err, stepup.ErrKeptBytesFull):
		return g.renderMessage(w, r, http.StatusServiceUnavailable, tx("msg.busy.title"), tx("msg.busy.body"),
			e.Prefix+"/challenge?"+q.Encode(), tx("msg.step_up"))
	case errors.Is(err, stepup.ErrTooManyPending):
		return g.renderMessage(w, r, http.StatusTooManyRequests, tx("msg.too_many_pending.title"), tx("msg.too_many_pending.body"), e.Prefix+"/", tx("nav.session"))
	case err != nil:
		return &HTTPError{http.StatusInternalServerError, err}
	}
	q.Set("pending", pr.ID)
	q.Set("return", returnFor(r, e.Prefix))
	if u, ok := stepup.SafeReturn(pr.URI, e.Prefix); ok && (pr.Method == http.MethodGet || pr.Method == http.MethodHead) {
		q.Set("return", u)
	}
	http.Redirect(w, r, e.Prefix+"/challenge?"+q.Encode(), http.StatusSeeOther)
	return nil
}

// challengeAPI answers an API client with a machine-readable challenge.
func (g *Gateway) challengeAPI(w http.ResponseWriter, m *stepup.Missing, stepURI string, withSet bool) error {
	maxAge := int(m.MaxAge.Seconds())
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(
		`StepUp error="insufficient_user_authentication", tier=%q, acr_values=%q, max_age=%d, step_up_uri=%q`,
		m.Tier, m.ACR, maxAge, stepURI))
	body := map[string]any{
		"error":             "insufficient_user_authentication",
		"error_description": "a stronger authentication is required",
		"tier":              m.Tier,
		"acr_values":        m.ACR,
		"max_age":           maxAge,
		"step_up_uri":       stepURI,
	}
	if withSet {
		body["transaction_set"] = m.Set
	}
	writeJSON(w, http.StatusUnauthorized, body)
	return nil
}

// returnFor is where a user goes back to after a kept unsafe request: the
// page that sent it, when that is a safe same-origin path.
func returnFor(r *http.Request, prefix string) string {
	if ref, err := url.Parse(r.Header.Get("Referer")); err == nil && ref.Host == r.Host {
		if u, ok := stepup.SafeReturn(ref.RequestURI(), prefix); ok {
			return u
		}
	}
	return "/"
}

// stripTrailers drops request trailers: a trailer arrives after the body,
// after the decision, and an X-Stepup-* one would reach the upstream
// unchecked. No browser sends request trailers.
// trailerHeader is whether the request has a Trailer header (scanHeaders
// saw its name).
func stripTrailers(r *http.Request, trailerHeader bool) {
	// The server fills in trailers of any chunked body, declared or not.
	if r.Trailer == nil && !trailerHeader && len(r.TransferEncoding) == 0 {
		return
	}
	r.Header.Del("Trailer")
	r.Trailer = nil
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &trailerlessBody{ReadCloser: r.Body, r: r}
	}
}

// trailerlessBody clears the request's trailers once the body is read:
// the server fills them in only when it reaches the end of the body.
type trailerlessBody struct {
	io.ReadCloser
	r *http.Request
}

func (b *trailerlessBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.r.Trailer = nil
	}
	return n, err
}

// scanHeaders is the one pass over a request's header names. It removes
// client-sent X-Stepup-* headers, which upstreams may trust when the
// gateway sets them, in any case and with underscores for dashes (CGI,
// PHP-FPM, WSGI and Rack turn X-Stepup_User into the same
// HTTP_X_STEPUP_USER as X-Stepup-User); and it reports whether a
// method-override header (stepup.IsOverrideHeader) or a Trailer header is
// there, so that neither is looked up again.
func scanHeaders(h http.Header) (overrides, trailer bool) {
	for k := range h {
		switch {
		case len(k) >= 9 && (k[0]|0x20) == 'x' && isStepupPrefix(k):
			delete(h, k)
		case len(k) >= 13 && k[0] == 'X' && stepup.IsOverrideHeader(k):
			overrides = true
		case k == "Trailer":
			trailer = true
		}
	}
	return overrides, trailer
}

// isStepupPrefix reports whether k starts with "x-stepup-", ignoring case
// and reading '_' as '-'.
func isStepupPrefix(k string) bool {
	const want = "x-stepup-"
	for i := 0; i < len(want); i++ {
		c := k[i] | 0x20 // lower-cases letters; '-' and '_' are unchanged
		if c == '_'|0x20 {
			c = '-'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
