// Package guac reads and writes Guacamole protocol instructions, the one
// display protocol between gateways and browsers for every desktop (VNC,
// RDP). An instruction is a list of elements, each "LENGTH.VALUE" where
// LENGTH counts Unicode code points, separated by "," and ended by ";";
// the first element is the opcode:
//
//	4.size,1.0,4.1024,3.768;
//
// Input from browsers is untrusted, so the reader bounds every length and
// count before it allocates.
package guac

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits bound what a Reader accepts.
type Limits struct {
	// MaxElement is the largest element, in code points.
	MaxElement int
	// MaxElements is the most elements (opcode included) per instruction.
	MaxElements int
}

// BrowserLimits fit everything a browser sends (keys, mouse, clipboard,
// size, sync): the clipboard is the only large element.
var BrowserLimits = Limits{MaxElement: 256 << 10, MaxElements: 16}

// maxLengthDigits bounds the LENGTH prefix, so a stream of digits cannot
// overflow or stall the reader.
const maxLengthDigits = 10

// Instruction is one Guacamole instruction.
type Instruction struct {
	Opcode string
	Args   []string
}

// New returns an instruction.
func New(opcode string, args ...string) Instruction {
	return Instruction{Opcode: opcode, Args: args}
}

// AppendTo appends the encoded instruction to dst.
func (in Instruction) AppendTo(dst []byte) []byte {
	dst = appendElement(dst, in.Opcode)
	for _, a := range in.Args {
		dst = append(dst, ',')
		dst = appendElement(dst, a)
	}
	return append(dst, ';')
}

// appendElement appends v with its length. A character outside the Basic
// Multilingual Plane is written as U+FFFD: the protocol counts code
// points, but guacamole-common-js counts UTF-16 units (two for such a
// character) and would lose its place in the stream. Only free text (an
// error message, a server's words) can hold one; images and clipboard
// data travel as base64.
func appendElement(dst []byte, v string) []byte {
	if hasAstral(v) {
		v = strings.Map(func(r rune) rune {
			if r > 0xFFFF {
				return utf8.RuneError
			}
			return r
		}, v)
	}
	dst = strconv.AppendInt(dst, int64(utf8.RuneCountInString(v)), 10)
	dst = append(dst, '.')
	return append(dst, v...)
}

// BlobChunk is how many bytes of data one "blob" carries before base64:
// small enough for a browser to decode an image as it arrives.
const BlobChunk = 6 << 10

// AppendBlob appends the instruction "blob" of stream st carrying data
// (at most BlobChunk bytes, by convention). The data is base64-encoded in
// place: base64 is ASCII, so its length in characters is its length in
// bytes, and a megapixel a frame of it need not pass through a string and
// two more scans.
func AppendBlob(dst []byte, st string, data []byte) []byte {
	dst = appendElement(dst, "blob")
	dst = appendElement(append(dst, ','), st)
	dst = strconv.AppendInt(append(dst, ','), int64(base64.StdEncoding.EncodedLen(len(data))), 10)
	dst = base64.StdEncoding.AppendEncode(append(dst, '.'), data)
	return append(dst, ';')
}

// hasAstral reports a character outside the Basic Multilingual Plane: its
// UTF-8 form, and only its, starts with a byte of 0xF0 or more.
func hasAstral(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] >= 0xF0 {
			return true
		}
	}
	return false
}

// String returns the encoded instruction.
func (in Instruction) String() string { return string(in.AppendTo(nil)) }

// Errors a Reader returns for malformed input.
var (
	ErrMalformed = errors.New("malformed instruction")
	ErrTooLarge  = errors.New("instruction over the limits")
)

// Reader reads instructions from a stream.
type Reader struct {
	r      *bufio.Reader
	limits Limits
}

// NewReader reads instructions from r within limits.
func NewReader(r io.Reader, limits Limits) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), limits: limits}
}

// Buffered reports how many bytes are read from the stream but not yet
// returned; 0 means the next Read will wait for the stream.
func (rd *Reader) Buffered() int { return rd.r.Buffered() }

// Read returns the next instruction. io.EOF means the stream ended cleanly
// between instructions.
func (rd *Reader) Read() (Instruction, error) {
	var in Instruction
	for n := 0; ; n++ {
		if n >= rd.limits.MaxElements {
			return Instruction{}, fmt.Errorf("%w: more than %d elements", ErrTooLarge, rd.limits.MaxElements)
		}
		v, last, err := rd.element(n == 0)
		if err != nil {
			return Instruction{}, err
		}
		if n == 0 {
			in.Opcode = v
		} else {
			in.Args = append(in.Args, v)
		}
		if last {
			return in, nil
		}
	}
}

// element reads "LENGTH.VALUE" and the terminator after it.
func (rd *Reader) element(first bool) (string, bool, error) {
	length, digits := 0, 0
	for {
		c, err := rd.r.ReadByte()
		if err != nil {
			if err == io.EOF && (!first || digits > 0) {
				err = io.ErrUnexpectedEOF
			}
			return "", false, err
		}
		if c == '.' {
			break
		}
		if c < '0' || c > '9' || digits == maxLengthDigits {
			return "", false, fmt.Errorf("%w: bad length", ErrMalformed)
		}
		length = length*10 + int(c-'0')
		digits++
	}
	if digits == 0 {
		return "", false, fmt.Errorf("%w: missing length", ErrMalformed)
	}
	if length > rd.limits.MaxElement {
		return "", false, fmt.Errorf("%w: element of %d code points", ErrTooLarge, length)
	}
	buf := make([]byte, 0, min(length, 4096))
	for left := length; left > 0; {
		// ASCII, a code point a byte, goes in runs straight from the
		// buffer: images are base64, a megapixel a frame of it.
		if p, _ := rd.r.Peek(min(left, rd.r.Buffered())); len(p) > 0 {
			if k := asciiPrefix(p); k > 0 {
				buf = append(buf, p[:k]...)
				rd.r.Discard(k)
				left -= k
				continue
			}
		}
		r, size, err := rd.r.ReadRune()
		if err != nil {
			return "", false, io.ErrUnexpectedEOF
		}
		if r == utf8.RuneError && size == 1 {
			return "", false, fmt.Errorf("%w: invalid UTF-8", ErrMalformed)
		}
		buf = utf8.AppendRune(buf, r)
		left--
	}
	c, err := rd.r.ReadByte()
	if err != nil {
		return "", false, io.ErrUnexpectedEOF
	}
	switch c {
	case ',':
		return string(buf), false, nil
	case ';':
		return string(buf), true, nil
	}
	return "", false, fmt.Errorf("%w: element not followed by ',' or ';'", ErrMalformed)
}

// asciiPrefix returns how many bytes at the start of p are ASCII, eight
// at a time while it can.
func asciiPrefix(p []byte) int {
	i := 0
	for ; i+8 <= len(p); i += 8 {
		if binary.LittleEndian.Uint64(p[i:])&0x8080808080808080 != 0 {
			break
		}
	}
	for ; i < len(p) && p[i] < utf8.RuneSelf; i++ {
	}
	return i
}

// Parse reads exactly one instruction from b.
func Parse(b []byte, limits Limits) (Instruction, error) {
	rd := &Reader{r: bufio.NewReaderSize(&byteReader{b: b}, 16), limits: limits}
	in, err := rd.Read()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Instruction{}, err
	}
	if _, err := rd.r.ReadByte(); err != io.EOF {
		return Instruction{}, fmt.Errorf("%w: data after the instruction", ErrMalformed)
	}
	return in, nil
}

type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}
