package radius

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"layeh.com/radius"
	"layeh.com/radius/rfc2865"

	"github.com/caddy-stepup/caddy-stepup/internal/testenv"
	"github.com/caddy-stepup/caddy-stepup/stepup"
)

const secret = "testing123-shared-secret"

func method(t *testing.T, servers []Server, now func() time.Time) *Method {
	t.Helper()
	m, err := NewMethod(MethodConfig{Client: ClientConfig{Servers: servers, Timeout: 300 * time.Millisecond, Retries: 1, DeadTime: time.Minute, Now: now}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func attempt(t *testing.T, m *Method, user, code string, round *stepup.Round) *stepup.Outcome {
	t.Helper()
	o, err := m.Verify(context.Background(), &stepup.Attempt{User: user, Form: url.Values{"code": {code}}, Round: round, ClientIP: "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestAgainstFreeRADIUS(t *testing.T) {
	for _, hardened := range []bool{false, true} {
		name := "plain"
		if hardened {
			name = "require_message_authenticator"
		}
		t.Run(name, func(t *testing.T) {
			fr := testenv.StartFreeRADIUS(t, secret, hardened)
			m := method(t, []Server{{Addr: fr.Addr, Secret: []byte(secret)}}, nil)
			if o := attempt(t, m, "alice", "123456", nil); o.Result != stepup.Accepted || o.Credential != "radius:alice" {
				t.Fatalf("accept: %+v", o)
			}
			if o := attempt(t, m, "alice", "654321", nil); o.Result != stepup.Rejected || o.Reason != "radius_reject" {
				t.Fatalf("reject: %+v", o)
			}
			if o := attempt(t, m, "dave", "111111", nil); o.Result != stepup.Rejected || o.Message != "Token disabled <call the helpdesk>" {
				t.Fatalf("reject with the server's message: %+v", o)
			}
			// Access-Challenge: the first answer yields a prompt and State,
			// the second, with that State, is accepted.
			o := attempt(t, m, "carol", "123456", nil)
			if o.Result != stepup.Challenged || o.Round.Prompt != "Enter your OTP code" || string(o.Round.State) != "challenge-1" {
				t.Fatalf("challenge: %+v", o)
			}
			if o := attempt(t, m, "carol", "654321", o.Round); o.Result != stepup.Accepted {
				t.Fatalf("second round: %+v", o)
			}
			// The second answer without the State is not the second round.
			if o := attempt(t, m, "carol", "654321", nil); o.Result != stepup.Rejected {
				t.Fatalf("second answer without State: %+v", o)
			}
		})
	}
}

func TestWrongSharedSecretIsUnavailableNotRejected(t *testing.T) {
	fr := testenv.StartFreeRADIUS(t, secret, true)
	m := method(t, []Server{{Addr: fr.Addr, Secret: []byte("not-the-secret")}}, nil)
	// The hardened server drops the request (bad Message-Authenticator).
	if o := attempt(t, m, "alice", "123456", nil); o.Result != stepup.Unavailable {
		t.Fatalf("wrong secret: %+v", o)
	}
}

// blackHole is a UDP server that reads requests and never answers.
type blackHole struct {
	conn net.PacketConn
	got  atomic.Int64
}

func newBlackHole(t *testing.T) *blackHole {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{conn: c}
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
			b.got.Add(1)
		}
	}()
	t.Cleanup(func() { c.Close() })
	return b
}

func (b *blackHole) addr() string { return b.conn.LocalAddr().String() }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestFailoverSkipsADeadServerForAWhile(t *testing.T) {
	fr := testenv.StartFreeRADIUS(t, secret, true)
	hole := newBlackHole(t)
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	m := method(t, []Server{{Addr: hole.addr(), Secret: []byte(secret)}, {Addr: fr.Addr, Secret: []byte(secret)}}, c.Now)
	if o := attempt(t, m, "alice", "123456", nil); o.Result != stepup.Accepted {
		t.Fatalf("failover to the live server: %+v", o)
	}
	if n := hole.got.Load(); n != 2 {
		t.Fatalf("the dead server got %d packets, want the request and one retry", n)
	}
	if o := attempt(t, m, "alice", "123456", nil); o.Result != stepup.Accepted {
		t.Fatalf("second request: %+v", o)
	}
	if n := hole.got.Load(); n != 2 {
		t.Fatalf("the dead server was asked again within its dead time (%d packets)", n)
	}
	c.Advance(time.Minute + time.Second)
	attempt(t, m, "alice", "123456", nil)
	if n := hole.got.Load(); n != 4 {
		t.Fatalf("the dead server was not retried after its dead time (%d packets)", n)
	}
}

func TestEveryServerTimingOutIsUnavailable(t *testing.T) {
	a, b := newBlackHole(t), newBlackHole(t)
	m := method(t, []Server{{Addr: a.addr(), Secret: []byte(secret)}, {Addr: b.addr(), Secret: []byte(secret)}}, nil)
	o := attempt(t, m, "alice", "123456", nil)
	if o.Result != stepup.Unavailable || !strings.Contains(o.Message, "unavailable") {
		t.Fatalf("all servers silent: %+v", o)
	}
	if strings.Contains(o.Message, "127.0.0.1") {
		t.Fatal("the message leaks server addresses")
	}
}

// rogue answers each request with the responses its mode builds: forged,
// unsigned or mismatched ones, sometimes followed by an authentic one.
type rogue struct {
	conn net.PacketConn
}

type forge func(req *radius.Packet, raw []byte) [][]byte

func newRogue(t *testing.T, f forge) *rogue {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			raw := append([]byte(nil), buf[:n]...)
			req, err := radius.Parse(raw, []byte(secret))
			if err != nil {
				continue
			}
			for _, out := range f(req, raw) {
				_, _ = c.WriteTo(out, from)
			}
		}
	}()
	t.Cleanup(func() { c.Close() })
	return &rogue{conn: c}
}

// respond builds a response to req: signed with Message-Authenticator when
// sign is set (computed as RFC 3579 says), then the Response Authenticator.
func respond(t testing.TB, req *radius.Packet, code radius.Code, key []byte, sign bool, msg string) []byte {
	p := req.Response(code)
	p.Secret = key
	if msg != "" {
		_ = rfc2865.ReplyMessage_SetString(p, msg)
	}
	if sign {
		p.Attributes = append(radius.Attributes{{Type: attrMessageAuthenticator, Attribute: make(radius.Attribute, 16)}}, p.Attributes...)
	}
	raw, err := p.MarshalBinary() // authenticator field = the request's
	if err != nil {
		t.Fatal(err)
	}
	if sign {
		mac := hmac.New(md5.New, key)
		mac.Write(raw)
		copy(raw[22:38], mac.Sum(nil))
	}
	h := md5.New()
	h.Write(raw[:4])
	h.Write(req.Authenticator[:])
	h.Write(raw[20:])
	h.Write(key)
	copy(raw[4:20], h.Sum(nil))
	return raw
}

func TestForgedAndUnauthenticatedResponsesAreRejected(t *testing.T) {
	key := []byte(secret)
	tests := []struct {
		name   string
		forge  func(t *testing.T) forge
		result stepup.Result
	}{
		{"authentic accept (control)", func(t *testing.T) forge {
			return func(req *radius.Packet, _ []byte) [][]byte {
				return [][]byte{respond(t, req, radius.CodeAccessAccept, key, true, "")}
			}
		}, stepup.Accepted},
		{"accept without Message-Authenticator", func(t *testing.T) forge {
			return func(req *radius.Packet, _ []byte) [][]byte {
				return [][]byte{respond(t, req, radius.CodeAccessAccept, key, false, "")}
			}
		}, stepup.Unavailable},
		{"accept signed with another secret", func(t *testing.T) forge {
			return func(req *radius.Packet, _ []byte) [][]byte {
				return [][]byte{respond(t, req, radius.CodeAccessAccept, []byte("guessed"), true, "")}
			}
		}, stepup.Unavailable},
		{"accept with a broken Response Authenticator", func(t *testing.T) forge {
			return func(req *radius.Packet, _ []byte) [][]byte {
				raw := respond(t, req, radius.CodeAccessAccept, key, true, "")
				raw[10] ^= 0xff
				return [][]byte{raw}
			}
		}, stepup.Unavailable},
		{"accept with a tampered Message-Authenticator", func(t *testing.T) forge {
			return func(req *radius.Packet, _ []byte) [][]byte {
				p := req.Response(radius.CodeAccessAccept)
				p.Attributes = radius.Attributes{{Type: attrMessageAuthenticator, Attribute: make(radius.Attribute, 16)}}
				raw, _ := p.Encode() // a valid Response Authenticator over a zero MA
				return [][]byte{raw}
			}
		}, stepup.Unavailable},
		{"accept for another identifier", func(t *testing.T) forge {
			return func(req *radius.Packet, _ []byte) [][]byte {
				other := *req
				other.Identifier++
				return [][]byte{respond(t, &other, radius.CodeAccessAccept, key, true, "")}
			}
		}, stepup.Unavailable},
		{"an Access-Request echoed back", func(t *testing.T) forge {
			return func(_ *radius.Packet, raw []byte) [][]byte { return [][]byte{raw} }
		}, stepup.Unavailable},
		{"garbage", func(t *testing.T) forge {
			return func(*radius.Packet, []byte) [][]byte {
				return [][]byte{[]byte("not radius at all"), make([]byte, 4096)}
			}
		}, stepup.Unavailable},
		{"forged accept, then the authentic reject", func(t *testing.T) forge {
			return func(req *radius.Packet, _ []byte) [][]byte {
				return [][]byte{
					respond(t, req, radius.CodeAccessAccept, key, false, ""),
					respond(t, req, radius.CodeAccessReject, key, true, "nope"),
				}
			}
		}, stepup.Rejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRogue(t, tt.forge(t))
			m := method(t, []Server{{Addr: r.conn.LocalAddr().String(), Secret: key}}, nil)
			if o := attempt(t, m, "alice", "123456", nil); o.Result != tt.result {
				t.Fatalf("result %v (%+v), want %v", o.Result, o, tt.result)
			}
		})
	}
}

