// Package syntax holds the Caddyfile parsing steps that the stepup app,
// handler and guest modules (methods, stores) share, so that each
// subdirective reads and fails the same way everywhere.
package syntax

import (
	"slices"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Block runs f for every subdirective of the current block.
func Block(d *caddyfile.Dispenser, f func(sub string) error) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := f(d.Val()); err != nil {
			return err
		}
	}
	return nil
}

// Once refuses a subdirective given twice.
func Once(d *caddyfile.Dispenser, seen map[string]bool, name string) error {
	if seen[name] {
		return d.Errf("%s: given more than once", name)
	}
	seen[name] = true
	return nil
}

// Duration reads the one duration argument of a subdirective.
func Duration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	v, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s: %v", d.Val(), err)
	}
	if v < 0 {
		return d.Errf("%s: negative duration", s)
	}
	*dst = caddy.Duration(v)
	return nil
}

// Int reads the one positive integer argument of a subdirective.
func Int(d *caddyfile.Dispenser, dst *int) error {
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return d.Errf("%q: want a positive number", s)
	}
	*dst = n
	return nil
}

// Count reads the one argument of subdirective name, a number from zero.
func Count(d *caddyfile.Dispenser, name string, dst **int) error {
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return d.Errf("%s: want 0 or more", name)
	}
	*dst = &n
	return nil
}

// String reads the one argument of a subdirective.
func String(d *caddyfile.Dispenser, dst *string) error {
	if !d.AllArgs(dst) {
		return d.ArgErr()
	}
	return nil
}

// NoArgs refuses arguments after the current token.
func NoArgs(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Options reads a guest module's own segment, `name [{ sub args… }]`: no
// arguments after the name, each subdirective at most once except the
// repeatable ones, and f for each.
func Options(d *caddyfile.Dispenser, f func(sub string) error, repeatable ...string) error {
	d.Next()
	if err := NoArgs(d); err != nil {
		return err
	}
	seen := map[string]bool{}
	return Block(d, func(sub string) error {
		if !slices.Contains(repeatable, sub) {
			if err := Once(d, seen, sub); err != nil {
				return err
			}
		}
		return f(sub)
	})
}
