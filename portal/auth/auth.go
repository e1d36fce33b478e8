// Package auth signs people in: password hashing, rate limiting of failed
// sign-ins, and the web session manager.
package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/alexedwards/argon2id"
	"github.com/alexedwards/scs/sqlite3store"
	"github.com/alexedwards/scs/v2"

	"github.com/keyway-dev/keyway/portal/store"
)

// Password length limits.
const (
	minPassword = 10
	maxPassword = 256
)

// hashParams are argon2id parameters: 64 MiB, 2 passes, as OWASP suggests
// for interactive sign-in.
var hashParams = &argon2id.Params{Memory: 64 * 1024, Iterations: 2, Parallelism: 2, SaltLength: 16, KeyLength: 32}

// ValidatePassword checks a new password's length.
func ValidatePassword(pw string) error {
	n := utf8.RuneCountInString(pw)
	if n < minPassword {
		return fmt.Errorf("the password needs at least %d characters", minPassword)
	}
	if len(pw) > maxPassword {
		return fmt.Errorf("the password may have at most %d bytes", maxPassword)
	}
	return nil
}

// HashPassword hashes pw with argon2id.
func HashPassword(pw string) (string, error) {
	h, err := argon2id.CreateHash(pw, hashParams)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return h, nil
}

// CheckPassword reports whether pw matches hash.
func CheckPassword(hash, pw string) (bool, error) {
	ok, err := argon2id.ComparePasswordAndHash(pw, hash)
	if err != nil {
		return false, fmt.Errorf("check password: %w", err)
	}
	return ok, nil
}

// NewSessions returns the web session manager, kept in the database under
// the SHA-256 of each token, and a function that stops its cleanup
// goroutine.
func NewSessions(db *sql.DB) (*scs.SessionManager, func()) {
	st := sqlite3store.NewWithCleanupInterval(db, 10*time.Minute)
	m := scs.New()
	m.Store = hashedStore{inner: st}
	m.Lifetime = 12 * time.Hour
	m.IdleTimeout = time.Hour
	m.Cookie.Name = "keyway_session"
	m.Cookie.HttpOnly = true
	m.Cookie.Secure = true
	m.Cookie.SameSite = http.SameSiteLaxMode
	m.Cookie.Persist = false
	return m, st.StopCleanup
}

// Errors of SignIn.
var (
	ErrInvalidCredentials = errors.New("wrong username or password")
	ErrDisabled           = errors.New("this account is disabled")
)

// RateLimitedError says sign-in is paused after too many failures.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many failed sign-ins: try again in %s", e.RetryAfter.Round(time.Second))
}

// Authenticator checks usernames and passwords.
type Authenticator struct {
	store   *store.Store
	limiter *Limiter
	logger  *slog.Logger
	// dummyHash is compared against for unknown users so that their
	// sign-in takes as long as a wrong password.
	dummyHash string
}

// New returns an Authenticator.
func New(st *store.Store, lim *Limiter, logger *slog.Logger) *Authenticator {
	h, _ := HashPassword("not-a-real-password-for-timing")
	return &Authenticator{store: st, limiter: lim, logger: logger, dummyHash: h}
}

// SignIn checks a username and password from clientIP.
func (a *Authenticator) SignIn(ctx context.Context, username, password, clientIP string) (store.User, error) {
	if wait, ok := a.limiter.Check(username, clientIP); !ok {
		return store.User{}, &RateLimitedError{RetryAfter: wait}
	}
	if len(username) > 64 || len(password) > maxPassword {
		a.limiter.Fail(username, clientIP)
		return store.User{}, ErrInvalidCredentials
	}
	u, err := a.store.UserByName(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		CheckPassword(a.dummyHash, password)
		a.limiter.Fail(username, clientIP)
		return store.User{}, ErrInvalidCredentials
	}
	if err != nil {
		return store.User{}, err
	}
	hash, err := a.store.PasswordHash(ctx, u.ID)
	if err != nil {
		return store.User{}, err
	}
	ok, err := CheckPassword(hash, password)
	if err != nil {
		return store.User{}, err
	}
	if !ok {
		a.limiter.Fail(username, clientIP)
		return store.User{}, ErrInvalidCredentials
	}
	if u.Disabled {
		return store.User{}, ErrDisabled
	}
	a.limiter.Succeed(username, clientIP)
	return u, nil
}
