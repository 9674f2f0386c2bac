package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/approval"
	"github.com/caddy-stepup/caddy-stepup/web"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the `http.handlers.stepup` middleware: it serves the step-up
// pages under the prefix, and lets a request through only when the session
// holds what the request's transaction sets require.
//
// Tiers and users come from the global `stepup` app; a single-site
// configuration may give them inline instead (the fields of Config).
type Handler struct {
	// Config, inline: only for a site that does not use the global app.
	Config

	// Default is what requests matching no transaction set require:
	// "public" (the default) or a tier name.
	Default string `json:"default,omitempty"`

	// Transactions are the transaction sets: named groups of requests
	// (Caddy request matchers) and the tier they require. A request that
	// matches several sets must meet all of their requirements.
	Transactions []Transaction `json:"transactions,omitempty"`

	gateway *web.Gateway
	built   *built // set when the configuration is inline
}

// Transaction is one transaction set.
type Transaction struct {
	// Name of the set, used in audit records and challenges.
	Name string `json:"name"`
	// Label names the set for people: the step pages say it asked
	// ("Admin area needs a security code from the last 5 minutes").
	// Default: the pages say "this page" or "this action".
	Label string `json:"label,omitempty"`
	// MatcherSetsRaw are Caddy request matcher sets (any http.matchers
	// module: path, method, header, remote_ip, client_ip, expression, ...).
	// The set matches a request that matches any of them.
	MatcherSetsRaw caddyhttp.RawMatcherSets `json:"match,omitempty" caddy:"namespace=http.matchers"`
	// Tier the set requires.
	Tier string `json:"tier"`
	// MaxAge, when given, is a stricter freshness for this set: the tier
	// must have been reached within it. 0 means the step-up must be
	// performed for this very request.
	MaxAge *caddy.Duration `json:"max_age,omitempty"`
	// Risk: low, medium, high or critical (recorded in audit records,
	// used by approval policies).
	Risk string `json:"risk,omitempty"`
	// Approval names an approval policy: the set's requests also need a
	// just-in-time approval of the action.
	Approval string `json:"approval,omitempty"`

	matcherSets caddyhttp.MatcherSets
	// compiledMatch: the set is matched by the compiled form of its path
	// and method matchers (fastmatch.go), not by Caddy's.
	compiledMatch bool
	approvalLine  int
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.stepup",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision builds the site's policy on the shared (or inline) engine.
func (h *Handler) Provision(ctx caddy.Context) error {
	var engine *stepup.Engine
	var approvals *approval.Service
	var branding *web.Branding
	app, appErr := ctx.AppIfConfigured("stepup")
	if appErr != nil && !errors.Is(appErr, caddy.ErrNotConfigured) {
		return appErr
	}
	if len(h.Tiers) > 0 {
		if app != nil {
			return errors.New("tiers are defined both in the global stepup option and in this handler; define them in one place")
		}
		b, err := h.Config.build(ctx, "inline")
		if err != nil {
			return err
		}
		h.built = b
		previousHierarchies.Store("inline", b.hierarchy)
		engine, approvals, branding = b.engine, b.approvals, b.branding
	} else {
		if len(h.Users) > 0 || h.Secret != "" || h.StoreRaw != nil || h.Prefix != "" || h.Session != nil || h.Limits != nil || h.Pending != nil || len(h.Approvals) > 0 || h.UI != nil {
			return errors.New("users, secret, store, prefix, session, limits, pending, approvals and ui belong with the tiers: in the global stepup option, or all inline")
		}
		if app == nil {
			return errors.New("no tiers: configure the global stepup option, or give tiers in this handler")
		}
		engine, approvals, branding = app.(*App).Engine(), app.(*App).built.approvals, app.(*App).built.branding
	}

	sets := make([]stepup.TransactionSet, len(h.Transactions))
	for i := range h.Transactions {
		t := &h.Transactions[i]
		if len(t.MatcherSetsRaw) == 0 {
			return fmt.Errorf("transaction set %q: no match block", t.Name)
		}
		mods, err := ctx.LoadModule(t, "MatcherSetsRaw")
		if err != nil {
			return fmt.Errorf("transaction set %q: loading matchers: %v", t.Name, err)
		}
		if err := t.matcherSets.FromInterface(mods); err != nil {
			return fmt.Errorf("transaction set %q: %v", t.Name, err)
		}
		// Path and method matchers are compiled (fastmatch.go); any
		// other set keeps Caddy's matcher.
		match, compiled := compileMatcherSets(t.matcherSets)
		t.compiledMatch = compiled
		sets[i] = stepup.TransactionSet{
			Name: t.Name, Label: t.Label, Tier: t.Tier, Risk: t.Risk, Approval: t.Approval,
			Match: match,
		}
		if t.MaxAge != nil {
			sets[i].MaxAge, sets[i].HasMaxAge = time.Duration(*t.MaxAge), true
		}
	}
	var stages []stepup.Stage
	stage, err := approvals.NewStage(sets)
	if err != nil {
		return err
	}
	if approvals != nil {
		stages = append(stages, stage)
	}
	policy, err := stepup.NewPolicy(engine.Hierarchy, sets, h.Default, stages...)
	if err != nil {
		return err
	}
	if err := registerMetrics(ctx); err != nil {
		return err
	}
	h.gateway = &web.Gateway{Engine: engine, Policy: policy, Approvals: approvals, Branding: branding, SetVars: setVars, LogFields: logFields, Metrics: decisionMetrics()}
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.Logs == nil {
		// The server writes no access log: the decision has no entry to
		// join, and adding fields to one costs every request.
		h.gateway.LogFields = nil
	}
	return nil
}

// Cleanup releases an inline engine.
func (h *Handler) Cleanup() error {
	h.built.release()
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	err := h.gateway.ServeHTTP(w, r, next)
	if err == nil {
		return nil
	}
	if he := (*web.HTTPError)(nil); errors.As(err, &he) {
		return caddyhttp.Error(he.Status, he.Err)
	}
	return err
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
