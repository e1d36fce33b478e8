package guacrec

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrMidInstruction is returned by KeyFrame when the bytes written so far
// end inside an instruction: a key frame must start at an instruction.
var ErrMidInstruction = errors.New("guacrec: key frame inside an instruction")

// Writer records the instructions sent to a browser, exactly as sent, and
// indexes the key frames in them. It buffers nothing: every Write is one
// Write to the recording, every key frame one Write to the index, so
// durability is the underlying writers' (a spool recording flushed every
// second). Writer is safe for concurrent use.
type Writer struct {
	mu      sync.Mutex
	rec     io.Writer
	index   io.Writer
	sc      scanner
	off     int64
	pending bool // a key frame starts at keyOff and awaits its sync
	keyOff  int64
	lastTS  int64
	entries []KeyFrame
	line    []byte
	err     error
}

// NewWriter records to rec and writes the index header to index.
func NewWriter(rec, index io.Writer) (*Writer, error) {
	if _, err := index.Write(appendIndexHeader(nil)); err != nil {
		return nil, fmt.Errorf("guacrec: write index header: %w", err)
	}
	return &Writer{
		rec:   rec,
		index: index,
		sc:    scanner{limits: Limits{MaxInstruction: maxInstruction, MaxElements: maxElements}},
	}, nil
}

// Write records p, encoded instructions as sent to the browser; p may end
// inside an instruction, which the next Write continues. Data that is not
// a valid Guacamole stream, or instructions over RecordingLimits, are not
// recorded and fail the Writer: the recording stays playable up to there.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	// Scan all of p before recording any of it.
	w.entries = w.entries[:0]
	for q := p; len(q) > 0; {
		n, done, err := w.sc.scan(q)
		if err != nil {
			w.err = fmt.Errorf("guacrec: record at byte %d: %w", w.off+int64(len(p)-len(q)+n), err)
			return 0, w.err
		}
		q = q[n:]
		if done && w.sc.sync && w.pending {
			w.lastTS = max(w.sc.ts, w.lastTS)
			w.entries = append(w.entries, KeyFrame{Offset: w.keyOff, Timestamp: w.lastTS})
			w.pending = false
		}
	}
	n, err := w.rec.Write(p)
	w.off += int64(n)
	if err != nil {
		w.err = fmt.Errorf("guacrec: write recording: %w", err)
		return n, w.err
	}
	for _, kf := range w.entries {
		w.line = appendKeyFrame(w.line[:0], kf)
		if _, err := w.index.Write(w.line); err != nil {
			w.err = fmt.Errorf("guacrec: write index: %w", err)
			return n, w.err
		}
	}
	return n, nil
}

// KeyFrame marks that a key frame starts with the next byte written. The
// gateway calls it between instructions, then writes the whole screen
// state and a sync; the key frame enters the index with that sync's
// timestamp. A key frame marked again before a sync replaces the first.
func (w *Writer) KeyFrame() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if !w.sc.atBoundary() {
		return ErrMidInstruction
	}
	w.pending, w.keyOff = true, w.off
	return nil
}

// Flush passes Flush on to the recording and the index writers that have
// one.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	for _, x := range []io.Writer{w.rec, w.index} {
		if f, ok := x.(interface{ Flush() error }); ok {
			if err := f.Flush(); err != nil {
				w.err = fmt.Errorf("guacrec: flush: %w", err)
				return w.err
			}
		}
	}
	return nil
}
