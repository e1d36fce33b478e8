package sessions

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// CodeDraining is the refusal code of a session asked for while the
// portal drains, and CodePortalShutdown the close code of a session the
// drain ended; the session's end is audited as "portal shutting down".
const (
	CodeDraining       = "draining"
	CodePortalShutdown = "portal_shutting_down"
)

// Words the user sees while the portal drains.
const (
	msgDraining       = "This portal is restarting; reconnect in a moment."
	msgPortalShutdown = "This portal is restarting, so the session was closed. Reconnect in a moment."
	// MsgGatewayShutdown is what the user of a session closed by its
	// draining gateway is told.
	MsgGatewayShutdown = "The gateway of this session restarted, so the session was closed. Reconnect in a moment."
)

// CodeGatewayDraining is the Notice code of a session whose gateway
// drains, and CodeGatewayShutdown the end of one it then closed.
const (
	CodeGatewayDraining = "gateway_draining"
	CodeGatewayShutdown = "gateway_shutting_down"
)

// Notice tells a session's user that it will be closed: the portal or
// its gateway is restarting.
type Notice struct {
	// Code is CodeDraining (this portal) or "gateway_draining".
	Code    string
	Message string
	// Deadline is when the session will be closed.
	Deadline time.Time
}

// OnNotice sets how the session's user is told that the session will be
// closed (the portal drains). Set while the portal already drains, notify
// is called at once.
func (s *Session) OnNotice(notify func(Notice)) {
	m := s.m
	m.mu.Lock()
	s.notify = notify
	n, pending := s.notice, s.notice.Code != ""
	m.mu.Unlock()
	if pending {
		notify(n)
	}
}

// sendNotice tells s's user of n now, or as soon as the page can be told
// (OnNotice).
func (s *Session) sendNotice(n Notice) {
	m := s.m
	m.mu.Lock()
	s.notice = n
	notify := s.notify
	m.mu.Unlock()
	if notify != nil {
		notify(n)
	}
}

// Drain makes the manager refuse every new session from now on, and
// tells the users of the running ones that they are closed at deadline.
// It reports false if the manager already drains.
func (m *Manager) Drain(deadline time.Time) bool {
	m.mu.Lock()
	if !m.drainDeadline.IsZero() {
		m.mu.Unlock()
		return false
	}
	m.drainDeadline = deadline
	n := Notice{Code: CodeDraining, Deadline: deadline,
		Message: "This portal is restarting: this session will be closed when the countdown ends. Finish or save your work, then reconnect."}
	// A session being opened now gets it when it registers (Open).
	m.drainNotice = n
	m.mu.Unlock()
	for _, s := range m.Live() {
		s.sendNotice(n)
	}
	return true
}

// Draining reports whether the manager drains, and until when.
func (m *Manager) Draining() (deadline time.Time, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.drainDeadline, !m.drainDeadline.IsZero()
}

// refuseDraining is the refusal of a session asked for while the portal
// drains, or nil.
func (m *Manager) refuseDraining() *Refusal {
	if _, ok := m.Draining(); !ok {
		return nil
	}
	return &Refusal{Code: CodeDraining, Reason: "the portal is draining before it stops", Status: http.StatusServiceUnavailable,
		Message: msgDraining}
}

// Running is the number of sessions running now (tests of resources and
// watches are not counted).
func (m *Manager) Running() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.live)
}

// WaitIdle waits until no session runs, or ctx ends.
func (m *Manager) WaitIdle(ctx context.Context) error {
	for {
		m.mu.Lock()
		n, changed := len(m.live), m.changed
		m.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// liveChanged wakes WaitIdle; m.mu is held.
func (m *Manager) liveChanged() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// CloseAll closes every running session because the portal stops: each
// relay tells its user and audits the end as "portal shutting down". It
// returns the number of sessions closed.
func (m *Manager) CloseAll() int {
	live := m.Live()
	for _, s := range live {
		s.Terminate(CodePortalShutdown, msgPortalShutdown)
	}
	if len(live) > 0 {
		m.Logger.Info("closed the sessions still running", "sessions", len(live))
	}
	return len(live)
}

// maxGatewayDrain bounds how far ahead a gateway's drain deadline is
// believed: the longest --drain-timeout.
const maxGatewayDrain = 24 * time.Hour

// GatewayDraining tells the users of the sessions running through the
// gateway with id gatewayID that it restarts and closes them at
// deadline.
func (m *Manager) GatewayDraining(gatewayID string, deadline time.Time) {
	// The deadline is the gateway's word: a broken or hostile one must
	// not announce a close years away.
	if latest := m.Now().Add(maxGatewayDrain); deadline.After(latest) {
		deadline = latest
	}
	n := Notice{Code: CodeGatewayDraining, Deadline: deadline,
		Message: "The gateway of this session is restarting: the session will be closed when the countdown ends. Finish or save your work, then reconnect."}
	for _, s := range m.Live() {
		if s.Gateway.ID != gatewayID {
			continue
		}
		m.mu.Lock()
		same := s.notice.Code == n.Code && s.notice.Deadline.Equal(deadline)
		m.mu.Unlock()
		if !same {
			s.sendNotice(n)
		}
	}
}

// Countdown words a deadline for a message that cannot count down
// itself: "in 29 minutes".
func Countdown(now, deadline time.Time) string {
	d := deadline.Sub(now).Round(time.Second)
	switch {
	case d <= 0:
		return "now"
	case d == time.Second:
		return "in 1 second"
	case d < 2*time.Minute:
		return fmt.Sprintf("in %d seconds", int(d.Seconds()))
	default:
		return fmt.Sprintf("in %d minutes", int(d.Minutes()))
	}
}

// NoticeCode is the Code of the last Notice the session's user was given,
// or "": a session closed after "gateway_draining" ended because its
// gateway restarted, not because it was lost.
func (s *Session) NoticeCode() string {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	return s.notice.Code
}
