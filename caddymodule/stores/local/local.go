// Package local is the store module stepup.stores.local, the default:
// sessions, kept requests, approvals, grants and counters in an embedded
// bbolt file in Caddy's data directory, so that a restart of Caddy loses
// nothing. One Caddy instance per file; several instances share state with
// stepup.stores.redis.
package local

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-stepup/caddy-stepup/caddymodule/syntax"
	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

func init() {
	caddy.RegisterModule(Local{})
}

// pool keeps each open file across config reloads: bbolt locks its file,
// so a reload must reuse the open store, not open it again.
var pool = caddy.NewUsagePool()

type pooled struct{ *store.Local }

func (p pooled) Destruct() error { return p.Local.Close() }

// Defaults of the module.
const (
	defaultSweep       = time.Minute
	defaultLockTimeout = 2 * time.Second
)

// Local keeps state in a file on this machine (one Caddy instance).
//
// Syntax:
//
//	store local [{
//		path        <file>
//		sweep_every <duration>
//	}]
type Local struct {
	// Path of the bbolt file. Default: stepup/store.db in Caddy's data
	// directory ($XDG_DATA_HOME/caddy, ~/.local/share/caddy). The file is
	// locked while Caddy runs: give each instance its own.
	Path string `json:"path,omitempty"`
	// SweepEvery is how often expired records are removed from the file
	// (they are invisible as soon as they expire). Default: 1m.
	SweepEvery caddy.Duration `json:"sweep_every,omitempty"`

	ctx    caddy.Context
	path   string // absolute, once provisioned
	opened bool
}

// CaddyModule returns the Caddy module information.
func (Local) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "stepup.stores.local", New: func() caddy.Module { return new(Local) }}
}

// Provision resolves the file's path.
func (l *Local) Provision(ctx caddy.Context) error {
	l.ctx = ctx
	p := l.Path
	if p == "" {
		p = filepath.Join(caddy.AppDataDir(), "stepup", "store.db")
	}
	p = caddy.NewReplacer().ReplaceKnown(p, "")
	abs, err := filepath.Abs(p)
	if err != nil {
		return fmt.Errorf("store local: path %q: %v", p, err)
	}
	l.path = abs
	return nil
}

// UnmarshalCaddyfile reads `local [{ path …; sweep_every … }]`.
func (l *Local) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return syntax.Options(d, func(sub string) error {
		switch sub {
		case "path":
			return syntax.String(d, &l.Path)
		case "sweep_every":
			return syntax.Duration(d, &l.SweepEvery)
		}
		return d.Errf("store local: unknown option %q", sub)
	})
}

// OpenStore implements stepup.StoreProvider: the open file (shared with
// the configuration being replaced, on a reload), swept of expired records
// until this configuration stops.
func (l *Local) OpenStore(now func() time.Time) (stepup.Store, error) {
	if l.path == "" {
		return nil, fmt.Errorf("store local: not provisioned")
	}
	v, _, err := pool.LoadOrNew(l.path, func() (caddy.Destructor, error) {
		st, err := store.OpenLocal(l.path, defaultLockTimeout, now)
		if err != nil {
			return nil, err
		}
		return pooled{st}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("store local: %v", err)
	}
	st := v.(pooled).Local
	every := time.Duration(l.SweepEvery)
	if every <= 0 {
		every = defaultSweep
	}
	go st.SweepEvery(l.ctx.Done(), every)
	l.opened = true
	return st, nil
}

// Cleanup releases this configuration's hold on the file; it is closed
// when no configuration uses it any more.
func (l *Local) Cleanup() error {
	if l.opened {
		_, err := pool.Delete(l.path)
		return err
	}
	return nil
}

var (
	_ caddy.Provisioner     = (*Local)(nil)
	_ stepup.StoreProvider  = (*Local)(nil)
	_ caddy.CleanerUpper    = (*Local)(nil)
	_ caddyfile.Unmarshaler = (*Local)(nil)
)
