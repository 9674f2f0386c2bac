// Package demoapp is the small web application behind Caddyfile.example: an
// "unchangeable" upstream with a public page, reports and an admin form,
// served by a Caddy handler (`stepup_demo`) so the example needs no other
// process. It trusts the X-Stepup-* headers the gateway sets with header_up
// (the gateway strips any a client sends). It is not part of the plugin.
package demoapp

import (
	"html/template"
	"net/http"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Demo{})
	httpcaddyfile.RegisterHandlerDirective("stepup_demo", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		d := new(Demo)
		return d, d.UnmarshalCaddyfile(h.Dispenser)
	})
	httpcaddyfile.RegisterDirectiveOrder("stepup_demo", httpcaddyfile.Before, "respond")
}

// Demo is the demo upstream (module http.handlers.stepup_demo).
type Demo struct{}

// CaddyModule returns the Caddy module information.
func (Demo) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.stepup_demo", New: func() caddy.Module { return new(Demo) }}
}

// UnmarshalCaddyfile takes no options.
func (d *Demo) UnmarshalCaddyfile(disp *caddyfile.Dispenser) error {
	disp.Next()
	if disp.NextArg() {
		return disp.ArgErr()
	}
	return nil
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} · Demo app</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 42rem; margin: 2rem auto">
<nav><a href="/">Home</a> · <a href="/reports/">Reports</a> · <a href="/payments/">Payments</a> · <a href="/transfers">Transfers</a> · <a href="/admin/">Admin</a> · <a href="/settings/">Settings</a> · <a href="/_stepup/">Your session</a> · <a href="/_stepup/approvals">Approvals</a></nav>
<h1>{{.Title}}</h1>
{{if .User}}<p>Signed in as <strong id="user">{{.User}}</strong> holding <code id="tiers">{{.Tiers}}</code>{{with .Roles}} (roles {{.}}){{end}}.</p>{{else}}<p>Not signed in.</p>{{end}}
{{.Body}}
</body></html>`))

type view struct {
	Title, User, Tiers, Roles string
	Body                      template.HTML
}

// ServeHTTP implements caddyhttp.MiddlewareHandler; it answers every request.
func (Demo) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	v := view{User: r.Header.Get("X-Stepup-User"), Tiers: r.Header.Get("X-Stepup-Tiers"), Roles: r.Header.Get("X-Stepup-Roles")}
	p := r.URL.Path
	switch {
	case p == "/":
		v.Title = "Welcome"
		v.Body = `<p>This page is public. <a href="/reports/">Reports</a> need a sign-in; <a href="/payments/">payments</a> a one-time code checked by a RADIUS server on top; the <a href="/admin/">admin area</a> a security code from an authenticator app, entered within the last five minutes; <a href="/settings/">settings</a> a security key on top of that. A <a href="/transfers">transfer</a> needs a sign-in and alice's approval of that very transfer.</p>`
	case p == "/settings" || strings.HasPrefix(p, "/settings/"):
		v.Title = "Security settings"
		v.Body = `<p id="settings">Only a security key (or your device's biometrics) opens this page.</p>`
	case p == "/payments" || strings.HasPrefix(p, "/payments/"):
		v.Title = "Payments"
		v.Body = `<p id="payments">Outgoing payments this week: 3, total 12 400.</p>`
	case p == "/reports" || strings.HasPrefix(p, "/reports/"):
		v.Title = "Quarterly reports"
		v.Body = `<table><tr><th>Quarter</th><th>Revenue</th></tr><tr><td>Q1</td><td>1.2M</td></tr><tr><td>Q2</td><td>1.4M</td></tr></table>`
	case p == "/admin/users" && r.Method == http.MethodPost:
		if err := r.ParseForm(); err != nil {
			return caddyhttp.Error(http.StatusBadRequest, err)
		}
		keys := make([]string, 0, len(r.PostForm))
		for k := range r.PostForm {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		b.WriteString(`<p id="result">User <strong>` + template.HTMLEscapeString(r.PostForm.Get("name")) + `</strong> created with role <strong>` + template.HTMLEscapeString(r.PostForm.Get("role")) + `</strong>.</p><h2>Form received</h2><dl>`)
		for _, k := range keys {
			b.WriteString("<dt>" + template.HTMLEscapeString(k) + "</dt><dd>" + template.HTMLEscapeString(r.PostForm.Get(k)) + "</dd>")
		}
		b.WriteString("</dl>")
		v.Title = "User created"
		v.Body = template.HTML(b.String())
	case p == "/transfers" && r.Method == http.MethodPost:
		if err := r.ParseForm(); err != nil {
			return caddyhttp.Error(http.StatusBadRequest, err)
		}
		v.Title = "Transfer sent"
		v.Body = template.HTML(`<p id="result">Sent <strong>` + template.HTMLEscapeString(r.PostForm.Get("amount")) + `</strong> to <strong>` +
			template.HTMLEscapeString(r.PostForm.Get("to")) + `</strong> (` + template.HTMLEscapeString(r.PostForm.Get("memo")) + `).</p>`)
	case p == "/transfers":
		v.Title = "New transfer"
		v.Body = `<form method="post" action="/transfers"><p><label>Amount <input name="amount" value="2500" required></label></p>
<p><label>To account <input name="to" value="DE89 3704 0044 0532 0130 00" required></label></p>
<p><label>Memo <input name="memo" value="Invoice 2026-117"></label></p>
<p><button type="submit">Send transfer</button></p></form>`
	case p == "/admin" || strings.HasPrefix(p, "/admin/"):
		v.Title = "Administration"
		v.Body = `<form method="post" action="/admin/users"><p><label>New user <input name="name" required></label></p>
<p><label>Role <select name="role"><option>viewer</option><option>editor</option><option>admin</option></select></label></p>
<p><button type="submit">Create user</button></p></form>`
	default:
		w.WriteHeader(http.StatusNotFound)
		v.Title = "Not found"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	return page.Execute(w, v)
}

var (
	_ caddyhttp.MiddlewareHandler = (*Demo)(nil)
	_ caddyfile.Unmarshaler       = (*Demo)(nil)
)
