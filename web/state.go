package web

import (
	"context"
	"net/http"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// pageState is the session a page request works with, updated as the
// request changes it (a stored visitor session, a step-up, a logoff), so
// that the page it renders carries a CSRF token for the session the next
// request will present.
type pageState struct {
	s *stepup.Session
	// next and err carry a page's handler chain and result through the
	// pages' mux.
	next Next
	err  error
}

type pageStateKey struct{}

// withSession attaches the request's session to a page request, in place:
// a kept request is replayed into this very *http.Request, which Caddy's
// placeholders and the next handlers hold.
func withSession(r *http.Request, s *stepup.Session) {
	*r = *r.WithContext(context.WithValue(r.Context(), pageStateKey{}, &pageState{s: s}))
}

func stateOf(r *http.Request) *pageState {
	st, _ := r.Context().Value(pageStateKey{}).(*pageState)
	return st
}

// setSession records that the request changed its session.
func setSession(r *http.Request, s *stepup.Session) {
	if st := stateOf(r); st != nil {
		st.s = s
	}
}

// ownerOf is the owner of the request's current session ("" for none):
// CSRF tokens are bound to it.
func ownerOf(r *http.Request) string {
	if st := stateOf(r); st != nil && st.s != nil {
		return st.s.Owner
	}
	return ""
}

// persist stores the request's session (see Engine.Persist) and records it.
func (g *Gateway) persist(w http.ResponseWriter, r *http.Request, s *stepup.Session) (*stepup.Session, error) {
	s, err := g.Engine.Persist(w, r, s)
	if err == nil {
		setSession(r, s)
	}
	return s, err
}
