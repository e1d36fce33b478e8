//go:build !windows

package app

import (
	"os"
	"os/signal"
	"syscall"
)

// watchResize calls resized on every SIGWINCH until done closes.
func watchResize(done <-chan struct{}, resized func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	defer signal.Stop(ch)
	for {
		select {
		case <-done:
			return
		case <-ch:
			resized()
		}
	}
}
