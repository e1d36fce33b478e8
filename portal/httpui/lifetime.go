package httpui

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/keyway-dev/keyway/portal/authz"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/store"
)

const (
	// guardInterval is how often every running session is checked against
	// the access it started with. Admin changes and sign-outs check at once
	// as well; the interval catches what nothing announced (a web session
	// that expired, a change made by another tool on the database).
	guardInterval = 2 * time.Second
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
)

// endRemote is how a session ended by the target (the shell exited, the
// desktop closed) is audited, whatever the protocol; the target's own
// words go in the event's reason.
const endRemote = "remote ended"

// sessionGuard is what a running session needs to be ended when the access
// it was opened with ends, or when it runs idle or too long.
type sessionGuard struct {
	userID, resourceID int64
	// files sessions are checked against the files grant, others against
	// the terminal (or desktop) grant.
	files bool
	// webToken is the browser's sign-in session that opened it (signing
	// out there ends it), and epoch the user's session epoch then (a
	// password change ends it). A sign-in that merely expires does not:
	// the socket keeps no sign-in alive, so an hour's typing would
	// otherwise outlive it.
	webToken string
	epoch    int64
	// idle and maxLen are the resource's limits; zero is none.
	idle, maxLen time.Duration
	// lastInput is when the user last typed, clicked or moved the mouse
	// (Unix nanoseconds); pongs and the server's output do not count.
	lastInput atomic.Int64
	// warned is the deadline the user was last warned about, so a warning
	// is sent once per deadline.
	warned atomic.Int64
	// warn tells the user, in the session's own channel, that it will end
	// soon; nil where the session has no way to show it.
	warn func(msg string)
}

// touch records the user's input.
func (g *sessionGuard) touch(now time.Time) { g.lastInput.Store(now.UnixNano()) }

// newGuard describes a session of u on res opened from the request's
// sign-in session.
func (s *Server) newGuard(ctx context.Context, u store.User, res store.Resource, files bool) *sessionGuard {
	g := &sessionGuard{userID: u.ID, resourceID: res.ID, files: files, webToken: s.Sessions.Token(ctx), epoch: u.SessionEpoch}
	if !files {
		g.idle = time.Duration(res.Options.IdleTimeoutSeconds) * time.Second
		g.maxLen = time.Duration(res.Options.MaxSessionSeconds) * time.Second
	}
	g.touch(s.Now())
	return g
}

// endSignedOut ends the running sessions opened from the sign-in session
// token, which has just signed out.
func (s *Server) endSignedOut(token string) {
	if token == "" {
		return
	}
	s.mu.Lock()
	var ending []*liveSession
	for _, ls := range s.live {
		if ls.guard != nil && ls.guard.webToken == token {
			ending = append(ending, ls)
		}
	}
	s.mu.Unlock()
	for _, ls := range ending {
		gateways.TerminateWith(ls.conn, endSignedOut, "You signed out, so the session has ended.")
	}
}

// kickGuard asks the guard to check every running session now, after a
// change that may end some (a grant removed, a user disabled, a password
// changed).
func (s *Server) kickGuard() {
	select {
	case s.kick <- struct{}{}:
	default: // a check is already due
	}
}

// guardSessions checks the running sessions every guardInterval, and when
// kicked, until ctx ends.
func (s *Server) guardSessions(ctx context.Context) {
	tick := time.NewTicker(guardInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.kick:
		}
		s.checkSessions(ctx)
	}
}

// checkSessions ends every running session whose access has ended, or that
// ran idle or past its length, and warns those about to.
func (s *Server) checkSessions(ctx context.Context) {
	s.mu.Lock()
	sessions := make([]*liveSession, 0, len(s.live))
	for _, ls := range s.live {
		if ls.guard != nil {
			sessions = append(sessions, ls)
		}
	}
	s.mu.Unlock()
	now := s.Now()
	users := map[int64]store.User{}
	for _, ls := range sessions {
		code, reason, err := s.endReason(ctx, ls, users, now)
		if err != nil {
			// The database is unreachable: sessions keep running rather than
			// all ending on a transient error; the next check tries again.
			s.Logger.Error("check running session", "session", ls.id, "err", err)
			continue
		}
		if code != "" {
			s.Logger.Info("ending session", "session", ls.id, "user", ls.user, "resource", ls.resource, "reason", code)
			gateways.TerminateWith(ls.conn, code, reason)
		}
	}
}

// endReason says why ls must end now, if it must, and warns its user of a
// time limit about to end it. users caches the users of this check.
func (s *Server) endReason(ctx context.Context, ls *liveSession, users map[int64]store.User, now time.Time) (code, reason string, err error) {
	g := ls.guard
	u, ok := users[g.userID]
	if !ok {
		u, err = s.Store.UserByID(ctx, g.userID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return endAccessRevoked, "Your account was deleted, so the session has ended.", nil
		case err != nil:
			return "", "", err
		}
		users[g.userID] = u
	}
	switch {
	case u.Disabled:
		return endAccessRevoked, "Your account was disabled, so the session has ended.", nil
	case u.SessionEpoch != g.epoch:
		return endSignedOut, "Your password was changed, so the session has ended. Sign in again to reconnect.", nil
	}
	check := s.Authz.Resource
	if g.files {
		check = s.Authz.Files
	}
	if _, err := check(ctx, u, g.resourceID); err != nil {
		switch {
		case errors.Is(err, store.ErrNotFound):
			return endAccessRevoked, fmt.Sprintf("The resource %s was deleted, so the session has ended.", ls.resource), nil
		case errors.Is(err, authz.ErrDenied):
			return endAccessRevoked, fmt.Sprintf("Your access to %s was removed, so the session has ended.", ls.resource), nil
		}
		return "", "", err
	}
	if g.maxLen > 0 {
		deadline := ls.start.Add(g.maxLen)
		if !now.Before(deadline) {
			return endMaxDuration, fmt.Sprintf("The session reached its maximum length of %s and was closed.", g.maxLen), nil
		}
		g.warnBefore(now, deadline, fmt.Sprintf("This session reaches its maximum length of %s in under a minute and will then close.", g.maxLen))
	}
	if g.idle > 0 {
		deadline := time.Unix(0, g.lastInput.Load()).Add(g.idle)
		if !now.Before(deadline) {
			return endIdle, fmt.Sprintf("The session was idle for %s and was closed.", g.idle), nil
		}
		g.warnBefore(now, deadline, fmt.Sprintf("This session has been idle for a while: it closes in under a minute unless you type or use the mouse (idle limit %s).", g.idle))
	}
	return "", "", nil
}

// warnBefore warns the user once per deadline, when it is less than
// endWarning away.
func (g *sessionGuard) warnBefore(now, deadline time.Time, msg string) {
	if g.warn == nil || deadline.Sub(now) > endWarning {
		return
	}
	if g.warned.Swap(deadline.UnixNano()) != deadline.UnixNano() {
		g.warn(msg)
	}
}
