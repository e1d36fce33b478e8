package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keyway-dev/keyway/gateway/tlsconf"
	"github.com/keyway-dev/keyway/portal/identity/ldap"
	"github.com/keyway-dev/keyway/portal/store"
)

// Result is how a password-form sign-in went: the user, the LDAP
// directory that checked the password ("" for a password kept here), and
// what provisioning changed (nil for local users).
type Result struct {
	User      store.User
	Directory string
	Provision *store.ProvisionResult
}

// SignInPassword is SignIn for the password form: it also says which
// directory checked the password and what provisioning changed.
func (a *Authenticator) SignInPassword(ctx context.Context, username, password, clientIP string) (Result, error) {
	var r Result
	u, err := a.signIn(ctx, username, password, clientIP, &r)
	r.User = u
	return r, err
}

// SignIn checks a username and password from clientIP: a password kept
// here, or a directory user's against their directory. See signIn.
func (a *Authenticator) SignIn(ctx context.Context, username, password, clientIP string) (store.User, error) {
	return a.signIn(ctx, username, password, clientIP, nil)
}

// ErrNoAccount: the directory knows the user, but no Keyway account is
// set up for them (the directory does not create users, or the name is a
// local account's).
var ErrNoAccount = errors.New("no Keyway account is set up for this directory user; ask an administrator")

// DirectoryError says a directory could not check a password: it did not
// answer (Unreachable), or answered with an error (a configuration the
// admin must fix). Error is the user's message; Cause the reason audited.
type DirectoryError struct {
	Directory   string
	Unreachable bool
	Cause       error
}

func (e *DirectoryError) Error() string {
	if e.Unreachable {
		return fmt.Sprintf("the directory %s is not answering; try again or ask an administrator", e.Directory)
	}
	return fmt.Sprintf("the directory %s could not check the password; ask an administrator", e.Directory)
}

func (e *DirectoryError) Unwrap() error { return e.Cause }

// Reason is the error with its cause, for the audit log.
func (e *DirectoryError) Reason() string { return e.Error() + " (" + e.Cause.Error() + ")" }

// attempt is one sign-in's state that signInDirectory shares with signIn:
// its address slot, and how a failure is recorded.
type attempt struct {
	res                         *Reservation
	fail                        func() (store.User, error)
	user                        store.User
	known                       bool
	username, password, address string
	now                         time.Time
}

// signInDirectory is the password form's directory (LDAP) branch: a user
// whose source is ldap:NAME is checked against that directory; a name
// that is no account is tried against the enabled directories that create
// users, in name order. The address slot and the account and name locks
// work as for local passwords; no argon2 is paid. handled false leaves
// the attempt to the local password check.
func (a *Authenticator) signInDirectory(ctx context.Context, at attempt, out *Result) (u store.User, handled bool, err error) {
	kind, name, _ := strings.Cut(at.user.Source, ":")
	if at.known && kind != store.KindLDAP {
		return store.User{}, false, nil
	}
	var ps []store.IdentityProvider
	if at.known {
		p, err := a.store.IdentityProviderByName(ctx, store.KindLDAP, name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return store.User{}, true, err
		}
		if err == nil && p.Enabled {
			ps = append(ps, p)
		}
	} else {
		all, err := a.store.ListIdentityProviders(ctx, store.KindLDAP)
		if err != nil {
			return store.User{}, true, err
		}
		for _, p := range all {
			if p.Enabled && p.JITCreate {
				ps = append(ps, p)
			}
		}
		if len(ps) == 0 {
			return store.User{}, false, nil
		}
	}
	if u, err := a.directoryLocked(ctx, at); err != nil {
		return u, true, err
	}
	if len(ps) == 0 {
		return a.directoryFailed(ctx, at, fmt.Errorf("the directory %s of this account is off or deleted", name))
	}
	// down: the first directory that could not answer, reported if no
	// other one settles the attempt.
	var down *DirectoryError
	refused := false
	for _, p := range ps {
		id, err := authenticate(ctx, p, a.directoryTLS, at.username, at.password)
		var de *DirectoryError
		switch {
		case err == nil:
			return a.provision(ctx, at, p, id, out)
		case errors.Is(err, ldap.ErrNoSuchUser) && !at.known:
			continue
		case errors.Is(err, ldap.ErrInvalidCredentials), errors.Is(err, ldap.ErrEmptyPassword), errors.Is(err, ldap.ErrNoSuchUser):
			if at.known {
				return a.directoryFailed(ctx, at, fmt.Errorf("directory %s: %w", p.Name, err))
			}
			refused = true
		case errors.As(err, &de):
			if down == nil {
				down = de
			}
		default:
			return store.User{}, true, err
		}
	}
	switch {
	case refused:
		return a.directoryFailed(ctx, at, errors.New("refused by the directories that know the name"))
	case down != nil:
		// No verdict on the password: the address's slot is given back
		// (signIn's deferred Cancel).
		return store.User{}, true, down
	}
	return store.User{}, false, nil
}

