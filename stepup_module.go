// Package caddystepup registers the caddy-stepup modules with Caddy:
//
//	xcaddy build --with github.com/caddy-stepup/caddy-stepup
//
// Modules: the app `stepup` (global option) and the handler
// `http.handlers.stepup` (directive `stepup`). See README.md.
package caddystepup

import (
	// The Caddy glue registers every module in its init functions.
	_ "github.com/caddy-stepup/caddy-stepup/caddymodule"
)
