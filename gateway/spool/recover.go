package spool

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/keyway-dev/keyway/recordings/asciicast"
	"github.com/keyway-dev/keyway/recordings/guacrec"
)

// Recover finishes the recordings a crash left open: a last line or
// instruction torn by the crash is cut off, the key-frame index is cut to
// match, and the recording is finished as incomplete with its size and
// checksum, its end time the last time its file was written. It also
// completes deletions a crash interrupted and removes temporary and empty
// orphaned files. Call it at start, before Create and before an Uploader
// runs. It returns the recordings it finished.
func (s *Spool) Recover() ([]Meta, error) {
	metas, err := s.List()
	if err != nil {
		return nil, err
	}
	var recovered []Meta
	var errs []error
	known := make(map[string]bool)
	for _, m := range metas {
		known[m.SessionID] = true
		switch {
		case m.Uploaded:
			if err := s.remove(m); err != nil {
				errs = append(errs, err)
			}
		case m.Finished() || s.isOpen(m.SessionID):
		default:
			fixed, err := s.repair(m)
			if err == nil {
				err = s.writeMeta(fixed)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("spool: recover recording %s: %w", m.SessionID, err))
				continue
			}
			s.log.Warn("spool: recovered a recording left open", "session", fixed.SessionID, "size", fixed.Size)
			recovered = append(recovered, fixed)
		}
	}
	if err := s.removeOrphans(known); err != nil {
		errs = append(errs, err)
	}
	s.signalFinished()
	return recovered, errors.Join(errs...)
}

func (s *Spool) isOpen(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[id] != nil
}

// removeOrphans removes temporary files of interrupted atomic writes, and
// recording files without metadata when they are empty (a crash in
// Create); others are logged and kept for an operator.
func (s *Spool) removeOrphans(known map[string]bool) error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: list %s: %w", s.dir, err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		if strings.HasSuffix(name, tmpExt) {
			errs = append(errs, os.Remove(s.path(name, "")))
			continue
		}
		dot := strings.IndexByte(name, '.')
		if dot < 0 {
			continue
		}
		id, ext := name[:dot], name[dot:]
		if (ext != Asciicast.ext() && ext != Guacamole.ext() && ext != indexExt) || known[id] || s.isOpen(id) {
			continue
		}
		if info, err := e.Info(); err == nil && info.Size() == 0 {
			errs = append(errs, os.Remove(s.path(name, "")))
			continue
		}
		s.log.Error("spool: recording file without metadata, left in place", "file", name)
	}
	return errors.Join(errs...)
}

// recoverLimits read every recording a Writer made, whatever its length.
var recoverLimits = asciicast.Limits{MaxLine: asciicast.DefaultLimits.MaxLine, MaxEvents: math.MaxInt64}

// repair checks a recording's file: a torn end is cut off and the index
// cut to match. It returns m with the size and checksum of the file, not
// complete, and, unless m has one, the end time of its last write.
func (s *Spool) repair(m Meta) (Meta, error) {
	// A missing file is a recording that lost everything: an empty one.
	f, err := os.OpenFile(s.dataPath(m), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return m, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return m, err
	}
	good, err := s.wholeLength(m, f, info.Size())
	if err != nil {
		return m, err
	}
	if good < info.Size() {
		if err := f.Truncate(good); err != nil {
			return m, err
		}
		s.log.Warn("spool: cut the torn end off a recording", "session", m.SessionID, "bytes", info.Size()-good)
	}
	if m.Format == Guacamole {
		if err := s.repairIndex(m, good); err != nil {
			return m, err
		}
	}
	h := sha256.New()
	size, err := io.Copy(h, io.NewSectionReader(f, 0, good))
	if err != nil {
		return m, err
	}
	if err := f.Sync(); err != nil {
		return m, err
	}
	m.Complete, m.Size, m.SHA256 = false, size, hex.EncodeToString(h.Sum(nil))
	if m.End.IsZero() {
		m.End = info.ModTime().UTC()
		if m.End.Before(m.Start) {
			m.End = m.Start
		}
	}
	return m, nil
}

// wholeLength returns the length of the longest start of the recording
// that reads without error. Only a torn end is cut: the data cut short
// inside a line or instruction, or zero bytes where a power loss left
// blocks unwritten. A recording malformed elsewhere is evidence, kept as
// it is.
func (s *Spool) wholeLength(m Meta, f *os.File, size int64) (int64, error) {
	r := io.NewSectionReader(f, 0, size)
	var off int64
	var err error
	switch m.Format {
	case Asciicast:
		var rd *asciicast.Reader
		if rd, err = asciicast.NewReader(r, recoverLimits); err == nil {
			for err == nil {
				_, err = rd.Next()
			}
			off = rd.Offset()
		}
	case Guacamole:
		rd := guacrec.NewReader(r, guacrec.RecordingLimits)
		for err == nil {
			_, err = rd.Next()
		}
		off = rd.Offset()
	}
	switch {
	case err == io.EOF:
		return size, nil
	case errors.Is(err, asciicast.ErrTruncated), errors.Is(err, guacrec.ErrTruncated):
		return off, nil
	case !errors.Is(err, asciicast.ErrMalformed) && !errors.Is(err, asciicast.ErrTooLarge) &&
		!errors.Is(err, guacrec.ErrMalformed) && !errors.Is(err, guacrec.ErrTooLarge):
		return 0, fmt.Errorf("read recording: %w", err)
	}
	zero, zerr := zeroFrom(f, off, size)
	if zerr != nil {
		return 0, zerr
	}
	if zero {
		return off, nil
	}
	s.log.Error("spool: recording is malformed, kept as it is", "session", m.SessionID, "err", err)
	return size, nil
}

// zeroFrom reports whether f holds only zero bytes from off to size.
func zeroFrom(f *os.File, off, size int64) (bool, error) {
	buf := make([]byte, 32<<10)
	for off < size {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		for _, c := range buf[:n] {
			if c != 0 {
				return false, nil
			}
		}
		off += int64(n)
		if err != nil && off < size {
			return false, err
		}
	}
	return true, nil
}

// repairIndex keeps the key frames of a desktop recording that are whole
// in its first size bytes; a damaged index keeps those before the damage.
func (s *Spool) repairIndex(m Meta, size int64) error {
	path := s.path(m.SessionID, indexExt)
	var ix guacrec.Index
	f, err := os.Open(path)
	switch {
	case err == nil:
		ix, err = guacrec.ReadIndex(f)
		f.Close()
		if err != nil && !errors.Is(err, guacrec.ErrTruncated) {
			s.log.Warn("spool: damaged key-frame index, kept the entries before the damage", "session", m.SessionID, "err", err)
		}
	case !os.IsNotExist(err):
		return err
	}
	var buf bytes.Buffer
	if err := guacrec.WriteIndex(&buf, ix.Within(size)); err != nil {
		return err
	}
	return s.writeAtomic(path, buf.Bytes())
}

// remove deletes a recording the portal confirmed. It first marks the
// metadata uploaded, so that Recover completes a deletion cut by a crash
// rather than upload the recording again.
func (s *Spool) remove(m Meta) error {
	if !m.Uploaded {
		m.Uploaded = true
		if err := s.writeMeta(m); err != nil {
			return fmt.Errorf("spool: mark recording %s uploaded: %w", m.SessionID, err)
		}
	}
	for _, p := range []string{s.dataPath(m), s.path(m.SessionID, indexExt), s.path(m.SessionID, metaExt)} {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("spool: delete recording %s: %w", m.SessionID, err)
		}
	}
	return s.syncDir()
}
