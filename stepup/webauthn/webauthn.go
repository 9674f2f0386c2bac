// Package webauthn is the security-key and biometric method of
// caddy-stepup, on github.com/go-webauthn/webauthn: the browser-side
// ceremonies (begin: options for navigator.credentials; finish: the
// credential as PublicKeyCredential.toJSON() produces it), credentials
// kept in Caddy storage with their sign counters, single-use challenges
// bound to the session, user verification, clone detection and an
// optional AAGUID allow-list at enrolment.
package webauthn

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	gowebauthn "github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// Config configures a tier's WebAuthn method.
type Config struct {
	// RPID is the relying party id; empty: the request's host name.
	RPID string
	// RPName is shown by the browser; empty: the RP id.
	RPName string
	// Origins allowed in client data; empty: the request's own origin.
	Origins []string
	// UserVerification: required (default), preferred or discouraged.
	UserVerification string
	// Attestation: none (default), indirect or direct.
	Attestation string
	// ResidentKey: discouraged (default), preferred or required.
	ResidentKey string
	// Authenticators, when set, is the allow-list of AAGUIDs at enrolment.
	Authenticators []string
	// SelfEnroll lets users register keys while holding the base tier.
	SelfEnroll bool
	// Timeout of a ceremony. Default 5m.
	Timeout time.Duration

	Blobs stepup.Blobs
	Store stepup.Store
	// UserKey derives the opaque WebAuthn user handle from the user id.
	UserKey []byte
	Now     func() time.Time
}

// Method is the webauthn method of one tier.
type Method struct {
	cfg     Config
	uv      protocol.UserVerificationRequirement
	att     protocol.ConveyancePreference
	rk      protocol.ResidentKeyRequirement
	allowed map[uuid.UUID]bool
	mu      sync.Mutex // serialises read-modify-write of credential records
}

// New validates the configuration.
func New(c Config) (*Method, error) {
	m := &Method{cfg: c}
	switch c.UserVerification {
	case "", "required":
		m.uv = protocol.VerificationRequired
	case "preferred":
		m.uv = protocol.VerificationPreferred
	case "discouraged":
		m.uv = protocol.VerificationDiscouraged
	default:
		return nil, fmt.Errorf("user_verification must be required, preferred or discouraged, not %q", c.UserVerification)
	}
	switch c.Attestation {
	case "", "none":
		m.att = protocol.PreferNoAttestation
	case "indirect":
		m.att = protocol.PreferIndirectAttestation
	case "direct":
		m.att = protocol.PreferDirectAttestation
	default:
		return nil, fmt.Errorf("attestation must be none, indirect or direct, not %q", c.Attestation)
	}
	switch c.ResidentKey {
	case "", "discouraged":
		m.rk = protocol.ResidentKeyRequirementDiscouraged
	case "preferred":
		m.rk = protocol.ResidentKeyRequirementPreferred
	case "required":
		m.rk = protocol.ResidentKeyRequirementRequired
	default:
		return nil, fmt.Errorf("resident_key must be discouraged, preferred or required, not %q", c.ResidentKey)
	}
	if len(c.Authenticators) > 0 {
		m.allowed = map[uuid.UUID]bool{}
		for _, a := range c.Authenticators {
			id, err := uuid.Parse(a)
			if err != nil {
				return nil, fmt.Errorf("authenticators: %q is not an AAGUID", a)
			}
			m.allowed[id] = true
		}
	}
	for _, o := range c.Origins {
		if !strings.HasPrefix(o, "https://") && !strings.HasPrefix(o, "http://") {
			return nil, fmt.Errorf("origins: %q is not an origin (scheme://host[:port])", o)
		}
	}
	if m.cfg.Timeout <= 0 {
		m.cfg.Timeout = 5 * time.Minute
	}
	if m.cfg.Now == nil {
		m.cfg.Now = time.Now
	}
	if c.Blobs == nil || c.Store == nil || len(c.UserKey) == 0 {
		return nil, errors.New("webauthn: storage, store and user key are required")
	}
	return m, nil
}

// Name implements stepup.Method.
func (m *Method) Name() string { return "webauthn" }

// Identifies implements stepup.Method: keys confirm a known user.
func (m *Method) Identifies() bool { return false }

// SelfEnroll implements stepup.Enroller.
func (m *Method) SelfEnroll() bool { return m.cfg.SelfEnroll }

// Prompt implements stepup.Method.
func (m *Method) Prompt(string) stepup.Prompt {
	return stepup.Prompt{
		Title:    "Security key",
		Help:     "Use your security key, or your device's fingerprint, face or screen lock.",
		Ceremony: true,
		Submit:   "Use security key",
	}
}

