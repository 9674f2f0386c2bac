package webauthn

import (
	"context"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// ResetCredentials removes every key the user registered (an
// administrator's reset, after a lost key).
func (m *Method) ResetCredentials(ctx context.Context, user string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	creds, err := m.Credentials(ctx, user)
	if err != nil || len(creds) == 0 {
		return 0, err
	}
	return len(creds), m.save(ctx, user, nil)
}

var _ stepup.CredentialResetter = (*Method)(nil)
