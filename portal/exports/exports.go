// Package exports makes video files of desktop recordings in the
// background, for auditors who need a session as a file any video player
// opens (recordings/video does the work, with ffmpeg).
//
// Exports run one at a time, in the order asked, from a bounded queue:
// encoding takes a core for about as long as a fast player would take to
// play the session, and the portal serves sessions from the same machine.
// A recording's video is made once and kept in the exports directory
// under the recording's SHA-256; asking again reuses it.
//
// Videos are copies of recordings, so they go when their recording goes
// (retention calls Remove): an export must not outlive the period the
// recordings are kept for. They can be made again from the recording, so
// the directory is also a cache with a bound on its size: past it, the
// videos least recently made or downloaded are deleted first.
//
// With recordings in object storage, finished videos go there too
// (Config.Shared), so that every portal replica finds them; the
// directory then only holds videos being made.
package exports

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/recordings/storage"
	"github.com/keyway-dev/keyway/recordings/video"
)

// State is where an export is.
type State string

// States of an export. The zero State means none was asked for (or the
// portal restarted since) and there is no video.
const (
	Queued  State = "queued"
	Running State = "running"
	Done    State = "done"
	Failed  State = "failed"
)

// Job is an export's state, as the auditor sees it.
type Job struct {
	State State
	// Progress is the share of the recording's time exported, 0 to 1.
	Progress float64
	// Reason says why a failed export failed, in words.
	Reason string
	// Size is the video's size in bytes, once done.
	Size int64
}

// ExportFunc writes the recording src as a video file at dst, reporting
// progress from 0 to 1 ((*video.Exporter).Export).
type ExportFunc func(ctx context.Context, src video.Source, dst string, progress func(float64)) error

// Config is what a Runner is built from.
type Config struct {
	// Dir holds the videos (DATA/exports).
	Dir string
	// Recordings is where the recordings are read from (a directory or a
	// bucket).
	Recordings storage.Store
	// Export makes one video; nil where the portal cannot (no ffmpeg),
	// which leaves Status, Open and Remove for the videos made before.
	Export ExportFunc
	// Shared, if set, keeps finished videos where every portal replica
	// finds them (portal/objstore, beside the recordings); Dir then only
	// holds videos being made.
	Shared Shared
	// MaxBytes bounds the videos kept; 0 keeps them all.
	MaxBytes int64
	// MaxQueue is how many exports may wait; DefaultMaxQueue when 0.
	MaxQueue int
	Logger   *slog.Logger
	Now      func() time.Time
}

// Shared is object storage for finished videos, named by the recording's
// SHA-256 and ".mp4".
type Shared interface {
	// PutVideo stores size bytes from r as the video name.
	PutVideo(ctx context.Context, name string, r io.Reader, size int64) error
	// OpenVideo opens the video name and returns its size; an error
	// wrapping fs.ErrNotExist when there is none.
	OpenVideo(ctx context.Context, name string) (storage.File, int64, error)
	// RemoveVideo deletes the video name; one not there is not an error.
	RemoveVideo(ctx context.Context, name string) error
}

// sharedTimeout bounds a status look-up in the shared store: the player
// page polls it.
const sharedTimeout = 30 * time.Second

// DefaultMaxQueue bounds the exports waiting: each is a click by an
// auditor, and a queue longer than this waits hours.
const DefaultMaxQueue = 16

// maxFailed bounds the failed exports remembered (with their reasons).
const maxFailed = 1000

// Errors of Request.
var (
	// ErrQueueFull means too many exports are waiting.
	ErrQueueFull = errors.New("too many video exports are waiting")
	// ErrNotDesktop means the recording is not a desktop recording.
	ErrNotDesktop = errors.New("only desktop recordings can be exported as video")
	// ErrUnavailable means the Runner makes no videos (Config.Export is
	// nil).
	ErrUnavailable = errors.New("video export needs ffmpeg installed on the portal")
)

// ext is the videos' extension.
const ext = ".mp4"

// job is an export asked for and not yet done.
type job struct {
	key      string // the recording's SHA-256
	rec      store.Recording
	state    State
	progress float64
	reason   string
	removed  bool               // the recording was deleted: drop the export
	cancel   context.CancelFunc // while running
	failedAt time.Time
}

// Runner queues and runs exports. Run does the work; Request, Status,
// Open and Remove may be called from any goroutine.
type Runner struct {
	cfg   Config
	queue chan *job

	mu   sync.Mutex
	jobs map[string]*job
}

// New returns a Runner keeping videos in cfg.Dir, which it creates; it
// removes what an export stopped by a crash left there.
func New(cfg Config) (*Runner, error) {
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("exports: create %s: %w", cfg.Dir, err)
	}
	ents, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("exports: %w", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			os.Remove(filepath.Join(cfg.Dir, e.Name()))
		}
	}
	return &Runner{cfg: cfg, queue: make(chan *job, cfg.MaxQueue), jobs: map[string]*job{}}, nil
}