// CredentialName implements stepup.CredentialNamer.
func (m *Method) CredentialName() string { return "security key" }

// RegistrationText implements stepup.CeremonyEnroller.
func (m *Method) RegistrationText() stepup.RegistrationText {
	return stepup.RegistrationText{
		Title:       "Register a security key",
		Help:        "Register a security key, or your device's fingerprint, face or screen lock, for this step.",
		NameLabel:   "Name for this key",
		DefaultName: "Security key",
		Submit:      "Register security key",
		NoScript:    "Registering a security key needs JavaScript.",
	}
}

// CredentialList implements stepup.CredentialKeeper.
func (m *Method) CredentialList(ctx context.Context, user string) ([]stepup.CredentialInfo, error) {
	creds, err := m.Credentials(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]stepup.CredentialInfo, len(creds))
	for i, c := range creds {
		out[i] = stepup.CredentialInfo{ID: c.ID(), Name: c.Nickname, Created: c.Created, LastUsed: c.LastUsed}
	}
	return out, nil
}

// Verify implements stepup.Method: there is no form to submit.
func (m *Method) Verify(context.Context, *stepup.Attempt) (*stepup.Outcome, error) {
	return &stepup.Outcome{Result: stepup.Rejected, Reason: "webauthn_needs_ceremony", Message: "Use the button to sign in with your security key."}, nil
}

// ErrRelyingParty means WebAuthn cannot work on this address: browsers
// refuse an IP address as relying party, and so does go-webauthn.
var ErrRelyingParty = stepup.ErrUnusableAddress

// relyingParty builds the go-webauthn instance for a request: configured
// values, or the request's own host and origin.
func (m *Method) relyingParty(r *http.Request) (*gowebauthn.WebAuthn, error) {
	wa, err := m.newRelyingParty(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRelyingParty, err)
	}
	return wa, nil
}

func (m *Method) newRelyingParty(r *http.Request) (*gowebauthn.WebAuthn, error) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	rpID := m.cfg.RPID
	if rpID == "" {
		rpID = host
	}
	origins := m.cfg.Origins
	if len(origins) == 0 {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		origins = []string{scheme + "://" + r.Host}
	}
	name := m.cfg.RPName
	if name == "" {
		name = rpID
	}
	return gowebauthn.New(&gowebauthn.Config{
		RPID: rpID, RPDisplayName: name, RPOrigins: origins,
		AttestationPreference: m.att,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			UserVerification: m.uv, ResidentKey: m.rk, RequireResidentKey: protocol.ResidentKeyRequired(),
		},
		Timeouts: gowebauthn.TimeoutsConfig{
			Login:        gowebauthn.TimeoutConfig{Enforce: true, Timeout: m.cfg.Timeout, TimeoutUVD: m.cfg.Timeout},
			Registration: gowebauthn.TimeoutConfig{Enforce: true, Timeout: m.cfg.Timeout, TimeoutUVD: m.cfg.Timeout},
		},
	})
}

// Credential is a registered key.
type Credential struct {
	Credential gowebauthn.Credential `json:"credential"`
	Nickname   string                `json:"nickname"`
	Created    time.Time             `json:"created"`
	LastUsed   time.Time             `json:"last_used,omitzero"`
}

// ID is the credential id, base64url.
func (c Credential) ID() string { return base64.RawURLEncoding.EncodeToString(c.Credential.ID) }

// AAGUID names the authenticator model.
func (c Credential) AAGUID() string {
	id, err := uuid.FromBytes(c.Credential.Authenticator.AAGUID)
	if err != nil {
		return ""
	}
	return id.String()
}

type record struct {
	Credentials []Credential `json:"credentials"`
}

func (m *Method) key(user string) string {
	sum := sha256.Sum256([]byte("webauthn-user:" + user))
	return "stepup/webauthn/" + hex.EncodeToString(sum[:16])
}

// Credentials returns the user's registered keys.
func (m *Method) Credentials(ctx context.Context, user string) ([]Credential, error) {
	raw, err := m.cfg.Blobs.Load(ctx, m.key(user))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading credentials: %w", err)
	}
	var rec record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("decoding credentials: %w", err)
	}
	return rec.Credentials, nil
}

func (m *Method) save(ctx context.Context, user string, creds []Credential) error {
	if len(creds) == 0 {
		return m.cfg.Blobs.Delete(ctx, m.key(user))
	}
	raw, err := json.Marshal(record{Credentials: creds})
	if err != nil {
		return err
	}
	return m.cfg.Blobs.Store(ctx, m.key(user), raw)
}