func TestRequestsCarryAMessageAuthenticatorFirst(t *testing.T) {
	got := make(chan []byte, 1)
	r := newRogue(t, func(_ *radius.Packet, raw []byte) [][]byte { got <- raw; return nil })
	m := method(t, []Server{{Addr: r.conn.LocalAddr().String(), Secret: []byte(secret)}}, nil)
	m.client.cfg.Retries = 0
	attempt(t, m, "alice", "123456", nil)
	raw := <-got
	if raw[20] != byte(attrMessageAuthenticator) || raw[21] != 18 {
		t.Fatalf("first attribute is %d", raw[20])
	}
	cp := append([]byte(nil), raw...)
	clear(cp[22:38])
	mac := hmac.New(md5.New, []byte(secret))
	mac.Write(cp)
	if !hmac.Equal(mac.Sum(nil), raw[22:38]) {
		t.Fatal("request Message-Authenticator does not verify")
	}
	p, _ := radius.Parse(raw, []byte(secret))
	if pw, _ := rfc2865.UserPassword_LookupString(p); pw != "123456" {
		t.Fatal("User-Password does not decrypt with the secret")
	}
	if bytesContain(raw, []byte("123456")) {
		t.Fatal("the code travels in clear")
	}
	if rfc2865.CallingStationID_GetString(p) != "192.0.2.7" || rfc2865.NASIdentifier_GetString(p) != "caddy-stepup" {
		t.Fatal("Calling-Station-Id or NAS-Identifier missing")
	}
}

func bytesContain(b, sub []byte) bool { return strings.Contains(string(b), string(sub)) }

func TestMethodValidation(t *testing.T) {
	for _, c := range []ClientConfig{
		{},
		{Servers: []Server{{Addr: "no-port", Secret: []byte("x")}}},
		{Servers: []Server{{Addr: "127.0.0.1:1812"}}},
		{Servers: []Server{{Addr: "127.0.0.1:1812", Secret: []byte("x")}}, Retries: 11},
	} {
		if _, err := NewMethod(MethodConfig{Client: c}); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
	m := method(t, []Server{{Addr: "127.0.0.1:9", Secret: []byte("x")}}, nil)
	for _, code := range []string{"", strings.Repeat("1", 200)} {
		if o := attempt(t, m, "alice", code, nil); o.Result != stepup.Rejected {
			t.Errorf("code of %d bytes: %+v", len(code), o)
		}
	}
}
