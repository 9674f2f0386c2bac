package totp

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/internal/testenv"
	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/store"
)

// RFC 6238 Appendix B: 8-digit codes, 30 s steps, the ASCII test secrets.
func TestRFC6238AppendixB(t *testing.T) {
	secrets := map[string][]byte{
		"SHA1":   []byte("12345678901234567890"),
		"SHA256": []byte("12345678901234567890123456789012"),
		"SHA512": []byte("1234567890123456789012345678901234567890123456789012345678901234"),
	}
	vectors := []struct {
		unix int64
		want map[string]string
	}{
		{59, map[string]string{"SHA1": "94287082", "SHA256": "46119246", "SHA512": "90693936"}},
		{1111111109, map[string]string{"SHA1": "07081804", "SHA256": "68084774", "SHA512": "25091201"}},
		{1111111111, map[string]string{"SHA1": "14050471", "SHA256": "67062674", "SHA512": "99943326"}},
		{1234567890, map[string]string{"SHA1": "89005924", "SHA256": "91819424", "SHA512": "93441116"}},
		{2000000000, map[string]string{"SHA1": "69279037", "SHA256": "90698825", "SHA512": "38618901"}},
		{20000000000, map[string]string{"SHA1": "65353130", "SHA256": "77737706", "SHA512": "47863826"}},
	}
	for alg, secret := range secrets {
		o, err := Options{Digits: 8, Algorithm: alg}.WithDefaults()
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vectors {
			at := time.Unix(v.unix, 0).UTC()
			if got := o.Code(secret, o.Step(at)); got != v.want[alg] {
				t.Errorf("%s at %d: %s, want %s", alg, v.unix, got, v.want[alg])
			}
			if step, ok := o.Match(secret, v.want[alg], at); !ok || step != o.Step(at) {
				t.Errorf("%s at %d: Match = %d, %v", alg, v.unix, step, ok)
			}
		}
	}
}

func TestSkewBoundaries(t *testing.T) {
	secret := []byte("12345678901234567890")
	at := time.Unix(1111111111, 0) // step 37037037, 1 s into it
	for _, tc := range []struct {
		skew  int
		set   bool
		delta int64 // steps from the current one
		ok    bool
	}{
		{1, false, 0, true}, {1, false, -1, true}, {1, false, 1, true},
		{1, false, -2, false}, {1, false, 2, false},
		{0, true, 0, true}, {0, true, -1, false}, {0, true, 1, false},
		{2, true, -2, true}, {2, true, 3, false},
	} {
		o, err := Options{Skew: tc.skew, SkewSet: tc.set}.WithDefaults()
		if err != nil {
			t.Fatal(err)
		}
		now := o.Step(at)
		code := o.Code(secret, uint64(int64(now)+tc.delta))
		step, ok := o.Match(secret, code, at)
		if ok != tc.ok || (ok && step != uint64(int64(now)+tc.delta)) {
			t.Errorf("skew %d, step %+d: %d %v, want %v", tc.skew, tc.delta, step, ok, tc.ok)
		}
	}
	o, _ := Options{}.WithDefaults()
	if _, ok := o.Match(secret, "12345", at); ok {
		t.Error("a 5-digit code matched")
	}
	code := o.Code(secret, o.Step(at))
	if _, ok := o.Match(secret, code[:3]+" "+code[3:], at); !ok {
		t.Error("a code typed with a space did not match")
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{Digits: 5}, {Digits: 9}, {Period: 5 * time.Second}, {Period: 12500 * time.Millisecond},
		{Algorithm: "MD5"}, {Skew: 9}, {Skew: -1, SkewSet: true},
	} {
		if _, err := o.WithDefaults(); err == nil {
			t.Errorf("accepted %+v", o)
		}
	}
	o, err := Options{Algorithm: "sha256"}.WithDefaults()
	if err != nil || o.Algorithm != "SHA256" || o.Digits != 6 || o.Period != 30*time.Second || o.Skew != 1 {
		t.Fatalf("defaults: %+v %v", o, err)
	}
}

func TestParseSecret(t *testing.T) {
	want := []byte("12345678901234567890")
	for _, s := range []string{
		"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
		"gezd gnbv gy3t qojq gezd gnbv gy3t qojq",
		"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ====",
	} {
		got, err := ParseSecret(s)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("ParseSecret(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "not base32!", "GEZDGNBV"} {
		if _, err := ParseSecret(s); err == nil {
			t.Errorf("accepted %q", s)
		}
	}
	if ManualKey(want) != "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ" {
		t.Errorf("ManualKey = %q", ManualKey(want))
	}
}

func TestKeyURIAndQRCode(t *testing.T) {
	o, _ := Options{Digits: 8, Algorithm: "SHA256", Period: 60 * time.Second}.WithDefaults()
	uri := o.KeyURI("app.example", "alice", []byte("12345678901234567890"))
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/app.example:alice" {
		t.Fatalf("URI %q", uri)
	}
	q := u.Query()
	if q.Get("secret") != "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" || q.Get("digits") != "8" || q.Get("period") != "60" || q.Get("algorithm") != "SHA256" || q.Get("issuer") != "app.example" {
		t.Fatalf("URI parameters %v", q)
	}
	img, err := QRCode(uri, 200)
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := png.Decode(bytes.NewReader(img))
	if err != nil || decoded.Bounds().Dx() != 200 {
		t.Fatalf("QR code PNG: %v", err)
	}
}

