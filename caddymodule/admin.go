package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/approval"
	"github.com/caddy-stepup/caddy-stepup/tiers"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is the `admin.api.stepup` module: routes under /stepup/ on
// Caddy's admin endpoint to see and end sessions, decide approvals, hand
// out enrolment links, see and reset a user's credentials, and explain a
// decision. Answers are JSON; errors are Caddy's admin API errors
// ({"error": "…"} with the status). No answer carries a session id, a
// cookie, a CSRF token, a secret or a kept request's body: sessions are
// named by their handle, the `session` of audit records.
//
// It has no configuration: Caddy loads every admin.api module with the
// admin endpoint. It finds the running engines (the global stepup app,
// and the handlers with an inline configuration) in the configuration
// that is running when a request comes, so a reload needs nothing of it.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.stepup",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes implements caddy.AdminRouter.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/stepup/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// maxAdminBody bounds a request body.
const maxAdminBody = 64 << 10

func apiError(status int, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return caddy.APIError{HTTPStatus: status, Err: err, Message: err.Error()}
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func readAdminJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return apiError(http.StatusUnsupportedMediaType, "send application/json, not %s", ct)
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiError(http.StatusBadRequest, "decoding request body: %v", err)
	}
	return nil
}

// serve routes /stepup/…
func (a *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	rt, err := running()
	if err != nil {
		return err
	}
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.EscapedPath(), "/stepup/"), "/"), "/")
	for i, p := range parts {
		if parts[i], err = url.PathUnescape(p); err != nil {
			return apiError(http.StatusBadRequest, "bad path: %v", err)
		}
	}
	route := parts[0]
	method := r.Method
	switch {
	case route == "sessions" && len(parts) == 1 && method == http.MethodGet:
		return a.listSessions(w, r, rt)
	case route == "sessions" && len(parts) == 1 && method == http.MethodDelete:
		return a.revokeUser(w, r, rt)
	case route == "sessions" && len(parts) == 2 && method == http.MethodDelete:
		return a.revokeSession(w, r, rt, parts[1])
	case route == "approvals" && len(parts) == 1 && method == http.MethodGet:
		return a.listApprovals(w, r, rt)
	case route == "approvals" && len(parts) == 2 && method == http.MethodGet:
		return a.getApproval(w, r, rt, parts[1])
	case route == "approvals" && len(parts) == 2 && method == http.MethodPost:
		return a.decideApproval(w, r, rt, parts[1])
	case route == "enrollments" && len(parts) == 1 && method == http.MethodPost:
		return a.enrolmentLink(w, r, rt)
	case route == "users" && len(parts) == 2 && method == http.MethodGet:
		return a.userCredentials(w, r, rt, parts[1])
	case route == "users" && len(parts) == 4 && parts[2] == "credentials" && method == http.MethodDelete:
		return a.resetCredentials(w, r, rt, parts[1], parts[3])
	case route == "explain" && len(parts) == 1 && method == http.MethodPost:
		return a.explain(w, r, rt)
	}
	known := map[string]string{"sessions": "GET, DELETE", "approvals": "GET, POST", "enrollments": "POST", "users": "GET, DELETE", "explain": "POST"}
	if allow, ok := known[route]; ok {
		w.Header().Set("Allow", allow)
		return apiError(http.StatusMethodNotAllowed, "%s %s: no such route (see the README's Admin API)", method, r.URL.Path)
	}
	return apiError(http.StatusNotFound, "%s: no such route (see the README's Admin API)", r.URL.Path)
}

// engineRef is one running engine: the global app's, or a handler's
// inline one.
type engineRef struct {
	name  string
	built *built
}

// siteRef is one stepup handler in the running HTTP app.
type siteRef struct {
	label  string
	server *caddyhttp.Server
	hosts  []string
	h      *Handler
	engine *engineRef
}

// runningState is what the admin API acts on.
type runningState struct {
	engines []*engineRef
	sites   []*siteRef
}