// Enrolled implements stepup.Enroller.
func (m *Method) Enrolled(ctx context.Context, user string) (bool, error) {
	creds, err := m.Credentials(ctx, user)
	return len(creds) > 0, err
}

// user adapts a user and their keys to go-webauthn.
type user struct {
	id    []byte
	name  string
	creds []gowebauthn.Credential
}

func (u *user) WebAuthnID() []byte                           { return u.id }
func (u *user) WebAuthnName() string                         { return u.name }
func (u *user) WebAuthnDisplayName() string                  { return u.name }
func (u *user) WebAuthnCredentials() []gowebauthn.Credential { return u.creds }

// handle is the opaque user handle: a MAC of the user id, so the
// authenticator never holds the user name and no mapping must be stored.
func (m *Method) handle(name string) []byte {
	mac := hmac.New(sha256.New, m.cfg.UserKey)
	mac.Write([]byte("webauthn-handle:" + name))
	return mac.Sum(nil)
}

func (m *Method) user(ctx context.Context, name string) (*user, []Credential, error) {
	creds, err := m.Credentials(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	u := &user{id: m.handle(name), name: name}
	for _, c := range creds {
		u.creds = append(u.creds, c.Credential)
	}
	return u, creds, nil
}

// Challenges: the session data of a ceremony waits in the store, bound to
// the session owner and the tier, and is taken (used once) by finish.

func ceremonyKey(kind, owner, tier string) string {
	return "webauthn:" + kind + ":" + owner + ":" + tier
}

func (m *Method) keep(ctx context.Context, key string, sd *gowebauthn.SessionData, extra string) error {
	raw, err := json.Marshal(struct {
		Session *gowebauthn.SessionData `json:"s"`
		Extra   string                  `json:"x,omitempty"`
	}{sd, extra})
	if err != nil {
		return err
	}
	return m.cfg.Store.Set(ctx, key, raw, m.cfg.Timeout)
}

func (m *Method) take(ctx context.Context, key string) (*gowebauthn.SessionData, string, error) {
	raw, err := m.cfg.Store.Take(ctx, key)
	if err != nil {
		return nil, "", err
	}
	var v struct {
		Session *gowebauthn.SessionData `json:"s"`
		Extra   string                  `json:"x"`
	}
	if err := json.Unmarshal(raw, &v); err != nil || v.Session == nil {
		return nil, "", errors.New("corrupt ceremony state")
	}
	return v.Session, v.Extra, nil
}

// ErrNoCredentials means the user has no registered key.
var ErrNoCredentials = stepup.ErrNoCredentials

// BeginLogin returns the options of an assertion for the user's keys.
func (m *Method) BeginLogin(r *http.Request, tier, owner, name string) ([]byte, error) {
	u, _, err := m.user(r.Context(), name)
	if err != nil {
		return nil, err
	}
	if len(u.creds) == 0 {
		return nil, ErrNoCredentials
	}
	wa, err := m.relyingParty(r)
	if err != nil {
		return nil, err
	}
	opts, sd, err := wa.BeginLogin(u, gowebauthn.WithUserVerification(m.uv))
	if err != nil {
		return nil, err
	}
	if err := m.keep(r.Context(), ceremonyKey("login", owner, tier), sd, ""); err != nil {
		return nil, err
	}
	return json.Marshal(opts)
}

func rejected(name, reason, msg string) *stepup.Outcome {
	return &stepup.Outcome{Result: stepup.Rejected, User: name, Reason: reason, Message: msg}
}

// FinishLogin verifies an assertion: the challenge of this session (used
// once), the origin and RP id, the signature with the user's own key, user
// verification when required, and a sign counter that moved forward.
func (m *Method) FinishLogin(r *http.Request, tier, owner, name string, body []byte) (*stepup.Outcome, error) {
	ctx := r.Context()
	sd, _, err := m.take(ctx, ceremonyKey("login", owner, tier))
	if err != nil {
		return rejected(name, "challenge_missing", "This sign-in expired or was already used. Try again."), nil
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		return rejected(name, "assertion_malformed", "Your security key's answer could not be read. Try again."), nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	wa, u, creds, err := m.ceremony(r, name)
	if err != nil {
		return nil, err
	}
	cred, err := wa.ValidateLogin(u, *sd, parsed)
	if err != nil {
		reason := "assertion_invalid"
		var perr *protocol.Error
		if errors.As(err, &perr) && strings.Contains(strings.ToLower(perr.Details+perr.DevInfo), "verif") {
			reason = "user_verification_missing"
		}
		return rejected(name, reason, "Your security key was not accepted. Try again, and verify with your fingerprint, face or PIN when asked."), nil
	}
	if cred.Authenticator.CloneWarning {
		return rejected(name, "sign_counter_regression", "This security key looks cloned and was not accepted. Contact your administrator."), nil
	}
	now := m.cfg.Now()
	for i := range creds {
		if string(creds[i].Credential.ID) == string(cred.ID) {
			creds[i].Credential.Authenticator = cred.Authenticator
			creds[i].Credential.Flags = cred.Flags
			creds[i].LastUsed = now
		}
	}
	if err := m.save(ctx, name, creds); err != nil {
		return nil, err
	}
	return &stepup.Outcome{Result: stepup.Accepted, User: name, Credential: "webauthn:" + base64.RawURLEncoding.EncodeToString(cred.ID)}, nil
}

// ceremony returns what finishing a ceremony needs: the relying party of
// the request and the user with their keys. The caller holds m.mu.
func (m *Method) ceremony(r *http.Request, name string) (*gowebauthn.WebAuthn, *user, []Credential, error) {
	wa, err := m.relyingParty(r)
	if err != nil {
		return nil, nil, nil, err
	}
	u, creds, err := m.user(r.Context(), name)
	return wa, u, creds, err
}

// MaxNickname bounds a key's nickname.
const MaxNickname = 64

// BeginRegistration returns the options to create a key for the user.
func (m *Method) BeginRegistration(r *http.Request, tier, owner, name, nickname string) ([]byte, error) {
	nickname = strings.TrimSpace(nickname)
	if nickname == "" {
		nickname = "Security key"
	}
	if !utf8.ValidString(nickname) || len(nickname) > MaxNickname {
		return nil, fmt.Errorf("nickname: at most %d characters", MaxNickname)
	}
	wa, err := m.relyingParty(r)
	if err != nil {
		return nil, err
	}
	u, _, err := m.user(r.Context(), name)
	if err != nil {
		return nil, err
	}
	var exclude []protocol.CredentialDescriptor
	for _, c := range u.creds {
		exclude = append(exclude, c.Descriptor())
	}
	opts, sd, err := wa.BeginRegistration(u, gowebauthn.WithExclusions(exclude))
	if err != nil {
		return nil, err
	}
	if err := m.keep(r.Context(), ceremonyKey("register", owner, tier), sd, nickname); err != nil {
		return nil, err
	}
	return json.Marshal(opts)
}

// FinishRegistration verifies a new credential and stores it.
func (m *Method) FinishRegistration(r *http.Request, tier, owner, name string, body []byte) (*stepup.Outcome, error) {
	ctx := r.Context()
	sd, nickname, err := m.take(ctx, ceremonyKey("register", owner, tier))
	if err != nil {
		return rejected(name, "challenge_missing", "This registration expired or was already used. Start again."), nil
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		return rejected(name, "attestation_malformed", "The new security key's answer could not be read. Try again."), nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	wa, u, creds, err := m.ceremony(r, name)
	if err != nil {
		return nil, err
	}
	cred, err := wa.CreateCredential(u, *sd, parsed)
	if err != nil {
		return rejected(name, "attestation_invalid", "The new security key was not accepted. Try again, and verify with your fingerprint, face or PIN when asked."), nil
	}
	c := Credential{Credential: *cred, Nickname: nickname, Created: m.cfg.Now()}
	if m.allowed != nil {
		id, err := uuid.FromBytes(cred.Authenticator.AAGUID)
		if err != nil || !m.allowed[id] {
			return rejected(name, "authenticator_not_allowed", "This kind of security key is not allowed here. Use one your organisation approved."), nil
		}
	}
	for _, old := range creds {
		if string(old.Credential.ID) == string(cred.ID) {
			return rejected(name, "credential_exists", "This security key is already registered."), nil
		}
	}
	if err := m.save(ctx, name, append(creds, c)); err != nil {
		return nil, err
	}
	return &stepup.Outcome{Result: stepup.Accepted, User: name, Credential: "webauthn:" + c.ID(), Reason: "registered"}, nil
}

// Remove deletes one of the user's keys.
func (m *Method) Remove(ctx context.Context, name, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	creds, err := m.Credentials(ctx, name)
	if err != nil {
		return false, err
	}
	kept := creds[:0]
	found := false
	for _, c := range creds {
		if c.ID() == id {
			found = true
			continue
		}
		kept = append(kept, c)
	}
	if !found {
		return false, nil
	}
	return true, m.save(ctx, name, kept)
}

var (
	_ stepup.Method   = (*Method)(nil)
	_ stepup.Enroller = (*Method)(nil)
)

var (
	_ stepup.CeremonyEnroller = (*Method)(nil)
	_ stepup.CredentialKeeper = (*Method)(nil)
	_ stepup.CredentialNamer  = (*Method)(nil)
)
