// Package caddystepup registers the caddy-stepup modules with Caddy:
//
//	xcaddy build --with github.com/caddy-stepup/caddy-stepup
//
// Modules: the app `stepup` (global option), the handler
// `http.handlers.stepup` (directive `stepup`), the methods
// `stepup.methods.password|external|totp|radius|webauthn`, the stores
// `stepup.stores.local|memory|redis` and the approval notifier
// `stepup.notifiers.webhook`. See README.md.
package caddystepup

import (
	// The Caddy glue and the guest modules register in their init functions.
	_ "github.com/caddy-stepup/caddy-stepup/caddymodule"
	_ "github.com/caddy-stepup/caddy-stepup/caddymodule/methods/external"
	_ "github.com/caddy-stepup/caddy-stepup/caddymodule/methods/password"
	_ "github.com/caddy-stepup/caddy-stepup/caddymodule/methods/radius"
	_ "github.com/caddy-stepup/caddy-stepup/caddymodule/methods/totp"
	_ "github.com/caddy-stepup/caddy-stepup/caddymodule/methods/webauthn"
	_ "github.com/caddy-stepup/caddy-stepup/caddymodule/notifiers/webhook"
	_ "github.com/caddy-stepup/caddy-stepup/caddymodule/stores/local"
	_ "github.com/caddy-stepup/caddy-stepup/caddymodule/stores/memory"
	_ "github.com/caddy-stepup/caddy-stepup/caddymodule/stores/redis"
)
