package totp

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// Lockout bounds wrong codes per user: after Failures consecutive wrong
// codes the user's TOTP is locked for Duration, doubled at each further
// lock within a day, up to Max.
type Lockout struct {
	Failures int
	Duration time.Duration
	Max      time.Duration
}

func (l *Lockout) defaults() {
	if l.Failures <= 0 {
		l.Failures = 5
	}
	if l.Duration <= 0 {
		l.Duration = time.Minute
	}
	if l.Max <= 0 {
		l.Max = time.Hour
	}
}

// Method is the totp method of one tier.
type Method struct {
	opts        Options
	selfEnroll  bool
	issuer      string
	lockout     Lockout
	provisioned map[string][]byte // user -> secret, from the configuration
	vault       *Vault
	store       stepup.Store
	now         func() time.Time
	scope       string // the code parameters, for the replay guard's keys
}

// Config builds a Method.
type Config struct {
	Options Options
	// SelfEnroll lets users enrol while holding the tier's base tier.
	SelfEnroll bool
	// Issuer names the service in authenticator apps; empty: the site's host.
	Issuer  string
	Lockout Lockout
	// Provisioned secrets by user id, from the configuration.
	Provisioned map[string][]byte
	Vault       *Vault
	Store       stepup.Store
	Now         func() time.Time
}

// New validates the options and returns the method.
func New(c Config) (*Method, error) {
	opts, err := c.Options.WithDefaults()
	if err != nil {
		return nil, err
	}
	c.Lockout.defaults()
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Vault == nil || c.Store == nil {
		return nil, errors.New("totp: vault and store are required")
	}
	return &Method{opts: opts, selfEnroll: c.SelfEnroll, issuer: c.Issuer, lockout: c.Lockout,
		provisioned: c.Provisioned, vault: c.Vault, store: c.Store, now: c.Now,
		scope: fmt.Sprintf("%s/%d/%d", opts.Algorithm, opts.Digits, int(opts.Period/time.Second))}, nil
}

// Name implements stepup.Method.
func (m *Method) Name() string { return "totp" }

// Identifies implements stepup.Method: TOTP confirms a known user.
func (m *Method) Identifies() bool { return false }

// OwnLockout implements stepup.OwnLockout: wrong codes lock the user here.
func (m *Method) OwnLockout() bool { return true }

// SelfEnroll implements stepup.Enroller.
func (m *Method) SelfEnroll() bool { return m.selfEnroll }

// Prompt implements stepup.Method.
func (m *Method) Prompt(string) stepup.Prompt {
	return stepup.Prompt{
		Title:  "Security code",
		Help:   "Enter the " + strconv.Itoa(m.opts.Digits) + "-digit code your authenticator app shows.",
		Fields: []stepup.Field{{Name: "code", Label: "Code", Type: "text", Autocomplete: "one-time-code", InputMode: "numeric"}},
		Submit: "Verify",
	}
}

// secret returns the user's secret: an enrolled one first, else one
// provisioned in the configuration.
func (m *Method) secret(ctx context.Context, user string) ([]byte, error) {
	s, err := m.vault.Load(ctx, user)
	if errors.Is(err, ErrNoSecret) {
		if p, ok := m.provisioned[user]; ok {
			return p, nil
		}
	}
	return s, err
}

// Enrolled implements stepup.Enroller.
func (m *Method) Enrolled(ctx context.Context, user string) (bool, error) {
	_, err := m.secret(ctx, user)
	if errors.Is(err, ErrNoSecret) {
		return false, nil
	}
	return err == nil, err
}

func lockKey(user string) string    { return "totp:lock:" + user }
func attemptKey(user string) string { return "totp:attempts:" + user }
func lockLevel(user string) string  { return "totp:locks:" + user }
func failKey(user string) string    { return "totp:fail:" + user }

// The replay guard is kept per code parameters: step numbers of a 60 s
// tier are not comparable with those of a 30 s one, and a code of one
// algorithm is not a code of another.
func (m *Method) lastKey(user string) string { return "totp:last:" + m.scope + ":" + user }
func (m *Method) stepKey(user string, c uint64) string {
	return "totp:step:" + m.scope + ":" + user + ":" + strconv.FormatUint(c, 10)
}

// LockedUntil reports until when the user's TOTP is locked.
func (m *Method) LockedUntil(ctx context.Context, user string) (time.Time, bool) {
	raw, err := m.store.Get(ctx, lockKey(user))
	if errors.Is(err, stepup.ErrNotFound) {
		return time.Time{}, false
	}
	var until time.Time
	if err != nil || until.UnmarshalText(raw) != nil {
		// The lock state cannot be read: fail closed for a short while.
		return m.now().Add(time.Minute), true
	}
	return until, m.now().Before(until)
}

