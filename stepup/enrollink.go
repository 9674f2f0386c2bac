package stepup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// An enrolment link is an administrator's one-time permission for one
// user to set up the credential of one tier's method: where the method
// does not let users enrol themselves, or where the user already has a
// credential they can no longer use (a lost key). The administrator
// vouches for the user; the user still signs in and holds the tier's base
// tier. The link is single use (spent by a successful enrolment), expires,
// and only works for its user. The store keeps a hash of the token, never
// the token.

// DefaultEnrolLinkTTL is how long a link works unless the administrator
// says otherwise.
const DefaultEnrolLinkTTL = 24 * time.Hour

// MaxEnrolLinkTTL bounds a link's validity.
const MaxEnrolLinkTTL = 30 * 24 * time.Hour

// Key prefixes of enrolment links.
const (
	keyEnrolLink  = "enl:"  // sha256(token) -> EnrolLink
	keyEnrolBound = "enlb:" // owner:tier:method -> token, once the user opened it
)

// EnrolLink is what a link allows.
type EnrolLink struct {
	User    string    `json:"user"`
	Tier    string    `json:"tier"`
	Method  string    `json:"method"`
	Expires time.Time `json:"expires"`
	// By is the administrator who issued it (audited).
	By string `json:"by,omitempty"`
}

// Errors of enrolment links.
var (
	// ErrEnrolLinkInvalid: used, expired, or never issued.
	ErrEnrolLinkInvalid = errors.New("enrolment link not valid")
	// ErrEnrolLinkOtherUser: the link is for someone else.
	ErrEnrolLinkOtherUser = errors.New("enrolment link issued for another user")
)

func linkKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return keyEnrolLink + hex.EncodeToString(sum[:])
}

func boundKey(owner, tier, method string) string {
	return keyEnrolBound + owner + ":" + tier + ":" + method
}

// EnrolMethod is the method of a tier that a link enrols: the named one,
// or the tier's first that users can set up on a page.
func (e *Engine) EnrolMethod(tier, method string) (Method, error) {
	if !e.Hierarchy.Has(tier) {
		return nil, fmt.Errorf("unknown tier %q", tier)
	}
	for _, m := range e.Alternatives[tier] {
		if method != "" && m.Name() != method {
			continue
		}
		_, form := m.(FormEnroller)
		_, ceremony := m.(CeremonyEnroller)
		if form || ceremony {
			return m, nil
		}
	}
	if method != "" {
		return nil, fmt.Errorf("tier %q: method %q cannot be set up by its user", tier, method)
	}
	return nil, fmt.Errorf("tier %q: none of its methods is set up by its user", tier)
}

// IssueEnrolLink creates a link for user to set up tier's method. It
// returns the token, which goes in the link and is never stored.
func (e *Engine) IssueEnrolLink(ctx context.Context, user, tier, method string, ttl time.Duration, by string) (string, EnrolLink, error) {
	if user == "" {
		return "", EnrolLink{}, errors.New("no user given")
	}
	if ttl <= 0 {
		ttl = DefaultEnrolLinkTTL
	}
	if ttl > MaxEnrolLinkTTL {
		return "", EnrolLink{}, fmt.Errorf("a link may be valid for at most %s", MaxEnrolLinkTTL)
	}
	m, err := e.EnrolMethod(tier, method)
	if err != nil {
		return "", EnrolLink{}, err
	}
	link := EnrolLink{User: user, Tier: tier, Method: m.Name(), Expires: e.Now().Add(ttl), By: by}
	raw, err := json.Marshal(link)
	if err != nil {
		return "", EnrolLink{}, err
	}
	token := randomToken(32)
	if err := e.Store.Set(ctx, linkKey(token), raw, ttl); err != nil {
		return "", EnrolLink{}, err
	}
	e.Audit.Log(Record{Event: EventEnroll, User: user, Tier: tier, AuthMethod: link.Method, Result: "link_issued",
		Reason: "enrolment link valid until " + link.Expires.UTC().Format(time.RFC3339), Approver: by})
	return token, link, nil
}

// EnrolLinkURL is the path of a link's page.
func (e *Engine) EnrolLinkURL(token string) string { return e.Prefix + "/enroll?link=" + token }

// EnrolLinkOf returns what a link allows, while it is valid.
func (e *Engine) EnrolLinkOf(ctx context.Context, token string) (EnrolLink, error) {
	var link EnrolLink
	if token == "" || len(token) > 128 {
		return link, ErrEnrolLinkInvalid
	}
	raw, err := e.Store.Get(ctx, linkKey(token))
	if errors.Is(err, ErrNotFound) {
		return link, ErrEnrolLinkInvalid
	}
	if err != nil {
		return link, err
	}
	if err := json.Unmarshal(raw, &link); err != nil || !e.Now().Before(link.Expires) {
		return link, ErrEnrolLinkInvalid
	}
	return link, nil
}

// OpenEnrolLink binds a valid link to the session of its user, so that
// the enrolment pages of its tier and method let the user set up a
// credential. The session must be stored (Persist) and hold the tier's
// base; the caller sends the user to the enrolment page then.
func (e *Engine) OpenEnrolLink(ctx context.Context, s *Session, token string) (EnrolLink, error) {
	link, err := e.EnrolLinkOf(ctx, token)
	if err != nil {
		return link, err
	}
	if s == nil || s.User != link.User {
		return link, ErrEnrolLinkOtherUser
	}
	if !e.Hierarchy.Has(link.Tier) {
		return link, ErrEnrolLinkInvalid // the tier went with a reload
	}
	ttl := link.Expires.Sub(e.Now())
	if err := e.Store.Set(ctx, boundKey(s.Owner, link.Tier, link.Method), []byte(token), ttl); err != nil {
		return link, err
	}
	return link, nil
}

// linkedEnrolment returns the token of a valid link the session opened for
// this tier and method ("" for none).
func (e *Engine) linkedEnrolment(ctx context.Context, s *Session, tier, method string) string {
	if s == nil || s.User == "" || s.Owner == "" {
		return ""
	}
	raw, err := e.Store.Get(ctx, boundKey(s.Owner, tier, method))
	if err != nil {
		return ""
	}
	link, err := e.EnrolLinkOf(ctx, string(raw))
	if err != nil || link.User != s.User || link.Tier != tier || link.Method != method {
		return ""
	}
	return string(raw)
}

// spendEnrolLink takes the session's link for the enrolment about to be
// confirmed, atomically: of two enrolments racing for it, one proceeds.
// The returned function puts it back (the enrolment failed).
func (e *Engine) spendEnrolLink(ctx context.Context, s *Session, tier, method, token string) (restore func(), ok bool) {
	raw, err := e.Store.Take(ctx, linkKey(token))
	if err != nil {
		return nil, false
	}
	var link EnrolLink
	if json.Unmarshal(raw, &link) != nil || link.User != s.User || !e.Now().Before(link.Expires) {
		return nil, false
	}
	_ = e.Store.Delete(ctx, boundKey(s.Owner, tier, method))
	return func() {
		ttl := link.Expires.Sub(e.Now())
		if ttl <= 0 {
			return
		}
		if ok, _ := e.Store.SetIfAbsent(ctx, linkKey(token), raw, ttl); ok {
			_ = e.Store.Set(ctx, boundKey(s.Owner, tier, method), []byte(token), ttl)
		}
	}, true
}
