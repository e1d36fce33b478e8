// Package video exports desktop recordings (recordings/guacrec) as MP4
// files (H.264) with ffmpeg, for auditors who need a session as a file any
// video player opens. It is optional: the portal plays recordings without
// it, and offers export only where ffmpeg is installed.
//
// The recording is drawn by recordings/guacrender as the browser's player
// draws it, and walked in time by its "sync" timestamps. Frames are
// sampled at a fixed rate: frame k shows the screen as it was after every
// frame of the recording timed at or before k/FPS seconds, so an idle
// stretch repeats the last frame (ffmpeg's encoder turns a repeated frame
// into a few bytes of skipped blocks; the cost of a repeat here is writing
// it to the pipe). Raw RGBA frames go to ffmpeg's standard input; ffmpeg
// writes a temporary file beside the destination, renamed into place once
// it is complete.
//
// A screen that changes size mid-session is padded, not scaled: the video
// is as large as the largest screen of the recording, each frame drawn at
// its top-left corner on black. Pixels stay exact, so text stays as sharp
// as the player shows it; a smaller screen shows black margins.
package video

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/recordings/guacrec"
	"github.com/keyway-dev/keyway/recordings/guacrender"
)

// Errors of Export; they wrap the detail, in words for the auditor.
var (
	// ErrBadRecording means the recording could not be read: it is
	// damaged, or not a desktop recording.
	ErrBadRecording = errors.New("the recording is damaged or not a desktop recording")
	// ErrEmpty means the recording has nothing to show: no screen size
	// or no frame.
	ErrEmpty = errors.New("the recording has nothing to show")
	// ErrTooLarge means the recording's screen, an image in it, or its
	// length is over what an export allows.
	ErrTooLarge = errors.New("the recording is too large to export")
	// ErrFFmpeg means ffmpeg failed; the error holds what it said.
	ErrFFmpeg = errors.New("ffmpeg failed")
)

// Defaults of Config.
const (
	// DefaultFPS is smooth enough for typing and windows moving, and
	// half the frames of 20 fps for an encoder that runs beside the
	// portal.
	DefaultFPS = 10
	// DefaultMaxDuration bounds the frames a recording can ask for: a
	// sync timestamp days after the first would otherwise mean millions
	// of frames.
	DefaultMaxDuration = 24 * time.Hour
)

// Config configures an Exporter.
type Config struct {
	// FFmpeg is the path of the ffmpeg program (LookFFmpeg finds it).
	FFmpeg string
	// FPS is the video's frame rate; DefaultFPS when 0.
	FPS int
	// Limits bound the recording's screen and images;
	// guacrender.DefaultLimits when zero.
	Limits guacrender.Limits
	// MaxDuration is the longest recording exported; DefaultMaxDuration
	// when 0.
	MaxDuration time.Duration
	// Logger receives what an export skipped; nil discards it.
	Logger *slog.Logger
}

// Exporter turns desktop recordings into MP4 files. It is safe for
// concurrent use; each Export runs its own ffmpeg.
type Exporter struct {
	cfg Config
}

