package web

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/approval"
)

// The approval pages: the requester's status page (which refreshes itself
// while it waits, takes a justification, a break-glass reason or an answer
// to a RADIUS challenge, and once approved confirms and replays the
// action), the approver's view of the action with the decision form, and
// the approver's inbox.

// approvalView is what the approval templates show.
type approvalView struct {
	Q           *approval.Request
	P           *approval.Policy
	Requester   bool
	Approver    bool
	Voted       string
	Approvers   []string
	Left        string
	Refresh     int
	UpdatesOff  bool
	NeedsReason bool
	MayDecide   bool
	TierMissing bool
	Draft       approval.Draft
	HasDraft    bool
	CanSend     bool
	Comment     string
	Fields      []stepup.FormField
	MoreFields  int
	IsForm      bool
	Path        string
	// Preview is a body that is not a form (JSON indented, secrets
	// masked; other text), when it can be shown.
	Preview          string
	PreviewTruncated bool
	// SetLabel names the set for people; StatusText says the status.
	SetLabel, StatusText string
	l                    *lang
}

// DecisionText says a decision ("approve", "deny") in the page's language.
func (v *approvalView) DecisionText(decision string) string {
	switch decision {
	case "approve", "deny":
		return v.l.T("approval.decision_" + decision)
	}
	return decision
}

// approvalAnswer answers a request that a stage held for approval or
// refused on a condition: API clients get JSON (202 with the status URI),
// browsers the approval page or a page naming the condition.
func (g *Gateway) approvalAnswer(w http.ResponseWriter, r *http.Request, d *stepup.Denial) error {
	e := g.Engine
	switch {
	case d.Reason == "approval_pending":
		uri := e.Prefix + "/approvals/" + d.Approval
		if stepup.IsAPI(r) {
			q, _, err := g.Approvals.Get(r.Context(), d.Approval)
			if err != nil {
				return &HTTPError{http.StatusInternalServerError, err}
			}
			w.Header().Set("Location", uri)
			writeJSON(w, http.StatusAccepted, approvalJSON(q, uri))
			return nil
		}
		http.Redirect(w, r, uri, http.StatusSeeOther)
		return nil
	case d.Reason == "approval_condition_failed":
		if stepup.IsAPI(r) {
			writeJSON(w, http.StatusForbidden, map[string]any{"error": "approval_condition_failed", "condition": d.Condition, "detail": d.Detail})
			return nil
		}
		return g.renderMessage(w, r, http.StatusForbidden, tx("msg.not_allowed_now.title"), denialText(d), "", text{})
	case d.Reason == "approval_denied":
		if stepup.IsAPI(r) {
			writeJSON(w, http.StatusForbidden, map[string]any{"error": "approval_denied", "id": d.Approval, "detail": d.Detail})
			return nil
		}
		return g.renderMessage(w, r, http.StatusForbidden, tx("msg.denied.title"), denialText(d), e.Prefix+"/approvals/"+d.Approval, tx("msg.denied.link"))
	}
	return errNotApproval
}

var errNotApproval = errors.New("not an approval answer")

func approvalJSON(q *approval.Request, uri string) map[string]any {
	out := map[string]any{"id": q.ID, "status": q.Status, "status_uri": uri, "expires": q.Expires.UTC().Format(time.RFC3339)}
	if !q.UseBy.IsZero() {
		out["use_by"] = q.UseBy.UTC().Format(time.RFC3339)
	}
	if !q.GrantUntil.IsZero() {
		out["grant_until"] = q.GrantUntil.UTC().Format(time.RFC3339)
	}
	for _, v := range q.Votes {
		if v.Decision == "deny" && v.Comment != "" {
			out["comment"] = v.Comment
		}
	}
	if q.Radius != nil && q.Radius.Status == "unavailable" && q.Waiting() {
		out["detail"] = "approval service unavailable"
	}
	return out
}

