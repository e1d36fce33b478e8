package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keyway-dev/keyway/gateway"
	"github.com/keyway-dev/keyway/gateway/spool"
	"github.com/keyway-dev/keyway/portal/httpui"
)

// defaultDrainTimeout is how long running sessions may go on after a
// SIGTERM; then they are closed. Long enough to finish a task, short
// enough for an upgrade window.
const defaultDrainTimeout = 30 * time.Minute

// drainUploadWait bounds the wait for the embedded gateway's recordings
// to reach the recording store once the sessions ended. What is not
// uploaded by then stays in the spool and goes at the next start.
const drainUploadWait = time.Minute

// drainCloseWait bounds the wait for closed sessions to end: their
// relays and the gateway's recordings finish within moments.
const drainCloseWait = 15 * time.Second

// parseDrainTimeout reads --drain-timeout: a Go duration, at least 0 (no
// wait); empty is the default.
func parseDrainTimeout(s string) (time.Duration, error) {
	if s == "" {
		return defaultDrainTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > 24*time.Hour {
		return 0, fmt.Errorf("--drain-timeout %q: give a duration up to 24h, such as 30m, or 0 to close sessions at once", s)
	}
	return d, nil
}

// stopNowKey keys the context of the second signal in the context of the
// first (withStopNow).
type stopNowKey struct{}

// withStopNow returns ctx, whose end starts a drain, carrying now, whose
// end cuts the drain short.
func withStopNow(ctx, now context.Context) context.Context {
	return context.WithValue(ctx, stopNowKey{}, now)
}

// stopNow is the context whose end cuts a drain short: the second
// signal's; a context that never ends when none was given.
func stopNow(ctx context.Context) context.Context {
	if now, ok := ctx.Value(stopNowKey{}).(context.Context); ok {
		return now
	}
	return context.Background()
}

// shutdownSignals returns a context that ends at the first SIGTERM or
// SIGINT (drain) carrying one that ends at the second (stop now, see
// stopNow); stop releases the signals.
func shutdownSignals() (ctx context.Context, stop func()) {
	drain, startDrain := context.WithCancel(context.Background())
	now, stopAtOnce := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, cancel := range []context.CancelFunc{startDrain, stopAtOnce} {
			select {
			case <-sig:
				cancel()
			case <-now.Done():
				return
			}
		}
	}()
	return withStopNow(drain, now), func() {
		signal.Stop(sig)
		stopAtOnce()
		startDrain()
		<-done
	}
}

// drainer is what a portal's drain works on.
type drainer struct {
	ui      *httpui.Server
	srv     *http.Server
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
	d.ui.Drain(deadline)
	// New connections of a load balancer go to ready replicas; this one
	// closes each of its connections after the answer in flight.
	d.srv.SetKeepAlivesEnabled(false)
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

// uploadPoll is how often the spool is looked at while recordings wait
// for upload: the uploader announces no progress.
const uploadPoll = 100 * time.Millisecond

// waitUploads waits, at most drainUploadWait and until now ends, for the
// spool's recordings to be uploaded.
func (d drainer) waitUploads(now context.Context) {
	ctx, cancel := context.WithTimeout(now, drainUploadWait)
	defer cancel()
	tick := time.NewTicker(uploadPoll)
	defer tick.Stop()
	for {
		n, _, err := d.spool.Pending()
		if err != nil {
			d.logger.Warn("drain: cannot look at the recording spool", "err", err)
			return
		}
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			d.logger.Warn("recordings not yet uploaded stay in the spool and are uploaded at the next start", "recordings", n)
			return
		case <-tick.C:
		}
	}
}
