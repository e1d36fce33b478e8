package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// tokenPrefix marks API tokens so secret scanners and people recognise them.
const tokenPrefix = "kw_"

// Token is an API bearer token. Only its SHA-256 is stored.
type Token struct {
	ID         int64
	UserID     int64
	Name       string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	LastUsedAt time.Time
	Revoked    bool
}

func hashToken(plain string) string {
	sum := sha256.Sum256([]byte(plain))
	return hex.EncodeToString(sum[:])
}

// CreateToken makes a token for userID valid for ttl and returns its
// plaintext, which is shown once and never stored.
func (s *Store) CreateToken(ctx context.Context, userID int64, name string, ttl time.Duration) (string, Token, error) {
	plain := tokenPrefix + rand.Text() + rand.Text()
	now := s.now()
	t := Token{UserID: userID, Name: name, CreatedAt: now.UTC(), ExpiresAt: now.Add(ttl).UTC()}
	err := s.db.QueryRowContext(ctx, `INSERT INTO tokens (user_id, name, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		userID, name, hashToken(plain), millis(t.CreatedAt), millis(t.ExpiresAt)).Scan(&t.ID)
	if err != nil {
		return "", Token{}, fmt.Errorf("create token: %w", err)
	}
	return plain, t, nil
}

// TokenUser returns the user a valid token belongs to and records its use.
// Unknown, revoked and expired tokens and disabled users all give
// ErrNotFound.
func (s *Store) TokenUser(ctx context.Context, plain string) (User, Token, error) {
	if !strings.HasPrefix(plain, tokenPrefix) || len(plain) > 128 {
		return User{}, Token{}, ErrNotFound
	}
	var t Token
	var created, expires, used int64
	err := s.db.QueryRowContext(ctx, `SELECT id, user_id, name, created_at, expires_at, last_used_at, revoked FROM tokens WHERE hash = ?`, hashToken(plain)).
		Scan(&t.ID, &t.UserID, &t.Name, &created, &expires, &used, &t.Revoked)
	if err != nil {
		return User{}, Token{}, notFound(err)
	}
	t.CreatedAt, t.ExpiresAt, t.LastUsedAt = fromMillis(created), fromMillis(expires), fromMillis(used)
	now := s.now()
	if t.Revoked || !now.Before(t.ExpiresAt) {
		return User{}, Token{}, ErrNotFound
	}
	u, err := s.UserByID(ctx, t.UserID)
	if errors.Is(err, ErrNotFound) || (err == nil && u.Disabled) {
		return User{}, Token{}, ErrNotFound
	}
	if err != nil {
		return User{}, Token{}, err
	}
	// Last use is recorded at minute precision to spare writes on busy tokens.
	if now.Sub(t.LastUsedAt) > time.Minute {
		if _, err := s.db.ExecContext(ctx, `UPDATE tokens SET last_used_at = ? WHERE id = ?`, millis(now), t.ID); err != nil {
			return User{}, Token{}, fmt.Errorf("record token use: %w", err)
		}
		t.LastUsedAt = now.UTC()
	}
	return u, t, nil
}

// ListTokens returns a user's tokens, newest first.
func (s *Store) ListTokens(ctx context.Context, userID int64) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, user_id, name, created_at, expires_at, last_used_at, revoked FROM tokens WHERE user_id = ? ORDER BY id DESC`, userID)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var t Token
		var created, expires, used int64
		if err := rows.Scan(&t.ID, &t.UserID, &t.Name, &created, &expires, &used, &t.Revoked); err != nil {
			return nil, err
		}
		t.CreatedAt, t.ExpiresAt, t.LastUsedAt = fromMillis(created), fromMillis(expires), fromMillis(used)
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken revokes one of userID's tokens.
func (s *Store) RevokeToken(ctx context.Context, userID, tokenID int64) error {
	res, err := s.db.ExecContext(ctx, `UPDATE tokens SET revoked = 1 WHERE id = ? AND user_id = ?`, tokenID, userID)
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}