// New returns an Exporter that runs cfg.FFmpeg.
func New(cfg Config) *Exporter {
	if cfg.FPS <= 0 {
		cfg.FPS = DefaultFPS
	}
	if cfg.Limits == (guacrender.Limits{}) {
		cfg.Limits = guacrender.DefaultLimits
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = DefaultMaxDuration
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Exporter{cfg: cfg}
}

// LookFFmpeg returns the path of ffmpeg on PATH, or an error saying that
// video export needs it.
func LookFFmpeg() (string, error) {
	p, err := exec.LookPath("ffmpeg")
	if err != nil {
		return "", fmt.Errorf("video export needs ffmpeg installed: %w", err)
	}
	return p, nil
}

// recordingLimits are those of the recordings the gateways write.
var recordingLimits = guacrec.RecordingLimits

// plan is what a first pass over the recording finds.
type plan struct {
	first, last int64 // sync times, ms
	end         int64 // when the video ends, ms: last, or the session's end
	w, h        int   // the largest screen
	frames      int   // syncs
}

// scan reads the whole recording once, for its length and its largest
// screen, and checks it can be read, before ffmpeg is started. A recording
// cut short is read up to the cut, as the player plays it.
func (e *Exporter) scan(ctx context.Context, r io.Reader) (plan, error) {
	var p plan
	rd := guacrec.NewReader(r, recordingLimits)
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return p, ctx.Err()
		}
		in, err := rd.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, guacrec.ErrTruncated) {
			break
		}
		if err != nil {
			return p, fmt.Errorf("%w: %v", ErrBadRecording, err)
		}
		switch in.Opcode {
		case "sync":
			ts, ok := syncTime(in)
			if !ok {
				continue
			}
			if p.frames == 0 {
				p.first, p.last = ts, ts
			}
			p.last = max(p.last, ts)
			p.frames++
		case "size":
			if len(in.Args) == 3 && in.Args[0] == "0" {
				w, errW := strconv.Atoi(in.Args[1])
				h, errH := strconv.Atoi(in.Args[2])
				if errW != nil || errH != nil {
					continue
				}
				if w > e.cfg.Limits.MaxSide || h > e.cfg.Limits.MaxSide || w*h > e.cfg.Limits.MaxPixels {
					return p, fmt.Errorf("%w: its screen is %d×%d pixels, larger than the %d×%d an export allows",
						ErrTooLarge, w, h, e.cfg.Limits.MaxSide, min(e.cfg.Limits.MaxSide, e.cfg.Limits.MaxPixels/e.cfg.Limits.MaxSide))
				}
				p.w, p.h = max(p.w, w), max(p.h, h)
			}
		}
	}
	switch {
	case p.frames == 0:
		return p, fmt.Errorf("%w: it holds no frame", ErrEmpty)
	case p.w == 0 || p.h == 0:
		return p, fmt.Errorf("%w: it never sets a screen size", ErrEmpty)
	}
	p.end = p.last
	return p, nil
}

// syncTime returns a sync instruction's timestamp.
func syncTime(in guac.Instruction) (int64, bool) {
	if len(in.Args) == 0 {
		return 0, false
	}
	ts, err := strconv.ParseInt(in.Args[0], 10, 64)
	return ts, err == nil && ts >= 0
}

// Source is a recording to export.
type Source struct {
	// Data holds the recording, Size bytes.
	Data io.ReaderAt
	Size int64
	// End, if set, is when the session ended. A still screen sends no
	// frames, so the video goes on showing the last one until then, as
	// the player's timeline does. Leave it unset for a recording cut
	// short, whose end is when it was found, maybe much later.
	End time.Time
}

// Export writes the desktop recording src to dst as an MP4 file.
// progress, if not nil, is called as the export goes on with the share of
// the recording's time done, from 0 to 1. ffmpeg writes to a temporary
// file in dst's directory, renamed to dst when it is complete; on failure
// or cancellation nothing is left behind. The context bounds the export:
// cancelling it stops ffmpeg.
func (e *Exporter) Export(ctx context.Context, src Source, dst string, progress func(float64)) error {
	if progress == nil {
		progress = func(float64) {}
	}
	p, err := e.scan(ctx, io.NewSectionReader(src.Data, 0, src.Size))
	if err != nil {
		return err
	}
	if !src.End.IsZero() {
		p.end = max(p.end, src.End.UnixMilli())
	}
	if d := time.Duration(p.end-p.first) * time.Millisecond; d > e.cfg.MaxDuration {
		return fmt.Errorf("%w: it spans %s, longer than the %s an export allows", ErrTooLarge, d.Round(time.Second), e.cfg.MaxDuration)
	}
	// H.264 in yuv420p needs even sides.
	w, h := max(2, (p.w+1)&^1), max(2, (p.h+1)&^1)
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".export-*.mp4.tmp")
	if err != nil {
		return fmt.Errorf("create the video file: %w", err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmpName)
		}
	}()

	cmd := exec.CommandContext(ctx, e.cfg.FFmpeg, e.args(w, h, tmpName)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("start ffmpeg: %w", err)
	}
	var stderr tail
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w to start: %v", ErrFFmpeg, err)
	}
	werr := e.frames(ctx, io.NewSectionReader(src.Data, 0, src.Size), p, w, h, stdin, progress)
	stdin.Close()
	// Wait for ffmpeg whatever happened: it owns the file until it exits.
	waitErr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case waitErr != nil:
		return fmt.Errorf("%w: %s", ErrFFmpeg, stderr.message(waitErr))
	case werr != nil:
		return werr
	}
	if err := os.Rename(tmpName, dst); err != nil {
		return fmt.Errorf("store the video file: %w", err)
	}
	ok = true
	progress(1)
	return nil
}

