package sessions

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/keyway-dev/keyway/portal/policy"
	"github.com/keyway-dev/keyway/portal/store"
)

const (
	// GuardInterval is how often every running session is checked against
	// the access it started with. Admin changes and sign-outs check at once
	// as well (Kick); the interval catches what nothing announced (a change
	// made by another tool on the database).
	GuardInterval = 2 * time.Second
	// endWarning is how long before an idle timeout or a maximum session
	// length ends a session its user is warned.
	endWarning = time.Minute
)

// Codes of the reasons the portal ends a session by itself; the session's
// end is audited with them ("access revoked", …).
const (
	endAccessRevoked = "access_revoked"
	endSignedOut     = "signed_out"
	endIdle          = "idle_timeout"
	endMaxDuration   = "max_duration"
	endPolicy        = "policy"
)

// guard is what a running session needs to be ended when the access it
// was opened with ends, or when it runs idle or too long.
type guard struct {
	// epoch is the user's session epoch when the session started: a
	// password change ends it. A sign-in that merely expires does not:
	// the socket keeps no sign-in alive, so an hour's typing would
	// otherwise outlive it.
	epoch int64
	// idle and maxLen are the limits of the resource and its policies;
	// zero is none. maxLen follows the policies as they change; only the
	// guard's goroutine uses it once the session runs.
	idle, maxLen time.Duration
	// lastInput is when the user last typed, clicked or moved the mouse
	// (Unix nanoseconds); pongs and the server's output do not count.
	lastInput atomic.Int64
	// warned is the deadline the user was last warned about, so a warning
	// is sent once per deadline.
	warned atomic.Int64
	// warn tells the user, in the session's own channel, that it will end
	// soon; nil where the session has no way to show it.
	warn atomic.Pointer[func(msg string)]
}

func (g *guard) touch(now time.Time)           { g.lastInput.Store(now.UnixNano()) }
func (g *guard) setWarn(warn func(msg string)) { g.warn.Store(&warn) }

// newGuard describes how s is guarded.
func (m *Manager) newGuard(s *Session) *guard {
	g := &guard{epoch: s.User.SessionEpoch}
	// A tcp stream has no user input the portal can see: no idle limit.
	if s.Kind != KindFiles && s.Kind != KindTCP {
		g.idle = time.Duration(s.Resource.Options.IdleTimeoutSeconds) * time.Second
		g.maxLen = time.Duration(s.Resource.Options.MaxSessionSeconds) * time.Second
	}
	if p := s.Effective.MaxSession; p > 0 && (g.maxLen == 0 || p < g.maxLen) {
		g.maxLen = p
	}
	g.touch(m.Now())
	return g
}

// Kick asks the guard to check every running session now, after a change
// that may end some (a grant removed, a user disabled, a password
// changed).
func (m *Manager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default: // a check is already due
	}
}

// Run checks the running sessions every GuardInterval, and when kicked,
// until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	tick := time.NewTicker(GuardInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-m.kick:
		}
		m.Check(ctx)
	}
}

// Check ends every running session whose access has ended, or that ran
// idle or past its length, and warns those about to.
func (m *Manager) Check(ctx context.Context) {
	now := m.Now()
	users := map[int64]store.User{}
	for _, s := range m.Live() {
		code, reason, err := m.endReason(ctx, s, users, now)
		if err != nil {
			// The database is unreachable: sessions keep running rather than
			// all ending on a transient error; the next check tries again.
			m.Logger.Error("check running session", "session", s.ID, "err", err)
			continue
		}
		if code != "" {
			m.Logger.Info("ending session", "session", s.ID, "user", s.User.Name, "resource", s.Resource.Name, "reason", code)
			s.Terminate(code, reason)
		}
	}
}

