package web

import (
	"net/http"
	"strings"
)

// Branding is what the operator's `ui` options give the pages: a title,
// a logo and a style sheet, served by the module itself under
// <prefix>/assets/brand/ so that the pages load nothing from elsewhere.
type Branding struct {
	// Title names the site in the pages' titles and header.
	Title string
	// LogoURL is a path on the site (its own files); or Logo holds an
	// image of type LogoType, served as <prefix>/assets/brand/logo.
	LogoURL  string
	Logo     []byte
	LogoType string
	// CSS is a style sheet served after the module's own.
	CSS []byte
}

// brand fills a page's branding.
func (g *Gateway) brand(d *pageData) {
	d.SiteTitle = d.L.T("site.title")
	b := g.Branding
	if b == nil {
		return
	}
	if b.Title != "" {
		d.SiteTitle = b.Title
	}
	switch {
	case len(b.Logo) > 0:
		d.LogoURL = g.Engine.Prefix + "/assets/brand/logo"
	case b.LogoURL != "":
		d.LogoURL = b.LogoURL
	}
	if len(b.CSS) > 0 {
		d.BrandCSS = g.Engine.Prefix + "/assets/brand/style.css"
	}
}

// serveBrand serves the operator's logo and style sheet.
func (g *Gateway) serveBrand(w http.ResponseWriter, r *http.Request, name string) bool {
	b := g.Branding
	if b == nil {
		return false
	}
	var body []byte
	switch name {
	case "logo":
		body = b.Logo
		w.Header().Set("Content-Type", b.LogoType)
	case "style.css":
		body = b.CSS
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	}
	if len(body) == 0 {
		w.Header().Del("Content-Type")
		return false
	}
	// An SVG opened on its own runs no script and loads nothing.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return true
}

func isBrandAsset(name string) (string, bool) {
	return strings.CutPrefix(name, "brand/")
}
