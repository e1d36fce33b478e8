//go:build !windows

package app

import (
	"os"
	"os/signal"
	"syscall"
)

// resizeSignals delivers SIGWINCH until stop is called.
func resizeSignals() (ch <-chan os.Signal, stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGWINCH)
	return c, func() { signal.Stop(c) }
}
