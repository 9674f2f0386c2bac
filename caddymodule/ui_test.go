package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUIBrandingReadsFilesAndRefusesOthers: a logo and a style sheet are
// read from files at load (or the logo is a path on the site); a URL
// elsewhere, a file that is not an image, or a file too large is a
// configuration error naming the option.
func TestUIBrandingReadsFilesAndRefusesOthers(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Repeat("x", n)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	logo, css, big, txt := write("logo.svg", 10), write("brand.css", 10), write("big.png", maxBrandFile+1), write("logo.txt", 1)
	b, err := (&UIConfig{Title: " Example ", Logo: logo, CSS: css}).branding()
	if err != nil || b.Title != "Example" || b.LogoType != "image/svg+xml" || len(b.Logo) != 10 || len(b.CSS) != 10 {
		t.Fatalf("branding from files: %+v, %v", b, err)
	}
	if b, err := (&UIConfig{Logo: "/static/logo.png"}).branding(); err != nil || b.LogoURL != "/static/logo.png" || b.Logo != nil {
		t.Fatalf("logo path on the site: %+v, %v", b, err)
	}
	for _, tc := range []struct {
		ui   UIConfig
		want string
	}{
		{UIConfig{Logo: "https://cdn.example.com/logo.png"}, "load nothing from elsewhere"},
		{UIConfig{Logo: "//cdn.example.com/logo.png"}, "no such file"},
		{UIConfig{Logo: "logo.png"}, "no such file"},
		{UIConfig{Logo: txt}, "want a .png"},
		{UIConfig{Logo: big}, "larger than 256 KiB"},
		{UIConfig{CSS: filepath.Join(dir, "missing.css")}, "ui: css"},
		{UIConfig{Title: strings.Repeat("t", 101)}, "title is longer"},
	} {
		if _, err := tc.ui.branding(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one saying %q", tc.ui, err, tc.want)
		}
	}
	if b, err := (*UIConfig)(nil).branding(); b != nil || err != nil {
		t.Errorf("no ui: %+v %v", b, err)
	}
}

// TestUICaddyfileSyntax: the ui block and labels parse; unknown or
// repeated subdirectives are errors.
func TestUICaddyfileSyntax(t *testing.T) {
	ok := `{
	stepup {
		ui {
			title "Example Corp"
			logo /static/logo.svg
		}
		tier login {
			method password
			max_age 1h
			label "Password"
		}
	}
}
:8080 {
	stepup {
		transaction admin {
			label "Admin area"
			match {
				path /admin/*
			}
			tier login
		}
	}
}
`
	out, _, err := adaptCaddyfile(ok)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"ui":{"title":"Example Corp","logo":"/static/logo.svg"}`, `"label":"Password"`, `"label":"Admin area"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("adapted config lacks %s:\n%s", want, out)
		}
	}
	for _, bad := range []string{
		"ui {\n\t\t\tcolour red\n\t\t}",
		"ui {\n\t\t\ttitle a\n\t\t\ttitle b\n\t\t}",
		"ui {\n\t\t}\n\t\tui {\n\t\t}",
		"ui x {\n\t\t}",
	} {
		src := strings.Replace(ok, "ui {\n\t\t\ttitle \"Example Corp\"\n\t\t\tlogo /static/logo.svg\n\t\t}", bad, 1)
		if _, _, err := adaptCaddyfile(src); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
}