// approvalPage shows a request to its requester or to an approver; anyone
// else learns nothing, not even that it exists.
func (g *Gateway) approvalPage(w http.ResponseWriter, r *http.Request, s *stepup.Session, id string) error {
	if g.Approvals == nil {
		return g.notFound(w, r)
	}
	q, p, err := g.Approvals.Get(r.Context(), id)
	role := approval.RoleNone
	if err == nil {
		role = approval.RoleOf(q, p, s)
	}
	if role == approval.RoleNone {
		if stepup.IsAPI(r) {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "not_found"})
			return nil
		}
		return g.renderMessage(w, r, http.StatusNotFound, tx("msg.not_found.title"), tx("msg.no_such_request"), g.Engine.Prefix+"/", tx("nav.session"))
	}
	if stepup.IsAPI(r) {
		writeJSON(w, http.StatusOK, approvalJSON(q, g.Engine.Prefix+"/approvals/"+q.ID))
		return nil
	}
	return g.renderApproval(w, r, s, q, p, role, "", http.StatusOK)
}

func (g *Gateway) renderApproval(w http.ResponseWriter, r *http.Request, s *stepup.Session, q *approval.Request, p *approval.Policy, role approval.Role, errMsg string, status int) error {
	e := g.Engine
	now := e.Now()
	l := langOf(r)
	v := &approvalView{Q: q, P: p, Requester: role == approval.RoleRequester, Approver: role == approval.RoleApprover, Approvers: p.ApproverNames(), Path: q.Method + " " + q.URI,
		SetLabel: g.setLabel(q.Set), StatusText: l.T("approval.status_" + q.Status), l: l}
	if q.Waiting() {
		v.Left = l.Duration(q.Expires.Sub(now))
		// The requester's page refreshes itself while it waits (no script).
		if v.Requester && !q.NeedsJustification(p) && (q.Radius == nil || q.Radius.Status != "challenge") {
			v.Refresh = 5
			if r.URL.Query().Get("updates") == "off" {
				v.Refresh, v.UpdatesOff = 0, true
			}
		}
	}
	if q.Status == approval.StatusApproved && !q.UseBy.IsZero() {
		v.Left = l.Duration(q.UseBy.Sub(now))
		_, err := g.Approvals.Sendable(r.Context(), s, q.ID)
		v.CanSend = v.Requester && q.Browser && err == nil
	}
	if vote, ok := q.VoteOf(s.User); ok {
		v.Voted = vote.Decision
	}
	for _, vote := range q.Votes {
		if vote.Decision == "deny" && vote.Comment != "" {
			v.Comment = vote.Comment
		}
	}
	v.NeedsReason = q.NeedsJustification(p)
	if v.Approver {
		v.Fields, v.MoreFields, v.IsForm = q.Kept().FormFields()
		if !v.IsForm {
			v.Preview, v.PreviewTruncated, _ = q.Kept().BodyPreview()
		}
		v.MayDecide = q.Waiting() && v.Voted == "" && !v.NeedsReason
		v.TierMissing = !s.Stack.Holds(e.Hierarchy, q.ApproverTier(p), now, 0)
		v.Draft, v.HasDraft = g.Approvals.PeekDraft(r.Context(), s.Owner, q.ID)
	}
	title := l.T("approval.title_approver")
	if v.Requester {
		title = l.T("approval.title_waiting")
		switch q.Status {
		case approval.StatusApproved:
			title = l.T("approval.title_approved")
		case approval.StatusDenied:
			title = l.T("approval.title_denied")
		case approval.StatusExpired:
			title = l.T("approval.title_expired")
		case approval.StatusUsed:
			title = l.T("approval.title_used")
		}
	}
	d := &pageData{L: l, Title: title, Error: errMsg, Approval: v}
	if v.Refresh > 0 {
		d.Refresh = v.Refresh
	}
	return g.render(w, r, status, "approval", d)
}

