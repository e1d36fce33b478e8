package display

import (
	"errors"
	"fmt"
	"image"
	"io"
	"time"

	"github.com/keyway-dev/keyway/gateway/guac"
)

// Recorder keeps what a desktop session sends to the browser: in the
// gateway, a recordings/guacrec.Writer over the spool behind the
// session's policy (a required recording's failure ends the session, an
// optional one's is logged and ignored).
type Recorder interface {
	// Write records instructions exactly as sent; p may end inside an
	// instruction.
	Write(p []byte) (int, error)
	// KeyFrame marks that a key frame starts with the next byte written.
	KeyFrame() error
}

// ErrRecording wraps a failure of a session's recording that ends the
// session (its recording is required).
var ErrRecording = errors.New("the session's recording failed")

// DefaultKeyFrameInterval is the least time between two key frames: a seek
// replays at most this much of the session after the key frame before it.
const DefaultKeyFrameInterval = 10 * time.Second

// keyFrameBand is the height of the bands a key frame's screen is sent
// in: each band takes the cheapest exact encoding of its own.
const keyFrameBand = 64

// Recording records a session's display: every byte sent to the browser,
// and, between frames, key frames that the browser never gets (it already
// shows what they hold) so that a player can start there.
type Recording struct {
	rec      Recorder
	enc      *Encoder // key frames, to rec only
	counted  countingWriter
	interval time.Duration
	now      func() time.Time
	last     time.Time // when the last key frame was written
	// since counts the bytes recorded since the last key frame, keySize
	// the bytes of that key frame: a key frame is written only once the
	// session sent at least as much as it costs, so key frames stay at
	// most about half of an idle session's recording.
	since, keySize int64
}

// NewRecording records to rec, with a key frame at most every interval
// (DefaultKeyFrameInterval when 0); indexed is the session's image
// setting (Encoder.SetIndexed), which key frames follow. now is the clock,
// nil for time.Now.
func NewRecording(rec Recorder, interval time.Duration, indexed bool, now func() time.Time) *Recording {
	if interval <= 0 {
		interval = DefaultKeyFrameInterval
	}
	if now == nil {
		now = time.Now
	}
	r := &Recording{rec: rec, interval: interval, now: now}
	r.last = now()
	r.counted.w = rec
	r.enc = NewEncoder(&r.counted)
	r.enc.SetIndexed(indexed)
	return r
}

// countingWriter counts the bytes of key frames.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Writer returns the writer a session's encoder writes to: what is
// written is recorded, then sent to stream. Without a Recording (nil) it
// is stream.
func (r *Recording) Writer(stream io.Writer) io.Writer {
	if r == nil {
		return stream
	}
	return &tee{r: r, stream: stream}
}

// tee records before it sends, as terminal recordings do, so a recording
// never misses what the browser got.
type tee struct {
	r      *Recording
	stream io.Writer
}

func (t *tee) Write(p []byte) (int, error) {
	if _, err := t.r.rec.Write(p); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrRecording, err)
	}
	t.r.since += int64(len(p))
	return t.stream.Write(p)
}

// FrameEnd is called after a frame that ended with sync ts was written in
// full (its encoder flushed): it writes a key frame to the recording when
// one is due. The key frame holds screen's state as the browser has it:
// its size, its pixels and the pointer's shape; it ends with a sync of
// the same time ts, so it takes no time in playback.
func (r *Recording) FrameEnd(s *Screen, ts int64) error {
	if r == nil {
		return nil
	}
	now := r.now()
	if now.Sub(r.last) < r.interval || r.since < r.keySize || s.shown == nil {
		return nil
	}
	if err := r.rec.KeyFrame(); err != nil {
		return fmt.Errorf("%w: %w", ErrRecording, err)
	}
	r.counted.n = 0
	if err := s.keyFrame(r.enc); err != nil {
		return fmt.Errorf("%w: key frame: %w", ErrRecording, err)
	}
	if err := r.enc.Sync(ts); err != nil {
		return fmt.Errorf("%w: key frame: %w", ErrRecording, err)
	}
	if err := r.enc.Flush(); err != nil {
		return fmt.Errorf("%w: key frame: %w", ErrRecording, err)
	}
	r.last, r.since, r.keySize = now, 0, r.counted.n
	return nil
}

// keyFrame writes the whole state the browser has of the screen: size,
// pixels (exact: never JPEG, which would carry its artefacts into every
// later frame a player draws over it) and the pointer.
func (s *Screen) keyFrame(enc *Encoder) error {
	b := s.shown.Bounds()
	if err := enc.Size(b.Dx(), b.Dy()); err != nil {
		return err
	}
	for y := b.Min.Y; y < b.Max.Y; y += keyFrameBand {
		band := image.Rect(b.Min.X, y, b.Max.X, min(y+keyFrameBand, b.Max.Y))
		if err := enc.exact(s.shown.SubImage(band).(*image.RGBA), band.Min); err != nil {
			return err
		}
	}
	if s.cursor != nil {
		return enc.Cursor(s.cursor.Image, s.cursor.Hotspot)
	}
	return nil
}

// Cursor sets the pointer's shape, and keeps it for key frames.
func (s *Screen) Cursor(c *Cursor) error {
	if c == nil || c.Image.Bounds().Empty() {
		return nil
	}
	s.cursor = c
	return s.enc.Cursor(c.Image, c.Hotspot)
}

// exact sends img at at losslessly, as palette indexes or PNG, drawn over
// what is there: the screen is opaque, so that replaces it (compSrc would
// clear the rest of the layer).
func (e *Encoder) exact(img *image.RGBA, at image.Point) error {
	if sent, err := e.sendPaletted(img, at); sent || err != nil {
		return err
	}
	return e.imageTo("0", compOver, img, at)
}

// RecordingEnded tells the browser why a session whose recording is
// required ended, when err says so, straight on stream: the encoder's
// writer is the recording's, which failed.
func RecordingEnded(stream io.Writer, err error) {
	if !errors.Is(err, ErrRecording) {
		return
	}
	// Guacamole status 0x0200: server error.
	stream.Write(guac.New("error", "This session must be recorded and its recording failed, so it was ended. Ask an administrator to check the gateway's recording spool.", "512").AppendTo(nil))
}
