package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// FrameType tells what a terminal stream frame carries.
type FrameType byte

// Terminal frame types.
const (
	FrameData   FrameType = 1 // terminal bytes, both directions
	FrameResize FrameType = 2 // portal → gateway: cols, rows
	FrameExit   FrameType = 3 // gateway → portal: how the session ended
)

// MaxFramePayload bounds one frame's payload.
const MaxFramePayload = 64 << 10

const frameHeader = 5

// WriteFrame writes one frame in a single Write, so writers that share a
// connection under a mutex never interleave.
func WriteFrame(w io.Writer, t FrameType, payload []byte) error {
	if len(payload) > MaxFramePayload {
		return fmt.Errorf("frame payload of %d bytes exceeds %d", len(payload), MaxFramePayload)
	}
	buf := make([]byte, frameHeader+len(payload))
	buf[0] = byte(t)
	binary.BigEndian.PutUint32(buf[1:], uint32(len(payload)))
	copy(buf[frameHeader:], payload)
	_, err := w.Write(buf)
	return err
}

// FrameWriter writes frames from one goroutine at a time, reusing its
// buffer so a busy terminal does not allocate per frame.
type FrameWriter struct {
	w   io.Writer
	buf []byte
}

// NewFrameWriter writes frames to w.
func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

// Write sends one frame in a single Write call.
func (fw *FrameWriter) Write(t FrameType, payload []byte) error {
	if len(payload) > MaxFramePayload {
		return fmt.Errorf("frame payload of %d bytes exceeds %d", len(payload), MaxFramePayload)
	}
	n := frameHeader + len(payload)
	if cap(fw.buf) < n {
		fw.buf = make([]byte, n)
	}
	b := fw.buf[:n]
	b[0] = byte(t)
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	copy(b[frameHeader:], payload)
	_, err := fw.w.Write(b)
	return err
}

// FrameReader reads frames, reusing one buffer.
type FrameReader struct {
	r   io.Reader
	hdr [frameHeader]byte
	buf []byte
}

// NewFrameReader reads frames from r.
func NewFrameReader(r io.Reader) *FrameReader { return &FrameReader{r: r} }

// Next returns the next frame. The payload is valid until the next call.
func (fr *FrameReader) Next() (FrameType, []byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return 0, nil, err
	}
	t := FrameType(fr.hdr[0])
	n := binary.BigEndian.Uint32(fr.hdr[1:])
	if n > MaxFramePayload {
		return 0, nil, fmt.Errorf("frame payload of %d bytes exceeds %d", n, MaxFramePayload)
	}
	if t < FrameData || t > FrameExit {
		return 0, nil, fmt.Errorf("unknown frame type %d", t)
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	p := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, p); err != nil {
		return 0, nil, fmt.Errorf("frame payload: %w", err)
	}
	return t, p, nil
}

// ResizePayload encodes a terminal size.
func ResizePayload(cols, rows uint16) []byte {
	var b [4]byte
	binary.BigEndian.PutUint16(b[0:], cols)
	binary.BigEndian.PutUint16(b[2:], rows)
	return b[:]
}

// ParseResize decodes a FrameResize payload.
func ParseResize(p []byte) (cols, rows uint16, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("resize payload has %d bytes, want 4", len(p))
	}
	cols, rows = binary.BigEndian.Uint16(p[0:]), binary.BigEndian.Uint16(p[2:])
	if cols == 0 || rows == 0 || cols > maxTerminal || rows > maxTerminal {
		return 0, 0, fmt.Errorf("terminal size %dx%d out of range", cols, rows)
	}
	return cols, rows, nil
}

// Exit says how a terminal session ended.
type Exit struct {
	Status  int    `json:"status"`
	Signal  string `json:"signal,omitempty"`
	Message string `json:"message,omitempty"`
}

// Payload encodes e for a FrameExit.
func (e Exit) Payload() []byte {
	b, _ := json.Marshal(e)
	return b
}

// ParseExit decodes a FrameExit payload.
func ParseExit(p []byte) (Exit, error) {
	var e Exit
	if err := json.Unmarshal(p, &e); err != nil {
		return Exit{}, fmt.Errorf("exit payload: %w", err)
	}
	if len(e.Message) > 1024 || len(e.Signal) > 32 {
		return Exit{}, errors.New("exit payload fields too long")
	}
	return e, nil
}
