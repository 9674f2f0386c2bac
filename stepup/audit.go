package stepup

import (
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
	Tiers     []string
}

// Audit writes the audit trail to a zap logger.
type Audit struct{ log *zap.Logger }

// NewAudit wraps a logger (nil: discard).
func NewAudit(l *zap.Logger) *Audit {
	if l == nil {
		l = zap.NewNop()
	}
	return &Audit{log: l}
}

// Log writes one record.
func (a *Audit) Log(rec Record) {
	if a == nil {
		return
	}
	fields := make([]zap.Field, 0, 12)
	add := func(k, v string) {
		if v != "" {
			fields = append(fields, zap.String(k, v))
		}
	}
	add("user", rec.User)
	add("tier", rec.Tier)
	add("set", rec.Set)
	add("method", rec.Method)
	add("path", rec.Path)
	add("client_ip", rec.ClientIP)
	add("result", rec.Result)
	add("reason", rec.Reason)
	add("request_id", rec.RequestID)
	add("session", rec.Session)
	if len(rec.Tiers) > 0 {
		fields = append(fields, zap.Strings("tiers", rec.Tiers))
	}
	a.log.Info(rec.Event, fields...)
}
