package caddymodule

import (
	// The guest modules the plugin ships, as the plugin's root package
	// registers them.
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
