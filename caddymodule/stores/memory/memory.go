// Package memory is the store module stepup.stores.memory: sessions, kept
// requests and counters in the memory of this Caddy process, kept across
// config reloads, gone on restart.
package memory

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-stepup/caddy-stepup/caddymodule/syntax"
	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

func init() {
	caddy.RegisterModule(Memory{})
}

// pool keeps the one memory store of the process across config reloads,
// so that a reload never drops a session.
var pool = caddy.NewUsagePool()

const poolKey = "memory"

type pooled struct{ *store.Memory }

func (p pooled) Destruct() error { return p.Memory.Close() }

// Memory keeps state in this process (one instance; nothing on disk).
//
// Syntax:
//
//	store memory
type Memory struct {
	opened bool
}

// CaddyModule returns the Caddy module information.
func (Memory) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "stepup.stores.memory", New: func() caddy.Module { return new(Memory) }}
}

// UnmarshalCaddyfile reads `memory` (no options).
func (m *Memory) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return syntax.Options(d, func(sub string) error {
		return d.Errf("store memory has no option %q", sub)
	})
}

// OpenStore implements stepup.StoreProvider: the process's memory store,
// swept of expired entries every minute.
func (m *Memory) OpenStore(now func() time.Time) (stepup.Store, error) {
	v, _, err := pool.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
		return pooled{store.NewMemory(time.Minute, now)}, nil
	})
	if err != nil {
		return nil, err
	}
	m.opened = true
	return v.(pooled).Memory, nil
}

// Cleanup releases this configuration's hold on the store; the store
// outlives it while a newer configuration uses it.
func (m *Memory) Cleanup() error {
	if m.opened {
		_, err := pool.Delete(poolKey)
		return err
	}
	return nil
}

var (
	_ stepup.StoreProvider  = (*Memory)(nil)
	_ caddy.CleanerUpper    = (*Memory)(nil)
	_ caddyfile.Unmarshaler = (*Memory)(nil)
)
