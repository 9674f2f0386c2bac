package totp

import (
	"context"
	"errors"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// ResetCredentials removes the user's enrolled secret (an administrator's
// reset, after a lost phone). A secret given in the configuration stays:
// it is removed there.
func (m *Method) ResetCredentials(ctx context.Context, user string) (int, error) {
	_, err := m.vault.Load(ctx, user)
	if errors.Is(err, ErrNoSecret) {
		return 0, nil
	}
	// A secret that no longer decrypts is removed all the same.
	if err := m.vault.Remove(ctx, user); err != nil {
		return 0, err
	}
	return 1, nil
}

// Provisioned reports whether the configuration gives the user a secret.
func (m *Method) Provisioned(user string) bool {
	_, ok := m.provisioned[user]
	return ok
}

var (
	_ stepup.CredentialResetter = (*Method)(nil)
	_ stepup.Provisioner        = (*Method)(nil)
)
