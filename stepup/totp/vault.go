package totp

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"

	"github.com/caddy-stepup/caddy-stepup/stepup"
)

// ErrNoSecret means the user has no enrolled secret.
var ErrNoSecret = errors.New("no TOTP secret enrolled")

// Vault keeps enrolled secrets encrypted at rest with AES-256-GCM. The
// user id is the additional authenticated data, so a ciphertext copied to
// another user's key does not decrypt.
type Vault struct {
	blobs stepup.Blobs
	aead  cipher.AEAD
}

// sealVersion prefixes every ciphertext, for future key rotation.
const sealVersion = 1

// NewVault returns a vault; key is a 32-byte key derived from the module
// secret for this purpose only.
func NewVault(blobs stepup.Blobs, key []byte) (*Vault, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Vault{blobs: blobs, aead: aead}, nil
}

// storageKey does not reveal the user id in file names.
func storageKey(user string) string {
	sum := sha256.Sum256([]byte("totp-user:" + user))
	return "stepup/totp/" + hex.EncodeToString(sum[:16])
}

func (v *Vault) seal(secret []byte, aad string) []byte {
	nonce := make([]byte, v.aead.NonceSize(), v.aead.NonceSize()+len(secret)+v.aead.Overhead()+1)
	if _, err := rand.Read(nonce); err != nil {
		panic("totp: crypto/rand failed: " + err.Error())
	}
	out := append([]byte{sealVersion}, nonce...)
	return v.aead.Seal(out, nonce, secret, []byte(aad))
}

func (v *Vault) open(blob []byte, aad string) ([]byte, error) {
	n := v.aead.NonceSize()
	if len(blob) < 1+n+v.aead.Overhead() || blob[0] != sealVersion {
		return nil, errors.New("malformed ciphertext")
	}
	return v.aead.Open(nil, blob[1:1+n], blob[1+n:], []byte(aad))
}

// Load returns the user's enrolled secret, or ErrNoSecret.
func (v *Vault) Load(ctx context.Context, user string) ([]byte, error) {
	blob, err := v.blobs.Load(ctx, storageKey(user))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoSecret
	}
	if err != nil {
		return nil, fmt.Errorf("loading TOTP secret: %w", err)
	}
	secret, err := v.open(blob, "user:"+user)
	if err != nil {
		// Tampered, or sealed under another module secret: unusable.
		return nil, fmt.Errorf("TOTP secret of %q does not decrypt: %w", user, err)
	}
	return secret, nil
}

// Save stores the user's secret, replacing any previous one.
func (v *Vault) Save(ctx context.Context, user string, secret []byte) error {
	return v.blobs.Store(ctx, storageKey(user), v.seal(secret, "user:"+user))
}

// Remove deletes the user's enrolled secret.
func (v *Vault) Remove(ctx context.Context, user string) error {
	return v.blobs.Delete(ctx, storageKey(user))
}