func TestVaultEncryptsAtRest(t *testing.T) {
	bl := testenv.NewBlobs()
	v, err := NewVault(bl, bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := v.Load(ctx, "alice"); err != ErrNoSecret {
		t.Fatalf("no secret yet: %v", err)
	}
	secret := []byte("12345678901234567890")
	if err := v.Save(ctx, "alice", secret); err != nil {
		t.Fatal(err)
	}
	for k, blob := range bl.Snapshot() {
		if strings.Contains(k, "alice") || bytes.Contains(blob, secret) || bytes.Contains(blob, []byte(encodeSecret(secret))) {
			t.Fatalf("secret or user name visible at rest: %s", k)
		}
	}
	got, err := v.Load(ctx, "alice")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Load = %q, %v", got, err)
	}
	// Alice's ciphertext copied under Bob's key does not decrypt.
	bl.Put(storageKey("bob"), bl.Snapshot()[storageKey("alice")])
	if _, err := v.Load(ctx, "bob"); err == nil {
		t.Fatal("a secret moved to another user decrypted")
	}
	// Tampering is detected.
	blob := bl.Snapshot()[storageKey("alice")]
	blob[len(blob)-1] ^= 1
	bl.Put(storageKey("alice"), blob)
	if _, err := v.Load(ctx, "alice"); err == nil {
		t.Fatal("a tampered secret decrypted")
	}
	// Carol's secret, sealed under the vault's key, is there and unusable
	// under another key: an error, not "no secret", which would let carol
	// enrol again.
	other, err := NewVault(bl, bytes.Repeat([]byte{8}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Save(ctx, "carol", secret); err != nil {
		t.Fatal(err)
	}
	if got, err := v.Load(ctx, "carol"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Load(carol) = %q, %v", got, err)
	}
	if _, err := other.Load(ctx, "carol"); err == nil || errors.Is(err, ErrNoSecret) {
		t.Fatalf("Load under another key: %v, want a decryption error", err)
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newMethod(t *testing.T, c *clock, provisioned map[string][]byte) *Method {
	v, _ := NewVault(testenv.NewBlobs(), bytes.Repeat([]byte{1}, 32))
	m, err := New(Config{Vault: v, Store: store.NewMemory(0, c.Now), Now: c.Now, Provisioned: provisioned, SelfEnroll: true,
		Lockout: Lockout{Failures: 3, Duration: time.Minute, Max: 4 * time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func verify(t *testing.T, m *Method, user, code string) *stepup.Outcome {
	t.Helper()
	o, err := m.Verify(context.Background(), &stepup.Attempt{User: user, Form: url.Values{"code": {code}}})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestReplayedCodesAreRejected(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	secret := []byte("12345678901234567890")
	m := newMethod(t, c, map[string][]byte{"alice": secret})
	code := m.opts.Code(secret, m.opts.Step(c.Now()))
	if o := verify(t, m, "alice", code); o.Result != stepup.Accepted {
		t.Fatalf("first use: %+v", o)
	}
	if o := verify(t, m, "alice", code); o.Result != stepup.Rejected || o.Reason != "replayed_code" {
		t.Fatalf("replay: %+v", o)
	}
	// The previous step's code is still within the skew, but older than the
	// code just accepted: rejected too.
	prev := m.opts.Code(secret, m.opts.Step(c.Now())-1)
	if o := verify(t, m, "alice", prev); o.Result != stepup.Rejected || o.Reason != "replayed_code" {
		t.Fatalf("older step after a newer one: %+v", o)
	}
	c.Advance(30 * time.Second)
	if o := verify(t, m, "alice", m.opts.Code(secret, m.opts.Step(c.Now()))); o.Result != stepup.Accepted {
		t.Fatalf("next step: %+v", o)
	}
}

func TestLockoutGrowsAndRecovers(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	secret := []byte("12345678901234567890")
	m := newMethod(t, c, map[string][]byte{"alice": secret})
	wrong := func() *stepup.Outcome { return verify(t, m, "alice", "000000") }
	good := func() *stepup.Outcome { return verify(t, m, "alice", m.opts.Code(secret, m.opts.Step(c.Now()))) }
	for i := 0; i < 2; i++ {
		if o := wrong(); o.Reason != "bad_code" {
			t.Fatalf("failure %d: %+v", i, o)
		}
	}
	if o := wrong(); o.Reason != "locked_out" || !strings.Contains(o.Message, "try again in 1 minute") {
		t.Fatalf("third failure: %+v", o)
	}
	if o := good(); o.Result != stepup.Rejected || o.Reason != "locked" {
		t.Fatalf("right code while locked: %+v", o)
	}
	c.Advance(61 * time.Second)
	for i := 0; i < 3; i++ {
		wrong()
	}
	if until, locked := m.LockedUntil(context.Background(), "alice"); !locked || until.Sub(c.Now()) != 2*time.Minute {
		t.Fatalf("second lock should last 2 minutes: %v %v", until.Sub(c.Now()), locked)
	}
	c.Advance(2*time.Minute + time.Second)
	for i := 0; i < 3; i++ {
		wrong()
	}
	c.Advance(4*time.Minute + time.Second) // third lock: 4 minutes, the maximum
	for i := 0; i < 3; i++ {
		wrong()
	}
	if until, _ := m.LockedUntil(context.Background(), "alice"); until.Sub(c.Now()) != 4*time.Minute {
		t.Fatalf("lock beyond the maximum: %v", until.Sub(c.Now()))
	}
	c.Advance(4*time.Minute + time.Second)
	if o := good(); o.Result != stepup.Accepted {
		t.Fatalf("after the lock: %+v", o)
	}
	// A success resets the count: two more failures do not lock.
	wrong()
	wrong()
	if _, locked := m.LockedUntil(context.Background(), "alice"); locked {
		t.Fatal("locked before reaching the limit again")
	}
	// Another user is unaffected by Alice's failures.
	if _, locked := m.LockedUntil(context.Background(), "bob"); locked {
		t.Fatal("bob locked")
	}
}

func TestEnrolmentNeedsAConfirmingCode(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	m := newMethod(t, c, nil)
	ctx := context.Background()
	if ok, _ := m.Enrolled(ctx, "bob"); ok {
		t.Fatal("enrolled before enrolment")
	}
	e, err := m.BeginEnrolment(ctx, "owner1", "bob", "app.example")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := m.BeginEnrolment(ctx, "owner1", "bob", "app.example")
	if !bytes.Equal(again.Secret, e.Secret) || !strings.Contains(e.URI, "issuer=app.example") {
		t.Fatal("a reloaded enrolment page must show the same secret")
	}
	if o, err := m.ConfirmEnrolment(ctx, "owner1", "bob", "000000"); err != nil || o.Result != stepup.Rejected {
		t.Fatalf("wrong code: %+v %v", o, err)
	}
	if ok, _ := m.Enrolled(ctx, "bob"); ok {
		t.Fatal("a wrong code activated the secret")
	}
	// Another session cannot confirm this one's enrolment.
	if _, err := m.ConfirmEnrolment(ctx, "owner2", "bob", m.opts.Code(e.Secret, m.opts.Step(c.Now()))); err != ErrEnrolmentExpired {
		t.Fatalf("other session: %v", err)
	}
	code := m.opts.Code(e.Secret, m.opts.Step(c.Now()))
	if o, err := m.ConfirmEnrolment(ctx, "owner1", "bob", code); err != nil || o.Result != stepup.Accepted {
		t.Fatalf("right code: %+v %v", o, err)
	}
	if ok, _ := m.Enrolled(ctx, "bob"); !ok {
		t.Fatal("not enrolled after confirmation")
	}
	if o := verify(t, m, "bob", code); o.Reason != "replayed_code" {
		t.Fatalf("the confirming code was accepted again: %+v", o)
	}
	if _, err := m.ConfirmEnrolment(ctx, "owner1", "bob", code); err != ErrEnrolmentExpired {
		t.Fatal("an enrolment was confirmed twice")
	}
	// An enrolled secret takes precedence over a provisioned one.
	m.provisioned = map[string][]byte{"bob": []byte("98765432109876543210")}
	c.Advance(30 * time.Second)
	if o := verify(t, m, "bob", m.opts.Code(e.Secret, m.opts.Step(c.Now()))); o.Result != stepup.Accepted {
		t.Fatalf("enrolled secret not used: %+v", o)
	}
	// Pending enrolments expire.
	_, _ = m.BeginEnrolment(ctx, "owner3", "carol", "h")
	c.Advance(11 * time.Minute)
	if _, err := m.PendingEnrolment(ctx, "owner3", "carol", "h"); err == nil {
		t.Fatal("enrolment did not expire")
	}
}