// endReason says why s must end now, if it must, and warns its user of a
// time limit about to end it. users caches the users of this check.
func (m *Manager) endReason(ctx context.Context, s *Session, users map[int64]store.User, now time.Time) (code, reason string, err error) {
	g := s.guard
	u, ok := users[s.User.ID]
	if !ok {
		u, err = m.Store.UserByID(ctx, s.User.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return endAccessRevoked, "Your account was deleted, so the session has ended.", nil
		case err != nil:
			return "", "", err
		}
		users[s.User.ID] = u
	}
	switch {
	case !sameRow(u.CreatedAt, s.User.CreatedAt):
		// The id now names another user: SQLite reuses the highest id
		// after a deletion.
		return endAccessRevoked, "Your account was deleted, so the session has ended.", nil
	case u.Disabled:
		return endAccessRevoked, "Your account was disabled, so the session has ended.", nil
	case u.SessionEpoch != g.epoch:
		return endSignedOut, "Your password was changed, so the session has ended. Sign in again to reconnect.", nil
	}
	if s.Device.ID != 0 && m.DeviceUsable != nil {
		if derr := m.DeviceUsable(ctx, s.Device.ID); derr != nil {
			code, reason, transient := deviceEnd(derr)
			if transient {
				return "", "", derr
			}
			return code, reason, nil
		}
	}
	state, err := m.Store.ResourceAccess(ctx, u.ID, s.Resource.ID)
	if err != nil {
		return "", "", err
	}
	allowed := state.Access.Terminal
	if s.Kind == KindFiles {
		allowed = state.Access.Files
	}
	switch {
	case !state.UserExists || !sameRow(state.UserCreated, s.User.CreatedAt):
		return endAccessRevoked, "Your account was deleted, so the session has ended.", nil
	case state.UserDisabled:
		return endAccessRevoked, "Your account was disabled, so the session has ended.", nil
	case !state.ResourceExists || !sameRow(state.ResourceCreated, s.Resource.CreatedAt):
		return endAccessRevoked, fmt.Sprintf("The resource %s was deleted, so the session has ended.", s.Resource.Name), nil
	case !allowed:
		return endAccessRevoked, fmt.Sprintf("Your access to %s was removed, so the session has ended.", s.Resource.Name), nil
	}
	if s.Kind == KindTCP && s.Resource.Protocol != store.ProtocolTCP && s.Resource.Protocol != store.ProtocolNetwork {
		// The tunnel option may have been switched off since.
		if res, err := m.Store.ResourceByID(ctx, s.Resource.ID); err == nil && !res.Options.Tunnel {
			return endAccessRevoked, fmt.Sprintf("Tunnels to %s were switched off, so the connection has ended.", s.Resource.Name), nil
		}
	}
	if m.Policies != nil {
		// Policies changed since the session started, or a time window
		// closed: the session follows them (all but the number of
		// sessions, which counted when it started).
		addr, _ := netip.ParseAddr(s.Client.Addr)
		eff, err := m.Policies.Check(ctx, policy.Input{User: u, Resource: s.Resource, Kind: string(s.Kind), ClientAddr: addr.Unmap(), Now: now})
		var ref *policy.Refusal
		switch {
		case errors.As(err, &ref):
			return endPolicy, ref.Message + " The session has ended.", nil
		case err != nil:
			return "", "", err
		}
		g.maxLen = time.Duration(s.Resource.Options.MaxSessionSeconds) * time.Second
		if s.Kind == KindFiles || s.Kind == KindTCP {
			g.maxLen = 0
		}
		if p := eff.MaxSession; p > 0 && (g.maxLen == 0 || p < g.maxLen) {
			g.maxLen = p
		}
	}
	if g.maxLen > 0 {
		deadline := s.Start.Add(g.maxLen)
		if !now.Before(deadline) && g.warnedOf(deadline) {
			return endMaxDuration, fmt.Sprintf("The session reached its maximum length of %s and was closed.", g.maxLen), nil
		}
		g.warnBefore(now, deadline, fmt.Sprintf("This session reaches its maximum length of %s in under a minute and will then close.", g.maxLen))
	}
	if g.idle > 0 {
		deadline := time.Unix(0, g.lastInput.Load()).Add(g.idle)
		if !now.Before(deadline) && g.warnedOf(deadline) {
			return endIdle, fmt.Sprintf("The session was idle for %s and was closed.", g.idle), nil
		}
		g.warnBefore(now, deadline, fmt.Sprintf("This session has been idle for a while: it closes in under a minute unless you type or use the mouse (idle limit %s).", g.idle))
	}
	return "", "", nil
}

// warnedOf reports whether the user was warned of deadline, or cannot be:
// a session is never ended for its idle or length limit without a
// warning first, even when a check comes late (a loaded machine) and
// finds the deadline already past; it then ends at the next check.
func (g *guard) warnedOf(deadline time.Time) bool {
	return g.warn.Load() == nil || g.warned.Load() == deadline.UnixNano()
}

// warnBefore warns the user once per deadline, when it is less than
// endWarning away.
func (g *guard) warnBefore(now, deadline time.Time, msg string) {
	warn := g.warn.Load()
	if warn == nil || deadline.Sub(now) > endWarning {
		return
	}
	if g.warned.Swap(deadline.UnixNano()) != deadline.UnixNano() {
		(*warn)(msg)
	}
}

// sameRow reports whether a row read now, created at now, is the one a
// session started with, created at then: a deleted user's or resource's
// id is given to the next one created. A session made without a stored
// row (then is zero) is taken as the same.
func sameRow(now, then time.Time) bool { return then.IsZero() || now.Equal(then) }