// approvalPost takes what a page sends about a request: an approver's
// decision, the requester's justification or their withdrawal.
func (g *Gateway) approvalPost(w http.ResponseWriter, r *http.Request, s *stepup.Session, id string) error {
	if g.Approvals == nil {
		return g.notFound(w, r)
	}
	if justification, ok := g.jsonJustification(w, r); ok {
		q, err := g.Approvals.Justify(r, s, id, justification)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": approvalErrorCode(err)})
			return nil
		}
		writeJSON(w, http.StatusOK, approvalJSON(q, g.Engine.Prefix+"/approvals/"+q.ID))
		return nil
	}
	if err := g.parseFormOrAnswer(w, r); err != nil {
		return nil
	}
	form := r.PostForm
	var q *approval.Request
	var err error
	switch {
	case form.Has("decision"):
		decision, comment := form.Get("decision"), form.Get("comment")
		q, err = g.Approvals.Decide(r, s, id, decision, comment)
		if errors.Is(err, approval.ErrApproverTier) && q != nil && (decision == "approve" || decision == "deny") {
			// Deciding is itself a step-up-protected action: the decision
			// waits while the approver steps up, then they confirm it.
			if err := g.Approvals.KeepDraft(r.Context(), s.Owner, id, approval.Draft{Decision: decision, Comment: comment}); err != nil {
				return &HTTPError{http.StatusInternalServerError, err}
			}
			_, p, _ := g.Approvals.Get(r.Context(), id)
			q2 := url.Values{"tier": {q.ApproverTier(p)}, "return": {g.Engine.Prefix + "/approvals/" + id}}
			http.Redirect(w, r, g.Engine.Prefix+"/challenge?"+q2.Encode(), http.StatusSeeOther)
			return nil
		}
		if err == nil {
			g.Approvals.DropDraft(r.Context(), s.Owner, id)
			g.setFlash(w, r, "flash.decided")
		}
	case form.Has("justification"):
		if q, err = g.Approvals.Justify(r, s, id, form.Get("justification")); err == nil {
			g.setFlash(w, r, "flash.justified")
		}
	case form.Get("action") == "withdraw":
		if err = g.Approvals.Withdraw(r, s, id); err == nil {
			g.setFlash(w, r, "flash.withdrawn")
			http.Redirect(w, r, g.Engine.Prefix+"/", http.StatusSeeOther)
			return nil
		}
	default:
		return g.renderMessage(w, r, http.StatusBadRequest, tx("msg.bad_request.title"), tx("msg.bad_request.body"), "", text{})
	}
	return g.afterApprovalAction(w, r, s, id, q, err)
}

// afterApprovalAction shows the request again: after the action, or with
// what went wrong.
func (g *Gateway) afterApprovalAction(w http.ResponseWriter, r *http.Request, s *stepup.Session, id string, q *approval.Request, err error) error {
	if err == nil {
		http.Redirect(w, r, g.Engine.Prefix+"/approvals/"+id, http.StatusSeeOther)
		return nil
	}
	q2, p, gerr := g.Approvals.Get(r.Context(), id)
	if gerr != nil || approval.RoleOf(q2, p, s) == approval.RoleNone {
		if errors.Is(err, approval.ErrSelfApproval) || errors.Is(err, approval.ErrNotApprover) || errors.Is(err, approval.ErrNotFound) || errors.Is(err, approval.ErrNotRequester) {
			return g.renderMessage(w, r, http.StatusNotFound, tx("msg.not_found.title"), tx("msg.no_such_request_decide"), g.Engine.Prefix+"/", tx("nav.session"))
		}
		return &HTTPError{http.StatusInternalServerError, err}
	}
	status, msg := approvalError(err)
	if status == http.StatusInternalServerError {
		return &HTTPError{status, err}
	}
	return g.renderApproval(w, r, s, q2, p, approval.RoleOf(q2, p, s), langOf(r).T(msg), status)
}

