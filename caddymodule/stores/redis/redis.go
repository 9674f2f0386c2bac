// Package redis is the store module stepup.stores.redis: state shared by
// several Caddy instances in Redis (a single server, Sentinel, or Cluster),
// with each instance's session cache kept coherent through Redis pub/sub.
package redis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-stepup/caddy-stepup/caddymodule/syntax"
	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

func init() {
	caddy.RegisterModule(Redis{})
}

// pool keeps one client (and its change listener) per distinct
// configuration across config reloads.
var pool = caddy.NewUsagePool()

type pooled struct {
	st     *store.Redis
	client goredis.UniversalClient
}

func (p pooled) Destruct() error {
	_ = p.st.Close()
	return p.client.Close()
}

// Defaults of the module.
const (
	defaultPrefix  = "stepup:"
	defaultTimeout = 2 * time.Second
)

// Redis keeps state in Redis, for several Caddy instances at once. Give
// one address for a single server, several (or `cluster`) for a Redis
// Cluster, or the Sentinels' addresses with master_name.
//
// Syntax:
//
//	store redis {
//		address     <host:port>...   (repeatable)
//		cluster
//		master_name <name>
//		username    <user>
//		password    <password>
//		sentinel_username <user>
//		sentinel_password <password>
//		db          <number>
//		key_prefix  <prefix>
//		timeout     <duration>
//		tls {
//			ca          <file>
//			cert        <file>
//			key         <file>
//			server_name <name>
//		}
//	}
type Redis struct {
	// Addresses are host:port pairs: one Redis server, seed nodes of a
	// Redis Cluster (several addresses mean a cluster), or the Sentinels
	// when MasterName is set. Default: 127.0.0.1:6379.
	Addresses []string `json:"addresses,omitempty"`
	// Cluster uses Redis Cluster even with a single seed address.
	Cluster bool `json:"cluster,omitempty"`
	// MasterName is the name of the master the Sentinels at Addresses
	// monitor; set, it selects Sentinel mode.
	MasterName string `json:"master_name,omitempty"`
	// Username for Redis ACLs (AUTH username password). Placeholders are
	// expanded.
	Username string `json:"username,omitempty"`
	// Password for Redis (AUTH). Placeholders, e.g. {env.REDIS_PASSWORD},
	// are expanded.
	Password string `json:"password,omitempty"`
	// SentinelUsername authenticates to the Sentinels themselves.
	SentinelUsername string `json:"sentinel_username,omitempty"`
	// SentinelPassword authenticates to the Sentinels themselves.
	// Placeholders are expanded.
	SentinelPassword string `json:"sentinel_password,omitempty"`
	// DB is the database number (single server and Sentinel only; a
	// cluster has database 0 only). Default: 0.
	DB int `json:"db,omitempty"`
	// KeyPrefix starts every key this module writes, and names its change
	// channel (<prefix>changes); instances that share state must use the
	// same prefix. Default: "stepup:".
	KeyPrefix string `json:"key_prefix,omitempty"`
	// Timeout bounds connecting to Redis and each command: how long a
	// request waits before it fails closed when Redis is unreachable.
	// Default: 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// TLS connects to Redis over TLS.
	TLS *TLS `json:"tls,omitempty"`

	key    string // the pool key: the resolved configuration
	opened bool
	opts   *goredis.UniversalOptions
}

