package stepup

import (
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
)

// AuditLoggerName is the zap logger name of the audit trail.
const AuditLoggerName = "http.handlers.stepup.audit"

// Audit event kinds.
const (
	EventStepUp         = "stepup"          // one authentication attempt and its result
	EventLogOff         = "logoff"          // a user logged off at a tier
	EventLapse          = "lapse"           // levels dropped: max age, reload, cascade
	EventDenied         = "denied"          // a request lacked what its sets require
	EventAllowed        = "allowed"         // a request matching a transaction set passed
	EventReplay         = "replay"          // a kept request was replayed after step-up
	EventRateLimited    = "rate_limited"    // an attempt refused by brute-force limits
	EventIdentityChange = "identity_change" // an external identity changed under a session
	EventEnroll         = "enroll"          // a credential set up (TOTP secret, a first or further security key)
	EventReplace        = "replace"         // a credential replaced (a new TOTP secret)
	EventRemove         = "remove"          // a credential removed (a security key)

	EventApprovalRequested = "approval_requested" // an action waits for approval
	EventApprovalRefused   = "approval_refused"   // an action failed a policy's conditions
	EventApprovalVote      = "approval_vote"      // one approver's decision, short of the threshold
	EventApprovalDecided   = "approval_decided"   // an action approved or denied
	EventApprovalUsed      = "approval_used"      // an approval let its action through
	EventApprovalExpired   = "approval_expired"   // a request or an unused approval expired
	EventBreakGlass        = "break_glass"        // a requester approved their own action
)

// Record is one audit entry. It never carries a password, code or secret.
type Record struct {
	Event     string
	User      string
	Tier      string
	Set       string
	Method    string // HTTP method
	Path      string
	ClientIP  string
	Result    string // success, failure, challenge, unavailable, denied, ...
	Reason    string
	RequestID string
	Session   string // the session's stable owner handle, never the cookie id
	Tiers     string // held or closed tiers, comma-separated
	// AuthMethod is the authentication method concerned (password, totp,
	// webauthn, radius), for step-ups and credential changes.
	AuthMethod string
	// Approval fields: the approval's id and policy, each condition's
	// result (roles=ok,hours=fail), who decided and what they wrote, the
	// requester's justification, and the break-glass flag.
	Approval, Policy, Conditions     string
	Approver, Comment, Justification string
	BreakGlass                       bool
}

// Audit writes the audit trail to a zap logger, and hands every record to
// its taps (metrics, Caddy events), whether or not the log is written.
type Audit struct {
	log  *zap.Logger
	taps atomic.Pointer[[]func(Record)]
}

// Tap adds a function that sees every record. It must be quick and must
// not keep the record's strings beyond the call's need.
func (a *Audit) Tap(f func(Record)) {
	for {
		old := a.taps.Load()
		var next []func(Record)
		if old != nil {
			next = append(next, *old...)
		}
		next = append(next, f)
		if a.taps.CompareAndSwap(old, &next) {
			return
		}
	}
}

// NewAudit wraps a logger (nil: discard).
func NewAudit(l *zap.Logger) *Audit {
	if l == nil {
		l = zap.NewNop()
	}
	return &Audit{log: l}
}

// fieldPool recycles field slices: an audit record per sensitive request is
// on the hot path.
var fieldPool = sync.Pool{New: func() any { s := make([]zap.Field, 0, 19); return &s }}

// Enabled reports whether records are written at all, so callers can skip
// building them.
func (a *Audit) Enabled() bool { return a != nil && a.log.Core().Enabled(zap.InfoLevel) }

// Log writes one record.
func (a *Audit) Log(rec Record) {
	if a == nil {
		return
	}
	if taps := a.taps.Load(); taps != nil {
		for _, f := range *taps {
			f(rec)
		}
	}
	ce := a.log.Check(zap.InfoLevel, rec.Event)
	if ce == nil {
		return
	}
	fp := fieldPool.Get().(*[]zap.Field)
	fields := (*fp)[:0]
	for _, f := range [...]struct{ k, v string }{
		{"user", rec.User}, {"tier", rec.Tier}, {"set", rec.Set}, {"method", rec.Method},
		{"path", rec.Path}, {"client_ip", rec.ClientIP}, {"result", rec.Result}, {"reason", rec.Reason},
		{"request_id", rec.RequestID}, {"session", rec.Session}, {"tiers", rec.Tiers}, {"auth_method", rec.AuthMethod},
		{"approval", rec.Approval}, {"policy", rec.Policy}, {"conditions", rec.Conditions},
		{"approver", rec.Approver}, {"comment", rec.Comment}, {"justification", rec.Justification},
	} {
		if f.v != "" {
			fields = append(fields, zap.String(f.k, f.v))
		}
	}
	if rec.BreakGlass {
		fields = append(fields, zap.Bool("break_glass", true))
	}
	ce.Write(fields...)
	clear(fields)
	*fp = fields[:0]
	fieldPool.Put(fp)
}
