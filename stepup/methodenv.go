package stepup

import (
	"context"
	"net/http"
	"time"
)

// MethodEnv is what a tier's method is built from: the tier it reaches and
// what the module shares with every method.
type MethodEnv struct {
	// Tier is the tier's name; Root tells whether it has no base tier (a
	// method that identifies the user must be at a root tier, and only
	// there).
	Tier string
	Root bool
	// Users of the module's own directory (password hashes, roles,
	// provisioned TOTP secrets).
	Users map[string]*User
	// Keys derived from the module secret (Records encrypts secrets at rest
	// and keys opaque user handles).
	Keys Keys
	// Store holds short-lived state: counters, replay guards, ceremonies.
	Store Store
	// Blobs holds credentials (Caddy storage).
	Blobs Blobs
	// Now is the clock.
	Now func() time.Time
	// Resolve expands placeholders for a request (Caddy's replacer);
	// unknown placeholders expand to "".
	Resolve func(r *http.Request, expr string) string
}

// MethodBuilder is implemented by the method modules (Caddy guest modules
// in the namespace stepup.methods): each builds the Method of one tier
// from its own configuration and the environment.
type MethodBuilder interface {
	NewMethod(env MethodEnv) (Method, error)
}

// StoreProvider is implemented by the store modules (Caddy guest modules in
// the namespace stepup.stores).
type StoreProvider interface {
	// OpenStore returns the store; now is the engine's clock, by which
	// entries expire.
	OpenStore(now func() time.Time) (Store, error)
}

// Notifier is implemented by the notifier modules (Caddy guest modules in
// the namespace stepup.notifiers): approval policies tell approvers and
// other systems about an action through them (a signed webhook, an event).
// Notify must not block a request: a notifier queues and retries on its
// own, and an error is for the audit trail only.
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

// Notification is one event of an approval.
type Notification struct {
	// Event: requested, decided, expired, used or break_glass.
	Event string
	// ID names the approval; At is when the event happened.
	ID string
	At time.Time
	// Data is the event's JSON payload (never a secret).
	Data map[string]any
}
