// Package spool keeps a gateway's session recordings on its own disk until
// the portal has them: recordings are written here while sessions run, and
// an Uploader sends the finished ones to the portal, retrying while it is
// unreachable, and deletes each only once the portal confirmed its SHA-256
// (gateways keep working while the portal is away: docs/architecture.md).
//
// A crash loses at most the last second of a recording: the spool writes
// what each open recording buffered at least every second. On the next
// start, Recover finds the recordings left open, cuts a last line or
// instruction torn by the crash, and finishes them as incomplete.
//
// # Files
//
// For each recording, named by its session ID, the spool directory holds:
//
//	ID.cast   an asciicast v2 terminal recording (recordings/asciicast), or
//	ID.guac   a Guacamole desktop recording (recordings/guacrec), with
//	ID.idx    its key-frame index, and
//	ID.json   the metadata, replaced atomically (write, fsync, rename)
//
// The metadata file is one JSON object (annotated here):
//
//	{
//	  "version": 1,
//	  "session_id": "T2Q5XK…", "user": "alice", "resource": "db-1",
//	  "protocol": "ssh", "gateway": "gw-office1", "client_addr": "192.0.2.7",
//	  "format": "asciicast",            // or "guac"
//	  "start": "2024-05-01T12:00:00Z",
//	  "end": "2024-05-01T12:31:07Z",    // absent while recording
//	  "complete": true,                 // false: cut short by a crash or a write error
//	  "size": 1048576,                  // bytes, once finished
//	  "sha256": "9f86d0…",              // hex, once finished
//	  "uploaded": true                  // only while the spool copy is being deleted
//	}
package spool

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/gateway/metrics"
)

// Format is a recording's file format.
type Format string

// Recording formats.
const (
	Asciicast Format = "asciicast" // terminal sessions
	Guacamole Format = "guac"      // desktop sessions
)

func (f Format) ext() string {
	if f == Guacamole {
		return ".guac"
	}
	return ".cast"
}

// Meta describes a recording. Create takes the session's fields; the spool
// sets the others.
type Meta struct {
	SessionID  string `json:"session_id"`
	User       string `json:"user"`
	Resource   string `json:"resource"`
	Protocol   string `json:"protocol"`
	Gateway    string `json:"gateway"`
	ClientAddr string `json:"client_addr"`
	Format     Format `json:"format"`

	Start time.Time `json:"start"`
	// End is zero while the recording is written.
	End time.Time `json:"end,omitzero"`
	// Complete is false for a recording cut short: by a crash, found by
	// Recover, or by an error writing it.
	Complete bool   `json:"complete"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256,omitempty"`
	// Uploaded marks a recording the portal confirmed, whose files are
	// being deleted; Recover finishes the deletion after a crash.
	Uploaded bool `json:"uploaded,omitempty"`
}

// Finished reports whether the recording has ended, complete or not.
func (m Meta) Finished() bool { return !m.End.IsZero() }

// metaVersion is the version of the metadata file.
const metaVersion = 1

type metaFile struct {
	Version int `json:"version"`
	Meta
}

// maxMeta bounds a metadata file read back from disk.
const maxMeta = 64 << 10

// maxID bounds session IDs, which name files.
const maxID = 128

// validID accepts IDs safe as file names: letters, digits, '-' and '_'.
func validID(id string) bool {
	if id == "" || len(id) > maxID {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// flushInterval is the most a crash loses of an open recording.
const flushInterval = time.Second

// Config configures a Spool.
type Config struct {
	// Dir is the spool directory; it is created if missing.
	Dir string
	// MinFree is the free disk space, in bytes, CheckSpace requires.
	MinFree uint64
	// Fsync makes the background flush also fsync, so that a power loss,
	// not only a crash of the gateway, loses at most a second.
	Fsync  bool
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics counts recordings spooled and uploads; nil counts nothing.
	Metrics *metrics.Gateway
}

// Errors callers branch on.
var (
	// ErrClosed is returned for operations on a closed spool or a finished
	// recording.
	ErrClosed = errors.New("spool: closed")
	// ErrLowSpace means the spool's disk has less free space than
	// Config.MinFree.
	ErrLowSpace = errors.New("spool: too little free disk space")
)

// Spool is a directory of recordings. Its background flusher runs from
// Open to Close.
type Spool struct {
	dir     string
	minFree uint64
	fsync   bool
	log     *slog.Logger
	now     func() time.Time
	statfs  func(dir string) (uint64, error)
	metrics *metrics.Gateway

	mu     sync.Mutex
	open   map[string]*Recording
	closed bool

	// finished is signalled (without blocking) when a recording is
	// finished, to wake the Uploader.
	finished chan struct{}

	stopTicker func()
	stop       chan struct{}
	done       chan struct{}
	afterFlush func() // tests: called after each background flush
}

// Open opens the spool in cfg.Dir and starts its background flusher.
func Open(cfg Config) (*Spool, error) {
	t := time.NewTicker(flushInterval)
	s, err := open(cfg, t.C, nil)
	if err != nil {
		t.Stop()
		return nil, err
	}
	s.stopTicker = t.Stop
	return s, nil
}

// open is Open with the flusher's ticks and a hook after each flush, for
// tests.
func open(cfg Config, tick <-chan time.Time, afterFlush func()) (*Spool, error) {
	if cfg.Dir == "" {
		return nil, errors.New("spool: no directory")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", cfg.Dir, err)
	}
	s := &Spool{
		dir:        cfg.Dir,
		minFree:    cfg.MinFree,
		fsync:      cfg.Fsync,
		log:        cfg.Logger,
		now:        cfg.Now,
		statfs:     freeBytes,
		metrics:    cfg.Metrics,
		open:       make(map[string]*Recording),
		finished:   make(chan struct{}, 1),
		stopTicker: func() {},
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		afterFlush: afterFlush,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	go s.flushLoop(tick)
	return s, nil
}

// Close stops the background flusher and waits for it. Recordings still
// open are flushed, synced and closed but not finished: Recover finishes
// them, as incomplete, on the next start.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	recs := s.openRecordings()
	s.mu.Unlock()

	close(s.stop)
	<-s.done
	s.stopTicker()
	var errs []error
	for _, r := range recs {
		errs = append(errs, r.abandon())
	}
	return errors.Join(errs...)
}

func (s *Spool) openRecordings() []*Recording {
	recs := make([]*Recording, 0, len(s.open))
	for _, r := range s.open {
		recs = append(recs, r)
	}
	return recs
}

func (s *Spool) flushLoop(tick <-chan time.Time) {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-tick:
		}
		s.mu.Lock()
		recs := s.openRecordings()
		s.mu.Unlock()
		for _, r := range recs {
			r.background(s.fsync)
		}
		if s.afterFlush != nil {
			s.afterFlush()
		}
	}
}

