// Package radius is the RADIUS method of caddy-stepup: the step-up page
// collects a code or password and a RADIUS server (FreeRADIUS, or the
// RADIUS front end of an authentication server) decides, over any number
// of Access-Challenge rounds. Every Access-Request carries a
// Message-Authenticator, and a response counts only if its Response
// Authenticator, identifier and Message-Authenticator all check out
// (BlastRADIUS, CVE-2024-3596). Servers are tried in order; one that times
// out is skipped for a while.
package radius

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2869"
)

// Server is one RADIUS server.
type Server struct {
	// Addr is host:port.
	Addr string
	// Secret is the shared secret.
	Secret []byte
}

// ClientConfig configures a Client.
type ClientConfig struct {
	Servers []Server
	// Timeout per attempt. Default 3s.
	Timeout time.Duration
	// Retries per server after the first attempt. Default 1.
	Retries int
	// RetriesSet tells an explicit 0 from an unset value.
	RetriesSet bool
	// DeadTime is how long a server that timed out is skipped. Default 30s.
	DeadTime time.Duration
	Now      func() time.Time
}

// Client sends Access-Requests.
type Client struct {
	cfg  ClientConfig
	mu   sync.Mutex
	dead map[string]time.Time // server -> skipped until
}

// NewClient validates the configuration.
func NewClient(c ClientConfig) (*Client, error) {
	if len(c.Servers) == 0 {
		return nil, errors.New("no servers")
	}
	for _, s := range c.Servers {
		if _, _, err := net.SplitHostPort(s.Addr); err != nil {
			return nil, fmt.Errorf("server %q: want host:port", s.Addr)
		}
		if len(s.Secret) == 0 {
			return nil, fmt.Errorf("server %q: missing shared secret", s.Addr)
		}
	}
	if c.Timeout <= 0 {
		c.Timeout = 3 * time.Second
	}
	if !c.RetriesSet && c.Retries == 0 {
		c.Retries = 1
	}
	if c.Retries < 0 || c.Retries > 10 {
		return nil, fmt.Errorf("retries must be between 0 and 10, not %d", c.Retries)
	}
	if c.DeadTime <= 0 {
		c.DeadTime = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Client{cfg: c, dead: map[string]time.Time{}}, nil
}

// ErrUnavailable means no server gave an authentic answer in time.
var ErrUnavailable = errors.New("no RADIUS server answered")

// Request is what an Access-Request carries.
type Request struct {
	UserName       string
	Password       string
	State          []byte
	NASIdentifier  string
	NASIP          net.IP
	CallingStation string
	// What an approval request adds: the site (Called-Station-Id), the
	// transaction set (NAS-Port-Id) and the action (Connect-Info).
	CalledStation string
	NASPortID     string
	ConnectInfo   string
}

// Response is an authentic answer.
type Response struct {
	Code         radius.Code
	ReplyMessage string
	State        []byte
	Server       string
	// Class and SessionTimeout (seconds, 0 if absent) of an Access-Accept.
	Class          []byte
	SessionTimeout uint32
}

// Exchange asks the servers in order, skipping those recently dead (unless
// all are), and returns the first authentic response.
func (c *Client) Exchange(ctx context.Context, req Request) (*Response, error) {
	var errs []error
	for _, s := range c.order() {
		resp, err := c.exchangeOne(ctx, s, req)
		if err == nil {
			c.mu.Lock()
			delete(c.dead, s.Addr)
			c.mu.Unlock()
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c.mu.Lock()
		c.dead[s.Addr] = c.cfg.Now().Add(c.cfg.DeadTime)
		c.mu.Unlock()
		errs = append(errs, fmt.Errorf("%s: %w", s.Addr, err))
	}
	return nil, fmt.Errorf("%w: %v", ErrUnavailable, errors.Join(errs...))
}

// order is the servers to try: live ones in configured order, then dead
// ones, soonest back first, so that a recovering server is found.
func (c *Client) order() []Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	var live, dead []Server
	for _, s := range c.cfg.Servers {
		if until, ok := c.dead[s.Addr]; ok && now.Before(until) {
			dead = append(dead, s)
		} else {
			live = append(live, s)
		}
	}
	for i := 1; i < len(dead); i++ {
		for j := i; j > 0 && c.dead[dead[j].Addr].Before(c.dead[dead[j-1].Addr]); j-- {
			dead[j], dead[j-1] = dead[j-1], dead[j]
		}
	}
	return append(live, dead...)
}

// exchangeOne sends the request to one server, resending on timeout, and
// waits for an authentic response. Anything else that arrives (a forged,
// unsigned or mismatched packet) is dropped, as if it never came.
func (c *Client) exchangeOne(ctx context.Context, s Server, req Request) (*Response, error) {
	p := radius.New(radius.CodeAccessRequest, s.Secret)
	if err := rfc2865.UserName_SetString(p, req.UserName); err != nil {
		return nil, err
	}
	if err := rfc2865.UserPassword_SetString(p, req.Password); err != nil {
		return nil, err
	}
	if len(req.State) > 0 {
		_ = rfc2865.State_Set(p, req.State)
	}
	if req.NASIdentifier != "" {
		_ = rfc2865.NASIdentifier_SetString(p, req.NASIdentifier)
	}
	if req.NASIP != nil {
		_ = rfc2865.NASIPAddress_Set(p, req.NASIP)
	}
	if req.CallingStation != "" {
		_ = rfc2865.CallingStationID_SetString(p, req.CallingStation)
	}
	if req.CalledStation != "" {
		_ = rfc2865.CalledStationID_SetString(p, truncate(req.CalledStation))
	}
	if req.NASPortID != "" {
		_ = rfc2869.NASPortID_SetString(p, truncate(req.NASPortID))
	}
	if req.ConnectInfo != "" {
		_ = rfc2869.ConnectInfo_SetString(p, truncate(req.ConnectInfo))
	}
	wire, err := encodeRequest(p)
	if err != nil {
		return nil, err
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "udp", s.Addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	buf := make([]byte, radius.MaxPacketLength)
	for attempt := 0; attempt <= c.cfg.Retries; attempt++ {
		if _, err := conn.Write(wire); err != nil {
			return nil, err
		}
		deadline := time.Now().Add(c.cfg.Timeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = conn.SetReadDeadline(deadline)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // resend, or give up on this server
				}
				// ICMP port unreachable and the like: nothing listens.
				return nil, err
			}
			if resp, ok := c.verify(buf[:n], wire, s); ok {
				resp.Server = s.Addr
				return resp, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return nil, errors.New("timeout")
}

const attrMessageAuthenticator = radius.Type(rfc2869.MessageAuthenticator_Type)

// encodeRequest encodes an Access-Request with a Message-Authenticator as
// its first attribute (where BlastRADIUS mitigations expect it), computed
// over the whole packet with the attribute zeroed.
func encodeRequest(p *radius.Packet) ([]byte, error) {
	p.Attributes = append(radius.Attributes{{Type: attrMessageAuthenticator, Attribute: make(radius.Attribute, 16)}}, p.Attributes...)
	wire, err := p.Encode()
	if err != nil {
		return nil, err
	}
	// Code, id, length, authenticator (20 bytes), then type 80, length 18.
	if wire[20] != byte(attrMessageAuthenticator) || wire[21] != 18 {
		return nil, errors.New("radius: Message-Authenticator not first")
	}
	mac := hmac.New(md5.New, p.Secret)
	mac.Write(wire)
	copy(wire[22:38], mac.Sum(nil))
	return wire, nil
}

// verify checks a response against its request: the code, the identifier,
// the Response Authenticator (MD5 over the packet, the request's
// authenticator and the secret) and the Message-Authenticator (HMAC-MD5
// with the request authenticator in place). Only an authentic response is
// returned.
func (c *Client) verify(b, request []byte, s Server) (*Response, bool) {
	if len(b) < 20 || b[1] != request[1] {
		return nil, false
	}
	switch radius.Code(b[0]) {
	case radius.CodeAccessAccept, radius.CodeAccessReject, radius.CodeAccessChallenge:
	default:
		return nil, false
	}
	if !radius.IsAuthenticResponse(b, request, s.Secret) {
		return nil, false
	}
	p, err := radius.Parse(b, s.Secret)
	if err != nil {
		return nil, false
	}
	// Unsigned responses are refused: a server that does not sign them
	// (FreeRADIUS before 3.2.5) must be told to, with
	// `update reply { &Message-Authenticator := 0x00 }` in post-auth.
	ma, present := p.Attributes.Lookup(attrMessageAuthenticator)
	if !present || len(ma) != 16 || !validResponseMA(b, request, s.Secret, ma) {
		return nil, false
	}
	resp := &Response{Code: p.Code}
	if msgs, err := rfc2865.ReplyMessage_GetStrings(p); err == nil {
		resp.ReplyMessage = strings.Join(msgs, "\n")
	}
	if st, err := rfc2865.State_Lookup(p); err == nil {
		resp.State = append([]byte(nil), st...)
	}
	if c, err := rfc2865.Class_Lookup(p); err == nil {
		resp.Class = append([]byte(nil), c...)
	}
	if t, err := rfc2865.SessionTimeout_Lookup(p); err == nil {
		resp.SessionTimeout = uint32(t)
	}
	return resp, true
}

// validResponseMA recomputes a response's Message-Authenticator (RFC 3579
// §3.2): over the response with the request's authenticator in place of
// its own and the attribute's value zeroed.
func validResponseMA(b, request, secret, got []byte) bool {
	length := int(b[2])<<8 | int(b[3])
	if length > len(b) {
		return false
	}
	cp := append([]byte(nil), b[:length]...)
	copy(cp[4:20], request[4:20])
	found := false
	for i := 20; i+2 <= len(cp); {
		l := int(cp[i+1])
		if l < 2 || i+l > len(cp) {
			return false
		}
		if cp[i] == byte(attrMessageAuthenticator) && l == 18 {
			if found {
				return false // two of them: malformed
			}
			found = true
			clear(cp[i+2 : i+18])
		}
		i += l
	}
	mac := hmac.New(md5.New, secret)
	mac.Write(cp)
	return found && hmac.Equal(mac.Sum(nil), got)
}

// truncate keeps a string attribute within RADIUS's 253 bytes, on a UTF-8
// boundary.
func truncate(s string) string {
	if len(s) <= 253 {
		return s
	}
	s = s[:253]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
