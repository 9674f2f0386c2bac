package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// verifySpec checks a delivery the way the Standard Webhooks specification
// tells a receiver to, written from the specification rather than from
// Sign: the key from the secret (whsec_ and base64, or else the text),
// HMAC-SHA256 of "id.timestamp.body" compared in constant time with each
// "v1," signature of the space-separated list, the timestamp within five
// minutes of now.
func verifySpec(secret string, h http.Header, body []byte, now time.Time) error {
	key := []byte(secret)
	if rest, ok := strings.CutPrefix(secret, "whsec_"); ok {
		var err error
		if key, err = base64.StdEncoding.DecodeString(rest); err != nil {
			return err
		}
	}
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook header")
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q: %v", ts, err)
	}
	if d := now.Sub(time.Unix(secs, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %s too far from now", ts)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := mac.Sum(nil)
	for _, sig := range strings.Split(sigs, " ") {
		version, encoded, _ := strings.Cut(sig, ",")
		got, err := base64.StdEncoding.DecodeString(encoded)
		if version == "v1" && err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no valid signature")
}

// The vector of the specification's reference libraries.
func TestSignMatchesStandardWebhooksVector(t *testing.T) {
	key, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestSignWithATextSecretUsesItsBytes(t *testing.T) {
	const secret = "a text secret, not base64: {}"
	key, err := ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 0)
	body := []byte(`{"type":"approval.requested"}`)
	h := http.Header{}
	h.Set("webhook-id", "msg_1")
	h.Set("webhook-timestamp", "1700000000")
	h.Set("webhook-signature", Sign(key, "msg_1", at, body))
	if err := verifySpec(secret, h, body, at); err != nil {
		t.Fatal(err)
	}
	if err := verifySpec("another secret", h, body, at); err == nil {
		t.Fatal("a wrong secret verified")
	}
	if err := verifySpec(secret, h, []byte(`{"type":"approval.decided"}`), at); err == nil {
		t.Fatal("a tampered body verified")
	}
}

func TestParseSecret(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "whsec_" + base64.StdEncoding.EncodeToString([]byte("twenty-four bytes of key")), want: "twenty-four bytes of key"},
		{in: "plain text secret", want: "plain text secret"},
		{in: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", want: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, // no prefix: text
		{in: "whsec_not base64!", wantErr: true},
		{in: "whsec_", wantErr: true},
		{in: "", wantErr: true},
	} {
		got, err := ParseSecret(tc.in)
		if (err != nil) != tc.wantErr || string(got) != tc.want {
			t.Errorf("ParseSecret(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestPayloadFollowsTheRecommendedStructure(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 30, 0, 500, time.FixedZone("CET", 3600))
	body, err := Payload(stepup.Notification{Event: "break_glass", ID: "ap_1", At: at,
		Data: map[string]any{"url": "https://gw.example/_stepup/approvals/ap_1?a=1&b=2", "id": "overridden", "requester": "bob"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), `\u0026`) {
		t.Errorf("link escaped: %s", body)
	}
	var got struct {
		Type      string         `json:"type"`
		Timestamp string         `json:"timestamp"`
		Data      map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	ts, err := time.Parse(time.RFC3339, got.Timestamp)
	if got.Type != "approval.break_glass" || err != nil || !ts.Equal(at) ||
		got.Data["id"] != "ap_1" || got.Data["requester"] != "bob" || got.Data["url"] == nil {
		t.Fatalf("payload %s", body)
	}
	if _, err := Payload(stepup.Notification{ID: "x"}); err == nil {
		t.Error("a notification without an event was accepted")
	}
	if _, err := Payload(stepup.Notification{Event: "used", Data: map[string]any{"f": func() {}}}); err == nil {
		t.Error("data JSON cannot encode was accepted")
	}
}

func TestNewMessageIDIsUniqueAndHasNoFullStop(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewMessageID()
		if seen[id] || strings.Contains(id, ".") || !strings.HasPrefix(id, "msg_") {
			t.Fatalf("id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"-1":                            0,
		"soon":                          0,
		"Thu, 01 Jan 2026 00:00:30 GMT": 30 * time.Second,
		"Wed, 31 Dec 2025 23:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestJitterStaysWithinHalfAndOneAndAHalf(t *testing.T) {
	for range 1000 {
		if d := jitter(time.Second); d < 500*time.Millisecond || d >= 1500*time.Millisecond {
			t.Fatalf("jitter(1s) = %v", d)
		}
	}
}
