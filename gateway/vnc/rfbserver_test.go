package vnc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"net"
	"testing"
	"time"
)

// rfbServer is the server end of one RFB connection, scripted by a test.
// Its methods return errors rather than failing the test: they run on
// the server's own goroutine.
type rfbServer struct{ conn net.Conn }

func (s rfbServer) send(b ...[]byte) error {
	for _, p := range b {
		if _, err := s.conn.Write(p); err != nil {
			return err
		}
	}
	return nil
}

func (s rfbServer) recv(n int) ([]byte, error) {
	b := make([]byte, n)
	_, err := io.ReadFull(s.conn, b)
	return b, err
}

// acceptNone runs the handshake up to ServerInit with security type None
// and a w×h screen.
func (s rfbServer) acceptNone(w, h int) error {
	if err := s.send([]byte("RFB 003.008\n")); err != nil {
		return err
	}
	if _, err := s.recv(12); err != nil {
		return err
	}
	if err := s.send([]byte{1, secNone}); err != nil {
		return err
	}
	chosen, err := s.recv(1)
	if err != nil {
		return err
	}
	if chosen[0] != secNone {
		return fmt.Errorf("the client chose security type %d", chosen[0])
	}
	if err := s.send([]byte{0, 0, 0, 0}); err != nil {
		return err
	}
	if _, err := s.recv(1); err != nil { // shared flag
		return err
	}
	return s.send(serverInit(w, h, "test desktop"))
}

// serverInit is a ServerInit message for a w×h screen.
func serverInit(w, h int, name string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(w))
	b = binary.BigEndian.AppendUint16(b, uint16(h))
	b = append(b, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0) // pixel format, unused by the client
	b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
	return append(b, name...)
}

// requests reads the client's messages until the connection ends and
// sends on reqs each FramebufferUpdateRequest's incremental flag.
func (s rfbServer) requests(reqs chan<- bool) error {
	for {
		t, err := s.recv(1)
		if err != nil {
			return err
		}
		var n int
		switch t[0] {
		case 0: // SetPixelFormat
			n = 19
		case 2: // SetEncodings
			hdr, err := s.recv(3)
			if err != nil {
				return err
			}
			n = 4 * int(binary.BigEndian.Uint16(hdr[1:]))
		case 3: // FramebufferUpdateRequest
			b, err := s.recv(9)
			if err != nil {
				return err
			}
			reqs <- b[0] == 1
			continue
		case 4: // KeyEvent
			n = 7
		case 5: // PointerEvent
			n = 5
		default:
			return fmt.Errorf("unexpected client message %d", t[0])
		}
		if _, err := s.recv(n); err != nil {
			return err
		}
	}
}

// fbModel is the server's framebuffer in a test: each change is applied
// to it and encoded as a rectangle of a FramebufferUpdate.
type fbModel struct{ img *image.RGBA }

func rectHeader(r image.Rectangle, enc int32) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(r.Min.X))
	b = binary.BigEndian.AppendUint16(b, uint16(r.Min.Y))
	b = binary.BigEndian.AppendUint16(b, uint16(r.Dx()))
	b = binary.BigEndian.AppendUint16(b, uint16(r.Dy()))
	return binary.BigEndian.AppendUint32(b, uint32(enc))
}

// fill paints r in c and returns it as a Raw rectangle in the client's
// pixel format (24-bit true colour, little endian: B, G, R, unused).
func (m fbModel) fill(r image.Rectangle, c color.RGBA) []byte {
	b := rectHeader(r, encRaw)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			m.img.SetRGBA(x, y, c)
			b = append(b, c.B, c.G, c.R, 0)
		}
	}
	return b
}

// copy moves the pixels at src to dst and returns it as a CopyRect.
func (m fbModel) copy(src image.Point, dst image.Rectangle) []byte {
	moved := image.NewRGBA(dst.Sub(dst.Min))
	for y := range dst.Dy() {
		for x := range dst.Dx() {
			moved.SetRGBA(x, y, m.img.RGBAAt(src.X+x, src.Y+y))
		}
	}
	for y := range dst.Dy() {
		for x := range dst.Dx() {
			m.img.SetRGBA(dst.Min.X+x, dst.Min.Y+y, moved.RGBAAt(x, y))
		}
	}
	b := rectHeader(dst, encCopyRect)
	b = binary.BigEndian.AppendUint16(b, uint16(src.X))
	return binary.BigEndian.AppendUint16(b, uint16(src.Y))
}

// fbUpdate is a FramebufferUpdate of rects.
func fbUpdate(rects ...[]byte) []byte {
	b := []byte{0, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(len(rects)))
	for _, r := range rects {
		b = append(b, r...)
	}
	return b
}

// errClosed reports a connection the other side closed, which ends a
// scripted server without a failure.
func errClosed(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed)
}

// scriptedServer accepts one connection on loopback, sends script at
// once, and returns on got what the client sent until it closed the
// connection.
func scriptedServer(t *testing.T, script []byte) (addr string, got <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan []byte, 1)
	go func() {
		defer close(out)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		conn.Write(script)
		b, _ := io.ReadAll(conn)
		out <- b
	}()
	return ln.Addr().String(), out
}