// Finished returns a channel that receives when a recording was finished
// since the last receive.
func (s *Spool) Finished() <-chan struct{} { return s.finished }

func (s *Spool) signalFinished() {
	select {
	case s.finished <- struct{}{}:
	default:
	}
}

// CheckSpace returns an error wrapping ErrLowSpace when the spool's disk
// has less free space than Config.MinFree: a session that must be recorded
// should then be refused.
func (s *Spool) CheckSpace() error {
	free, err := s.statfs(s.dir)
	if err != nil {
		return fmt.Errorf("spool: free space in %s: %w", s.dir, err)
	}
	if free < s.minFree {
		return fmt.Errorf("%w: %d bytes free in %s, %d required", ErrLowSpace, free, s.dir, s.minFree)
	}
	return nil
}

// FreeBytes is the free space of the spool's file system.
func (s *Spool) FreeBytes() (uint64, error) { return s.statfs(s.dir) }

// Pending returns the number of recordings waiting for upload, open ones
// included, and the bytes of their data files.
func (s *Spool) Pending() (n int, bytes int64, err error) {
	metas, err := s.List()
	if err != nil {
		return 0, 0, err
	}
	for _, m := range metas {
		if m.Uploaded {
			continue
		}
		n++
		// An open recording's metadata has no size yet; its file has.
		if fi, err := os.Stat(s.dataPath(m)); err == nil {
			bytes += fi.Size()
		}
	}
	return n, bytes, nil
}

func (s *Spool) path(id, ext string) string { return filepath.Join(s.dir, id+ext) }

func (s *Spool) dataPath(m Meta) string { return s.path(m.SessionID, m.Format.ext()) }

const (
	metaExt  = ".json"
	indexExt = ".idx"
	tmpExt   = ".tmp"
)

// List returns the metadata of every recording in the spool, oldest
// first. Unreadable metadata files are logged and left out.
func (s *Spool) List() ([]Meta, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: list %s: %w", s.dir, err)
	}
	var metas []Meta
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), metaExt)
		if !ok || !e.Type().IsRegular() || !validID(id) {
			continue
		}
		m, err := s.readMeta(id)
		if err != nil {
			s.log.Error("spool: unreadable recording metadata", "session", id, "err", err)
			continue
		}
		metas = append(metas, m)
	}
	slices.SortFunc(metas, func(a, b Meta) int { return a.Start.Compare(b.Start) })
	return metas, nil
}

func (s *Spool) readMeta(id string) (Meta, error) {
	f, err := os.Open(s.path(id, metaExt))
	if err != nil {
		return Meta{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMeta+1))
	if err != nil {
		return Meta{}, err
	}
	if len(b) > maxMeta {
		return Meta{}, fmt.Errorf("metadata over %d bytes", maxMeta)
	}
	var mf metaFile
	if err := json.Unmarshal(b, &mf); err != nil {
		return Meta{}, err
	}
	if mf.Version != metaVersion || mf.SessionID != id || (mf.Format != Asciicast && mf.Format != Guacamole) {
		return Meta{}, fmt.Errorf("metadata of version %d, session %q, format %q", mf.Version, mf.SessionID, mf.Format)
	}
	return mf.Meta, nil
}

// writeMeta replaces m's metadata file atomically.
func (s *Spool) writeMeta(m Meta) error {
	b, err := json.MarshalIndent(metaFile{Version: metaVersion, Meta: m}, "", "  ")
	if err != nil {
		return err
	}
	return s.writeAtomic(s.path(m.SessionID, metaExt), append(b, '\n'))
}

// writeAtomic replaces path with data: a crash leaves the old file or the
// new one, never a mix.
func (s *Spool) writeAtomic(path string, data []byte) error {
	tmp := path + tmpExt
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	_, err = w.Write(data)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return s.syncDir()
}

// syncDir makes file creations, renames and removals durable.
func (s *Spool) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