// approvalError maps an error of a page's action to its status and the
// message (id) that says it.
func approvalError(err error) (int, string) {
	switch {
	case errors.Is(err, approval.ErrSelfApproval):
		return http.StatusForbidden, "approval.err.self"
	case errors.Is(err, approval.ErrNotApprover):
		return http.StatusForbidden, "approval.err.not_approver"
	case errors.Is(err, approval.ErrAlreadyDecided):
		return http.StatusConflict, "approval.err.already"
	case errors.Is(err, approval.ErrBadDecision):
		return http.StatusBadRequest, "msg.bad_request.body"
	case errors.Is(err, approval.ErrNotPending):
		return http.StatusConflict, "approval.err.not_pending"
	case errors.Is(err, approval.ErrJustification):
		return http.StatusBadRequest, "approval.err.justification"
	case errors.Is(err, approval.ErrReasonRequired):
		return http.StatusBadRequest, "approval.err.reason"
	case errors.Is(err, approval.ErrCooldown):
		return http.StatusTooManyRequests, "approval.err.cooldown"
	case errors.Is(err, approval.ErrBreakGlassDenied):
		return http.StatusForbidden, "approval.err.no_break_glass"
	case errors.Is(err, approval.ErrNotRequester):
		return http.StatusForbidden, "approval.err.not_requester"
	case errors.Is(err, approval.ErrNotApproved), errors.Is(err, approval.ErrOtherSession):
		return http.StatusConflict, "approval.err.not_sendable"
	case errors.Is(err, approval.ErrBusy):
		return http.StatusConflict, "approval.err.busy"
	}
	return http.StatusInternalServerError, ""
}

func approvalErrorCode(err error) string {
	switch {
	case errors.Is(err, approval.ErrJustification):
		return "justification_required"
	case errors.Is(err, approval.ErrNotPending):
		return "not_pending"
	case errors.Is(err, approval.ErrNotRequester), errors.Is(err, approval.ErrNotFound):
		return "not_found"
	}
	return "bad_request"
}

