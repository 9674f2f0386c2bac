package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Webhook
		wantErr  string // a part of the error; errors name the line
	}{
		{name: "full", in: `notify https://hooks.example/stepup {
			secret {env.HOOK_SECRET}
			timeout 5s
			attempts 3
			queue 50
		}`, want: Webhook{URL: "https://hooks.example/stepup", Secret: "{env.HOOK_SECRET}", Timeout: caddy.Duration(5 * time.Second), Attempts: 3, Queue: 50}},
		{name: "named webhook", in: `webhook http://127.0.0.1:9000/ {
			secret whsec_c2VjcmV0
		}`, want: Webhook{URL: "http://127.0.0.1:9000/", Secret: "whsec_c2VjcmV0"}},
		{name: "no url", in: `notify`, wantErr: "notify: missing URL, at Testfile:1"},
		{name: "two urls", in: `notify https://a.example https://b.example { secret s }`, wantErr: "at Testfile:1"},
		{name: "no secret", in: `notify https://a.example`, wantErr: "missing secret, at Testfile:1"},
		{name: "no secret in block", in: "notify https://a.example {\n\tqueue 5\n}", wantErr: "missing secret, at Testfile:"},
		{name: "unknown option", in: "notify https://a.example {\n\tsecret s\n\tretries 3\n}", wantErr: `notify has no option "retries", at Testfile:3`},
		{name: "duplicate", in: "notify https://a.example {\n\tsecret s\n\tsecret t\n}", wantErr: "secret: given more than once, at Testfile:3"},
		{name: "bad duration", in: "notify https://a.example {\n\tsecret s\n\ttimeout soon\n}", wantErr: "at Testfile:3"},
		{name: "zero attempts", in: "notify https://a.example {\n\tsecret s\n\tattempts 0\n}", wantErr: "want a positive number, at Testfile:3"},
		{name: "bad queue", in: "notify https://a.example {\n\tsecret s\n\tqueue many\n}", wantErr: "at Testfile:3"},
		{name: "secret without value", in: "notify https://a.example {\n\tsecret\n}", wantErr: "at Testfile:2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Webhook
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		w  Webhook
		ok bool
	}{
		{Webhook{URL: "https://hooks.example/x", Secret: "s"}, true},
		{Webhook{URL: "http://127.0.0.1:8080/", Secret: "s"}, true},
		{Webhook{URL: "ftp://hooks.example/x", Secret: "s"}, false},
		{Webhook{URL: "hooks.example/x", Secret: "s"}, false},
		{Webhook{URL: "https://hooks.example/x"}, false},
		{Webhook{URL: "https://hooks.example/x", Secret: "s", Attempts: -1}, false},
	} {
		if err := tc.w.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v", tc.w, err)
		}
	}
}

// The module as a host loads it: from the JSON a Caddyfile gives, through
// Caddy's module loader (Provision, Validate), the secret from the
// environment; a real local receiver verifies the signature; the end of
// the config's context runs Cleanup.
func TestLoadedModuleSendsSignedWebhooks(t *testing.T) {
	const secret = "a secret from the environment"
	t.Setenv("STEPUP_TEST_WEBHOOK_SECRET", secret)
	type received struct {
		header http.Header
		body   []byte
	}
	got := make(chan received, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- received{r.Header.Clone(), body}
	}))
	defer srv.Close()

	var w Webhook
	if err := w.UnmarshalCaddyfile(caddyfile.NewTestDispenser("notify " + srv.URL + " {\n\tsecret {env.STEPUP_TEST_WEBHOOK_SECRET}\n\ttimeout 5s\n}")); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	mod, err := ctx.LoadModuleByID("stepup.notifiers.webhook", raw)
	if err != nil {
		t.Fatal(err)
	}
	notifier := mod.(stepup.Notifier)
	if err := notifier.Notify(context.Background(), stepup.Notification{Event: "decided", ID: "ap_9", At: time.Now(),
		Data: map[string]any{"decision": "approved"}}); err != nil {
		t.Fatal(err)
	}
	var r received
	select {
	case r = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery")
	}
	// Verify as the specification says, with the text secret's bytes as key.
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(r.header.Get("webhook-id") + "." + r.header.Get("webhook-timestamp") + "." + string(r.body)))
	if want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); r.header.Get("webhook-signature") != want {
		t.Fatalf("signature %q, want %q", r.header.Get("webhook-signature"), want)
	}
	if !strings.Contains(string(r.body), `"type":"approval.decided"`) || !strings.Contains(string(r.body), `"id":"ap_9"`) {
		t.Fatalf("body %s", r.body)
	}
	cancel() // Cleanup
	if err := notifier.Notify(context.Background(), stepup.Notification{Event: "used", ID: "ap_9"}); err == nil {
		t.Fatal("Notify accepted after Cleanup")
	}
}

func TestProvisionRefusesAnUnsetSecret(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	_, err := ctx.LoadModuleByID("stepup.notifiers.webhook",
		json.RawMessage(`{"url":"https://hooks.example/","secret":"{env.STEPUP_TEST_UNSET_SECRET}"}`))
	if err == nil || !strings.Contains(err.Error(), "empty secret") {
		t.Fatalf("error %v", err)
	}
}

func TestCleanupAfterNoProvision(t *testing.T) {
	if err := new(Webhook).Cleanup(); err != nil {
		t.Fatal(err)
	}
}

func FuzzUnmarshalCaddyfile(f *testing.F) {
	f.Add("notify https://hooks.example/ {\n\tsecret s\n\ttimeout 5s\n\tattempts 3\n\tqueue 9\n}")
	f.Add("webhook http://x {\n}")
	f.Fuzz(func(t *testing.T, src string) {
		var w Webhook
		if w.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)) == nil && (w.URL == "" || w.Secret == "") {
			t.Fatalf("accepted %q without URL or secret", src)
		}
	})
}
