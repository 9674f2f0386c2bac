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

// webhook is a notification as a receiver reads it.
type webhook struct {
	Type string         `json:"type"`
	Data map[string]any `json:"data"`
}

// webhookReceiver is a real local receiver that verifies the Standard
// Webhooks signature as a receiver would, with key; it returns the policy
// global with a notify to it (the secret from the environment) and what
// it receives.
func webhookReceiver(t *testing.T, global string) (string, <-chan webhook) {
	key := []byte("twenty-four bytes of key")
	t.Setenv("STEPUP_TEST_HOOK_SECRET", "whsec_"+base64.StdEncoding.EncodeToString(key))
	hooks := make(chan webhook, 10)
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
		var h webhook
		if err := json.Unmarshal(body, &h); err != nil {
			t.Error(err)
		}
		hooks <- h
	}))
	t.Cleanup(rcv.Close)
	withNotify := strings.Replace(global, "\t\t\texpire 15m\n",
		"\t\t\texpire 15m\n\t\t\tnotify "+rcv.URL+"/hook {\n\t\t\t\tsecret {env.STEPUP_TEST_HOOK_SECRET}\n\t\t\t\ttimeout 5s\n\t\t\t}\n", 1)
	if !strings.Contains(withNotify, "notify ") {
		t.Fatal("no policy to add notify to")
	}
	return withNotify, hooks
}

// A policy's `notify` through a real Caddy: every event of an approval
// reaches a real local receiver that verifies the Standard Webhooks
// signature as a receiver would, with the key from the environment.
func TestApprovalWebhooksAreSignedAndReachTheReceiver(t *testing.T) {
	global, hooks := webhookReceiver(t, approvalGlobal(t))
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

// On a site that answers any host, the Host header is the requester's to
// choose: an approval asked for with Host: evil.example must not send the
// approvers a link to evil.example, whose page would ask for their
// credentials. link_base fixes the links' scheme and host.
func TestApprovalLinksUseLinkBaseWhateverHostTheRequesterSends(t *testing.T) {
	global := strings.Replace(approvalGlobal(t), "\t\t\texpire 15m\n", "\t\t\texpire 15m\n\t\t\tlink_base https://app.example.com\n", 1)
	global, hooks := webhookReceiver(t, global)
	s := startCaddyAt(t, "http://:{PORT}", global, approvalSite) // a catch-all site
	bob := signedIn(s, "bob")
	id := approvalID(t, bob.post("/pay", url.Values{"amount": {"12"}}, "Host", "evil.example"))
	bob.get("/_stepup/approvals/"+id, "Host", "evil.example")
	bob.post("/_stepup/approvals/"+id, url.Values{"justification": {"rent"}}, "Host", "evil.example") // the policy asks for one
	select {
	case h := <-hooks:
		want := "https://app.example.com/_stepup/approvals/" + id
		if h.Type != "approval.requested" || h.Data["link"] != want {
			t.Fatalf("%s: link %v, want %s", h.Type, h.Data["link"], want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no webhook")
	}
}

// link_base is a scheme and a host, nothing else: anything more is a
// configuration error that names the policy and the line.
func TestApprovalLinkBaseRejectsWhatIsNotASchemeAndHost(t *testing.T) {
	for _, bad := range []string{"app.example.com", "javascript:alert(1)", "https://app.example.com/path", "https://user@app.example.com",
		"https://app.example.com/?q=1", "ftp://app.example.com", "https://"} {
		global := strings.Replace(approvalGlobal(t), "\t\t\texpire 15m\n", "\t\t\texpire 15m\n\t\t\tlink_base \""+bad+"\"\n", 1)
		_, _, err := adaptCaddyfile("{\n" + global + "\n}\n")
		if err == nil || !strings.Contains(err.Error(), `approval "payments"`) || !strings.Contains(err.Error(), "link_base") || !strings.Contains(err.Error(), "Caddyfile:") {
			t.Errorf("link_base %q: %v", bad, err)
		}
	}
}
