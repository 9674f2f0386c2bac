package web

import (
	"net/http"
	"strings"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// page is a handler of one of the module's pages; its error goes to
// Caddy's error handling.
type page func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error

// routes is the mux of the module's pages, built once per gateway: the
// walk's own pages, and those the tiers' methods contribute through the
// interfaces they implement (a form or ceremony enrolment, a ceremony
// step, credentials to remove), at paths named after the method.
func (g *Gateway) routes() *http.ServeMux {
	g.muxOnce.Do(func() {
		p := g.Engine.Prefix
		mux := http.NewServeMux()
		allowed := map[string][]string{} // path -> methods, for 405 answers
		route := func(method, path string, f page) {
			mux.HandleFunc(method+" "+path, func(w http.ResponseWriter, r *http.Request) {
				st := stateOf(r)
				st.err = f(w, r, st.s)
			})
			allowed[path] = append(allowed[path], method)
		}
		route("GET", p, g.status)
		route("GET", p+"/{$}", g.status)
		route("GET", p+"/challenge", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.challenge(w, r, s, r.URL.Query(), "", 0)
		})
		route("POST", p+"/verify/{tier}", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.verify(w, r, s, r.PathValue("tier"))
		})
		route("POST", p+"/logout", g.logout)
		route("GET", p+"/enroll", g.enrolLink)
		route("GET", p+"/signout", g.signout)
		route("GET", p+"/cancel/{id}", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.cancel(w, r, s, r.PathValue("id"))
		})
		route("GET", p+"/resume/{id}", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.confirm(w, r, s, r.PathValue("id"))
		})
		route("POST", p+"/resume/{id}", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.resume(w, r, s, r.PathValue("id"), stateOf(r).next)
		})
		route("GET", p+"/approvals", g.inbox)
		route("GET", p+"/approvals/{id}", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.approvalPage(w, r, s, r.PathValue("id"))
		})
		route("POST", p+"/approvals/{id}", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.approvalPost(w, r, s, r.PathValue("id"))
		})
		route("POST", p+"/approvals/{id}/break-glass", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.breakGlass(w, r, s, r.PathValue("id"))
		})
		route("POST", p+"/approvals/{id}/radius", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.radiusAnswer(w, r, s, r.PathValue("id"))
		})
		route("POST", p+"/approvals/{id}/send", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.approvalSend(w, r, s, r.PathValue("id"), stateOf(r).next)
		})
		done := map[string]bool{}
		for _, tier := range g.Engine.Hierarchy.Names() {
			for _, m := range g.Engine.Alternatives[tier] {
				name := m.Name()
				if done[name] {
					continue
				}
				done[name] = true
				g.methodRoutes(route, p, m)
			}
		}
		for path, methods := range allowed {
			mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Allow", strings.Join(methods, ", "))
				stateOf(r).err = g.renderMessage(w, r, http.StatusMethodNotAllowed, tx("msg.method_not_allowed.title"), tx("msg.method_not_allowed.body"), "", text{})
			})
		}
		mux.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
			stateOf(r).err = g.notFound(w, r)
		})
		g.mux = mux
	})
	return g.mux
}

// methodRoutes adds the pages a method contributes.
func (g *Gateway) methodRoutes(route func(method, path string, f page), p string, m stepup.Method) {
	name := m.Name()
	if _, ok := m.(stepup.FormEnroller); ok {
		enrol := func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.enrolForm(w, r, s, name)
		}
		route("GET", p+"/enroll/"+name, enrol)
		route("POST", p+"/enroll/"+name, enrol)
		route("GET", p+"/enroll/"+name+"/qr.png", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.enrolImage(w, r, s, name)
		})
	}
	if _, ok := m.(stepup.CeremonyEnroller); ok {
		route("GET", p+"/enroll/"+name, func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.ceremonyEnrolPage(w, r, s, name)
		})
		route("POST", p+"/enroll/"+name+"/{action}", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.ceremonyEnrol(w, r, s, name, r.PathValue("action"))
		})
	}
	if _, ok := m.(stepup.Ceremony); ok {
		route("POST", p+"/"+name+"/{tier}/{action}", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.ceremonyStep(w, r, s, name, r.PathValue("tier"), r.PathValue("action"))
		})
	}
	if _, ok := m.(stepup.CredentialKeeper); ok {
		route("GET", p+"/"+name+"/remove", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.credentialRemovePage(w, r, s, name)
		})
		route("POST", p+"/"+name+"/remove", func(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
			return g.credentialRemove(w, r, s, name)
		})
	}
}
