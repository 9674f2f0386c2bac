package radius

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"testing"

	"layeh.com/radius"
)

// FuzzResponse: no datagram, however malformed, makes the client panic or
// accept it unless it is an authentic answer to the request. The seeds
// include authentic answers, which must be accepted, so that the property
// runs on inputs near the accepting path.
func FuzzResponse(f *testing.F) {
	key := []byte(secret)
	wire, err := encodeRequest(radius.New(radius.CodeAccessRequest, key))
	if err != nil {
		f.Fatal(err)
	}
	req, err := radius.Parse(wire, key)
	if err != nil {
		f.Fatal(err)
	}
	c, err := NewClient(ClientConfig{Servers: []Server{{Addr: "127.0.0.1:1812", Secret: key}}})
	if err != nil {
		f.Fatal(err)
	}
	s := Server{Addr: "127.0.0.1:1812", Secret: key}

	var authentic [][]byte
	for _, code := range []radius.Code{radius.CodeAccessAccept, radius.CodeAccessReject, radius.CodeAccessChallenge} {
		authentic = append(authentic, respond(f, req, code, key, true, "hello"))
	}
	for _, raw := range authentic {
		if _, ok := c.verify(raw, wire, s); !ok {
			f.Fatalf("an authentic response is refused: %x", raw)
		}
		f.Add(raw)
	}
	accept := authentic[0]
	// A signed accept whose Message-Authenticator is wrong but whose
	// Response Authenticator is recomputed over it.
	f.Add(resign(flip(accept, 30), wire, key))
	f.Add(doublySigned(f, req, wire, key))
	f.Add(respond(f, req, radius.CodeAccessAccept, key, false, ""))
	f.Add(respond(f, req, radius.CodeAccessAccept, []byte("guessed"), true, ""))
	f.Add(respond(f, req, radius.CodeAccountingResponse, key, true, ""))
	f.Add(flip(accept, 1))
	f.Add(flip(accept, 10))
	f.Add(accept[:len(accept)-1])
	f.Add(append(bytes.Clone(accept), 0))
	f.Add(wire)
	f.Add([]byte{2, wire[1], 0, 20})
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, ok := c.verify(b, wire, s)
		if !ok {
			return
		}
		if !authenticResponse(b, wire, key) {
			t.Fatalf("accepted a response that is not an authentic answer to the request: %x", b)
		}
		if resp == nil || resp.Code != radius.Code(b[0]) {
			t.Fatalf("accepted %x as %+v", b, resp)
		}
	})
}

// authenticResponse is the fuzz oracle, written from RFC 2865 §3 and RFC
// 3579 §3.2 rather than from verify: an Access-Accept, -Reject or
// -Challenge with the request's identifier, a Response Authenticator of
// MD5(code, id, length, request authenticator, attributes, secret), and
// exactly one Message-Authenticator, the HMAC-MD5 of the packet with the
// request authenticator in place and the attribute zeroed.
func authenticResponse(b, request, secret []byte) bool {
	if len(b) < 20 {
		return false
	}
	length := int(binary.BigEndian.Uint16(b[2:4]))
	if length < 20 || length > len(b) {
		return false
	}
	b = b[:length]
	switch radius.Code(b[0]) {
	case radius.CodeAccessAccept, radius.CodeAccessReject, radius.CodeAccessChallenge:
	default:
		return false
	}
	if b[1] != request[1] {
		return false
	}
	h := md5.New()
	h.Write(b[:4])
	h.Write(request[4:20])
	h.Write(b[20:])
	h.Write(secret)
	if !bytes.Equal(h.Sum(nil), b[4:20]) {
		return false
	}
	signed := bytes.Clone(b)
	copy(signed[4:20], request[4:20])
	var mas [][]byte
	for i := 20; i < len(signed); {
		if i+2 > len(signed) {
			return false
		}
		l := int(signed[i+1])
		if l < 2 || i+l > len(signed) {
			return false
		}
		if signed[i] == 80 { // Message-Authenticator
			if l != 18 {
				return false
			}
			mas = append(mas, b[i+2:i+18])
			clear(signed[i+2 : i+18])
		}
		i += l
	}
	if len(mas) != 1 {
		return false
	}
	mac := hmac.New(md5.New, secret)
	mac.Write(signed)
	return hmac.Equal(mac.Sum(nil), mas[0])
}

// flip returns a copy of b with one byte changed.
func flip(b []byte, i int) []byte {
	out := bytes.Clone(b)
	out[i] ^= 0xff
	return out
}

// doublySigned is an accept with two Message-Authenticators, each the
// HMAC of the packet with both zeroed, and a valid Response Authenticator:
// well signed but malformed, as RFC 3579 allows only one.
func doublySigned(t testing.TB, req *radius.Packet, request, key []byte) []byte {
	p := req.Response(radius.CodeAccessAccept)
	p.Secret = key
	p.Attributes = radius.Attributes{
		{Type: attrMessageAuthenticator, Attribute: make(radius.Attribute, 16)},
		{Type: attrMessageAuthenticator, Attribute: make(radius.Attribute, 16)},
	}
	raw, err := p.MarshalBinary() // authenticator field = the request's
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(md5.New, key)
	mac.Write(raw)
	sum := mac.Sum(nil)
	copy(raw[22:38], sum)
	copy(raw[40:56], sum)
	return resign(raw, request, key)
}

// resign recomputes the Response Authenticator of a response to request
// over whatever the packet holds now: what an attacker gets from an MD5
// collision (BlastRADIUS) without knowing the secret.
func resign(b, request, secret []byte) []byte {
	out := bytes.Clone(b)
	h := md5.New()
	h.Write(out[:4])
	h.Write(request[4:20])
	h.Write(out[20:])
	h.Write(secret)
	copy(out[4:20], h.Sum(nil))
	return out
}