// running finds the engines and sites of the configuration running now.
func running() (*runningState, error) {
	ctx := caddy.ActiveContext()
	rt := &runningState{}
	var appRef *engineRef
	if app, err := ctx.AppIfConfigured("stepup"); err == nil {
		if a, ok := app.(*App); ok && a.built != nil {
			appRef = &engineRef{name: "app", built: a.built}
			rt.engines = append(rt.engines, appRef)
		}
	}
	if app, err := ctx.AppIfConfigured("http"); err == nil {
		if httpApp, ok := app.(*caddyhttp.App); ok {
			names := make([]string, 0, len(httpApp.Servers))
			for name := range httpApp.Servers {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				srv := httpApp.Servers[name]
				rt.walk(name, srv, srv.Routes, nil, appRef)
				if srv.Errors != nil {
					rt.walk(name, srv, srv.Errors.Routes, nil, appRef)
				}
			}
		}
	}
	if len(rt.engines) == 0 {
		return nil, apiError(http.StatusNotFound, "stepup is not configured in the running configuration")
	}
	return rt, nil
}

func (rt *runningState) walk(server string, srv *caddyhttp.Server, routes caddyhttp.RouteList, hosts []string, appRef *engineRef) {
	for _, route := range routes {
		routeHosts := hosts
		for _, set := range route.MatcherSets {
			for _, m := range set {
				if mh, ok := m.(*caddyhttp.MatchHost); ok {
					routeHosts = append(append([]string(nil), routeHosts...), (*mh)...)
				}
			}
		}
		for _, h := range route.Handlers {
			switch h := h.(type) {
			case *Handler:
				if h.gateway == nil {
					continue
				}
				ref := appRef
				if h.built != nil {
					ref = &engineRef{name: fmt.Sprintf("inline #%d", len(rt.sites)+1), built: h.built}
					rt.engines = append(rt.engines, ref)
				}
				label := server
				if len(routeHosts) > 0 {
					label += " (" + strings.Join(routeHosts, ", ") + ")"
				}
				rt.sites = append(rt.sites, &siteRef{label: label, server: srv, hosts: routeHosts, h: h, engine: ref})
			case *caddyhttp.Subroute:
				rt.walk(server, srv, h.Routes, routeHosts, appRef)
			}
		}
	}
}

// adminName is who acted, for the audit trail: the admin endpoint knows
// no user, so it records the client's address unless the caller names
// themselves (X-Stepup-Admin, e.g. set by the CLI from $USER).
func adminName(r *http.Request) string {
	name := "admin@" + r.RemoteAddr
	if who := strings.TrimSpace(r.Header.Get("X-Stepup-Admin")); who != "" && len(who) <= 64 {
		name = "admin:" + who
	}
	return name
}

// Sessions.

