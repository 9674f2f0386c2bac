package web

import (
	"errors"
	"net/http"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// retryAfter is what a client is told to wait when the session store is
// down, in seconds.
const retryAfter = "5"

// storeUnavailable answers a request whose session the store could not
// read (a Redis down). A request that needs no session (public) passes as
// anonymous; any other fails closed: it is neither let through nor sent to
// step up (a sign-in could not be stored either), but answered 503.
func (g *Gateway) storeUnavailable(w http.ResponseWriter, r *http.Request, ev *stepup.Evaluation, next Next, cause error) error {
	// On every reading, as decide matches: a request that needs a session
	// only through a reading (/admin/, an override) gets the 503 too.
	if len(g.Policy.Sets) > 0 && !ev.HaveReadings {
		ev.Readings, ev.HaveReadings = stepup.ReadingsOf(r), true
	}
	if err := g.Policy.Decide(ev); err == nil && ev.Decision.Allowed {
		return g.decide(w, r, ev, next)
	}
	if g.Metrics != nil {
		g.Metrics.Error.Inc()
	}
	return g.unavailable(w, r, cause)
}

// unavailable is the 503 page (or JSON) of a store that cannot answer. It
// says nothing of the cause, which goes to the audit log.
func (g *Gateway) unavailable(w http.ResponseWriter, r *http.Request, cause error) error {
	e := g.Engine
	if g.LogFields != nil {
		g.LogFields(r, "", "", "", "unavailable")
	}
	reason := "store_unavailable"
	if !errors.Is(cause, stepup.ErrStoreUnavailable) {
		reason = "store_error"
	}
	e.Log(r, nil, stepup.Record{Event: stepup.EventDenied, Result: "unavailable", Reason: reason})
	w.Header().Set("Retry-After", retryAfter)
	if stepup.IsAPI(r) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"error":             "temporarily_unavailable",
			"error_description": "sessions cannot be checked right now; try again shortly",
		})
		return nil
	}
	return g.renderMessage(w, r, http.StatusServiceUnavailable, tx("msg.unavailable.title"), tx("msg.unavailable.body"), "", text{})
}
