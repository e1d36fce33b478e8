package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"
)

// Sink is where finished recordings go: the portal.
type Sink interface {
	// Status returns how many bytes of the recording of session id the
	// portal already holds from an interrupted upload, 0 for none.
	Status(ctx context.Context, id string) (int64, error)
	// Upload sends a recording from u.Offset on and returns the SHA-256,
	// in hex, of the whole recording as the portal stored it.
	Upload(ctx context.Context, u Upload) (sha256 string, err error)
}

// Upload is one recording for a Sink.
type Upload struct {
	// Meta is the recording's final metadata, with its size and checksum.
	Meta Meta
	// Offset is where Data starts in the recording: the upload resumes
	// after the bytes the portal already holds.
	Offset int64
	// Data is the recording from Offset to Meta.Size.
	Data io.Reader
	// Index is a desktop recording's key-frame index file (see
	// recordings/guacrec), nil for a terminal recording.
	Index []byte
}

// ErrChecksumMismatch means the portal's checksum of an upload differs
// from the spool's: the spool keeps the recording and sends it again, from
// the start.
var ErrChecksumMismatch = errors.New("spool: portal's checksum differs")

// maxIndexUpload bounds the index file sent with a recording: a key frame
// every few seconds for weeks.
const maxIndexUpload = 32 << 20

// Defaults for UploaderConfig.
const (
	defaultMinBackoff = time.Second
	defaultMaxBackoff = 5 * time.Minute
	defaultRescan     = time.Minute
)

// UploaderConfig configures an Uploader; zero fields take defaults.
type UploaderConfig struct {
	// MinBackoff and MaxBackoff bound the wait after a failed upload,
	// which doubles with each failure in a row (1 s to 5 min).
	MinBackoff, MaxBackoff time.Duration
	// Rescan is how often the spool is looked through when no recording
	// finished (1 min).
	Rescan time.Duration
	Logger *slog.Logger
}

// Uploader sends a spool's finished recordings to a Sink.
type Uploader struct {
	s     *Spool
	sink  Sink
	cfg   UploaderConfig
	log   *slog.Logger
	after func(time.Duration) <-chan time.Time

	// fromStart holds recordings whose last upload failed its checksum:
	// the portal's partial copy is not trusted to resume.
	fromStart map[string]bool
	// lastFailed is the recording whose upload failed last; the next pass
	// tries it last, so that one recording the portal keeps refusing does
	// not hold up the others.
	lastFailed string
}

// NewUploader returns an Uploader of s's recordings to sink.
func NewUploader(s *Spool, sink Sink, cfg UploaderConfig) *Uploader {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = defaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(defaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Rescan <= 0 {
		cfg.Rescan = defaultRescan
	}
	log := cfg.Logger
	if log == nil {
		log = s.log
	}
	return &Uploader{s: s, sink: sink, cfg: cfg, log: log, after: time.After, fromStart: make(map[string]bool)}
}

// Run uploads finished recordings, oldest first, as they finish, until ctx
// is done. While uploads fail (the portal is unreachable) it waits between
// attempts, twice as long after each failure up to MaxBackoff, with some
// jitter so that many gateways do not retry in step. It runs in the
// caller's goroutine: the caller stops it by cancelling ctx.
func (u *Uploader) Run(ctx context.Context) {
	var backoff time.Duration
	for {
		err := u.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		wait, finished := u.cfg.Rescan, u.s.Finished()
		if err != nil {
			backoff = min(max(2*backoff, u.cfg.MinBackoff), u.cfg.MaxBackoff)
			wait = backoff - rand.N(backoff/4+1)
			finished = nil // a new recording does not cut the wait short
			u.log.Warn("spool: upload failed, will retry", "err", err, "retry_in", wait)
		} else {
			backoff = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-u.after(wait):
		case <-finished:
		}
	}
}

// pass uploads every finished recording. It stops at the first failure,
// most likely the portal being unreachable, which every other upload
// would wait for too; a checksum mismatch only skips that recording.
func (u *Uploader) pass(ctx context.Context) error {
	metas, err := u.s.List()
	if err != nil {
		return err
	}
	if i := slices.IndexFunc(metas, func(m Meta) bool { return m.SessionID == u.lastFailed }); i >= 0 {
		m := metas[i]
		metas = append(slices.Delete(metas, i, i+1), m)
	}
	var mismatches []error
	for _, m := range metas {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case m.Uploaded:
			err = u.s.remove(m)
		case m.Finished() && !u.s.isOpen(m.SessionID):
			err = u.upload(ctx, m)
		default:
			continue
		}
		if errors.Is(err, ErrChecksumMismatch) {
			u.s.metrics.Upload(false)
			u.log.Error("spool: upload not confirmed, recording kept", "session", m.SessionID, "err", err)
			mismatches = append(mismatches, err)
			continue
		}
		if err != nil {
			u.lastFailed = m.SessionID
			u.s.metrics.Upload(false)
			return err
		}
	}
	return errors.Join(mismatches...)
}

// upload sends one recording, resuming where the portal's copy ends, and
// deletes it from the spool once the portal confirmed its checksum.
func (u *Uploader) upload(ctx context.Context, m Meta) error {
	id := m.SessionID
	var have int64
	if !u.fromStart[id] {
		var err error
		if have, err = u.sink.Status(ctx, id); err != nil {
			return fmt.Errorf("spool: upload status of recording %s: %w", id, err)
		}
		if have < 0 || have > m.Size {
			// Not a prefix of this recording: start over.
			have = 0
		}
	}
	f, err := os.Open(u.s.dataPath(m))
	if err != nil {
		return fmt.Errorf("spool: open recording %s: %w", id, err)
	}
	defer f.Close()
	var index []byte
	if m.Format == Guacamole {
		if index, err = readIndex(u.s.path(id, indexExt)); err != nil {
			return fmt.Errorf("spool: read index of recording %s: %w", id, err)
		}
	}
	sum, err := u.sink.Upload(ctx, Upload{Meta: m, Offset: have, Data: io.NewSectionReader(f, have, m.Size-have), Index: index})
	if err != nil {
		return fmt.Errorf("spool: upload recording %s from byte %d: %w", id, have, err)
	}
	if !strings.EqualFold(sum, m.SHA256) {
		u.fromStart[id] = true
		return fmt.Errorf("%w: recording %s: portal %q, spool %q", ErrChecksumMismatch, id, sum, m.SHA256)
	}
	delete(u.fromStart, id)
	if err := u.s.remove(m); err != nil {
		return err
	}
	u.s.metrics.Upload(true)
	u.log.Info("spool: recording uploaded", "session", id, "size", m.Size, "resumed_at", have)
	return nil
}

func readIndex(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxIndexUpload+1))
	if err == nil && len(b) > maxIndexUpload {
		err = fmt.Errorf("index over %d bytes", maxIndexUpload)
	}
	return b, err
}
