package asciicast

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
	"unicode/utf8"
)

// Limits bound what a Reader accepts.
type Limits struct {
	// MaxLine is the longest line, header included, in bytes without the
	// newline.
	MaxLine int
	// MaxEvents is the most events after the header.
	MaxEvents int64
}

// DefaultLimits fit every recording a Writer makes: its events stay far
// below MaxLine, and MaxEvents allows days of busy terminal output.
var DefaultLimits = Limits{MaxLine: 1 << 20, MaxEvents: 1 << 26}

// maxEventTime bounds event times, so that they fit a time.Duration.
const maxEventTime = 10 * 366 * 24 * time.Hour

// Reader reads a recording's events one at a time, holding one line in
// memory.
type Reader struct {
	br     *bufio.Reader
	limits Limits
	header Header
	line   []byte
	lineNo int64
	off    int64
	events int64
	last   time.Duration
	err    error
}

// NewReader reads and checks the header of the recording in r.
func NewReader(r io.Reader, limits Limits) (*Reader, error) {
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10), limits: limits}
	line, n, err := rd.readLine()
	if err == io.EOF {
		err = fmt.Errorf("%w: no header", ErrTruncated)
	}
	if err != nil {
		return nil, err
	}
	if err := parseHeader(line, &rd.header); err != nil {
		return nil, err
	}
	rd.off += n
	return rd, nil
}

func parseHeader(line []byte, h *Header) error {
	if !utf8.Valid(line) {
		return fmt.Errorf("%w: header: invalid UTF-8", ErrMalformed)
	}
	if len(line) == 0 || line[0] != '{' {
		return fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	if err := json.Unmarshal(line, h); err != nil {
		return fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if h.Version != Version {
		return fmt.Errorf("%w: version %d, want %d", ErrMalformed, h.Version, Version)
	}
	if !validSize(h.Width, h.Height) {
		return fmt.Errorf("%w: terminal size %dx%d", ErrMalformed, h.Width, h.Height)
	}
	return nil
}

// Header returns the recording's header.
func (rd *Reader) Header() Header { return rd.header }

// Offset returns the number of bytes read up to the end of the last whole,
// valid line: the header's end before the first event. A recording cut
// short can be truncated there and read without error.
func (rd *Reader) Offset() int64 { return rd.off }

// Next returns the next event. At the end it returns io.EOF, or
// ErrTruncated when the data ends inside a line; other errors mean the
// recording is malformed or over the limits. Errors are final.
func (rd *Reader) Next() (Event, error) {
	if rd.err != nil {
		return Event{}, rd.err
	}
	ev, n, err := rd.next()
	if err != nil {
		rd.err = err
		return Event{}, err
	}
	rd.off += n
	rd.events++
	rd.last = ev.Time
	return ev, nil
}

func (rd *Reader) next() (Event, int64, error) {
	line, n, err := rd.readLine()
	if err != nil {
		return Event{}, 0, err
	}
	if rd.events >= rd.limits.MaxEvents {
		return Event{}, 0, fmt.Errorf("%w: more than %d events", ErrTooLarge, rd.limits.MaxEvents)
	}
	ev, err := parseEvent(line)
	if err != nil {
		return Event{}, 0, fmt.Errorf("line %d: %w", rd.lineNo, err)
	}
	if ev.Time < rd.last {
		return Event{}, 0, fmt.Errorf("%w: line %d: time goes back from %v to %v", ErrMalformed, rd.lineNo, rd.last, ev.Time)
	}
	return ev, n, nil
}

// readLine returns the next line without its newline, and its length with
// it. It returns io.EOF at the end of the data and ErrTruncated when the
// data ends inside a line.
func (rd *Reader) readLine() ([]byte, int64, error) {
	rd.line = rd.line[:0]
	for {
		frag, err := rd.br.ReadSlice('\n')
		if len(rd.line)+len(frag) > rd.limits.MaxLine+1 {
			return nil, 0, fmt.Errorf("%w: line %d longer than %d bytes", ErrTooLarge, rd.lineNo+1, rd.limits.MaxLine)
		}
		rd.line = append(rd.line, frag...)
		switch {
		case err == nil:
			rd.lineNo++
			return rd.line[:len(rd.line)-1], int64(len(rd.line)), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(rd.line) == 0:
			return nil, 0, io.EOF
		case err == io.EOF:
			return nil, 0, fmt.Errorf("%w: line %d has no end", ErrTruncated, rd.lineNo+1)
		default:
			return nil, 0, fmt.Errorf("asciicast: read: %w", err)
		}
	}
}

// parseEvent parses `[TIME, "KIND", "DATA"]`.
func parseEvent(line []byte) (Event, error) {
	if !utf8.Valid(line) {
		return Event{}, fmt.Errorf("%w: invalid UTF-8", ErrMalformed)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(raw) != 3 {
		return Event{}, fmt.Errorf("%w: event of %d elements, want 3", ErrMalformed, len(raw))
	}
	// Unmarshal leaves a number or string unset for null: check the kind
	// of each value first.
	var secs float64
	if c := raw[0][0]; c < '0' || c > '9' {
		return Event{}, fmt.Errorf("%w: event time %s", ErrMalformed, raw[0])
	}
	if err := json.Unmarshal(raw[0], &secs); err != nil || secs > maxEventTime.Seconds() {
		return Event{}, fmt.Errorf("%w: event time %s", ErrMalformed, raw[0])
	}
	var code, data string
	if raw[1][0] != '"' || json.Unmarshal(raw[1], &code) != nil || len(code) != 1 || !Kind(code[0]).valid() {
		return Event{}, fmt.Errorf("%w: event type %s", ErrMalformed, raw[1])
	}
	if raw[2][0] != '"' || json.Unmarshal(raw[2], &data) != nil {
		return Event{}, fmt.Errorf("%w: event data is not a string", ErrMalformed)
	}
	ev := Event{
		Time: time.Duration(math.Round(secs*1e6)) * time.Microsecond,
		Kind: Kind(code[0]),
		Data: data,
	}
	if ev.Kind == Resize {
		if _, _, err := parseSize(data); err != nil {
			return Event{}, err
		}
	}
	return ev, nil
}
