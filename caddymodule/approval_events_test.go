package caddymodule

import (
	"context"
	"net/url"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// eventRecorder is an events.handlers module for tests: it records the
// events Caddy's events app hands it, as `events { on … }` configures.
type eventRecorder struct{}

var recordedEvents struct {
	sync.Mutex
	list []caddy.Event
}

func init() { caddy.RegisterModule(eventRecorder{}) }

func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.stepup_test_recorder", New: func() caddy.Module { return new(eventRecorder) }}
}

func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	recordedEvents.Lock()
	recordedEvents.list = append(recordedEvents.list, e)
	recordedEvents.Unlock()
	return nil
}

func (*eventRecorder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

func takeEvents() []caddy.Event {
	recordedEvents.Lock()
	defer recordedEvents.Unlock()
	out := recordedEvents.list
	recordedEvents.list = nil
	return out
}

func TestApprovalEventsReachCaddysEventsApp(t *testing.T) {
	takeEvents()
	events := `
	events {
		on approval.requested stepup_test_recorder
		on approval.decided stepup_test_recorder
		on approval.used stepup_test_recorder
		on approval.break_glass stepup_test_recorder
		on approval.expired stepup_test_recorder
	}`
	s := startCaddy(t, approvalGlobal(t)+events, approvalSite)
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
	var names []string
	for _, e := range takeEvents() {
		if e.Data["id"] != id {
			continue
		}
		names = append(names, e.Name())
		if e.Name() == "approval.decided" && (e.Data["decision"] != "approved" || e.Data["approver"] != "dave") {
			t.Errorf("decided event data: %v", e.Data)
		}
		for _, secretish := range []string{"body", "binding", "digest"} {
			if _, ok := e.Data[secretish]; ok {
				t.Errorf("event %s carries %q", e.Name(), secretish)
			}
		}
	}
	want := []string{"approval.requested", "approval.decided", "approval.used"}
	if len(names) != len(want) {
		t.Fatalf("events = %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("events = %v, want %v", names, want)
		}
	}
}
