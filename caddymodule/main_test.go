package caddymodule

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
)

// userHome is the user's home before TestMain replaced it: test
// dependencies installed by `make deps` live under it.
var userHome string

// TestMain gives the tests a home of their own: Caddy writes its config
// autosave and instance id under the user's configuration and data
// directories, which tests must not touch. Everything else a test writes is
// under its t.TempDir.
func TestMain(m *testing.M) {
	userHome = os.Getenv("HOME")
	if args, ok := os.LookupEnv(childCaddyEnv); ok {
		runChildCaddy(args) // a Caddy instance of instances_test.go
	}
	home, err := os.MkdirTemp("", "caddymodule-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for k, v := range map[string]string{
		"HOME":            home,
		"XDG_CONFIG_HOME": filepath.Join(home, ".config"),
		"XDG_DATA_HOME":   filepath.Join(home, ".local", "share"),
	} {
		if err := os.Setenv(k, v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	// Caddy reads the environment for these when its package initialises,
	// before TestMain runs.
	caddy.ConfigAutosavePath = filepath.Join(caddy.AppConfigDir(), "autosave.json")
	caddy.DefaultStorage = &certmagic.FileStorage{Path: caddy.AppDataDir()}
	code := m.Run()
	if err := os.RemoveAll(home); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}
