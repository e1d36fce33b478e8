// Package guacrec records desktop sessions: the Guacamole-protocol stream
// the gateway sent to the browser, byte for byte, which
// guacamole-common-js's Guacamole.SessionRecording plays back. The stream
// carries its own timing: every frame ends with "sync" and the time in
// milliseconds, and the player waits between frames accordingly.
//
// A long recording would have to be replayed from its start to show any
// point in it, so the gateway writes a key frame at a fixed interval: the
// whole screen state (the display size, an image of the whole screen, the
// cursor), which needs nothing before it. The Writer notes where each key
// frame starts in an index file beside the recording; Index.At finds the
// key frame at or before a time, and Stream returns the recording from
// there, itself a valid recording for the player.
//
// # Index file
//
// The index is newline-delimited JSON: a header line, then one line per key
// frame, in the order they were written:
//
//	{"format":"keyway-guac-index","version":1}
//	{"offset":0,"timestamp":1714564800000}
//	{"offset":1048213,"timestamp":1714564810004}
//
// offset is the byte offset in the recording of the key frame's first
// instruction; timestamp is the argument of the "sync" that ends the key
// frame's frame, when the player shows it. Offsets strictly increase and
// timestamps never decrease. A key frame whose sync was never written is
// not in the index; a last line without its newline was cut short and is
// ignored.
//
// Recordings and indexes come back from disk after crashes and from the
// gateways over the network, so the readers bound instructions, elements
// and lines, and report data cut short rather than failing on it.
package guacrec

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Limits bound the instructions a Reader accepts.
type Limits struct {
	// MaxInstruction is the largest instruction, in bytes.
	MaxInstruction int
	// MaxElements is the most elements per instruction, opcode included.
	MaxElements int
}

// What the Writer accepts, so that a Reader with RecordingLimits reads
// every recording a Writer made. The display encoder's largest
// instructions are blobs of 8 KiB of base64 and clipboard text; "copy",
// the longest, has 10 elements.
const (
	maxInstruction = 1 << 20
	maxElements    = 64
)

// RecordingLimits fit every recording a Writer makes.
var RecordingLimits = Limits{MaxInstruction: maxInstruction, MaxElements: maxElements}

// Errors of this package; they wrap the detail.
var (
	// ErrMalformed means the data is not a valid recording or index.
	ErrMalformed = errors.New("guacrec: malformed data")
	// ErrTooLarge means an instruction, a line or a count is over the
	// limits.
	ErrTooLarge = errors.New("guacrec: over the limits")
	// ErrTruncated means the data ends inside an instruction or line: it
	// was cut short, for example by a crash while it was written.
	// Everything before was read.
	ErrTruncated = errors.New("guacrec: data cut short")
)

// maxLengthDigits bounds an element's length prefix, as gateway/guac does.
const maxLengthDigits = 10

// maxOpcode bounds the opcode the scanner keeps to recognise "sync";
// Guacamole's longest is a dozen bytes.
const maxOpcode = 32

// maxTimestampDigits bounds a sync's timestamp: an int64.
const maxTimestampDigits = 19

type scanState uint8

const (
	inLength scanState = iota // reading an element's length digits
	inValue                   // reading an element's code points
	inTerm                    // expecting ',' or ';'
)

// scanner finds instruction boundaries in a Guacamole stream fed in pieces
// of any size, checking the syntax and the limits without allocating. It
// keeps the opcode and, for "sync", the timestamp.
type scanner struct {
	limits Limits
	state  scanState
	length int // the length being read, then code points left in the value
	digits int
	elems  int // elements ended so far in this instruction
	size   int // bytes of this instruction so far

	r     [utf8.UTFMax]byte // a multi-byte character being read
	rn    int
	rneed int

	op   [maxOpcode]byte
	opn  int
	arg  [maxTimestampDigits]byte
	argn int

	// Set when an instruction ends: whether it was a sync, and its time.
	sync bool
	ts   int64
}

// atBoundary reports whether the scanner is between instructions.
func (s *scanner) atBoundary() bool { return s.size == 0 }