// directoryLocked applies signIn's lock rule before any directory is
// asked: a locked account or name is refused to addresses with recent
// failures, and to the one that locked it.
func (a *Authenticator) directoryLocked(ctx context.Context, at attempt) (store.User, error) {
	var lockedUntil time.Time
	lastAddr := ""
	if at.known {
		l, err := a.store.SignInLock(ctx, at.user.ID)
		if err != nil {
			return store.User{}, err
		}
		lockedUntil, lastAddr = l.LockedUntil, l.LastAddr
	} else {
		lockedUntil = a.limiter.NameLocked(at.username)
	}
	if lockedUntil.After(at.now) && (!at.res.Clean() || lastAddr != "" && ipKey(lastAddr) == ipKey(at.address)) {
		return store.User{}, &RateLimitedError{RetryAfter: lockedUntil.Sub(at.now)}
	}
	return store.User{}, nil
}

// directoryFailed records a refused password as signIn does: the
// address's failure, and the account's (or the name's).
func (a *Authenticator) directoryFailed(ctx context.Context, at attempt, why error) (store.User, bool, error) {
	_, err := at.fail()
	err = fmt.Errorf("%w (%v)", err, why)
	if !at.known {
		a.limiter.FailName(at.username)
		return store.User{}, true, err
	}
	if _, dbErr := a.store.AddSignInFailure(context.WithoutCancel(ctx), at.user.ID, at.address, at.now, limitWindow, maxUserFails); dbErr != nil {
		return store.User{}, true, dbErr
	}
	return store.User{}, true, err
}

// authenticate checks the password against p's directory; a failure to
// reach it or to search it is a DirectoryError.
func authenticate(ctx context.Context, p store.IdentityProvider, tlsSet tlsconf.Settings, username, password string) (ldap.Identity, error) {
	cfg, err := ldap.ParseConfig(p.Config)
	if err != nil {
		return ldap.Identity{}, &DirectoryError{Directory: p.Name, Cause: fmt.Errorf("configuration: %w", err)}
	}
	cfg.TLS = tlsSet
	d, err := ldap.New(cfg)
	if err != nil {
		return ldap.Identity{}, &DirectoryError{Directory: p.Name, Cause: fmt.Errorf("configuration: %w", err)}
	}
	id, err := d.Authenticate(ctx, username, password)
	var se *ldap.StepError
	if errors.As(err, &se) {
		return ldap.Identity{}, &DirectoryError{Directory: p.Name, Unreachable: se.Unreachable(), Cause: err}
	}
	return id, err
}

// provision makes or updates the Keyway user of a directory sign-in and
// re-applies the directory's group mappings.
func (a *Authenticator) provision(ctx context.Context, at attempt, p store.IdentityProvider, id ldap.Identity, out *Result) (store.User, bool, error) {
	r, err := a.store.ProvisionChanges(ctx, p, store.ExternalLogin{Subject: id.DN, Username: id.Username,
		DisplayName: id.DisplayName, Email: id.Email, Groups: id.GroupValues()})
	switch {
	case errors.Is(err, store.ErrNotProvisioned), errors.Is(err, store.ErrSourceMismatch), errors.Is(err, store.ErrInvalidUserName):
		// The password was right: no failure counts against the address
		// (signIn's deferred Cancel gives its slot back).
		return store.User{}, true, fmt.Errorf("%w (directory %s: %v)", ErrNoAccount, p.Name, err)
	case err != nil:
		return store.User{}, true, err
	}
	if out != nil {
		out.Directory = p.Name
		out.Provision = &r
	}
	if r.User.Disabled {
		return store.User{}, true, ErrDisabled
	}
	if err := a.store.ClearSignInLock(ctx, r.User.ID); err != nil {
		return store.User{}, true, err
	}
	return r.User, true, nil
}
