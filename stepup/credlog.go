package stepup

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"time"
)

// Credential changes (audit events, and what the status page lists).
const (
	ChangeEnroll  = "enroll"  // a first credential set up, or a further key added
	ChangeReplace = "replace" // a credential replaced by a new one
	ChangeRemove  = "remove"  // a credential removed
)

// CredentialChange is one change of a user's credentials.
type CredentialChange struct {
	Kind   string    `json:"k"`
	Tier   string    `json:"t"`
	Method string    `json:"m"`
	At     time.Time `json:"a"`
}

// maxCredentialChanges is how many changes are kept per user.
const maxCredentialChanges = 20

// CredentialLog keeps each user's recent credential changes in Caddy
// storage, beside the credentials, so that the status page can tell a user
// "Security code replaced on …" and a change they did not make stands out.
type CredentialLog struct {
	blobs Blobs
	key   []byte
}

// NewCredentialLog returns the log; blobs may be nil (nothing kept).
func NewCredentialLog(blobs Blobs, keys Keys) *CredentialLog {
	return &CredentialLog{blobs: blobs, key: keys.Records}
}

// path names a user's record without putting the user name in a file name.
func (l *CredentialLog) path(user string) string {
	m := hmac.New(sha256.New, l.key)
	m.Write([]byte("credlog:" + user))
	return "stepup/credential-changes/" + hex.EncodeToString(m.Sum(nil)[:16])
}

// Changes returns a user's recent changes, newest first.
func (l *CredentialLog) Changes(ctx context.Context, user string) ([]CredentialChange, error) {
	if l == nil || l.blobs == nil {
		return nil, nil
	}
	raw, err := l.blobs.Load(ctx, l.path(user))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []CredentialChange
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Add records a change.
func (l *CredentialLog) Add(ctx context.Context, user string, c CredentialChange) error {
	if l == nil || l.blobs == nil {
		return nil
	}
	old, err := l.Changes(ctx, user)
	if err != nil {
		old = nil // an unreadable history is replaced rather than blocking the change
	}
	all := append([]CredentialChange{c}, old...)
	if len(all) > maxCredentialChanges {
		all = all[:maxCredentialChanges]
	}
	raw, err := json.Marshal(all)
	if err != nil {
		return err
	}
	return l.blobs.Store(ctx, l.path(user), raw)
}

// CredentialChanged audits a credential change and records it for the
// user's status page.
func (e *Engine) CredentialChanged(ctx context.Context, log func(Record), user, kind, tier, method string) {
	log(Record{Event: kind, User: user, Tier: tier, AuthMethod: method, Result: "success"})
	_ = e.Credentials.Add(ctx, user, CredentialChange{Kind: kind, Tier: tier, Method: method, At: e.Now()})
}