// scan consumes p up to the end of the first instruction ending in it. It
// returns how many bytes it consumed and whether an instruction ended
// there; then s.sync and s.ts describe it.
func (s *scanner) scan(p []byte) (int, bool, error) {
	i := 0
	for i < len(p) {
		if s.state == inValue && s.rneed == 0 {
			// The common case: a run of ASCII in a value (base64 image
			// data), consumed at once.
			j := i
			for j < len(p) && j-i < s.length && p[j] < utf8.RuneSelf {
				j++
			}
			if j > i {
				if err := s.grow(j - i); err != nil {
					return j, false, err
				}
				if err := s.keep(p[i:j]); err != nil {
					return j, false, err
				}
				s.length -= j - i
				if s.length == 0 {
					s.state = inTerm
				}
				i = j
				continue
			}
		}
		c := p[i]
		i++
		if err := s.grow(1); err != nil {
			return i, false, err
		}
		switch s.state {
		case inLength:
			switch {
			case c >= '0' && c <= '9':
				if s.digits == maxLengthDigits {
					return i, false, fmt.Errorf("%w: length of more than %d digits", ErrMalformed, maxLengthDigits)
				}
				s.length = s.length*10 + int(c-'0')
				s.digits++
			case c == '.' && s.digits > 0:
				// Each code point is at least one byte.
				if s.length > s.limits.MaxInstruction {
					return i, false, fmt.Errorf("%w: element of %d code points", ErrTooLarge, s.length)
				}
				s.digits = 0
				s.state = inValue
				if s.length == 0 {
					s.state = inTerm
				}
			default:
				return i, false, fmt.Errorf("%w: bad element length", ErrMalformed)
			}
		case inValue:
			if s.rneed == 0 {
				s.rneed = runeLen(c)
				if s.rneed == 0 {
					return i, false, fmt.Errorf("%w: invalid UTF-8", ErrMalformed)
				}
				s.r[0], s.rn = c, 1
				continue
			}
			s.r[s.rn] = c
			s.rn++
			if s.rn < s.rneed {
				continue
			}
			s.rneed = 0
			if r, n := utf8.DecodeRune(s.r[:s.rn]); r == utf8.RuneError && n < 2 {
				return i, false, fmt.Errorf("%w: invalid UTF-8", ErrMalformed)
			}
			if err := s.keep(s.r[:s.rn]); err != nil {
				return i, false, err
			}
			s.length--
			if s.length == 0 {
				s.state = inTerm
			}
		case inTerm:
			switch c {
			case ',':
				s.elems++
				if s.elems >= s.limits.MaxElements {
					return i, false, fmt.Errorf("%w: more than %d elements", ErrTooLarge, s.limits.MaxElements)
				}
				s.state, s.length = inLength, 0
			case ';':
				err := s.end()
				return i, err == nil, err
			default:
				return i, false, fmt.Errorf("%w: element not followed by ',' or ';'", ErrMalformed)
			}
		}
	}
	return i, false, nil
}

// grow counts n more bytes of the instruction.
func (s *scanner) grow(n int) error {
	s.size += n
	if s.size > s.limits.MaxInstruction {
		return fmt.Errorf("%w: instruction over %d bytes", ErrTooLarge, s.limits.MaxInstruction)
	}
	return nil
}

// keep notes the bytes of the opcode and of a sync's timestamp.
func (s *scanner) keep(b []byte) error {
	switch {
	case s.elems == 0:
		if s.opn+len(b) > len(s.op) {
			return fmt.Errorf("%w: opcode over %d bytes", ErrMalformed, maxOpcode)
		}
		s.opn += copy(s.op[s.opn:], b)
	case s.elems == 1 && s.isSync():
		if s.argn+len(b) > len(s.arg) {
			return fmt.Errorf("%w: sync timestamp over %d digits", ErrMalformed, maxTimestampDigits)
		}
		s.argn += copy(s.arg[s.argn:], b)
	}
	return nil
}

func (s *scanner) isSync() bool { return string(s.op[:s.opn]) == "sync" }

// end finishes an instruction and resets for the next one.
func (s *scanner) end() error {
	s.sync, s.ts = false, 0
	if s.isSync() {
		ts, err := strconv.ParseInt(string(s.arg[:s.argn]), 10, 64)
		if s.elems < 1 || err != nil || ts < 0 {
			return fmt.Errorf("%w: sync without a valid timestamp", ErrMalformed)
		}
		s.sync, s.ts = true, ts
	}
	s.state, s.length, s.digits, s.elems, s.size, s.opn, s.argn = inLength, 0, 0, 0, 0, 0, 0
	return nil
}

// runeLen returns the length of the UTF-8 sequence a byte starts, 0 for a
// byte that starts none (ASCII is handled before).
func runeLen(c byte) int {
	switch {
	case c >= 0xc2 && c <= 0xdf:
		return 2
	case c >= 0xe0 && c <= 0xef:
		return 3
	case c >= 0xf0 && c <= 0xf4:
		return 4
	}
	return 0
}
