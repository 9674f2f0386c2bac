package web

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// enrolLink serves GET /enroll?link=TOKEN, an administrator's one-time
// enrolment link: its user signs in (and reaches the tier's base), then
// is sent to the method's enrolment page, which the link opens for them.
// Anyone else, and a used or expired link, gets a refusal that changes
// nothing.
func (g *Gateway) enrolLink(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
	e := g.Engine
	token := r.URL.Query().Get("link")
	link, err := e.EnrolLinkOf(r.Context(), token)
	if errors.Is(err, stepup.ErrEnrolLinkInvalid) {
		e.Log(r, s, stepup.Record{Event: stepup.EventEnroll, Result: "refused", Reason: "enrolment_link_invalid"})
		return g.renderMessage(w, r, http.StatusGone, tx("msg.link_invalid.title"), tx("msg.link_invalid.body"), e.Prefix+"/", tx("nav.session"))
	}
	if err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	t, _ := e.Hierarchy.Get(link.Tier)
	signedIn := s != nil && s.User != ""
	if signedIn && s.User != link.User {
		e.Log(r, s, stepup.Record{Event: stepup.EventEnroll, Tier: link.Tier, AuthMethod: link.Method, Result: "refused", Reason: "enrolment_link_other_user"})
		return g.renderMessage(w, r, http.StatusForbidden, tx("msg.link_other_user.title"), tx("msg.link_other_user.body"), e.Prefix+"/", tx("nav.session"))
	}
	if !signedIn || (t.Base != "" && !s.Stack.Holds(e.Hierarchy, t.Base, e.Now(), 0)) {
		need := t.Base
		if need == "" {
			need = link.Tier
		}
		q := url.Values{"tier": {need}, "return": {e.EnrolLinkURL(token)}}
		http.Redirect(w, r, e.Prefix+"/challenge?"+q.Encode(), http.StatusSeeOther)
		return nil
	}
	// Bound to the session's owner: it must be a stored session.
	if s, err = g.persist(w, r, s); err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	if _, err := e.OpenEnrolLink(r.Context(), s, token); err != nil {
		if errors.Is(err, stepup.ErrEnrolLinkInvalid) || errors.Is(err, stepup.ErrEnrolLinkOtherUser) {
			return g.renderMessage(w, r, http.StatusGone, tx("msg.link_invalid.title"), tx("msg.link_no_longer_valid"), e.Prefix+"/", tx("nav.session"))
		}
		return &HTTPError{http.StatusInternalServerError, err}
	}
	e.Log(r, s, stepup.Record{Event: stepup.EventEnroll, Tier: link.Tier, AuthMethod: link.Method, Result: "link_opened"})
	q := url.Values{"step": {link.Tier}, "tier": {link.Tier}, "return": {e.Prefix + "/"}}
	http.Redirect(w, r, e.Prefix+"/enroll/"+link.Method+"?"+q.Encode(), http.StatusSeeOther)
	return nil
}