// key is the name a recording's video is kept under: its SHA-256, which
// names its content whatever its id.
func key(rec store.Recording) (string, error) {
	k := strings.ToLower(rec.SHA256)
	if len(k) != 64 || strings.Trim(k, "0123456789abcdef") != "" {
		return "", fmt.Errorf("exports: recording %d has no valid SHA-256", rec.ID)
	}
	return k, nil
}

func (r *Runner) path(k string) string { return filepath.Join(r.cfg.Dir, k+ext) }

// Status returns the state of rec's export.
func (r *Runner) Status(rec store.Recording) Job {
	k, err := key(rec)
	if err != nil {
		return Job{}
	}
	r.mu.Lock()
	j := r.jobs[k]
	var out Job
	if j != nil {
		out = Job{State: j.state, Progress: j.progress, Reason: j.reason}
	}
	r.mu.Unlock()
	if out.State == Queued || out.State == Running {
		return out
	}
	if info, err := os.Stat(r.path(k)); err == nil {
		return Job{State: Done, Progress: 1, Size: info.Size()}
	}
	if r.cfg.Shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		defer cancel()
		f, size, err := r.cfg.Shared.OpenVideo(ctx, k+ext)
		if err == nil {
			f.Close()
			return Job{State: Done, Progress: 1, Size: size}
		}
		if !errors.Is(err, os.ErrNotExist) {
			r.cfg.Logger.Warn("video exports: look in the shared store", "recording", rec.ID, "err", err)
		}
	}
	return out
}

// Request asks for rec's video: it returns the export under way, the
// video already made, or a new export at the end of the queue.
func (r *Runner) Request(rec store.Recording) (Job, error) {
	if rec.Format != "guac" {
		return Job{}, ErrNotDesktop
	}
	if r.cfg.Export == nil {
		return Job{}, ErrUnavailable
	}
	k, err := key(rec)
	if err != nil {
		return Job{}, err
	}
	if st := r.Status(rec); st.State == Queued || st.State == Running || st.State == Done {
		return st, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if j := r.jobs[k]; j != nil && (j.state == Queued || j.state == Running) {
		return Job{State: j.state, Progress: j.progress}, nil // asked meanwhile
	}
	j := &job{key: k, rec: rec, state: Queued}
	select {
	case r.queue <- j:
	default:
		return Job{}, fmt.Errorf("%w (%d); try again once one is done", ErrQueueFull, r.cfg.MaxQueue)
	}
	r.jobs[k] = j
	return Job{State: Queued}, nil
}

// Open opens rec's video for reading, and notes that it was used, so the
// size bound keeps it longer; a video only in the shared store is read
// from there, within ctx.
func (r *Runner) Open(ctx context.Context, rec store.Recording) (storage.File, error) {
	k, err := key(rec)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(r.path(k))
	if err == nil {
		now := r.cfg.Now()
		os.Chtimes(f.Name(), now, now)
		return f, nil
	}
	if !errors.Is(err, os.ErrNotExist) || r.cfg.Shared == nil {
		return nil, err
	}
	sf, _, err := r.cfg.Shared.OpenVideo(ctx, k+ext)
	return sf, err
}

// Remove deletes rec's video and stops its export; retention calls it
// when it deletes the recording. A video that is not there is not an
// error.
func (r *Runner) Remove(rec store.Recording) error {
	k, err := key(rec)
	if err != nil {
		return nil // no video can have been made
	}
	r.mu.Lock()
	if j := r.jobs[k]; j != nil {
		j.removed = true
		if j.cancel != nil {
			j.cancel()
		}
		delete(r.jobs, k)
	}
	r.mu.Unlock()
	if err := os.Remove(r.path(k)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("exports: delete the video of recording %d: %w", rec.ID, err)
	}
	if r.cfg.Shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		defer cancel()
		if err := r.cfg.Shared.RemoveVideo(ctx, k+ext); err != nil {
			return fmt.Errorf("exports: delete the shared video of recording %d: %w", rec.ID, err)
		}
	}
	return nil
}

// Run runs the queued exports, one at a time, until ctx is done; the
// export running then is stopped, and Run returns once it has. The caller
// owns Run and waits for it.
func (r *Runner) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-r.queue:
			r.run(ctx, j)
		}
	}
}

