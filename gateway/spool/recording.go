package spool

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"time"
)

// bufferSize is what a recording buffers between writes to its file.
const bufferSize = 64 << 10

// Recording is a recording being written to the spool. Its writes are
// buffered, and written to the file by Flush, when the buffer fills, and
// by the spool's background flusher at least every second. It is safe for
// concurrent use.
type Recording struct {
	s *Spool

	mu     sync.Mutex
	meta   Meta
	f      *os.File
	index  *os.File // Guacamole recordings only
	buf    *bufio.Writer
	hash   hash.Hash
	size   int64
	err    error // the first failure; Finish then checks the file itself
	logged bool  // err was logged by the background flusher
	closed bool
}

// Create starts a recording for the session m describes; it sets m.Start
// and resets the fields the spool owns.
func (s *Spool) Create(m Meta) (*Recording, error) {
	if !validID(m.SessionID) {
		return nil, fmt.Errorf("spool: session ID %q is not a valid file name", m.SessionID)
	}
	if m.Format != Asciicast && m.Format != Guacamole {
		return nil, fmt.Errorf("spool: unknown recording format %q", m.Format)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.open[m.SessionID] != nil {
		return nil, fmt.Errorf("spool: recording %s is already open", m.SessionID)
	}
	m.Start, m.End, m.Complete, m.Size, m.SHA256, m.Uploaded = s.now().UTC(), time.Time{}, false, 0, "", false

	// The data file's exclusive creation claims the ID, also against a
	// recording of an earlier run still waiting for upload.
	f, err := os.OpenFile(s.dataPath(m), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: create recording %s: %w", m.SessionID, err)
	}
	r := &Recording{s: s, meta: m, f: f, buf: bufio.NewWriterSize(f, bufferSize), hash: sha256.New()}
	fail := func(err error) (*Recording, error) {
		f.Close()
		os.Remove(s.dataPath(m))
		if r.index != nil {
			r.index.Close()
			os.Remove(s.path(m.SessionID, indexExt))
		}
		return nil, fmt.Errorf("spool: create recording %s: %w", m.SessionID, err)
	}
	if m.Format == Guacamole {
		if r.index, err = os.OpenFile(s.path(m.SessionID, indexExt), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return fail(err)
		}
	}
	if err := s.writeMeta(m); err != nil {
		return fail(err)
	}
	s.open[m.SessionID] = r
	s.metrics.RecordingSpooled()
	return r, nil
}

// Meta returns the recording's metadata as it stands.
func (r *Recording) Meta() Meta {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.meta
}

// Write appends p to the recording, and to its checksum.
func (r *Recording) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return 0, err
	}
	n, err := r.buf.Write(p)
	r.hash.Write(p[:n])
	r.size += int64(n)
	if err != nil {
		r.err = fmt.Errorf("spool: write recording %s: %w", r.meta.SessionID, err)
		return n, r.err
	}
	return n, nil
}

// Index returns the writer of a desktop recording's key-frame index, for
// guacrec.NewWriter, and nil for a terminal recording. Index entries are
// written to the file at once.
func (r *Recording) Index() io.Writer {
	if r.index == nil {
		return nil
	}
	return r.index
}

func (r *Recording) usable() error {
	if r.closed {
		return ErrClosed
	}
	return r.err
}

// Flush writes what the recording buffered to its file.
func (r *Recording) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	return r.flush()
}

func (r *Recording) flush() error {
	if err := r.buf.Flush(); err != nil {
		r.err = fmt.Errorf("spool: flush recording %s: %w", r.meta.SessionID, err)
		return r.err
	}
	return nil
}

// Sync flushes, then commits the recording and its index to disk (fsync).
func (r *Recording) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	return r.sync()
}

func (r *Recording) sync() error {
	if err := r.flush(); err != nil {
		return err
	}
	for _, f := range []*os.File{r.f, r.index} {
		if f == nil {
			continue
		}
		if err := f.Sync(); err != nil {
			r.err = fmt.Errorf("spool: sync recording %s: %w", r.meta.SessionID, err)
			return r.err
		}
	}
	return nil
}

// background is the spool flusher's periodic flush; it logs the first
// failure, which the recording's writer sees at its next write.
func (r *Recording) background(fsync bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if r.err == nil {
		if fsync {
			r.sync()
		} else {
			r.flush()
		}
	}
	if r.err != nil && !r.logged {
		r.logged = true
		r.s.log.Error("spool: recording failed", "session", r.meta.SessionID, "err", r.err)
	}
}

// Finish ends the recording: it is flushed, synced and closed, and its
// metadata gets the end time, size and SHA-256, and Complete. After a
// write error, the recording is checked and repaired like one left by a
// crash, and finished as incomplete. Finish returns the final metadata
// even with an error, unless the metadata could not be written.
func (r *Recording) Finish() (Meta, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.meta, ErrClosed
	}
	if r.err == nil {
		r.sync()
	}
	cerr := r.closeFiles()
	if r.err == nil && cerr != nil {
		r.err = fmt.Errorf("spool: close recording %s: %w", r.meta.SessionID, cerr)
	}
	r.meta.End = r.s.now().UTC()
	var errs []error
	if r.err == nil {
		r.meta.Complete = true
		r.meta.Size = r.size
		r.meta.SHA256 = hex.EncodeToString(r.hash.Sum(nil))
	} else {
		errs = append(errs, r.err)
		m, err := r.s.repair(r.meta)
		if err != nil {
			errs = append(errs, err)
		}
		r.meta = m
	}
	if err := r.s.writeMeta(r.meta); err != nil {
		return r.meta, errors.Join(append(errs, fmt.Errorf("spool: finish recording %s: %w", r.meta.SessionID, err))...)
	}
	r.s.forget(r)
	r.s.signalFinished()
	return r.meta, errors.Join(errs...)
}

// abandon flushes and closes the recording without finishing it, as the
// spool closes.
func (r *Recording) abandon() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if r.err == nil {
		r.sync()
	}
	cerr := r.closeFiles()
	r.s.forget(r)
	return errors.Join(r.err, cerr)
}

func (r *Recording) closeFiles() error {
	r.closed = true
	err := r.f.Close()
	if r.index != nil {
		err = errors.Join(err, r.index.Close())
	}
	return err
}

func (s *Spool) forget(r *Recording) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[r.meta.SessionID] == r {
		delete(s.open, r.meta.SessionID)
	}
}
