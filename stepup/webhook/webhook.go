// Package webhook delivers approval notifications as webhooks signed the
// way the Standard Webhooks specification says (https://www.standardwebhooks.com):
// a JSON POST with the headers webhook-id, webhook-timestamp and
// webhook-signature ("v1," and the base64 HMAC-SHA256 of
// "id.timestamp.body"). A Sender queues notifications and delivers them in
// the background with retries, so that a receiver's outage never holds up
// or fails a request.
//
// Nothing here imports Caddy: the module stepup.notifiers.webhook
// (caddymodule/notifiers/webhook) configures a Sender.
package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// The headers of the Standard Webhooks specification.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// secretPrefix marks a secret serialised as the specification does: the
// key's bytes in base64.
const secretPrefix = "whsec_"

// ErrEmptySecret: a webhook is never sent unsigned.
var ErrEmptySecret = errors.New("webhook secret is empty")

// ParseSecret returns the HMAC key of a configured secret: "whsec_" followed
// by base64 is decoded (the form the specification and its libraries use);
// anything else is taken as text and its bytes are the key.
//
// The reference libraries also base64-decode a secret without the prefix,
// so a receiver using one of them should be given the whsec_ form.
func ParseSecret(s string) ([]byte, error) {
	if s == "" {
		return nil, ErrEmptySecret
	}
	encoded, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return []byte(s), nil
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, fmt.Errorf("webhook secret: %s is not followed by base64: %w", secretPrefix, err)
	}
	if len(key) == 0 {
		return nil, ErrEmptySecret
	}
	return key, nil
}

// Sign returns the value of the webhook-signature header for one attempt to
// deliver body as message id at time at: "v1," and the base64 HMAC-SHA256
// under key of "id.unix-seconds.body".
func Sign(key []byte, id string, at time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, at.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// NewMessageID returns a new webhook-id: unique per message, the same for
// every attempt to deliver it, so that a receiver can drop duplicates. It
// holds no full stop, which the signed content uses as its separator.
func NewMessageID() string {
	return "msg_" + rand.Text()
}

// Payload is the body of the webhook for n, the structure the
// specification recommends:
//
//	{"type": "approval.<event>", "timestamp": "<RFC 3339>", "data": {…, "id": "<approval id>"}}
//
// data is n.Data with the approval's id under "id" (it replaces an "id" in
// n.Data). timestamp is when the event happened, which stays the same
// across retries, unlike webhook-timestamp.
func Payload(n stepup.Notification) ([]byte, error) {
	if n.Event == "" {
		return nil, errors.New("notification without an event")
	}
	data := make(map[string]any, len(n.Data)+1)
	maps.Copy(data, n.Data)
	data["id"] = n.ID
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Links to approval pages carry & and are easier to read unescaped.
	enc.SetEscapeHTML(false)
	err := enc.Encode(struct {
		Type      string         `json:"type"`
		Timestamp string         `json:"timestamp"`
		Data      map[string]any `json:"data"`
	}{"approval." + n.Event, n.At.UTC().Format(time.RFC3339Nano), data})
	if err != nil {
		return nil, fmt.Errorf("notification %s %s: %w", n.Event, n.ID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}
