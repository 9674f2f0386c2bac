// Package totp is the "security code" method of caddy-stepup: RFC 6238
// time-based one-time passwords, compatible with the authenticator apps
// people carry (defaults: SHA-1, 6 digits, 30 s, one step of skew each
// way). It holds the code arithmetic, the encrypted store of enrolled
// secrets, the replay guard and lockout, and the enrolment state.
package totp

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"image/png"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// Options are a tier's code parameters.
type Options struct {
	// Digits per code: 6 (default), 7 or 8.
	Digits int
	// Period of a time step. Default 30s.
	Period time.Duration
	// Algorithm of the HMAC: SHA1 (default), SHA256 or SHA512.
	Algorithm string
	// Skew is how many steps before and after the current one are
	// accepted, for clock drift and typing time. Default 1; 0 allowed.
	Skew int
	// SkewSet tells an explicit Skew 0 from an unset one.
	SkewSet bool
}

// WithDefaults fills unset fields and validates the result.
func (o Options) WithDefaults() (Options, error) {
	if o.Digits == 0 {
		o.Digits = 6
	}
	if o.Period == 0 {
		o.Period = 30 * time.Second
	}
	if o.Algorithm == "" {
		o.Algorithm = "SHA1"
	}
	o.Algorithm = strings.ToUpper(o.Algorithm)
	if !o.SkewSet && o.Skew == 0 {
		o.Skew = 1
	}
	switch {
	case o.Digits < 6 || o.Digits > 8:
		return o, fmt.Errorf("digits must be 6, 7 or 8, not %d", o.Digits)
	case o.Period < 10*time.Second || o.Period > 5*time.Minute || o.Period%time.Second != 0:
		return o, fmt.Errorf("period must be whole seconds between 10s and 5m, not %s", o.Period)
	case o.Skew < 0 || o.Skew > 5:
		return o, fmt.Errorf("skew must be between 0 and 5 steps, not %d", o.Skew)
	}
	if _, err := o.algorithm(); err != nil {
		return o, err
	}
	return o, nil
}

func (o Options) algorithm() (otp.Algorithm, error) {
	switch o.Algorithm {
	case "SHA1":
		return otp.AlgorithmSHA1, nil
	case "SHA256":
		return otp.AlgorithmSHA256, nil
	case "SHA512":
		return otp.AlgorithmSHA512, nil
	}
	return 0, fmt.Errorf("algorithm must be SHA1, SHA256 or SHA512, not %q", o.Algorithm)
}

// Step is the time step counter at t.
func (o Options) Step(t time.Time) uint64 {
	return uint64(t.Unix()) / uint64(o.Period/time.Second)
}

// Code is the code of a secret for a step counter (RFC 4226 with the
// step as counter, RFC 6238).
func (o Options) Code(secret []byte, counter uint64) string {
	alg, _ := o.algorithm()
	code, err := hotp.GenerateCodeCustom(encodeSecret(secret), counter, hotp.ValidateOpts{Digits: otp.Digits(o.Digits), Algorithm: alg})
	if err != nil {
		return "" // an empty code never matches a submitted one
	}
	return code
}

// Match reports the step whose code equals the submitted code, among the
// steps within Skew of t. Every candidate is computed and compared in
// constant time, so the time taken says nothing about which one matched.
func (o Options) Match(secret []byte, code string, t time.Time) (uint64, bool) {
	code = NormalizeCode(code)
	if len(code) != o.Digits {
		return 0, false
	}
	now := o.Step(t)
	var found uint64
	ok := 0
	for d := -o.Skew; d <= o.Skew; d++ {
		if d < 0 && uint64(-d) > now {
			continue
		}
		step := uint64(int64(now) + int64(d))
		want := o.Code(secret, step)
		if want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			found, ok = step, 1
		}
	}
	return found, ok == 1
}

// NormalizeCode removes the spaces and dashes people type or paste.
func NormalizeCode(code string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '\t':
			return -1
		}
		return r
	}, code)
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func encodeSecret(secret []byte) string { return b32.EncodeToString(secret) }

// ParseSecret reads a base32 secret as authenticator apps and `oathtool -b`
// write it: case-insensitive, spaces and padding optional. Secrets shorter
// than 80 bits are refused (RFC 4226 asks for 128, recommends 160).
func ParseSecret(s string) ([]byte, error) {
	s = strings.ToUpper(strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, s))
	s = strings.TrimRight(s, "=")
	b, err := b32.DecodeString(s)
	if err != nil {
		return nil, errors.New("not a base32 secret")
	}
	if len(b) < 10 {
		return nil, fmt.Errorf("secret too short (%d bits, at least 80)", len(b)*8)
	}
	return b, nil
}

// NewSecret returns a random secret as long as the algorithm's output
// (RFC 6238's test secrets follow the same rule).
func (o Options) NewSecret() []byte {
	n := 20
	switch o.Algorithm {
	case "SHA256":
		n = 32
	case "SHA512":
		n = 64
	}
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("totp: crypto/rand failed: " + err.Error())
	}
	return b
}

// ManualKey is the secret as people type it: base32 in groups of four.
func ManualKey(secret []byte) string {
	s := encodeSecret(secret)
	var b strings.Builder
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s[i:min(i+4, len(s))])
	}
	return b.String()
}

// KeyURI is the otpauth:// URI of Google's Key Uri Format, which
// authenticator apps read from the QR code.
func (o Options) KeyURI(issuer, account string, secret []byte) string {
	v := url.Values{}
	v.Set("secret", encodeSecret(secret))
	v.Set("issuer", issuer)
	v.Set("algorithm", o.Algorithm)
	v.Set("digits", strconv.Itoa(o.Digits))
	v.Set("period", strconv.Itoa(int(o.Period/time.Second)))
	u := url.URL{Scheme: "otpauth", Host: "totp", Path: "/" + issuer + ":" + account, RawQuery: v.Encode()}
	return u.String()
}

// QRCode renders a key URI as a PNG image, on the server.
func QRCode(uri string, size int) ([]byte, error) {
	key, err := otp.NewKeyFromURL(uri)
	if err != nil {
		return nil, err
	}
	img, err := key.Image(size, size)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