// Verify implements stepup.Method.
func (m *Method) Verify(ctx context.Context, a *stepup.Attempt) (*stepup.Outcome, error) {
	user := a.User
	if out, err := m.reserve(ctx, user); out != nil || err != nil {
		return out, err
	}
	secret, err := m.secret(ctx, user)
	if errors.Is(err, ErrNoSecret) {
		return &stepup.Outcome{Result: stepup.Rejected, User: user, Reason: "not_enrolled", Message: "No authenticator app is set up for your account."}, nil
	}
	if err != nil {
		return nil, err
	}
	step, ok := m.opts.Match(secret, a.Form.Get("code"), m.now())
	if !ok {
		return m.fail(ctx, user, "bad_code", "That code is not correct. Check the time on your device and enter the current code.")
	}
	if replayed, err := m.claim(ctx, user, step); err != nil {
		return nil, err
	} else if replayed {
		return m.fail(ctx, user, "replayed_code", "That code was already used. Wait for the next code and enter it.")
	}
	m.succeeded(ctx, user)
	_ = m.store.Delete(ctx, lockLevel(user))
	return &stepup.Outcome{Result: stepup.Accepted, User: user, Credential: "totp"}, nil
}

// reserve counts an attempt before its code is checked, so that codes
// guessed in parallel cannot all be checked before the first failure is
// counted: once the count is past the limit, no further code is checked
// until the lock ends. It returns an outcome when the attempt is refused.
func (m *Method) reserve(ctx context.Context, user string) (*stepup.Outcome, error) {
	if until, locked := m.LockedUntil(ctx, user); locked {
		return &stepup.Outcome{Result: stepup.Rejected, User: user, Reason: "locked", Message: lockedMessage(until.Sub(m.now()))}, nil
	}
	n, err := m.store.Incr(ctx, attemptKey(user), 24*time.Hour)
	if err != nil {
		return nil, err
	}
	if n > int64(m.lockout.Failures) {
		return &stepup.Outcome{Result: stepup.Rejected, User: user, Reason: "locked", Message: lockedMessage(m.lockout.Duration)}, nil
	}
	return nil, nil
}

// claim marks a time step as used by the user. A step is used once, and
// never one at or before the last step accepted (RFC 6238 §5.2): a code
// seen over someone's shoulder is worthless once it has been used.
func (m *Method) claim(ctx context.Context, user string, step uint64) (replayed bool, err error) {
	window := time.Duration(2*m.opts.Skew+2) * m.opts.Period
	if raw, err := m.store.Get(ctx, m.lastKey(user)); err == nil {
		if last, perr := strconv.ParseUint(string(raw), 10, 64); perr == nil && step <= last {
			return true, nil
		}
	} else if !errors.Is(err, stepup.ErrNotFound) {
		return false, err
	}
	ok, err := m.store.SetIfAbsent(ctx, m.stepKey(user, step), []byte("1"), window)
	if err != nil || !ok {
		return !ok, err
	}
	return false, m.store.Set(ctx, m.lastKey(user), []byte(strconv.FormatUint(step, 10)), window)
}

// fail counts a wrong code and locks the user's TOTP when the count
// reaches the limit, for longer at each lock.
func (m *Method) fail(ctx context.Context, user, reason, msg string) (*stepup.Outcome, error) {
	n, err := m.store.Incr(ctx, failKey(user), 24*time.Hour)
	if err != nil {
		return nil, err
	}
	out := &stepup.Outcome{Result: stepup.Rejected, User: user, Reason: reason, Message: msg}
	if n < int64(m.lockout.Failures) {
		return out, nil
	}
	level, err := m.store.Incr(ctx, lockLevel(user), 24*time.Hour)
	if err != nil {
		return nil, err
	}
	d := m.lockout.Duration
	for i := int64(1); i < level && d < m.lockout.Max; i++ {
		d *= 2
	}
	d = min(d, m.lockout.Max)
	until := m.now().Add(d)
	raw, _ := until.MarshalText()
	if err := m.store.Set(ctx, lockKey(user), raw, d); err != nil {
		return nil, err
	}
	_ = m.store.Delete(ctx, failKey(user))
	_ = m.store.Delete(ctx, attemptKey(user))
	out.Reason, out.Message = "locked_out", lockedMessage(d)
	return out, nil
}

// succeeded clears the user's counts after a right code.
func (m *Method) succeeded(ctx context.Context, user string) {
	_ = m.store.Delete(ctx, failKey(user))
	_ = m.store.Delete(ctx, attemptKey(user))
}

func lockedMessage(d time.Duration) string {
	mins := int((d + time.Minute - 1) / time.Minute)
	unit := "minutes"
	if mins == 1 {
		unit = "minute"
	}
	return fmt.Sprintf("Too many wrong codes. Security codes are locked for your account; try again in %d %s.", mins, unit)
}

// Enrolment: a new secret waits, encrypted, in the session store until the
// user proves with a code that the app holds it.

// Enrolment is a secret waiting for its confirmation.
type Enrolment struct {
	Secret []byte
	URI    string
}

func enrolKey(owner string) string { return "totp:enrol:" + owner }

