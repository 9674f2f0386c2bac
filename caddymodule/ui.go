package caddymodule

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/caddy-stepup/caddy-stepup/web"
)

// maxBrandFile bounds a logo or style sheet read at load.
const maxBrandFile = 256 << 10

// logoTypes are the image types a logo file may have, by extension.
var logoTypes = map[string]string{
	".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
	".webp": "image/webp", ".gif": "image/gif",
}

// branding reads the files the ui options name; a nil config brands nothing.
func (u *UIConfig) branding() (*web.Branding, error) {
	if u == nil {
		return nil, nil
	}
	b := &web.Branding{Title: strings.TrimSpace(u.Title)}
	if len(b.Title) > 100 {
		return nil, fmt.Errorf("ui: title is longer than 100 characters")
	}
	switch logo := u.Logo; {
	case logo == "":
	case isFile(logo):
		typ, ok := logoTypes[strings.ToLower(filepath.Ext(logo))]
		if !ok {
			return nil, fmt.Errorf("ui: logo %q: want a .png, .svg, .jpg, .webp or .gif file", logo)
		}
		data, err := readBrandFile(logo)
		if err != nil {
			return nil, fmt.Errorf("ui: logo: %v", err)
		}
		b.Logo, b.LogoType = data, typ
	case strings.HasPrefix(logo, "/") && !strings.HasPrefix(logo, "//") && !strings.ContainsAny(logo, "\\\"<> "):
		b.LogoURL = logo // a path on this site: same origin, allowed by the pages' img-src 'self'
	case strings.Contains(logo, "://"):
		return nil, fmt.Errorf("ui: logo %q: give a file, or a path on this site such as /static/logo.svg (the pages load nothing from elsewhere)", logo)
	default:
		return nil, fmt.Errorf("ui: logo %q: no such file; give an image file, or a path on this site such as /static/logo.svg", logo)
	}
	if u.CSS != "" {
		data, err := readBrandFile(u.CSS)
		if err != nil {
			return nil, fmt.Errorf("ui: css: %v", err)
		}
		b.CSS = data
	}
	return b, nil
}

func readBrandFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxBrandFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxBrandFile {
		return nil, fmt.Errorf("%s is larger than %d KiB", name, maxBrandFile>>10)
	}
	return data, nil
}

// isFile reports whether name is a regular file: a logo given by an
// absolute file name is read, any other path starting with "/" is a path
// on the site.
func isFile(name string) bool {
	fi, err := os.Stat(name)
	return err == nil && fi.Mode().IsRegular()
}