// args are ffmpeg's arguments for w×h RGBA frames on standard input.
func (e *Exporter) args(w, h int, out string) []string {
	fps := strconv.Itoa(e.cfg.FPS)
	return []string{
		"-hide_banner", "-nostats", "-loglevel", "error",
		"-f", "rawvideo", "-pix_fmt", "rgba", "-s", fmt.Sprintf("%dx%d", w, h), "-r", fps, "-i", "pipe:0",
		"-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
		// A key frame every ten seconds, so players seek quickly.
		"-g", strconv.Itoa(10 * e.cfg.FPS),
		"-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", "-y", out,
	}
}

// frames plays the recording and writes w×h frames to out.
func (e *Exporter) frames(ctx context.Context, r io.Reader, p plan, w, h int, out io.Writer, progress func(float64)) error {
	d := guacrender.New(e.cfg.Limits)
	frame := image.NewRGBA(image.Rect(0, 0, w, h))
	fps := int64(e.cfg.FPS)
	// The recording's frames run to last; the video to end.
	last, duration := p.last-p.first, p.end-p.first
	var (
		next     int64 // the next video frame
		t        int64 // the recording's time, ms after its first frame
		drawn    = ^uint64(0)
		drawnW   int
		drawnH   int
		skipped  int
		firstErr error
	)
	// write sends the frame for every video frame timed before until,
	// reporting progress every second of video: an idle stretch can be
	// long.
	write := func(until int64) error {
		for next*1000 < until*fps {
			if _, err := out.Write(frame.Pix); err != nil {
				return fmt.Errorf("write a frame to ffmpeg: %w", err)
			}
			next++
			if next%fps == 0 && duration > 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
				progress(min(1, float64(next*1000/fps)/float64(duration)))
			}
		}
		return nil
	}
	rd := guacrec.NewReader(r, recordingLimits)
	for {
		in, err := rd.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, guacrec.ErrTruncated) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadRecording, err)
		}
		if in.Opcode != "sync" {
			if err := d.Apply(in); errors.Is(err, guacrender.ErrTooLarge) {
				return fmt.Errorf("%w: %v", ErrTooLarge, err)
			} else if err != nil {
				// The player drops what it cannot draw, and so does the
				// export.
				skipped++
				if firstErr == nil {
					firstErr = err
				}
			}
			continue
		}
		ts, ok := syncTime(in)
		if !ok {
			continue
		}
		// Time never goes back, and stops at the end the first pass saw.
		t = min(max(t, ts-p.first), last)
		if err := write(t); err != nil {
			return err
		}
		if v := d.Version(); v != drawn {
			sw, sh := d.Size()
			if sw != drawnW || sh != drawnH {
				clear(frame.Pix) // black where a smaller screen leaves margins
				drawnW, drawnH = sw, sh
			}
			d.Draw(frame)
			drawn = v
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	// The last frame shows until the end, and at least once.
	if err := write(duration + 1); err != nil {
		return err
	}
	if skipped > 0 {
		e.cfg.Logger.Warn("video export skipped what the player would not draw", "instructions", skipped, "first", firstErr)
	}
	return nil
}

// tail keeps the last bytes ffmpeg wrote to its standard error, for the
// error message.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const maxTail = 4 << 10

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > maxTail {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-maxTail:]...)
	}
	return len(p), nil
}

// message is ffmpeg's last line of error output, or how it exited.
func (t *tail) message(exit error) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	if last := strings.TrimSpace(lines[len(lines)-1]); last != "" {
		return last
	}
	return exit.Error()
}
