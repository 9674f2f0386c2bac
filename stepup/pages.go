package stepup

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"
)

// A method contributes its own pages through these interfaces: the web
// layer renders the walk and the shared layout, and asks a method only
// through them, so that a third party's method needs no change there.

// FormEnroller sets a credential up on a page with a form: the page shows
// what the method gives (a secret to scan or type in), and the user's
// answer confirms it (TOTP).
type FormEnroller interface {
	Enroller
	// BeginFormEnrolment starts (or resumes) the session's enrolment and
	// says what the page shows.
	BeginFormEnrolment(ctx context.Context, owner, user, host string) (*EnrolmentView, error)
	// ConfirmFormEnrolment checks the submitted form against the waiting
	// enrolment (ErrEnrolmentExpired when none waits); Accepted makes the
	// credential the user's.
	ConfirmFormEnrolment(ctx context.Context, owner, user string, form url.Values) (*Outcome, error)
	// EnrolmentImage is the PNG image of the waiting enrolment (a QR code).
	EnrolmentImage(ctx context.Context, owner, user, host string) ([]byte, error)
}

// EnrolmentView is what a form enrolment page shows.
type EnrolmentView struct {
	Title, Help string
	// ImageAlt describes the image (EnrolmentImage); "" for none.
	ImageAlt string
	// Secret is shown once, to be typed in by hand.
	Secret, SecretLabel, Details string
	// Link opens the credential on the device that holds the app.
	Link string
	// Prompt is the confirming form.
	Prompt Prompt
	// Notice is said below the form.
	Notice string
}

// ErrEnrolmentExpired means no enrolment waits for the session.
var ErrEnrolmentExpired = errors.New("enrolment expired")

// Ceremony runs a step in the browser, in two JSON calls (WebAuthn); the
// method's Prompt has Ceremony set.
type Ceremony interface {
	BeginLogin(r *http.Request, tier, owner, user string) ([]byte, error)
	FinishLogin(r *http.Request, tier, owner, user string, body []byte) (*Outcome, error)
}

// CeremonyEnroller registers credentials in the browser.
type CeremonyEnroller interface {
	Enroller
	Ceremony
	// RegistrationText is what the registration page says.
	RegistrationText() RegistrationText
	BeginRegistration(r *http.Request, tier, owner, user, name string) ([]byte, error)
	FinishRegistration(r *http.Request, tier, owner, user string, body []byte) (*Outcome, error)
}

// RegistrationText is a ceremony enroller's words on its page.
type RegistrationText struct {
	Title, Help, NameLabel, DefaultName, Submit, NoScript string
}

// CredentialKeeper lists a user's several credentials and removes one (a
// user's security keys).
type CredentialKeeper interface {
	CredentialList(ctx context.Context, user string) ([]CredentialInfo, error)
	Remove(ctx context.Context, user, id string) (bool, error)
}

// CredentialInfo describes a credential to its user, never a secret.
type CredentialInfo struct {
	ID, Name          string
	Created, LastUsed time.Time
}

// CredentialNamer names a method's credential for people ("authenticator
// app", "security key").
type CredentialNamer interface {
	CredentialName() string
}

// Errors a ceremony reports to the page.
var (
	// ErrNoCredentials: the user has no credential to step up with.
	ErrNoCredentials = errors.New("no credential registered")
	// ErrUnusableAddress: the method cannot work on this address (browsers
	// refuse WebAuthn on an IP address).
	ErrUnusableAddress = errors.New("cannot be used on this address")
)