// BeginEnrolment returns the session's waiting enrolment, or starts one.
func (m *Method) BeginEnrolment(ctx context.Context, owner, user, host string) (*Enrolment, error) {
	if e, err := m.PendingEnrolment(ctx, owner, user, host); err == nil {
		return e, nil
	}
	secret := m.opts.NewSecret()
	if err := m.store.Set(ctx, enrolKey(owner), m.vault.seal(secret, "enrol:"+owner+":"+user), 10*time.Minute); err != nil {
		return nil, err
	}
	return &Enrolment{Secret: secret, URI: m.opts.KeyURI(m.issuerFor(host), user, secret)}, nil
}

// PendingEnrolment returns the session's waiting enrolment.
func (m *Method) PendingEnrolment(ctx context.Context, owner, user, host string) (*Enrolment, error) {
	raw, err := m.store.Get(ctx, enrolKey(owner))
	if err != nil {
		return nil, err
	}
	secret, err := m.vault.open(raw, "enrol:"+owner+":"+user)
	if err != nil {
		return nil, err
	}
	return &Enrolment{Secret: secret, URI: m.opts.KeyURI(m.issuerFor(host), user, secret)}, nil
}

func (m *Method) issuerFor(host string) string {
	if m.issuer != "" {
		return m.issuer
	}
	return host
}

// ErrEnrolmentExpired means there is no waiting enrolment to confirm.
var ErrEnrolmentExpired = stepup.ErrEnrolmentExpired

// CredentialName implements stepup.CredentialNamer.
func (m *Method) CredentialName() string { return "authenticator app" }

// BeginFormEnrolment implements stepup.FormEnroller: the QR code and key
// of a new secret, and the form whose code confirms it.
func (m *Method) BeginFormEnrolment(ctx context.Context, owner, user, host string) (*stepup.EnrolmentView, error) {
	en, err := m.BeginEnrolment(ctx, owner, user, host)
	if err != nil {
		return nil, err
	}
	o := m.opts
	return &stepup.EnrolmentView{
		Title:       "Set up your authenticator app",
		Help:        "Scan this code with an authenticator app (Google Authenticator, Microsoft Authenticator, FreeOTP, 1Password, …), then enter the code it shows to finish.",
		ImageAlt:    "QR code for your authenticator app",
		Secret:      ManualKey(en.Secret),
		SecretLabel: "Can't scan? Enter the key by hand",
		Details:     "Time-based, " + strconv.Itoa(o.Digits) + " digits, every " + strconv.Itoa(int(o.Period.Seconds())) + " seconds, " + o.Algorithm + ".",
		Link:        en.URI,
		Prompt: stepup.Prompt{
			Fields: []stepup.Field{{Name: "code", Label: "Code from the app", Type: "text", Autocomplete: "one-time-code", InputMode: "numeric"}},
			Submit: "Finish setup",
		},
		Notice: "This key is shown only now; after setup it cannot be displayed again.",
	}, nil
}

// ConfirmFormEnrolment implements stepup.FormEnroller.
func (m *Method) ConfirmFormEnrolment(ctx context.Context, owner, user string, form url.Values) (*stepup.Outcome, error) {
	return m.ConfirmEnrolment(ctx, owner, user, form.Get("code"))
}

// EnrolmentImage implements stepup.FormEnroller: the QR code of the
// waiting secret.
func (m *Method) EnrolmentImage(ctx context.Context, owner, user, host string) ([]byte, error) {
	en, err := m.PendingEnrolment(ctx, owner, user, host)
	if err != nil {
		return nil, ErrEnrolmentExpired
	}
	return QRCode(en.URI, 240)
}

// ConfirmEnrolment checks a code against the waiting secret; when it
// matches, the secret becomes the user's (replacing any earlier one) and
// the code's time step counts as used. A wrong code counts towards the
// lockout like any other.
func (m *Method) ConfirmEnrolment(ctx context.Context, owner, user, code string) (*stepup.Outcome, error) {
	e, err := m.PendingEnrolment(ctx, owner, user, "")
	if err != nil {
		return nil, ErrEnrolmentExpired
	}
	if out, err := m.reserve(ctx, user); out != nil || err != nil {
		return out, err
	}
	step, ok := m.opts.Match(e.Secret, code, m.now())
	if !ok {
		return m.fail(ctx, user, "bad_code", "That code is not correct. Scan the code again, or check the time on your device.")
	}
	if err := m.vault.Save(ctx, user, e.Secret); err != nil {
		return nil, err
	}
	_ = m.store.Delete(ctx, enrolKey(owner))
	if _, err := m.claim(ctx, user, step); err != nil {
		return nil, err
	}
	m.succeeded(ctx, user)
	return &stepup.Outcome{Result: stepup.Accepted, User: user, Credential: "totp", Reason: "enrolled"}, nil
}

var (
	_ stepup.Method          = (*Method)(nil)
	_ stepup.FormEnroller    = (*Method)(nil)
	_ stepup.CredentialNamer = (*Method)(nil)
	_ stepup.OwnLockout      = (*Method)(nil)
)
