// Command caddy is Caddy with its standard modules, caddy-stepup, and the
// demo upstream used by Caddyfile.example:
//
//	go run ./cmd/caddy run --config Caddyfile.example
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-stepup/caddy-stepup"
	_ "github.com/caddy-stepup/caddy-stepup/internal/demoapp"
)

func main() {
	caddycmd.Main()
}