// TLS configures TLS to Redis.
type TLS struct {
	// CA is a PEM file of the certificate authorities that Redis's
	// certificate must chain to. Default: the system's.
	CA string `json:"ca,omitempty"`
	// Cert is a PEM client certificate file, for Redis servers that
	// require one (tls-auth-clients); with Key.
	Cert string `json:"cert,omitempty"`
	// Key is the PEM private key file of Cert.
	Key string `json:"key,omitempty"`
	// ServerName is the name Redis's certificate must carry. Default: the
	// host of the address.
	ServerName string `json:"server_name,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Redis) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "stepup.stores.redis", New: func() caddy.Module { return new(Redis) }}
}

// Provision resolves the client options.
func (r *Redis) Provision(caddy.Context) error {
	repl := caddy.NewReplacer()
	opts := &goredis.UniversalOptions{
		Addrs:            r.Addresses,
		IsClusterMode:    r.Cluster,
		MasterName:       repl.ReplaceKnown(r.MasterName, ""),
		Username:         repl.ReplaceKnown(r.Username, ""),
		Password:         repl.ReplaceKnown(r.Password, ""),
		SentinelUsername: repl.ReplaceKnown(r.SentinelUsername, ""),
		SentinelPassword: repl.ReplaceKnown(r.SentinelPassword, ""),
		DB:               r.DB,
		ClientName:       "caddy-stepup",
		// A retried script could run twice; one retry covers a dropped
		// idle connection, and a counter counted twice errs on the safe
		// side.
		MaxRetries: 1,
	}
	if len(opts.Addrs) == 0 {
		opts.Addrs = []string{"127.0.0.1:6379"}
	}
	for i, a := range opts.Addrs {
		opts.Addrs[i] = repl.ReplaceKnown(a, "")
	}
	timeout := time.Duration(r.Timeout)
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = timeout, timeout, timeout
	opts.PoolTimeout = timeout
	if r.TLS != nil {
		cfg, err := r.TLS.config()
		if err != nil {
			return fmt.Errorf("store redis: tls: %v", err)
		}
		opts.TLSConfig = cfg
	}
	if r.KeyPrefix == "" {
		r.KeyPrefix = defaultPrefix
	}
	// The pool key is the whole resolved configuration: a reload with the
	// same settings keeps the client, one with other settings gets its own.
	raw, _ := json.Marshal(struct {
		R   *Redis
		Pw  string
		SPw string
	}{r, opts.Password, opts.SentinelPassword})
	r.key, r.opts = string(raw), opts
	return nil
}

func (t *TLS) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca %s: no PEM certificate", t.CA)
		}
		cfg.RootCAs = pool
	}
	if (t.Cert == "") != (t.Key == "") {
		return nil, fmt.Errorf("cert and key go together")
	}
	if t.Cert != "" {
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Validate refuses settings that cannot work together.
func (r *Redis) Validate() error {
	switch {
	case r.DB < 0:
		return fmt.Errorf("store redis: db must be 0 or more")
	case r.DB != 0 && (r.Cluster || (len(r.Addresses) > 1 && r.MasterName == "")):
		return fmt.Errorf("store redis: a Redis Cluster has database 0 only")
	case r.Cluster && r.MasterName != "":
		return fmt.Errorf("store redis: give cluster or master_name, not both")
	}
	return nil
}

// UnmarshalCaddyfile reads the `redis { … }` block.
func (r *Redis) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return syntax.Options(d, func(sub string) error {
		switch sub {
		case "address":
			r.Addresses = append(r.Addresses, d.RemainingArgs()...)
			if len(r.Addresses) == 0 {
				return d.ArgErr()
			}
			return nil
		case "cluster":
			r.Cluster = true
			return syntax.NoArgs(d)
		case "master_name":
			return syntax.String(d, &r.MasterName)
		case "username":
			return syntax.String(d, &r.Username)
		case "password":
			return syntax.String(d, &r.Password)
		case "sentinel_username":
			return syntax.String(d, &r.SentinelUsername)
		case "sentinel_password":
			return syntax.String(d, &r.SentinelPassword)
		case "db":
			var db *int
			if err := syntax.Count(d, "db", &db); err != nil {
				return err
			}
			r.DB = *db
			return nil
		case "key_prefix":
			return syntax.String(d, &r.KeyPrefix)
		case "timeout":
			return syntax.Duration(d, &r.Timeout)
		case "tls":
			if err := syntax.NoArgs(d); err != nil {
				return err
			}
			r.TLS = &TLS{}
			seen := map[string]bool{}
			return syntax.Block(d, func(sub string) error {
				if err := syntax.Once(d, seen, sub); err != nil {
					return err
				}
				switch sub {
				case "ca":
					return syntax.String(d, &r.TLS.CA)
				case "cert":
					return syntax.String(d, &r.TLS.Cert)
				case "key":
					return syntax.String(d, &r.TLS.Key)
				case "server_name":
					return syntax.String(d, &r.TLS.ServerName)
				}
				return d.Errf("store redis: tls: unknown option %q", sub)
			})
		}
		return d.Errf("store redis: unknown option %q", sub)
	}, "address")
}

// OpenStore implements stepup.StoreProvider. Redis need not be up: a
// store that cannot be reached fails requests closed until it is back.
func (r *Redis) OpenStore(func() time.Time) (stepup.Store, error) {
	v, _, err := pool.LoadOrNew(r.key, func() (caddy.Destructor, error) {
		client := goredis.NewUniversalClient(r.opts)
		return pooled{st: store.NewRedis(client, r.KeyPrefix), client: client}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("store redis: %v", err)
	}
	r.opened = true
	st := v.(pooled).st
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(r.opts.DialTimeout))
	defer cancel()
	if err := st.Ping(ctx); err != nil {
		caddy.Log().Named("stepup.stores.redis").Warn("Redis is not reachable yet; requests that need a session fail closed until it is", zap.Error(err))
	}
	return st, nil
}

// Cleanup releases this configuration's hold on the client.
func (r *Redis) Cleanup() error {
	if r.opened {
		_, err := pool.Delete(r.key)
		return err
	}
	return nil
}

var (
	_ caddy.Provisioner     = (*Redis)(nil)
	_ caddy.Validator       = (*Redis)(nil)
	_ stepup.StoreProvider  = (*Redis)(nil)
	_ caddy.CleanerUpper    = (*Redis)(nil)
	_ caddyfile.Unmarshaler = (*Redis)(nil)
)