// jsonJustification reads an API client's {"justification": "…"}. A JSON
// body cannot be sent across sites without the site's consent (CORS), and
// a cross-site one is refused anyway.
func (g *Gateway) jsonJustification(w http.ResponseWriter, r *http.Request) (string, bool) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" || stepup.CrossSite(r, g.Engine.Scheme(r)) {
		return "", false
	}
	var body struct {
		Justification string `json:"justification"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxFormBytes)).Decode(&body); err != nil {
		return "", true
	}
	return body.Justification, true
}

// breakGlass lets the requester approve their own action, with a reason.
func (g *Gateway) breakGlass(w http.ResponseWriter, r *http.Request, s *stepup.Session, id string) error {
	if g.Approvals == nil {
		return g.notFound(w, r)
	}
	if err := g.parseFormOrAnswer(w, r); err != nil {
		return nil
	}
	q, err := g.Approvals.BreakGlass(r, s, id, r.PostForm.Get("reason"))
	if err == nil {
		g.setFlash(w, r, "flash.broke_glass")
	}
	if errors.Is(err, approval.ErrApproverTier) && q != nil {
		_, p, _ := g.Approvals.Get(r.Context(), id)
		v := url.Values{"tier": {q.ApproverTier(p)}, "return": {g.Engine.Prefix + "/approvals/" + id}}
		http.Redirect(w, r, g.Engine.Prefix+"/challenge?"+v.Encode(), http.StatusSeeOther)
		return nil
	}
	return g.afterApprovalAction(w, r, s, id, q, err)
}

// radiusAnswer sends the requester's answer to a RADIUS challenge.
func (g *Gateway) radiusAnswer(w http.ResponseWriter, r *http.Request, s *stepup.Session, id string) error {
	if g.Approvals == nil {
		return g.notFound(w, r)
	}
	if err := g.parseFormOrAnswer(w, r); err != nil {
		return nil
	}
	q, err := g.Approvals.AnswerRadius(r, s, id, r.PostForm.Get("answer"))
	if err == nil {
		g.setFlash(w, r, "flash.answer_sent")
	}
	return g.afterApprovalAction(w, r, s, id, q, err)
}

// approvalSend replays an approved action from the requester's browser:
// the request becomes the kept action and is decided again, where the
// approval stage spends the once-grant.
func (g *Gateway) approvalSend(w http.ResponseWriter, r *http.Request, s *stepup.Session, id string, next Next) error {
	if g.Approvals == nil {
		return g.notFound(w, r)
	}
	if err := g.parseFormOrAnswer(w, r); err != nil {
		return nil
	}
	q, err := g.Approvals.Sendable(r.Context(), s, id)
	if err != nil {
		return g.afterApprovalAction(w, r, s, id, q, err)
	}
	if err := q.Kept().Replay(r); err != nil {
		return &HTTPError{http.StatusInternalServerError, err}
	}
	g.Engine.Log(r, s, stepup.Record{Event: stepup.EventReplay, Set: q.Set, Result: "replayed", Approval: q.ID, Policy: q.Policy})
	ev := &stepup.Evaluation{Request: r, Session: s, Now: g.Engine.Now()}
	return g.decide(w, r, ev, next)
}

// inbox lists what the signed-in approver may decide, and recent decisions.
func (g *Gateway) inbox(w http.ResponseWriter, r *http.Request, s *stepup.Session) error {
	e := g.Engine
	if s == nil || s.User == "" {
		return g.renderMessage(w, r, http.StatusUnauthorized, tx("msg.sign_in_first.title"), tx("msg.sign_in_first.body"), e.Prefix+"/challenge?"+url.Values{"tier": {e.Hierarchy.Roots()[0]}, "return": {e.Prefix + "/approvals"}}.Encode(), tx("status.sign_in"))
	}
	l := langOf(r)
	d := &pageData{L: l, Title: l.T("inbox.title")}
	if g.Approvals != nil {
		all, err := g.Approvals.List(r.Context())
		if err != nil {
			return &HTTPError{http.StatusServiceUnavailable, err}
		}
		now := e.Now()
		for _, q := range all {
			p := g.Approvals.Policies[q.Policy]
			role := approval.RoleOf(q, p, s)
			set := g.setLabel(q.Set)
			if set == "" {
				set = q.Set
			}
			risk := ""
			if q.Risk != "" {
				risk = l.T("approval.risk", "Risk", q.Risk)
			}
			row := inboxRow{ID: q.ID, Action: q.Method + " " + stepup.PathOf(q.URI), Set: set, Risk: risk, Requester: q.User, Status: l.T("approval.status_" + q.Status),
				Asked: q.Created.UTC().Format("2006-01-02 15:04 UTC"), URL: e.Prefix + "/approvals/" + q.ID}
			if q.Waiting() {
				row.Left = l.Duration(q.Expires.Sub(now))
			}
			switch {
			case role == approval.RoleApprover && q.Waiting():
				if _, voted := q.VoteOf(s.User); !voted {
					d.Inbox = append(d.Inbox, row)
					continue
				}
				d.Recent = append(d.Recent, row)
			case role != approval.RoleNone && len(d.Recent) < 20:
				d.Recent = append(d.Recent, row)
			}
		}
	}
	return g.render(w, r, http.StatusOK, "approvals", d)
}

// inboxRow is one request in the inbox.
type inboxRow struct {
	ID, Action, Set, Risk, Requester, Status, Asked, Left, URL string
}

func (g *Gateway) notFound(w http.ResponseWriter, r *http.Request) error {
	return g.renderMessage(w, r, http.StatusNotFound, tx("msg.not_found.title"), tx("msg.no_such_page"), g.Engine.Prefix+"/", tx("nav.session"))
}
