package caddymodule

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// A policy's `notify` through a real Caddy: every event of an approval
// reaches a real local receiver that verifies the Standard Webhooks
// signature as a receiver would, with the key from the environment.
func TestApprovalWebhooksAreSignedAndReachTheReceiver(t *testing.T) {
	key := []byte("twenty-four bytes of key")
	t.Setenv("STEPUP_TEST_HOOK_SECRET", "whsec_"+base64.StdEncoding.EncodeToString(key))
	type hook struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	hooks := make(chan hook, 10)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id + "." + ts + "." + string(body)))
		if r.Header.Get("webhook-signature") != "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
			t.Errorf("bad signature on %s", body)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var h hook
		if err := json.Unmarshal(body, &h); err != nil {
			t.Error(err)
		}
		hooks <- h
	}))
	defer rcv.Close()

	global := strings.Replace(approvalGlobal(t), "\t\t\texpire 15m\n",
		"\t\t\texpire 15m\n\t\t\tnotify "+rcv.URL+"/hook {\n\t\t\t\tsecret {env.STEPUP_TEST_HOOK_SECRET}\n\t\t\t\ttimeout 5s\n\t\t\t}\n", 1)
	if !strings.Contains(global, "notify ") {
		t.Fatal("no policy to add notify to")
	}
	s := startCaddy(t, global, approvalSite)
	bob := signedIn(s, "bob")
	id := approvalID(t, bob.post("/pay", url.Values{"amount": {"12"}}))
	bob.get("/_stepup/approvals/" + id)
	bob.post("/_stepup/approvals/"+id, url.Values{"justification": {"rent"}})
	for _, u := range []string{"carol", "dave"} {
		decide(t, signedIn(s, u), u, id, "approve", "fine")
	}
	bob.get("/_stepup/approvals/" + id)
	if r := bob.post("/_stepup/approvals/"+id+"/send", nil); r.StatusCode != 200 {
		t.Fatalf("send: %d", r.StatusCode)
	}
	// Delivery is in the background, by two workers: the order may vary.
	got := map[string]bool{}
	for range 3 {
		select {
		case h := <-hooks:
			if h.Data["id"] != id || got[h.Type] {
				t.Fatalf("webhook %s for %v (got %v)", h.Type, h.Data["id"], got)
			}
			if link, _ := h.Data["link"].(string); !strings.Contains(link, "/_stepup/approvals/"+id) {
				t.Errorf("%s: link %q", h.Type, link)
			}
			got[h.Type] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("webhooks received: %v", got)
		}
	}
	for _, want := range []string{"approval.requested", "approval.decided", "approval.used"} {
		if !got[want] {
			t.Errorf("no %s webhook (got %v)", want, got)
		}
	}
}
