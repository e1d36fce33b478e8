// Package auth signs people in: password hashing, rate limiting of failed
// sign-ins, and the web session manager.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/alexedwards/argon2id"
	"github.com/alexedwards/scs/postgresstore"
	"github.com/alexedwards/scs/sqlite3store"
	"github.com/alexedwards/scs/v2"

	"github.com/keyway-dev/keyway/gateway/tlsconf"
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

// SessionStore is where web sessions are kept: scs's sqlite3store, or
// postgresstore when replicas share a PostgreSQL database.
type SessionStore interface {
	scs.Store
	scs.IterableStore
}

// sessionCleanup is how often expired web sessions are deleted.
const sessionCleanup = 10 * time.Minute

// NewSessions returns the web session manager, kept in the store's
// database (SQLite or PostgreSQL, so that every portal replica on one
// PostgreSQL sees every session) under the SHA-256 of each token, and a
// function that stops its cleanup goroutine.
func NewSessions(db *store.Store) (*scs.SessionManager, func()) {
	var st interface {
		SessionStore
		StopCleanup()
	}
	if db.Postgres() {
		st = postgresstore.NewWithCleanupInterval(db.DB(), sessionCleanup)
	} else {
		st = sqlite3store.NewWithCleanupInterval(db.DB(), sessionCleanup)
	}
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
	// ErrInvalidUsername is a name no account can have: too long or with
	// control characters. It is refused before it is stored anywhere.
	ErrInvalidUsername = fmt.Errorf("a username has at most %d bytes and no control characters", maxUsername)
	// ErrBusy says too many passwords are being checked at once; the
	// client should try again after BusyRetryAfter.
	ErrBusy = errors.New("the portal is busy checking other sign-ins")
)

// maxUsername is the longest user name accepted at sign-in, in bytes:
// account names are at most 64 characters of ASCII.
const maxUsername = 64

// ValidUsername checks a user name typed at sign-in before it is used as a
// limiter key, looked up or audited.
func ValidUsername(name string) error {
	if len(name) > maxUsername || !utf8.ValidString(name) {
		return ErrInvalidUsername
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return ErrInvalidUsername
		}
	}
	return nil
}

// RateLimitedError says sign-in is paused after too many failures.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many failed sign-ins: try again in %s", e.RetryAfter.Round(time.Second))
}

// Bounds on concurrent password checks. Each argon2id check holds
// hashParams.Memory (64 MiB) while it runs, so the number running at once
// is what bounds the portal's memory under a flood of sign-ins, not the
// number of requests. More checks than cores would not finish sooner.
const (
	// maxHashWait is how long a sign-in waits for a free slot before it
	// is answered "busy".
	maxHashWait = 5 * time.Second
	// maxHashQueue bounds the sign-ins waiting for a slot; past it they
	// are answered "busy" at once.
	maxHashQueue = 64
	// BusyRetryAfter is what a busy answer tells the client to wait.
	BusyRetryAfter = 5 * time.Second
)

// hashGate is a semaphore for password checks.
type hashGate struct {
	slots   chan struct{}
	waiting atomic.Int64
	maxWait time.Duration
}

func newHashGate(n int, maxWait time.Duration) *hashGate {
	return &hashGate{slots: make(chan struct{}, max(n, 1)), maxWait: maxWait}
}

// acquire waits for a slot, at most maxWait and while ctx lasts.
func (g *hashGate) acquire(ctx context.Context) (release func(), err error) {
	release = func() { <-g.slots }
	select {
	case g.slots <- struct{}{}:
		return release, nil
	default:
	}
	if g.waiting.Add(1) > maxHashQueue {
		g.waiting.Add(-1)
		return nil, ErrBusy
	}
	defer g.waiting.Add(-1)
	t := time.NewTimer(g.maxWait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return release, nil
	case <-t.C:
		return nil, ErrBusy
	case <-ctx.Done():
		return nil, fmt.Errorf("wait to check a password: %w", ctx.Err())
	}
}

// Authenticator checks usernames and passwords.
type Authenticator struct {
	store   *store.Store
	limiter *Limiter
	logger  *slog.Logger
	hashes  *hashGate
	// dummyHash is compared against for unknown users so that their
	// sign-in takes as long as a wrong password.
	dummyHash string
	// directoryTLS are the TLS settings of connections to LDAP
	// directories.
	directoryTLS tlsconf.Settings
}

// Option changes an Authenticator.
type Option func(*Authenticator)

// WithDirectoryTLS sets the lowest TLS version and the cipher suites of
// connections to LDAP directories (default: TLS 1.2 with Go's suites).
func WithDirectoryTLS(s tlsconf.Settings) Option {
	return func(a *Authenticator) { a.directoryTLS = s }
}

// New returns an Authenticator that checks as many passwords at once as
// the process may use cores.
func New(st *store.Store, lim *Limiter, logger *slog.Logger, opts ...Option) *Authenticator {
	h, _ := HashPassword("not-a-real-password-for-timing")
	a := &Authenticator{store: st, limiter: lim, logger: logger, dummyHash: h,
		hashes: newHashGate(runtime.GOMAXPROCS(0), maxHashWait)}
	for _, o := range opts {
		o(a)
	}
	return a
}

