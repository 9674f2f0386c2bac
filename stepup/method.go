package stepup

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Result is the outcome of one round of a method.
type Result int

const (
	// Rejected: the answer was wrong (counted against brute-force limits).
	Rejected Result = iota
	// Accepted: the tier is reached.
	Accepted
	// Challenged: another round is needed (RADIUS Access-Challenge); the
	// Outcome carries the prompt and the state for the next round.
	Challenged
	// Unavailable: the method could not decide (a back end is down). The
	// session is unchanged and nothing is counted against the user.
	Unavailable
)

func (r Result) String() string {
	switch r {
	case Accepted:
		return "success"
	case Challenged:
		return "challenge"
	case Unavailable:
		return "unavailable"
	default:
		return "failure"
	}
}

// Attempt is one submission of a step-up form.
type Attempt struct {
	// Tier being reached.
	Tier string
	// User is the session's user; empty when the method identifies the user
	// (a root login), which then reads the user name from the form.
	User string
	// Form holds the posted fields (username, password, code, state, ...).
	Form url.Values
	// Round is the state of a multi-round method from the previous
	// Challenged outcome, or nil on the first round.
	Round *Round
	// ClientIP is the client's address, for methods that pass it on.
	ClientIP string
	// Request is the HTTP request of the attempt, for methods that expand
	// placeholders (may be nil).
	Request *http.Request
}

// Round is the state carried between the rounds of a multi-round method.
type Round struct {
	// Prompt is shown to the user (already safe to display as text).
	Prompt string `json:"p,omitempty"`
	// State is opaque to the engine (e.g. the RADIUS State attribute).
	State []byte `json:"s,omitempty"`
	// Expires ends the round.
	Expires time.Time `json:"e"`
	// User is whom the round was started for, Tier and Method the step
	// it belongs to (set by the engine): a round answers nothing else.
	User   string `json:"u,omitempty"`
	Tier   string `json:"t,omitempty"`
	Method string `json:"m,omitempty"`
}

// Outcome is what a method decided.
type Outcome struct {
	Result Result
	// User and Roles: the identity established (identifying methods) or
	// confirmed (others).
	User  string
	Roles []string
	// Credential names what was used (user name, credential id); never a
	// secret.
	Credential string
	// Message is shown to the user; it must not reveal why precisely an
	// answer was wrong (no user enumeration).
	Message string
	// Reason goes to the audit trail (no secrets).
	Reason string
	// Round is the next round for Challenged.
	Round *Round
	// Method names the method that decided, among a tier's alternatives
	// (set by whoever asked it; "" means the tier's first).
	Method string
}

// Field describes one input of a step-up form.
type Field struct {
	Name         string
	Label        string
	Type         string // text, password, ...
	Autocomplete string
	InputMode    string
}

// Prompt describes the step page of a method.
type Prompt struct {
	// Title names the step ("Password", "Security code").
	Title string
	// Help is a sentence shown above the form.
	Help string
	// Fields are the form's inputs.
	Fields []Field
	// Submit is the button label.
	Submit string
	// Ceremony: the step runs in the browser (WebAuthn) through the
	// module's script, not a form.
	Ceremony bool
}

// Method verifies the step that reaches a tier. The same interface carries
// every method: form methods (password, TOTP), multi-round methods (RADIUS
// with Access-Challenge, through Round); a method whose Prompt has
// Ceremony set (WebAuthn) runs its step in the browser instead.
type Method interface {
	// Name is the method's configuration name.
	Name() string
	// Identifies is true for methods that establish who the user is (the
	// root login); others confirm the session's user.
	Identifies() bool
	// Prompt describes the form for a user (empty for identifying methods).
	Prompt(user string) Prompt
	// Verify checks one round.
	Verify(ctx context.Context, a *Attempt) (*Outcome, error)
}

// RequestIdentity is implemented by methods whose identity is established
// earlier in the route (external): the engine asks on every request.
type RequestIdentity interface {
	Identify(r *http.Request) (user string, roles []string, ok bool)
}

// Enroller is implemented by methods that need a per-user credential the
// user can enrol (TOTP secrets, WebAuthn keys).
type Enroller interface {
	// Enrolled reports whether the user has a usable credential.
	Enrolled(ctx context.Context, user string) (bool, error)
	// SelfEnroll reports whether users may enrol while holding the base tier.
	SelfEnroll() bool
}

// OwnLockout is implemented by methods that limit wrong answers per user
// themselves (TOTP's growing lockout); the engine then applies only its
// per-client limit to them.
type OwnLockout interface {
	OwnLockout() bool
}
