// Package radius is the method module stepup.methods.radius: a code (or
// password) checked by RADIUS servers, with Access-Challenge rounds,
// Message-Authenticator on every packet and failover.
package radius

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-stepup/caddy-stepup/caddymodule/syntax"
	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/radius"
)

func init() {
	caddy.RegisterModule(RADIUS{})
}

// RADIUS configures the RADIUS method of a tier.
//
// Syntax:
//
//	method radius {
//		server         <host:port> <shared secret>   # repeatable, tried in order
//		timeout        <duration>
//		retries        <n>
//		dead_time      <duration>
//		nas_identifier <name>
//		nas_ip         <IPv4>
//		username       <template>
//	}
type RADIUS struct {
	// Servers are tried in order; placeholders in secrets are expanded.
	Servers []Server `json:"servers,omitempty"`
	// Timeout of one attempt. Default: 3s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Retries per server after the first attempt. Default: 1.
	Retries *int `json:"retries,omitempty"`
	// DeadTime: how long a server that timed out is skipped. Default: 30s.
	DeadTime caddy.Duration `json:"dead_time,omitempty"`
	// NASIdentifier sent in NAS-Identifier. Default: caddy-stepup.
	NASIdentifier string `json:"nas_identifier,omitempty"`
	// NASIP sent in NAS-IP-Address.
	NASIP string `json:"nas_ip,omitempty"`
	// UserName is the User-Name sent: "{user}" is the user id (the
	// default); Caddy placeholders are expanded, e.g. "{user}@corp".
	UserName string `json:"username,omitempty"`

	client radius.ClientConfig
	nasIP  net.IP
}

// Server is one RADIUS server.
type Server struct {
	// Address is host:port (the authentication port, usually 1812).
	Address string `json:"address"`
	// Secret is the shared secret; placeholders such as {env.RADIUS_SECRET}
	// are expanded.
	Secret string `json:"secret"`
}

// CaddyModule returns the Caddy module information.
func (RADIUS) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "stepup.methods.radius", New: func() caddy.Module { return new(RADIUS) }}
}

// Provision expands the secrets and checks the servers.
func (m *RADIUS) Provision(caddy.Context) error {
	repl := caddy.NewReplacer()
	m.client = radius.ClientConfig{Timeout: time.Duration(m.Timeout), DeadTime: time.Duration(m.DeadTime)}
	if m.Retries != nil {
		m.client.Retries, m.client.RetriesSet = *m.Retries, true
	}
	if len(m.Servers) == 0 {
		return errors.New("method radius needs at least one server")
	}
	for _, s := range m.Servers {
		secret := repl.ReplaceKnown(s.Secret, "")
		if secret == "" {
			return fmt.Errorf("radius server %q: empty shared secret (is the environment variable set?)", s.Address)
		}
		m.client.Servers = append(m.client.Servers, radius.Server{Addr: s.Address, Secret: []byte(secret)})
	}
	if m.NASIP != "" {
		if m.nasIP = net.ParseIP(m.NASIP).To4(); m.nasIP == nil {
			return fmt.Errorf("nas_ip %q is not an IPv4 address", m.NASIP)
		}
	}
	return nil
}

// UnmarshalCaddyfile reads the method's block.
func (m *RADIUS) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	err := syntax.Options(d, func(sub string) error {
		switch sub {
		case "server":
			var s Server
			if !d.AllArgs(&s.Address, &s.Secret) {
				return d.Err("server <host:port> <shared secret>")
			}
			m.Servers = append(m.Servers, s)
		case "timeout":
			return syntax.Duration(d, &m.Timeout)
		case "dead_time":
			return syntax.Duration(d, &m.DeadTime)
		case "retries":
			return syntax.Count(d, "retries", &m.Retries)
		case "nas_identifier":
			return syntax.String(d, &m.NASIdentifier)
		case "nas_ip":
			return syntax.String(d, &m.NASIP)
		case "username":
			return syntax.String(d, &m.UserName)
		default:
			return d.Errf("method radius has no option %q", sub)
		}
		return nil
	}, "server")
	if err == nil && len(m.Servers) == 0 {
		return d.Err("method radius needs at least one server")
	}
	return err
}

// NewMethod implements stepup.MethodBuilder.
func (m *RADIUS) NewMethod(env stepup.MethodEnv) (stepup.Method, error) {
	cc := m.client
	cc.Now = env.Now
	method, err := radius.NewMethod(radius.MethodConfig{Client: cc, UserName: m.UserName, Resolve: env.Resolve,
		NASIdentifier: m.NASIdentifier, NASIP: m.nasIP})
	if err != nil {
		return nil, fmt.Errorf("method radius: %v", err)
	}
	return method, nil
}

var (
	_ caddy.Provisioner     = (*RADIUS)(nil)
	_ stepup.MethodBuilder  = (*RADIUS)(nil)
	_ caddyfile.Unmarshaler = (*RADIUS)(nil)
)
