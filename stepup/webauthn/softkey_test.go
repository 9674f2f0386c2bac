package webauthn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// softKey is a security key in software, for tests that need no browser:
// ECDSA P-256 credentials, "none" attestation, a sign counter per
// credential. It answers the options that BeginRegistration and BeginLogin
// return with the JSON a browser posts (PublicKeyCredential.toJSON()),
// built by hand from the WebAuthn Level 3 data layouts.
type softKey struct {
	origin string
	// uv is whether the key reports user verification (a PIN or a
	// fingerprint); presence is always reported.
	uv    bool
	creds []*softCredential
}

// softCredential is one key pair on the authenticator.
type softCredential struct {
	id      []byte
	key     *ecdsa.PrivateKey
	counter uint32
	rpID    string
	user    []byte // the user handle the relying party gave at registration
}

// Authenticator data flags (WebAuthn §6.1).
const (
	flagUP = 0x01 // user present
	flagUV = 0x04 // user verified
	flagAT = 0x40 // attested credential data included
)

func newSoftKey(origin string) *softKey { return &softKey{origin: origin, uv: true} }

func (k *softKey) flags() byte {
	if k.uv {
		return flagUP | flagUV
	}
	return flagUP
}

// creationOptions is the part of PublicKeyCredentialCreationOptions a key
// reads.
type creationOptions struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RP        struct {
			ID string `json:"id"`
		} `json:"rp"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
	} `json:"publicKey"`
}

// requestOptions is the part of PublicKeyCredentialRequestOptions a key
// reads.
type requestOptions struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RPID      string `json:"rpId"`
	} `json:"publicKey"`
}

// register creates a credential for the options and returns the
// registration JSON.
func (k *softKey) register(t testing.TB, options []byte) ([]byte, *softCredential) {
	t.Helper()
	var o creationOptions
	if err := json.Unmarshal(options, &o); err != nil {
		t.Fatalf("creation options: %v", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	user, err := base64.RawURLEncoding.DecodeString(o.PublicKey.User.ID)
	if err != nil {
		t.Fatalf("user handle: %v", err)
	}
	c := &softCredential{id: randomBytes(t, 32), key: key, rpID: o.PublicKey.RP.ID, user: user}
	k.creds = append(k.creds, c)

	// COSE_Key (RFC 9053): kty EC2, alg ES256, crv P-256, x, y.
	ecdh, err := key.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	point := ecdh.Bytes() // 0x04 || x || y
	coseKey := marshalCBOR(t, map[int]any{1: 2, 3: -7, -1: 1, -2: point[1:33], -3: point[33:65]})
	attested := make([]byte, 16) // AAGUID: zero, as for "none" attestation
	attested = binary.BigEndian.AppendUint16(attested, uint16(len(c.id)))
	attested = append(attested, c.id...)
	attested = append(attested, coseKey...)
	authData := append(authenticatorData(c.rpID, k.flags()|flagAT, c.counter), attested...)

	attestation := marshalCBOR(t, map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": authData})
	clientData := k.clientData(t, "webauthn.create", o.PublicKey.Challenge)
	return marshalJSON(t, map[string]any{
		"id": b64(c.id), "rawId": b64(c.id), "type": "public-key",
		"authenticatorAttachment": "cross-platform",
		"response": map[string]any{
			"clientDataJSON":    b64(clientData),
			"attestationObject": b64(attestation),
			"transports":        []string{"usb"},
		},
		"clientExtensionResults": map[string]any{},
	}), c
}

// assert signs the options' challenge with c, advancing its counter, and
// returns the assertion JSON.
func (k *softKey) assert(t testing.TB, options []byte, c *softCredential) []byte {
	t.Helper()
	var o requestOptions
	if err := json.Unmarshal(options, &o); err != nil {
		t.Fatalf("request options: %v", err)
	}
	c.counter++
	authData := authenticatorData(o.PublicKey.RPID, k.flags(), c.counter)
	clientData := k.clientData(t, "webauthn.get", o.PublicKey.Challenge)
	hash := sha256.Sum256(clientData)
	digest := sha256.Sum256(append(append([]byte(nil), authData...), hash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, c.key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return marshalJSON(t, map[string]any{
		"id": b64(c.id), "rawId": b64(c.id), "type": "public-key",
		"authenticatorAttachment": "cross-platform",
		"response": map[string]any{
			"clientDataJSON":    b64(clientData),
			"authenticatorData": b64(authData),
			"signature":         b64(sig),
			"userHandle":        b64(c.user),
		},
		"clientExtensionResults": map[string]any{},
	})
}

// clone is a copy of the credential, key and counter included, as an
// attacker who extracted the key would hold.
func (c *softCredential) clone() *softCredential {
	d := *c
	return &d
}

func (k *softKey) clientData(t testing.TB, typ, challenge string) []byte {
	return marshalJSON(t, map[string]any{"type": typ, "challenge": challenge, "origin": k.origin, "crossOrigin": false})
}

// authenticatorData is rpIdHash, flags and the big-endian sign counter.
func authenticatorData(rpID string, flags byte, counter uint32) []byte {
	h := sha256.Sum256([]byte(rpID))
	return binary.BigEndian.AppendUint32(append(h[:], flags), counter)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func marshalJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ctap2 is the canonical CBOR of CTAP2, as authenticators encode.
var ctap2, _ = cbor.CTAP2EncOptions().EncMode()

func marshalCBOR(t testing.TB, v any) []byte {
	t.Helper()
	b, err := ctap2.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
