package asciicast

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Config describes a new recording.
type Config struct {
	// Header is written first. NewWriter sets Version, and Timestamp to the
	// start of the recording; Width and Height are required.
	Header Header
	// Input records what the user typed as "i" events. It is off unless a
	// policy asks for it: typed input includes passwords given to sudo or
	// ssh, which the terminal does not echo and output events never show.
	Input bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// maxEventData bounds the terminal bytes in one event; a larger write
// becomes several events with the same time. Escaped as JSON, such an event
// is at most six times larger, far below DefaultLimits.MaxLine, so a Reader
// reads back whatever a Writer writes.
const maxEventData = 32 << 10

// maxHeader bounds the header line, whose title and environment come from
// configuration and requests.
const maxHeader = 64 << 10

// ErrClosed is returned for events written after Close.
var ErrClosed = errors.New("asciicast: writer closed")

// Writer writes a recording. Each event is one Write to the underlying
// writer; the Writer buffers nothing but an incomplete UTF-8 character,
// which waits for its remaining bytes, so durability is the underlying
// writer's: give it a bufio.Writer or a spool recording and call Flush at
// least every second. Writer is safe for concurrent use; event times never
// go backwards, in the order the events were written.
type Writer struct {
	mu     sync.Mutex
	w      io.Writer
	now    func() time.Time
	start  time.Time
	input  bool
	last   time.Duration
	held   [2]heldBytes // per stream: output, input
	buf    []byte       // held bytes joined with the next write
	line   []byte
	err    error
	closed bool
}

// heldBytes is the incomplete character at the end of a stream's last
// write.
type heldBytes struct {
	b [utf8.UTFMax - 1]byte
	n int
}

// NewWriter writes cfg's header to w and returns a Writer for the events.
func NewWriter(w io.Writer, cfg Config) (*Writer, error) {
	h := cfg.Header
	if !validSize(h.Width, h.Height) {
		return nil, fmt.Errorf("asciicast: terminal size %dx%d", h.Width, h.Height)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	h.Version = Version
	h.Timestamp = start.Unix()
	if h.Keyway != nil || cfg.Input {
		// A copy: the caller's Meta is not ours to change.
		var m Meta
		if h.Keyway != nil {
			m = *h.Keyway
		}
		m.Input = cfg.Input
		h.Keyway = &m
	}
	// Not HTML-escaped: a title "<prod>" stays readable in the file.
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(h); err != nil { // Encode ends the line
		return nil, fmt.Errorf("asciicast: encode header: %w", err)
	}
	if line.Len() > maxHeader {
		return nil, fmt.Errorf("asciicast: header of %d bytes, limit %d", line.Len(), maxHeader)
	}
	if _, err := w.Write(line.Bytes()); err != nil {
		return nil, fmt.Errorf("asciicast: write header: %w", err)
	}
	return &Writer{w: w, now: now, start: start, input: cfg.Input}, nil
}

// Output records bytes the terminal printed.
func (w *Writer) Output(p []byte) error { return w.data(Output, 0, p) }

// Input records bytes the user typed, when Config.Input asked for it; it
// does nothing otherwise.
func (w *Writer) Input(p []byte) error {
	if !w.input {
		return nil
	}
	return w.data(Input, 1, p)
}

// Resize records the terminal's new size.
func (w *Writer) Resize(cols, rows int) error {
	if !validSize(cols, rows) {
		return fmt.Errorf("asciicast: terminal size %dx%d", cols, rows)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	line := w.begin(Resize, w.elapsed())
	line = strconv.AppendInt(line, int64(cols), 10)
	line = append(line, 'x')
	line = strconv.AppendInt(line, int64(rows), 10)
	return w.end(line)
}

func (w *Writer) data(kind Kind, stream int, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if h := &w.held[stream]; h.n > 0 {
		w.buf = append(append(w.buf[:0], h.b[:h.n]...), p...)
		p = w.buf
		h.n = 0
	}
	return w.events(kind, stream, w.elapsed(), p, false)
}

// events writes p as events of at most maxEventData bytes. Unless final,
// an incomplete character at the end of p is held for the next write.
func (w *Writer) events(kind Kind, stream int, t time.Duration, p []byte, final bool) error {
	for len(p) > 0 {
		n := len(p)
		if n > maxEventData {
			// Cut before a character, never inside one. The byte after the
			// cut is known, so an incomplete sequence before it is invalid
			// and need not be held.
			n = maxEventData
			for k := 0; k < utf8.UTFMax-1 && !utf8.RuneStart(p[n]); k++ {
				n--
			}
		}
		line := w.begin(kind, t)
		mark := len(line)
		line, held := appendText(line, p[:n], final || n < len(p))
		if held > 0 {
			h := &w.held[stream]
			h.n = copy(h.b[:], p[n-held:n])
		}
		if len(line) > mark {
			if err := w.end(line); err != nil {
				return err
			}
		}
		p = p[n:]
	}
	return nil
}

func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	return nil
}

// elapsed returns the time since the start, in whole microseconds and
// never less than the last event's.
func (w *Writer) elapsed() time.Duration {
	t := max(w.now().Sub(w.start).Truncate(time.Microsecond), w.last)
	w.last = t
	return t
}

// begin starts an event line: `[TIME, "KIND", "`.
func (w *Writer) begin(kind Kind, t time.Duration) []byte {
	line := append(w.line[:0], '[')
	line = appendTime(line, t)
	return append(line, ',', ' ', '"', byte(kind), '"', ',', ' ', '"')
}

// end closes the event line and writes it.
func (w *Writer) end(line []byte) error {
	line = append(line, '"', ']', '\n')
	w.line = line
	if _, err := w.w.Write(line); err != nil {
		w.err = fmt.Errorf("asciicast: write event: %w", err)
		return w.err
	}
	return nil
}

// appendTime appends t in seconds with six decimals, exactly (no floating
// point on the way).
func appendTime(dst []byte, t time.Duration) []byte {
	us := int64(t / time.Microsecond)
	dst = strconv.AppendInt(dst, us/1e6, 10)
	frac := us % 1e6
	dst = append(dst, '.')
	for d := int64(1e5); d > 0; d /= 10 {
		dst = append(dst, byte('0'+frac/d%10))
	}
	return dst
}

// Flush passes Flush on to the underlying writer when it has one (a
// bufio.Writer, a spool recording). Call it at least every second.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flush()
}

func (w *Writer) flush() error {
	if w.err != nil {
		return w.err
	}
	if f, ok := w.w.(interface{ Flush() error }); ok {
		if err := f.Flush(); err != nil {
			w.err = fmt.Errorf("asciicast: flush: %w", err)
			return w.err
		}
	}
	return nil
}

// Sync flushes, then passes Sync on to the underlying writer when it has
// one (an *os.File: fsync).
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.flush(); err != nil {
		return err
	}
	if s, ok := w.w.(interface{ Sync() error }); ok {
		if err := s.Sync(); err != nil {
			w.err = fmt.Errorf("asciicast: sync: %w", err)
			return w.err
		}
	}
	return nil
}

// Close ends the recording: an incomplete character still held is written
// as U+FFFD, and the underlying writer is flushed but not closed. Events
// written after Close fail with ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	t := w.elapsed()
	for stream, kind := range []Kind{Output, Input} {
		h := &w.held[stream]
		if h.n == 0 {
			continue
		}
		p := append(w.buf[:0], h.b[:h.n]...)
		h.n = 0
		if err := w.events(kind, stream, t, p, true); err != nil {
			return err
		}
	}
	return w.flush()
}