func (a *AdminAPI) listSessions(w http.ResponseWriter, r *http.Request, rt *runningState) error {
	user := r.URL.Query().Get("user")
	seen := map[string]bool{}
	out := []stepup.SessionInfo{}
	for _, ref := range rt.engines {
		list, err := ref.built.engine.ListSessions(r.Context(), user)
		if err != nil {
			return apiError(http.StatusInternalServerError, "listing sessions: %v", err)
		}
		for _, s := range list {
			if !seen[s.Handle] {
				seen[s.Handle] = true
				out = append(out, s)
			}
		}
	}
	return writeAdminJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

func (a *AdminAPI) revokeSession(w http.ResponseWriter, r *http.Request, rt *runningState, handle string) error {
	for _, ref := range rt.engines {
		si, err := ref.built.engine.RevokeSession(r.Context(), handle, adminName(r))
		if errors.Is(err, stepup.ErrNoSession) {
			continue
		}
		if errors.Is(err, stepup.ErrStoreUnavailable) {
			return apiError(http.StatusServiceUnavailable, "session %s was not ended: the session store is unavailable; try again", handle)
		}
		if err != nil {
			return apiError(http.StatusInternalServerError, "revoking session: %v", err)
		}
		return writeAdminJSON(w, http.StatusOK, map[string]any{"revoked": []stepup.SessionInfo{si}})
	}
	return apiError(http.StatusNotFound, "no session with handle %q", handle)
}

func (a *AdminAPI) revokeUser(w http.ResponseWriter, r *http.Request, rt *runningState) error {
	user := r.URL.Query().Get("user")
	if user == "" {
		return apiError(http.StatusBadRequest, "give ?user=NAME to end every session of a user, or DELETE /stepup/sessions/HANDLE for one")
	}
	out, err := endUserSessions(r, rt, user, "")
	if err != nil {
		return err
	}
	return writeAdminJSON(w, http.StatusOK, map[string]any{"revoked": out})
}

// endUserSessions ends every session of user, in every running engine; an
// error is the admin API's answer, its message after what (if any) was
// done already.
func endUserSessions(r *http.Request, rt *runningState, user, done string) ([]stepup.SessionInfo, error) {
	out := []stepup.SessionInfo{}
	for _, ref := range rt.engines {
		list, err := ref.built.engine.RevokeUser(r.Context(), user, adminName(r))
		out = append(out, list...)
		if errors.Is(err, stepup.ErrStoreUnavailable) {
			return out, apiError(http.StatusServiceUnavailable, "%snot every session of %s was ended (%d were): %v", done, user, len(out), err)
		}
		if err != nil {
			return out, apiError(http.StatusInternalServerError, "%srevoking sessions: %v", done, err)
		}
	}
	return out, nil
}

// Approvals.

// approvalView is an approval request as the admin API shows it: the
// action without its body, binding or digest.
type approvalView struct {
	ID            string                     `json:"id"`
	Status        string                     `json:"status"`
	Policy        string                     `json:"policy"`
	Set           string                     `json:"set"`
	Risk          string                     `json:"risk,omitempty"`
	Requester     string                     `json:"requester"`
	Method        string                     `json:"method"`
	URI           string                     `json:"uri"`
	Host          string                     `json:"host"`
	ClientIP      string                     `json:"client_ip"`
	Justification string                     `json:"justification,omitempty"`
	Conditions    []approval.ConditionResult `json:"conditions,omitempty"`
	Approvers     []string                   `json:"approvers"`
	Require       int                        `json:"require"`
	ApproverTier  string                     `json:"approver_tier"`
	Votes         []approval.Vote            `json:"votes,omitempty"`
	BreakGlass    string                     `json:"break_glass,omitempty"`
	Created       time.Time                  `json:"created"`
	Expires       time.Time                  `json:"expires"`
	Decided       *time.Time                 `json:"decided,omitempty"`
	UseBy         *time.Time                 `json:"use_by,omitempty"`
	GrantUntil    *time.Time                 `json:"grant_until,omitempty"`
}

func viewOf(q *approval.Request, p *approval.Policy) approvalView {
	v := approvalView{
		ID: q.ID, Status: q.Status, Policy: q.Policy, Set: q.Set, Risk: q.Risk, Requester: q.User,
		Method: q.Method, URI: q.URI, Host: q.Host, ClientIP: q.ClientIP, Justification: q.Justification,
		Conditions: q.Conditions, Votes: q.Votes, BreakGlass: q.BreakGlass, Created: q.Created, Expires: q.Expires,
		Approvers: []string{}, Require: 1, ApproverTier: q.Tier,
	}
	if p != nil {
		for _, ap := range p.Approvers {
			v.Approvers = append(v.Approvers, ap.String())
		}
		v.Require, v.ApproverTier = p.Require, q.ApproverTier(p)
	}
	for _, t := range []struct {
		src time.Time
		dst **time.Time
	}{{q.Decided, &v.Decided}, {q.UseBy, &v.UseBy}, {q.GrantUntil, &v.GrantUntil}} {
		if !t.src.IsZero() {
			at := t.src
			*t.dst = &at
		}
	}
	return v
}

// services are the running approval services with the engine each
// belongs to.
func (rt *runningState) services() []*engineRef {
	var out []*engineRef
	for _, ref := range rt.engines {
		if ref.built.approvals != nil {
			out = append(out, ref)
		}
	}
	return out
}

func (a *AdminAPI) listApprovals(w http.ResponseWriter, r *http.Request, rt *runningState) error {
	status := r.URL.Query().Get("status")
	switch status {
	case "", approval.StatusPending, approval.StatusApproved, approval.StatusDenied, approval.StatusExpired, approval.StatusUsed:
	default:
		return apiError(http.StatusBadRequest, "status must be pending, approved, denied, expired or used, not %q", status)
	}
	out := []approvalView{}
	seen := map[string]bool{}
	for _, ref := range rt.services() {
		svc := ref.built.approvals
		list, err := svc.List(r.Context())
		if err != nil {
			return apiError(http.StatusInternalServerError, "listing approvals: %v", err)
		}
		for _, q := range list {
			if seen[q.ID] || (status != "" && q.Status != status) {
				continue
			}
			seen[q.ID] = true
			out = append(out, viewOf(q, svc.Policies[q.Policy]))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return writeAdminJSON(w, http.StatusOK, map[string]any{"approvals": out})
}

// findApproval returns the request and the engine whose service holds it.
func (rt *runningState) findApproval(r *http.Request, id string) (*approval.Request, *approval.Policy, *engineRef, error) {
	for _, ref := range rt.services() {
		q, p, err := ref.built.approvals.Get(r.Context(), id)
		if errors.Is(err, approval.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, nil, apiError(http.StatusInternalServerError, "reading approval: %v", err)
		}
		return q, p, ref, nil
	}
	return nil, nil, nil, apiError(http.StatusNotFound, "no approval with id %q", id)
}

func (a *AdminAPI) getApproval(w http.ResponseWriter, r *http.Request, rt *runningState, id string) error {
	q, p, _, err := rt.findApproval(r, id)
	if err != nil {
		return err
	}
	return writeAdminJSON(w, http.StatusOK, viewOf(q, p))
}

// DecisionRequest is the body of POST /stepup/approvals/{id}.
type DecisionRequest struct {
	// Decision: approve or deny.
	Decision string `json:"decision"`
	// Comment shown to the requester (with a denial) and audited.
	Comment string `json:"comment,omitempty"`
	// Approver is the user in whose name the decision is made: one of the
	// policy's approvers (by user, or by a role the users directory gives
	// them), never the requester.
	Approver string `json:"approver"`
}

func (a *AdminAPI) decideApproval(w http.ResponseWriter, r *http.Request, rt *runningState, id string) error {
	var req DecisionRequest
	if err := readAdminJSON(r, &req); err != nil {
		return err
	}
	if req.Decision != "approve" && req.Decision != "deny" {
		return apiError(http.StatusBadRequest, "decision must be approve or deny, not %q", req.Decision)
	}
	if req.Approver == "" {
		return apiError(http.StatusBadRequest, "approver is required: the user in whose name the decision is made")
	}
	_, _, ref, err := rt.findApproval(r, id)
	if err != nil {
		return err
	}
	var roles []string
	if u := ref.built.users[req.Approver]; u != nil {
		roles = u.Roles
	}
	q, err := ref.built.approvals.DecideAsAdmin(r.Context(), id, req.Approver, roles, req.Decision, req.Comment)
	switch {
	case errors.Is(err, approval.ErrSelfApproval):
		return apiError(http.StatusForbidden, "%s asked for this action and cannot decide it", req.Approver)
	case errors.Is(err, approval.ErrNotApprover):
		return apiError(http.StatusForbidden, "%s is not an approver of this request (policy %s)", req.Approver, q.Policy)
	case errors.Is(err, approval.ErrAlreadyDecided):
		return apiError(http.StatusConflict, "%s has already decided this request", req.Approver)
	case errors.Is(err, approval.ErrBadDecision):
		return apiError(http.StatusBadRequest, "decision must be approve or deny")
	case errors.Is(err, approval.ErrNotPending):
		return apiError(http.StatusConflict, "the request is no longer pending")
	case errors.Is(err, approval.ErrJustification):
		return apiError(http.StatusConflict, "the requester has not given the required justification yet")
	case errors.Is(err, approval.ErrNotFound):
		return apiError(http.StatusNotFound, "no approval with id %q", id)
	case errors.Is(err, approval.ErrBusy):
		return apiError(http.StatusConflict, "%v", err)
	case err != nil:
		return apiError(http.StatusInternalServerError, "deciding: %v", err)
	}
	ref.built.engine.Audit.Log(stepup.Record{Event: stepup.EventApprovalVote, User: q.User, Set: q.Set, Approval: q.ID, Policy: q.Policy,
		Approver: req.Approver, Result: "recorded_by_admin", Reason: adminName(r)})
	_, p, _ := ref.built.approvals.Get(r.Context(), id)
	return writeAdminJSON(w, http.StatusOK, viewOf(q, p))
}

// Enrolment links.

// EnrollmentRequest is the body of POST /stepup/enrollments.
type EnrollmentRequest struct {
	// User the link is for.
	User string `json:"user"`
	// Tier whose method the user sets up.
	Tier string `json:"tier"`
	// Method, when the tier has several that users set up; default: the
	// first.
	Method string `json:"method,omitempty"`
	// Expires is how long the link works, a Go duration ("24h", the
	// default; at most 720h).
	Expires string `json:"expires,omitempty"`
	// BaseURL, e.g. "https://app.example.com", makes the answer's URL
	// absolute; without it the URL is a path on any site of the handler.
	BaseURL string `json:"base_url,omitempty"`
}

func (a *AdminAPI) enrolmentLink(w http.ResponseWriter, r *http.Request, rt *runningState) error {
	var req EnrollmentRequest
	if err := readAdminJSON(r, &req); err != nil {
		return err
	}
	if req.User == "" || req.Tier == "" {
		return apiError(http.StatusBadRequest, "user and tier are required")
	}
	var ttl time.Duration
	if req.Expires != "" {
		d, err := caddy.ParseDuration(req.Expires)
		if err != nil || d <= 0 {
			return apiError(http.StatusBadRequest, "expires: want a duration such as 24h, not %q", req.Expires)
		}
		ttl = d
	}
	base := ""
	if req.BaseURL != "" {
		var err error
		if base, err = parseBaseURL(req.BaseURL); err != nil {
			return apiError(http.StatusBadRequest, "base_url: %v", err)
		}
	}
	var ref *engineRef
	for _, e := range rt.engines {
		if e.built.engine.Hierarchy.Has(req.Tier) {
			ref = e
			break
		}
	}
	if ref == nil {
		return apiError(http.StatusNotFound, "no tier %q", req.Tier)
	}
	e := ref.built.engine
	token, link, err := e.IssueEnrolLink(r.Context(), req.User, req.Tier, req.Method, ttl, adminName(r))
	if err != nil {
		return apiError(http.StatusBadRequest, "%v", err)
	}
	return writeAdminJSON(w, http.StatusCreated, map[string]any{
		"url": base + e.EnrolLinkURL(token), "expires": link.Expires, "user": link.User, "tier": link.Tier, "method": link.Method,
	})
}

// Credentials.

func (a *AdminAPI) userCredentials(w http.ResponseWriter, r *http.Request, rt *runningState, user string) error {
	type engineCredentials struct {
		Engine string                   `json:"engine,omitempty"`
		Tiers  []stepup.TierCredentials `json:"tiers"`
	}
	out := map[string]any{"user": user}
	var all []engineCredentials
	for _, ref := range rt.engines {
		list, err := ref.built.engine.UserCredentials(r.Context(), user)
		if err != nil {
			return apiError(http.StatusInternalServerError, "reading credentials: %v", err)
		}
		all = append(all, engineCredentials{Engine: ref.name, Tiers: list})
	}
	if len(all) == 1 {
		out["tiers"] = all[0].Tiers
	} else {
		out["engines"] = all
	}
	if changes, err := rt.engines[0].built.engine.Credentials.Changes(r.Context(), user); err == nil && len(changes) > 0 {
		type change struct {
			Kind   string    `json:"kind"`
			Tier   string    `json:"tier"`
			Method string    `json:"method"`
			At     time.Time `json:"at"`
		}
		var cs []change
		for _, c := range changes {
			cs = append(cs, change{c.Kind, c.Tier, c.Method, c.At})
		}
		out["changes"] = cs
	}
	_, known := rt.engines[0].built.users[user]
	out["in_directory"] = known
	return writeAdminJSON(w, http.StatusOK, out)
}

// resetAnswer is the answer to a credential reset: what was removed and,
// with ?end_sessions=true, the user's sessions that were ended.
type resetAnswer struct {
	*stepup.ResetResult
	EndedSessions []stepup.SessionInfo `json:"ended_sessions,omitempty"`
}

func (a *AdminAPI) resetCredentials(w http.ResponseWriter, r *http.Request, rt *runningState, user, tier string) error {
	var endSessions bool
	switch v := r.URL.Query().Get("end_sessions"); v {
	case "", "false", "0":
	case "true", "1":
		endSessions = true
	default:
		return apiError(http.StatusBadRequest, "end_sessions: want true or false, not %q", v)
	}
	for _, ref := range rt.engines {
		e := ref.built.engine
		if !e.Hierarchy.Has(tier) {
			continue
		}
		res, err := e.ResetCredentials(r.Context(), user, tier, adminName(r))
		if errors.Is(err, stepup.ErrNotResettable) {
			return apiError(http.StatusConflict, "tier %s: %v", tier, err)
		}
		if err != nil {
			return apiError(http.StatusInternalServerError, "resetting: %v", err)
		}
		ans := resetAnswer{ResetResult: res}
		if endSessions {
			// A lost or stolen device: what a session reached with it
			// must not outlive the credential.
			if ans.EndedSessions, err = endUserSessions(r, rt, user, "the credentials were reset, but "); err != nil {
				return err
			}
		}
		return writeAdminJSON(w, http.StatusOK, ans)
	}
	return apiError(http.StatusNotFound, "no tier %q", tier)
}

// Explain.

// ExplainRequest is the body of POST /stepup/explain.
type ExplainRequest struct {
	// Method and URI of the request (a path with its query, or an
	// absolute URL whose host is then the host).
	Method string `json:"method"`
	URI    string `json:"uri"`
	// Host of the request; default: the URI's host, else each site's
	// first host name.
	Host string `json:"host,omitempty"`
	// User the request is made by ("" for an anonymous visitor); roles
	// come from the users directory unless Roles gives them (a user from
	// an external identity).
	User  string   `json:"user,omitempty"`
	Roles []string `json:"roles,omitempty"`
	// Tiers the session holds, reached just now (their bases are implied).
	Tiers []string `json:"tiers,omitempty"`
	// Session, instead of User and Tiers: the handle of a live session,
	// explained as it stands.
	Session string `json:"session,omitempty"`
	// ClientIP the request comes from. Default: 127.0.0.1.
	ClientIP string `json:"client_ip,omitempty"`
	// Headers of the request (e.g. X-HTTP-Method-Override).
	Headers map[string]string `json:"headers,omitempty"`
}

// siteExplanation is one handler's answer.
type siteExplanation struct {
	Site string `json:"site"`
	// Decision: allowed, step_up_required, approval_required, refused,
	// or error.
	Decision  string                  `json:"decision"`
	Detail    string                  `json:"detail"`
	Held      []string                `json:"held"`
	Sets      []stepup.SetExplanation `json:"sets"`
	Default   *stepup.SetExplanation  `json:"default,omitempty"`
	Approvals []*approval.Explanation `json:"approvals,omitempty"`
}

func (a *AdminAPI) explain(w http.ResponseWriter, r *http.Request, rt *runningState) error {
	var req ExplainRequest
	if err := readAdminJSON(r, &req); err != nil {
		return err
	}
	if req.Method == "" {
		req.Method = http.MethodGet
	}
	if req.URI == "" {
		return apiError(http.StatusBadRequest, "uri is required")
	}
	u, err := url.Parse(req.URI)
	if err != nil || (u.Host == "" && !strings.HasPrefix(req.URI, "/")) {
		return apiError(http.StatusBadRequest, "uri: want a path such as /admin/x or an absolute URL, not %q", req.URI)
	}
	if req.Host == "" {
		req.Host = u.Host
	}
	if req.ClientIP == "" {
		req.ClientIP = "127.0.0.1"
	}
	if net.ParseIP(req.ClientIP) == nil {
		return apiError(http.StatusBadRequest, "client_ip: not an IP address: %q", req.ClientIP)
	}
	if req.Session != "" && (req.User != "" || len(req.Tiers) > 0) {
		return apiError(http.StatusBadRequest, "give a session handle, or a user and tiers, not both")
	}
	if len(req.Tiers) > 0 && req.User == "" {
		return apiError(http.StatusBadRequest, "tiers are held by a user: give user too")
	}
	out := []siteExplanation{}
	for _, site := range rt.sites {
		if req.Host != "" && !hostMatches(site.hosts, req.Host) {
			continue
		}
		x, err := explainSite(r, site, &req, u)
		if err != nil {
			return err
		}
		out = append(out, *x)
	}
	if len(out) == 0 {
		return apiError(http.StatusNotFound, "no stepup handler serves host %q", req.Host)
	}
	return writeAdminJSON(w, http.StatusOK, map[string]any{"request": map[string]any{
		"method": strings.ToUpper(req.Method), "uri": u.RequestURI(), "host": req.Host, "client_ip": req.ClientIP,
	}, "sites": out})
}

// hostMatches reports whether a site whose route matches hosts serves
// host (a site without a host matcher serves every host).
func hostMatches(hosts []string, host string) bool {
	if len(hosts) == 0 {
		return true
	}
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	for _, want := range hosts {
		if strings.EqualFold(want, h) || strings.EqualFold(want, host) {
			return true
		}
		if strings.HasPrefix(want, "*.") && strings.HasSuffix(strings.ToLower(h), strings.ToLower(want[1:])) {
			return true
		}
	}
	return false
}

// explainSite runs one handler's policy on a synthetic request, prepared
// as Caddy's server prepares a real one (replacer, client IP, vars), with
// no side effect: no session written, no counter spent, no approval made.
func explainSite(r *http.Request, site *siteRef, req *ExplainRequest, u *url.URL) (*siteExplanation, error) {
	g := site.h.gateway
	e := g.Engine
	host := req.Host
	if host == "" {
		host = "localhost"
		if len(site.hosts) > 0 && !strings.Contains(site.hosts[0], "*") {
			host = site.hosts[0]
		}
	}
	syn := httptest.NewRequestWithContext(r.Context(), strings.ToUpper(req.Method), u.RequestURI(), nil)
	syn.Host = host
	syn.RemoteAddr = net.JoinHostPort(req.ClientIP, "49152")
	syn.Header.Set("Accept", "text/html")
	for k, v := range req.Headers {
		syn.Header.Set(k, v)
	}
	repl := caddy.NewReplacer()
	syn = caddyhttp.PrepareRequest(syn, repl, httptest.NewRecorder(), site.server)

	now := e.Now()
	sess, err := explainSession(r, site, req, now)
	if err != nil {
		return nil, err
	}
	ev := stepup.Evaluation{Request: syn, Session: sess, Now: now}
	if len(g.Policy.Sets) > 0 {
		ev.Readings = stepup.ReadingsOf(syn)
	}
	x := g.Policy.Explain(&ev)
	out := &siteExplanation{Site: site.label, Sets: x.Sets, Default: x.Default, Held: []string{}}
	if sess != nil {
		out.Held = sess.Stack.Names()
	}
	user, roles := "", []string(nil)
	if sess != nil {
		user, roles = sess.User, sess.Roles
	}
	refused, needApproval := "", ""
	var approvalSets []*stepup.TransactionSet
	if g.Approvals != nil {
		// As the stage judges them: each policy once, as its riskiest
		// matched set.
		approvalSets = approval.RiskiestPerPolicy(g.Policy.Sets, ev.Decision.Matched)
	}
	for _, set := range approvalSets {
		if set.Approval == "" {
			continue
		}
		ax, err := g.Approvals.Explain(r.Context(), set, user, roles, e.ClientIP(syn), now)
		if err != nil {
			return nil, apiError(http.StatusInternalServerError, "explaining approval: %v", err)
		}
		out.Approvals = append(out.Approvals, ax)
		switch ax.Outcome {
		case approval.OutcomeRefused:
			if refused == "" {
				refused = "set " + set.Name + ", policy " + ax.Policy + ": " + ax.Detail
			}
		case approval.OutcomeApprovalRequired:
			if needApproval == "" {
				needApproval = "set " + set.Name + ", policy " + ax.Policy + ": " + ax.Detail
			}
		}
	}
	switch {
	case x.Error:
		out.Decision, out.Detail = "error", "a matcher failed: the request would be answered 500"
	case !x.TiersOK:
		m := x.Missing
		out.Decision = "step_up_required"
		out.Detail = fmt.Sprintf("set %s needs tier %s", m.Set, m.Tier)
		if m.PerRequest {
			out.Detail += ", stepped up for this very request"
		} else if t, _ := e.Hierarchy.Get(m.Tier); m.MaxAge < t.MaxAge {
			out.Detail += fmt.Sprintf(", reached within %s", m.MaxAge)
		}
	case refused != "":
		out.Decision, out.Detail = "refused", refused
	case needApproval != "":
		out.Decision, out.Detail = "approval_required", needApproval
	default:
		out.Decision, out.Detail = "allowed", "every requirement holds"
		if x.Default == nil && ev.Decision.Matched == 0 {
			out.Detail = "no transaction set matches and the default is public"
		}
	}
	return out, nil
}

// explainSession is the session a request is explained for: a live one,
// as it stands, or one holding the given tiers, reached now.
func explainSession(r *http.Request, site *siteRef, req *ExplainRequest, now time.Time) (*stepup.Session, error) {
	e := site.h.gateway.Engine
	if req.Session != "" {
		s, err := e.SessionByHandle(r.Context(), req.Session)
		if errors.Is(err, stepup.ErrNoSession) {
			return nil, apiError(http.StatusNotFound, "no session with handle %q", req.Session)
		}
		if err != nil {
			return nil, apiError(http.StatusInternalServerError, "reading session: %v", err)
		}
		s = s.Clone()
		s.Stack, _ = s.Stack.Reconcile(e.Hierarchy, now)
		return s, nil
	}
	if req.User == "" {
		return nil, nil
	}
	s := &stepup.Session{User: req.User, Roles: req.Roles, Created: now, Seen: now}
	if s.Roles == nil && site.engine != nil {
		if u := site.engine.built.users[req.User]; u != nil {
			s.Roles = u.Roles
		}
	}
	for _, name := range req.Tiers {
		chain, err := e.Hierarchy.Chain(name)
		if err != nil {
			return nil, apiError(http.StatusBadRequest, "tiers: unknown tier %q", name)
		}
		for _, t := range chain {
			if _, held := s.Stack.Level(t); held {
				continue
			}
			method := ""
			if m, ok := e.Method(t, ""); ok {
				method = m.Name()
			}
			next, err := s.Stack.Push(e.Hierarchy, tiers.Level{Tier: t, Method: method, Credential: req.User, At: now}, now)
			if err != nil {
				return nil, apiError(http.StatusBadRequest, "tiers: %v", err)
			}
			s.Stack = next
		}
	}
	if len(s.Stack) == 0 {
		// A user with no tier is not signed in.
		return nil, nil
	}
	return s, nil
}

var (
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)

// parseBaseURL reads the scheme and host of links the module hands out
// ("https://app.example.com"), refusing anything else a URL may carry.
func parseBaseURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("want a scheme and host such as https://app.example.com, not %q", s)
	}
	return u.Scheme + "://" + u.Host, nil
}