// run makes one video.
func (r *Runner) run(ctx context.Context, j *job) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.mu.Lock()
	if j.removed {
		r.mu.Unlock()
		return
	}
	j.state, j.cancel = Running, cancel
	r.mu.Unlock()

	log := r.cfg.Logger.With("recording", j.rec.ID, "session", j.rec.SessionID)
	started := r.cfg.Now()
	err := r.export(ctx, j)

	r.mu.Lock()
	defer r.mu.Unlock()
	j.cancel = nil
	switch {
	case j.removed:
		os.Remove(r.path(j.key))
		log.Info("video export dropped: the recording was deleted")
	case err != nil:
		j.state, j.reason, j.failedAt = Failed, reason(err), r.cfg.Now()
		log.Warn("video export failed", "err", err)
		r.forgetOldFailures()
	default:
		delete(r.jobs, j.key) // the file says it is done
		log.Info("video exported", "took", r.cfg.Now().Sub(started).Round(time.Millisecond))
		r.trim(j.key)
	}
}

func (r *Runner) export(ctx context.Context, j *job) error {
	f, err := r.cfg.Recordings.Open(ctx, j.rec.Path)
	if err != nil {
		return fmt.Errorf("open the recording: %w", err)
	}
	defer f.Close()
	src := video.Source{Data: f, Size: j.rec.Size}
	if !j.rec.Incomplete {
		// The session went on, with a still screen, until its end. (An
		// incomplete recording's end is when the gateway found it.)
		src.End = j.rec.End
	}
	err = r.cfg.Export(ctx, src, r.path(j.key), func(p float64) {
		r.mu.Lock()
		j.progress = p
		r.mu.Unlock()
	})
	if err != nil || r.cfg.Shared == nil {
		return err
	}
	return r.share(ctx, j.key)
}

// share moves the video just made to the shared store. No copy stays in
// the directory: retention on any replica deletes the shared one, and a
// copy left on another replica would outlive its recording.
func (r *Runner) share(ctx context.Context, k string) error {
	f, err := os.Open(r.path(k))
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	err = r.cfg.Shared.PutVideo(ctx, k+ext, f, info.Size())
	os.Remove(r.path(k)) // shared, or not done: the export is asked for again
	if err != nil {
		return fmt.Errorf("%w: %v", errShare, err)
	}
	return nil
}

// errShare means the video was made but could not be put in the shared
// store.
var errShare = errors.New("the video could not be stored in the object store")

// reason turns an export's error into words for the auditor.
func reason(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return "The portal stopped during the export. Export it again."
	case errors.Is(err, os.ErrNotExist):
		return "The recording's file is missing from the portal's recording storage."
	case errors.Is(err, errShare):
		return sentence(err.Error()) + " Export it again."
	case errors.Is(err, video.ErrFFmpeg):
		return sentence("the video encoder " + err.Error())
	case errors.Is(err, video.ErrBadRecording), errors.Is(err, video.ErrEmpty), errors.Is(err, video.ErrTooLarge):
		return sentence(err.Error())
	}
	return sentence("the export failed: " + err.Error())
}

// sentence starts s with a capital and ends it with a full stop.
func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// forgetOldFailures keeps at most maxFailed failed exports, dropping the
// oldest. The caller holds r.mu.
func (r *Runner) forgetOldFailures() {
	var failed []*job
	for _, j := range r.jobs {
		if j.state == Failed {
			failed = append(failed, j)
		}
	}
	if len(failed) <= maxFailed {
		return
	}
	sort.Slice(failed, func(a, b int) bool { return failed[a].failedAt.Before(failed[b].failedAt) })
	for _, j := range failed[:len(failed)-maxFailed] {
		delete(r.jobs, j.key)
	}
}

// trim deletes the videos least recently made or downloaded while they
// take more than MaxBytes, never keep (the one just made).
func (r *Runner) trim(keep string) {
	if r.cfg.MaxBytes <= 0 {
		return
	}
	ents, err := os.ReadDir(r.cfg.Dir)
	if err != nil {
		r.cfg.Logger.Warn("video exports: list", "err", err)
		return
	}
	type file struct {
		name string
		size int64
		used time.Time
	}
	var vs []file
	var total int64
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ext) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		vs = append(vs, file{e.Name(), info.Size(), info.ModTime()})
		total += info.Size()
	}
	sort.Slice(vs, func(a, b int) bool { return vs[a].used.Before(vs[b].used) })
	for _, v := range vs {
		if total <= r.cfg.MaxBytes {
			return
		}
		if v.name == keep+ext {
			continue
		}
		if err := os.Remove(filepath.Join(r.cfg.Dir, v.name)); err != nil {
			r.cfg.Logger.Warn("video exports: delete to stay under the bound", "file", v.name, "err", err)
			continue
		}
		total -= v.size
		r.cfg.Logger.Info("video export deleted to stay under the bound", "file", v.name, "max_bytes", r.cfg.MaxBytes)
	}
}
