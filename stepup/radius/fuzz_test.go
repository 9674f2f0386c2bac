package radius

import (
	"testing"

	"layeh.com/radius"
)

// FuzzResponse: no datagram, however malformed, makes the client panic or
// accept it as the answer to a request it does not authenticate.
func FuzzResponse(f *testing.F) {
	key := []byte(secret)
	req := radius.New(radius.CodeAccessRequest, key)
	wire, err := encodeRequest(req)
	if err != nil {
		f.Fatal(err)
	}
	c, _ := NewClient(ClientConfig{Servers: []Server{{Addr: "127.0.0.1:1812", Secret: key}}})
	s := Server{Addr: "127.0.0.1:1812", Secret: key}
	// Seeds: an authentic reject, and variations of it.
	good := req.Response(radius.CodeAccessReject)
	good.Attributes = radius.Attributes{{Type: attrMessageAuthenticator, Attribute: make(radius.Attribute, 16)}}
	raw, _ := good.MarshalBinary()
	f.Add(raw)
	f.Add(wire)
	f.Add([]byte{2, wire[1], 0, 20})
	f.Add(append(append([]byte{}, raw...), 80, 2, 80, 18))
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, ok := c.verify(b, wire, s)
		if ok && (resp == nil || len(b) < 20 || b[1] != wire[1]) {
			t.Fatalf("accepted a response that does not match the request: %x", b)
		}
		if ok && !radius.IsAuthenticResponse(b, wire, key) {
			t.Fatalf("accepted a response without a valid Response Authenticator: %x", b)
		}
	})
}
