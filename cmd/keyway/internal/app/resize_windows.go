//go:build windows

package app

import "os"

// resizeSignals delivers nothing: Windows consoles send no SIGWINCH, so
// the remote terminal keeps the size it started with.
func resizeSignals() (ch <-chan os.Signal, stop func()) {
	return nil, func() {}
}
