//go:build windows

package app

// watchResize waits for done: Windows consoles send no SIGWINCH, so the
// remote terminal keeps the size it started with.
func watchResize(done <-chan struct{}, resized func()) {
	<-done
}
