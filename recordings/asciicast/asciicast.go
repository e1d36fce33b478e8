// Package asciicast writes and reads terminal recordings in asciicast v2,
// the format asciinema-player plays: newline-delimited JSON whose first
// line is a header object and every later line an event array
//
//	{"version":2,"width":80,"height":24,"timestamp":1700000000,"env":{"TERM":"xterm-256color"}}
//	[0.248848, "o", "\u001b[1;31mHello\u001b[0m\r\n"]
//	[1.500000, "r", "100x30"]
//
// Event times are seconds since the start of the recording, written with
// microsecond precision. Output ("o") and input ("i") data are UTF-8 text:
// a multi-byte character split across two reads of the terminal is carried
// over whole to the next event, and bytes that are not UTF-8 become U+FFFD,
// one per maximal invalid subsequence, as asciinema's own recorder does.
//
// Keyway's metadata (session, user, resource, gateway, whether input was
// recorded) sits under the single header key "keyway"; players ignore keys
// they do not know, so the file plays unchanged.
//
// Recordings come back from disk after crashes and from other parties, so
// the Reader is strict, bounds every line and the number of events, and
// reports a recording whose last line was cut short rather than failing.
package asciicast

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Version is the asciicast format version this package writes and reads.
const Version = 2

// Header is the first line of a recording.
type Header struct {
	// Version is always 2.
	Version int `json:"version"`
	// Width and Height are the terminal's initial size in columns and rows.
	Width  int `json:"width"`
	Height int `json:"height"`
	// Timestamp is the Unix time, in seconds, when the recording started.
	Timestamp int64 `json:"timestamp,omitempty"`
	// Title is shown by players; optional.
	Title string `json:"title,omitempty"`
	// Env holds captured environment variables, usually TERM; optional.
	Env map[string]string `json:"env,omitempty"`
	// Keyway is this project's metadata, nil in recordings made elsewhere.
	Keyway *Meta `json:"keyway,omitempty"`
}

// Meta is Keyway's metadata in a recording's header, written under the key
// "keyway". It repeats, for a file found on its own, what the portal's
// database holds about the recording.
type Meta struct {
	SessionID string `json:"session_id,omitempty"`
	User      string `json:"user,omitempty"`
	Resource  string `json:"resource,omitempty"`
	Gateway   string `json:"gateway,omitempty"`
	// Input is true when the recording includes what the user typed ("i"
	// events). Without it, the absence of input events means input was not
	// captured, not that nothing was typed.
	Input bool `json:"input,omitempty"`
}

// Kind is an event's type code.
type Kind byte

// Event kinds of asciicast v2.
const (
	Output Kind = 'o' // bytes the terminal printed
	Input  Kind = 'i' // bytes the user typed
	Resize Kind = 'r' // the terminal's new size, "COLSxROWS"
	Marker Kind = 'm' // a named point for navigation; read, never written here
)

func (k Kind) valid() bool { return k == Output || k == Input || k == Resize || k == Marker }

// String returns the one-letter code.
func (k Kind) String() string { return string(rune(k)) }

// Event is one line after the header.
type Event struct {
	// Time is the time since the start of the recording, a whole number of
	// microseconds.
	Time time.Duration
	Kind Kind
	// Data is UTF-8 text: terminal bytes for Output and Input, "COLSxROWS"
	// for Resize, a label for Marker.
	Data string
}

// Size returns the columns and rows of a Resize event.
func (e Event) Size() (cols, rows int, err error) {
	if e.Kind != Resize {
		return 0, 0, fmt.Errorf("%w: size of a %q event", ErrMalformed, e.Kind.String())
	}
	return parseSize(e.Data)
}

// maxTermSize bounds a terminal's columns and rows, in the header and in
// resize events, well above any real screen.
const maxTermSize = 10000

func parseSize(s string) (cols, rows int, err error) {
	c, r, ok := strings.Cut(s, "x")
	if ok {
		cols, err = strconv.Atoi(c)
		if err == nil {
			rows, err = strconv.Atoi(r)
		}
	}
	if !ok || err != nil || !validSize(cols, rows) {
		return 0, 0, fmt.Errorf("%w: terminal size %q", ErrMalformed, s)
	}
	return cols, rows, nil
}

func validSize(cols, rows int) bool {
	return cols > 0 && rows > 0 && cols <= maxTermSize && rows <= maxTermSize
}

// Errors the Reader returns; they wrap the detail.
var (
	// ErrMalformed means the recording is not valid asciicast v2.
	ErrMalformed = errors.New("asciicast: malformed recording")
	// ErrTooLarge means a line or the number of events exceeds the limits.
	ErrTooLarge = errors.New("asciicast: recording over the limits")
	// ErrTruncated means the data ends inside a line: the recording was
	// cut short, for example by a crash while it was written. Everything
	// before that line was read.
	ErrTruncated = errors.New("asciicast: recording cut short")
)
