// Package shutdown is how the portal and the gateway stop: the first
// SIGTERM or SIGINT starts a drain (no new sessions; running ones go on
// until a timeout), the second cuts it short.
package shutdown

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// DefaultDrainTimeout is how long running sessions may go on after a
// SIGTERM: long enough to finish a task, short enough for an upgrade
// window.
const DefaultDrainTimeout = 30 * time.Minute

// maxDrainTimeout bounds --drain-timeout.
const maxDrainTimeout = 24 * time.Hour

// ParseDrainTimeout reads --drain-timeout: a Go duration from 0 (close
// sessions at once) to 24h; empty is DefaultDrainTimeout.
func ParseDrainTimeout(s string) (time.Duration, error) {
	if s == "" {
		return DefaultDrainTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > maxDrainTimeout {
		return 0, fmt.Errorf("--drain-timeout %q: give a duration up to 24h, such as 30m, or 0 to close sessions at once", s)
	}
	return d, nil
}

// nowKey keys the context of the second signal in that of the first.
type nowKey struct{}

// WithStopNow returns ctx, whose end starts a drain, carrying now, whose
// end cuts the drain short (StopNow).
func WithStopNow(ctx, now context.Context) context.Context {
	return context.WithValue(ctx, nowKey{}, now)
}

// StopNow is the context whose end cuts ctx's drain short: the second
// signal's; one that never ends when ctx carries none.
func StopNow(ctx context.Context) context.Context {
	if now, ok := ctx.Value(nowKey{}).(context.Context); ok {
		return now
	}
	return context.Background()
}

// Signals returns a context that ends at the first SIGTERM or SIGINT,
// carrying (StopNow) one that ends at the second; stop releases the
// signals and waits for the goroutine watching them.
func Signals() (ctx context.Context, stop func()) {
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
	return WithStopNow(drain, now), func() {
		signal.Stop(sig)
		stopAtOnce()
		startDrain()
		<-done
	}
}
