package guacrec

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/keyway-dev/keyway/gateway/guac"
)

// Reader reads a recording's instructions one at a time, holding one
// instruction in memory.
type Reader struct {
	br     *bufio.Reader
	sc     scanner
	limits guac.Limits
	raw    []byte
	off    int64
	err    error
}

// NewReader reads the recording in r within limits.
func NewReader(r io.Reader, limits Limits) *Reader {
	return &Reader{
		br:     bufio.NewReaderSize(r, 64<<10),
		sc:     scanner{limits: limits},
		limits: guac.Limits{MaxElement: limits.MaxInstruction, MaxElements: limits.MaxElements},
	}
}

// Offset returns the number of bytes read up to the end of the last whole,
// valid instruction. A recording cut short can be truncated there and
// read without error.
func (rd *Reader) Offset() int64 { return rd.off }

// Next returns the next instruction. At the end it returns io.EOF, or
// ErrTruncated when the data ends inside an instruction; other errors mean
// the recording is malformed or over the limits. Errors are final.
func (rd *Reader) Next() (guac.Instruction, error) {
	if rd.err != nil {
		return guac.Instruction{}, rd.err
	}
	in, err := rd.next()
	if err != nil {
		rd.err = err
	}
	return in, err
}

func (rd *Reader) next() (guac.Instruction, error) {
	rd.raw = rd.raw[:0]
	for {
		if rd.br.Buffered() == 0 {
			if _, err := rd.br.Peek(1); err == io.EOF {
				if len(rd.raw) == 0 {
					return guac.Instruction{}, io.EOF
				}
				return guac.Instruction{}, fmt.Errorf("%w: instruction at byte %d has no end", ErrTruncated, rd.off)
			} else if err != nil {
				return guac.Instruction{}, fmt.Errorf("guacrec: read: %w", err)
			}
		}
		chunk, _ := rd.br.Peek(rd.br.Buffered())
		n, done, err := rd.sc.scan(chunk)
		rd.raw = append(rd.raw, chunk[:n]...)
		rd.br.Discard(n)
		if err != nil {
			return guac.Instruction{}, fmt.Errorf("instruction at byte %d: %w", rd.off, err)
		}
		if done {
			in, err := guac.Parse(rd.raw, rd.limits)
			if err != nil {
				// The scanner checked the syntax; this is a bug, not bad data.
				return guac.Instruction{}, fmt.Errorf("%w: instruction at byte %d: %v", ErrMalformed, rd.off, err)
			}
			rd.off += int64(len(rd.raw))
			return in, nil
		}
	}
}

// ErrBadKeyFrame means a key frame does not point at an instruction of the
// recording.
var ErrBadKeyFrame = errors.New("guacrec: key frame not in the recording")

// Stream returns the recording in rec, size bytes long, from key frame kf
// to its end: a valid recording on its own, whose first frame is the key
// frame's, for the player. The zero KeyFrame gives the whole recording.
// The index is trusted to hold instruction boundaries; Stream checks that
// an instruction starts at kf.Offset, which catches an index that belongs
// to another recording or to a longer version of this one.
func Stream(rec io.ReaderAt, size int64, kf KeyFrame) (*io.SectionReader, error) {
	if kf.Offset == 0 {
		return io.NewSectionReader(rec, 0, size), nil
	}
	if kf.Offset < 0 || kf.Offset >= size {
		return nil, fmt.Errorf("%w: offset %d in %d bytes", ErrBadKeyFrame, kf.Offset, size)
	}
	s := io.NewSectionReader(rec, kf.Offset, size-kf.Offset)
	if _, err := NewReader(s, RecordingLimits).Next(); err != nil {
		return nil, fmt.Errorf("%w: at offset %d: %v", ErrBadKeyFrame, kf.Offset, err)
	}
	return io.NewSectionReader(rec, kf.Offset, size-kf.Offset), nil
}
