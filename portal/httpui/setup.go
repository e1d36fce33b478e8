package httpui

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"

	"github.com/keyway-dev/keyway/portal/store"
)

// setupTokenSetting keeps the SHA-256 of the one-time link that creates the
// first admin; the link itself is only printed in the portal's log.
const setupTokenSetting = "setup.token_sha256"

// NewSetupToken makes a new one-time first-admin token, replacing any
// earlier one, and returns it for the operator.
func NewSetupToken(ctx context.Context, st *store.Store) (string, error) {
	token := rand.Text()
	sum := sha256.Sum256([]byte(token))
	if err := st.SetSetting(ctx, setupTokenSetting, hex.EncodeToString(sum[:])); err != nil {
		return "", fmt.Errorf("store setup token: %w", err)
	}
	return token, nil
}

// setupAllowed reports whether token is the current setup token and the
// portal still has no users.
func (s *Server) setupAllowed(ctx context.Context, token string) (bool, error) {
	want, err := s.Store.GetSetting(ctx, setupTokenSetting)
	if err != nil || want == "" {
		return false, nil
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(want)) != 1 {
		return false, nil
	}
	n, err := s.Store.CountUsers(ctx)
	if err != nil {
		return false, err
	}
	return n == 0, nil
}