// signIn checks a username and password from clientIP (out, if not nil,
// gets how: see SignInPassword).
//
// Limits, in order: a name no account can have is refused before anything
// stores it; the client address takes a slot of its 20 (failures and
// attempts in flight) before any hashing; the password check waits for a
// free hash slot (ErrBusy past maxHashWait).
//
// An account with 5 failures within 15 minutes is locked, but the lock
// refuses only addresses that have failed recently (any account): a
// correct password from an address with no recent failure still signs in.
// A plain per-account lock lets anyone keep anyone locked out from
// anywhere with 5 guesses every 15 minutes; with this one an attacker
// must sign in from the owner's own address to do that. The price: an
// attacker with many addresses gets one more guess at a locked account
// per fresh address per window (each is then refused for the window, and
// IPv6 addresses count per /64), which the password rules (at least 10
// characters) and argon2id make slow. An exponential per-account delay
// was not chosen: whoever sends the most requests owns the delayed
// queue, so the owner would still be kept out.
func (a *Authenticator) signIn(ctx context.Context, username, password, clientIP string, out *Result) (store.User, error) {
	res, wait, ok := a.limiter.Reserve(clientIP)
	if !ok {
		return store.User{}, &RateLimitedError{RetryAfter: wait}
	}
	// Until settled, the attempt holds its address's slot; anything that
	// returns without a verdict on the password gives it back.
	settled := false
	defer func() {
		if !settled {
			res.Cancel()
		}
	}()
	fail := func() (store.User, error) {
		settled = true
		res.Fail()
		return store.User{}, ErrInvalidCredentials
	}
	if err := ValidUsername(username); err != nil {
		settled = true
		res.Fail()
		return store.User{}, err
	}
	if len(password) > maxPassword {
		return fail()
	}
	now := a.limiter.now()
	u, err := a.store.UserByName(ctx, username)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.User{}, err
	}
	// LDAP: directory users, and names a directory may create, are
	// checked by their directory (signInDirectory), not here.
	if du, handled, err := a.signInDirectory(ctx, attempt{res: res, fail: fail, user: u, known: known,
		username: username, password: password, address: clientIP, now: now}, out); handled {
		return du, err
	}
	var lockedUntil time.Time
	// lastAddr, kept with the lock, stays refused after a restart, which
	// forgets which addresses failed.
	lastAddr := ""
	if known {
		l, err := a.store.SignInLock(ctx, u.ID)
		if err != nil {
			return store.User{}, err
		}
		lockedUntil, lastAddr = l.LockedUntil, l.LastAddr
	} else {
		lockedUntil = a.limiter.NameLocked(username)
	}
	if lockedUntil.After(now) && (!res.Clean() || lastAddr != "" && ipKey(lastAddr) == ipKey(clientIP)) {
		return store.User{}, &RateLimitedError{RetryAfter: lockedUntil.Sub(now)}
	}
	hash := a.dummyHash
	// allowed: the account may use a password kept here (see
	// localPasswordAllowed). A refused account is checked against the
	// dummy hash and fails like a wrong password, so the answer and its
	// time say no more than a wrong password would.
	allowed := false
	if known {
		if allowed, err = a.localPasswordAllowed(ctx, u); err != nil {
			return store.User{}, err
		}
	}
	if allowed {
		if hash, err = a.store.PasswordHash(ctx, u.ID); err != nil {
			return store.User{}, err
		}
	}
	release, err := a.hashes.acquire(ctx)
	if err != nil {
		return store.User{}, err
	}
	ok, err = CheckPassword(hash, password)
	release()
	if err != nil {
		return store.User{}, err
	}
	if !known {
		a.limiter.FailName(username)
		return fail()
	}
	if !ok || !allowed {
		// The address's failure counts even if the database write fails.
		u2, err := fail()
		if _, dbErr := a.store.AddSignInFailure(context.WithoutCancel(ctx), u.ID, clientIP, now, limitWindow, maxUserFails); dbErr != nil {
			return store.User{}, dbErr
		}
		return u2, err
	}
	if u.Disabled {
		return store.User{}, ErrDisabled
	}
	if err := a.store.ClearSignInLock(ctx, u.ID); err != nil {
		return store.User{}, err
	}
	return u, nil
}

// localPasswordAllowed reports whether u may sign in with a password kept
// here: only local users, and while local passwords are off only the
// break-glass admin (store.LocalPasswords.Allows).
func (a *Authenticator) localPasswordAllowed(ctx context.Context, u store.User) (bool, error) {
	if u.Source != store.SourceLocal {
		return false, nil
	}
	lp, err := a.store.LocalPasswordSettings(ctx)
	if err != nil {
		return false, fmt.Errorf("read local password settings: %w", err)
	}
	return lp.Allows(u), nil
}
