package caddymodule

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the global `stepup` app: tiers, users, sessions and the store
// shared by every site's `stepup` handler.
type App struct {
	Config

	built *built
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "stepup",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision validates the configuration and builds the engine.
func (a *App) Provision(ctx caddy.Context) error {
	b, err := a.Config.build(ctx, "app")
	if err != nil {
		return err
	}
	a.built = b
	return nil
}

// Start records the hierarchy now in force, against which the next reload
// is checked.
func (a *App) Start() error {
	previousHierarchies.Store("app", a.built.hierarchy)
	return nil
}

// Stop implements caddy.App.
func (a *App) Stop() error { return nil }

// Cleanup releases the engine; the store outlives it while a newer
// configuration uses it.
func (a *App) Cleanup() error {
	a.built.release()
	return nil
}

// Engine is the shared engine.
func (a *App) Engine() *stepup.Engine { return a.built.engine }

var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
