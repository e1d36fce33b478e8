package gateway

import (
	"context"
	"fmt"
	"time"
)

// drainState is a gateway's drain: when it began and when it closes the
// sessions still running.
type drainState struct{ deadline time.Time }

// Drain makes the gateway refuse every new session and relay from now on
// (wire.CodeDraining, which the portal answers by choosing another
// gateway of the segment) and report itself not ready, saying until when
// it lets running sessions go on. It reports false if it already drains.
// Closing the sessions still running at deadline is the caller's (Close).
func (g *Gateway) Drain(deadline time.Time) bool {
	if !g.drain.CompareAndSwap(nil, &drainState{deadline: deadline}) {
		return false
	}
	g.cfg.Logger.Info("draining: no new sessions; running ones go on until the deadline", "sessions", g.ActiveSessions(),
		"deadline", deadline.Format(time.RFC3339))
	return true
}

// draining is the error of a draining gateway, or nil.
func (g *Gateway) draining() error {
	d := g.drain.Load()
	if d == nil {
		return nil
	}
	return fmt.Errorf("draining: the gateway is restarting and takes no new sessions; running ones close by %s", d.deadline.UTC().Format(time.RFC3339))
}

// drainDeadline is when a draining gateway closes its sessions, or zero.
func (g *Gateway) drainDeadline() time.Time {
	if d := g.drain.Load(); d != nil {
		return d.deadline
	}
	return time.Time{}
}

// sessionStarted and sessionEnded count the sessions (and relays)
// running; an end wakes WaitIdle.
func (g *Gateway) sessionStarted() { g.active.Add(1) }

func (g *Gateway) sessionEnded() {
	g.idleMu.Lock()
	g.active.Add(-1)
	close(g.idleChanged)
	g.idleChanged = make(chan struct{})
	g.idleMu.Unlock()
}

// WaitIdle waits until no session or relay runs, or ctx ends. A session
// has finished its recording (in the spool) when it no longer counts.
func (g *Gateway) WaitIdle(ctx context.Context) error {
	for {
		g.idleMu.Lock()
		n, changed := g.active.Load(), g.idleChanged
		g.idleMu.Unlock()
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
