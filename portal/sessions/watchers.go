package sessions

import (
	"bytes"
	"sync"
)

// watchBuffer is how many output chunks a watcher may fall behind before
// it is dropped; the session itself never waits for watchers.
const watchBuffer = 256

// Watchers fans a terminal's output out to read-only viewers.
type Watchers struct {
	mu    sync.Mutex
	set   map[chan []byte]struct{}
	ended bool
}

// Add registers a viewer; its channel closes when the session ends or the
// viewer falls behind. ok is false once the session has ended.
func (w *Watchers) Add() (ch chan []byte, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return nil, false
	}
	if w.set == nil {
		w.set = map[chan []byte]struct{}{}
	}
	ch = make(chan []byte, watchBuffer)
	w.set[ch] = struct{}{}
	return ch, true
}

// Remove unregisters a viewer that left.
func (w *Watchers) Remove(ch chan []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.set[ch]; ok {
		delete(w.set, ch)
		close(ch)
	}
}

// Send gives every viewer a copy of p, dropping viewers that are full.
func (w *Watchers) Send(p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.set {
		select {
		case ch <- bytes.Clone(p):
		default:
			delete(w.set, ch)
			close(ch)
		}
	}
}

// end closes every viewer's channel: the session is over.
func (w *Watchers) end() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	for ch := range w.set {
		close(ch)
	}
	w.set = nil
}
