package httpui

import (
	"context"
	"strconv"
	"time"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/portal/sessions"
)

// Drain starts the portal's drain: from now on /readyz fails, so that a
// load balancer sends new users elsewhere, and every new session is
// refused; the users of running sessions are told that they close at
// deadline. Pages, sign-in included, go on working. It reports false if
// the portal already drains.
func (s *Server) Drain(deadline time.Time) bool {
	if !s.live.Drain(deadline) {
		return false
	}
	s.Logger.Info("draining: no new sessions; running ones close at the deadline unless they end before",
		"sessions", s.live.Running(), "deadline", deadline.Format(time.RFC3339))
	return true
}

// RunningSessions is the number of sessions running now.
func (s *Server) RunningSessions() int { return s.live.Running() }

// WaitSessions waits until no session runs, or ctx ends.
func (s *Server) WaitSessions(ctx context.Context) error { return s.live.WaitIdle(ctx) }

// CloseSessions closes every running session because the portal stops;
// each is audited as ended by "portal shutting down". It returns how
// many it closed.
func (s *Server) CloseSessions() int { return s.live.CloseAll() }

// errDraining is the readiness check of a draining portal.
const errDraining = healthError("draining: the portal is shutting down and takes no new sessions")

// noticeControl is the terminal page's message of a Notice. It is a
// "warning", which pages from before drains show as it is (Message, its
// countdown fixed); a page that knows Seconds shows a banner counting
// down instead, with Notice as its words.
func noticeControl(n sessions.Notice, now time.Time) control {
	secs := max(int(n.Deadline.Sub(now).Round(time.Second).Seconds()), 0)
	return control{Type: "warning", Code: n.Code, Message: noticeText(n, now), Notice: n.Message,
		Seconds: &secs, Deadline: n.Deadline.UTC().Format(time.RFC3339)}
}

// noticeText is a Notice in words, with the time left fixed.
func noticeText(n sessions.Notice, now time.Time) string {
	return n.Message + " It closes " + sessions.Countdown(now, n.Deadline) + "."
}

// noticeInstruction is the desktop page's message of a Notice: the
// portal's warning msg, whose first argument pages from before drains
// show as it is; the others are the words without the time, the seconds
// left and the code.
func noticeInstruction(n sessions.Notice, now time.Time) guac.Instruction {
	secs := max(int(n.Deadline.Sub(now).Round(time.Second).Seconds()), 0)
	return guac.New("msg", strconv.Itoa(guacMsgWarning), noticeText(n, now), n.Message, strconv.Itoa(secs), n.Code)
}

// gatewayRestarted reports whether sess ended because its gateway drained
// and closed it: its user had been told so (a gateway_draining notice).
func gatewayRestarted(sess any) bool {
	n, ok := sess.(interface{ NoticeCode() string })
	return ok && n.NoticeCode() == sessions.CodeGatewayDraining
}
