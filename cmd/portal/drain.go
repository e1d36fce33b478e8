package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/keyway-dev/keyway/gateway"
	"github.com/keyway-dev/keyway/gateway/control"
	"github.com/keyway-dev/keyway/gateway/spool"
	"github.com/keyway-dev/keyway/portal/httpui"
)

// drainUploadWait bounds the wait for the embedded gateway's recordings
// to reach the recording store once the sessions ended. What is not
// uploaded by then stays in the spool and goes at the next start.
const drainUploadWait = time.Minute

// drainCloseWait bounds the wait for closed sessions to end: their
// relays and the gateway's recordings finish within moments.
const drainCloseWait = 15 * time.Second

// drainer is what a portal's drain works on.
type drainer struct {
	ui      *httpui.Server
	gw      *gateway.Gateway
	spool   *spool.Spool
	timeout time.Duration
	logger  *slog.Logger
}

// run drains the portal: it stops taking sessions (readiness fails at
// once), lets running ones go on until the timeout — their users see a
// countdown — or until now ends, closes those left, waits for the
// embedded gateway to finish their recordings and, unless now ended, for
// the recordings to be uploaded (a timeout of 0 waits for nothing, as a
// portal without drains did). Pages and gateway uploads are served
// throughout.
func (d drainer) run(now context.Context) {
	start := time.Now()
	deadline := start.Add(d.timeout)
	// From now on the HTTP/1 connections a load balancer keeps open to
	// this replica close after their next answer, so that it opens them
	// again to a ready one (httpui.Server.ServeHTTP).
	d.ui.Drain(deadline)
	wait, cancel := context.WithDeadline(now, deadline)
	err := d.ui.WaitSessions(wait)
	cancel()
	if err != nil {
		why := "drain timeout reached"
		if now.Err() != nil {
			why = "second signal"
		}
		d.logger.Info("closing the sessions still running", "reason", why, "sessions", d.ui.RunningSessions())
		d.ui.CloseSessions()
		closing, cancel := context.WithTimeout(context.Background(), drainCloseWait)
		if err := d.ui.WaitSessions(closing); err != nil {
			d.logger.Warn("sessions did not end in time after being closed", "sessions", d.ui.RunningSessions())
		}
		cancel()
	}
	// The embedded gateway finishes each recording when the portal's
	// side of its session closes.
	recs, cancel := context.WithTimeout(context.Background(), drainCloseWait)
	if err := d.gw.WaitIdle(recs); err != nil {
		d.logger.Warn("the embedded gateway's sessions did not end in time", "sessions", d.gw.ActiveSessions())
	}
	cancel()
	if d.timeout > 0 {
		d.waitUploads(now)
	}
	d.logger.Info("drained", "took", time.Since(start).Round(time.Millisecond))
}

// waitUploads waits, at most drainUploadWait and until now ends, for the
// spool's recordings to be uploaded.
func (d drainer) waitUploads(now context.Context) {
	ctx, cancel := context.WithTimeout(now, drainUploadWait)
	defer cancel()
	n, err := control.WaitUploaded(ctx, d.spool)
	switch {
	case err != nil:
		d.logger.Warn("drain: cannot look at the recording spool", "err", err)
	case n > 0:
		d.logger.Warn("recordings not yet uploaded stay in the spool and are uploaded at the next start", "recordings", n)
	}
}
