package radius

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"layeh.com/radius"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// Method is the radius method of one tier.
type Method struct {
	client *Client
	cfg    MethodConfig
}

// MethodConfig configures a Method.
type MethodConfig struct {
	Client ClientConfig
	// UserName is the User-Name sent: "{user}" stands for the user id
	// (the default); other placeholders are expanded by Resolve.
	UserName string
	// Resolve expands placeholders in UserName for a request (may be nil).
	Resolve func(r *http.Request, expr string) string
	// NASIdentifier and NASIP identify this gateway to the server.
	NASIdentifier string
	NASIP         net.IP
	// RoundTimeout bounds how long a challenge round waits for its answer.
	// Default 5m.
	RoundTimeout time.Duration
}

// NewMethod validates the configuration.
func NewMethod(c MethodConfig) (*Method, error) {
	client, err := NewClient(c.Client)
	if err != nil {
		return nil, err
	}
	if c.UserName == "" {
		c.UserName = "{user}"
	}
	if c.NASIdentifier == "" {
		c.NASIdentifier = "caddy-stepup"
	}
	if c.RoundTimeout <= 0 {
		c.RoundTimeout = 5 * time.Minute
	}
	return &Method{client: client, cfg: c}, nil
}

// Name implements stepup.Method.
func (m *Method) Name() string { return "radius" }

// Identifies implements stepup.Method: RADIUS confirms a known user.
func (m *Method) Identifies() bool { return false }

// Prompt implements stepup.Method.
func (m *Method) Prompt(string) stepup.Prompt {
	return stepup.Prompt{
		Title:  "One-time code",
		Help:   "Enter the code from your token or authentication app.",
		Fields: []stepup.Field{{Name: "code", Label: "Code", Type: "text", Autocomplete: "one-time-code"}},
		Submit: "Verify",
	}
}

// maxCode is the longest User-Password RADIUS carries (RFC 2865: 128).
const maxCode = 128

// Verify implements stepup.Method: one Access-Request per round.
func (m *Method) Verify(ctx context.Context, a *stepup.Attempt) (*stepup.Outcome, error) {
	code := strings.TrimSpace(a.Form.Get("code"))
	if code == "" || len(code) > maxCode {
		return &stepup.Outcome{Result: stepup.Rejected, User: a.User, Reason: "missing_or_oversized_code", Message: "Enter your code."}, nil
	}
	req := Request{
		UserName: m.userName(a), Password: code, NASIdentifier: m.cfg.NASIdentifier,
		NASIP: m.cfg.NASIP, CallingStation: a.ClientIP,
	}
	if a.Round != nil {
		req.State = a.Round.State
	}
	resp, err := m.client.Exchange(ctx, req)
	if err != nil {
		if errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return &stepup.Outcome{Result: stepup.Unavailable, User: a.User, Reason: "radius_unavailable",
				Message: "The authentication service is unavailable. Try again in a moment."}, nil
		}
		return nil, err
	}
	switch resp.Code {
	case radius.CodeAccessAccept:
		return &stepup.Outcome{Result: stepup.Accepted, User: a.User, Credential: "radius:" + req.UserName}, nil
	case radius.CodeAccessChallenge:
		prompt := resp.ReplyMessage
		if prompt == "" {
			prompt = "Enter the next code."
		}
		return &stepup.Outcome{Result: stepup.Challenged, User: a.User, Reason: "radius_challenge",
			Round: &stepup.Round{Prompt: prompt, State: resp.State, Expires: m.now().Add(m.cfg.RoundTimeout)}}, nil
	}
	msg := resp.ReplyMessage
	if msg == "" {
		msg = "The code was not accepted."
	}
	return &stepup.Outcome{Result: stepup.Rejected, User: a.User, Reason: "radius_reject", Message: msg}, nil
}

func (m *Method) userName(a *stepup.Attempt) string {
	name := strings.ReplaceAll(m.cfg.UserName, "{user}", a.User)
	if m.cfg.Resolve != nil && a.Request != nil {
		name = m.cfg.Resolve(a.Request, name)
	}
	return name
}

func (m *Method) now() time.Time { return m.client.cfg.Now() }

var _ stepup.Method = (*Method)(nil)
