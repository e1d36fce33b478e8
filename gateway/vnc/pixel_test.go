package vnc

import (
	"bufio"
	"bytes"
	"net"
	"testing"
)

// testClient is a client reading msg with a w×h screen at a colour depth;
// the server may resize it to at most 64 Ki pixels.
func testClient(t testing.TB, depth int, msg []byte, w, h int) *Client {
	t.Helper()
	pf, err := newPixelFormat(depth)
	if err != nil {
		t.Fatal(err)
	}
	// Resizes stay small: fuzzers make many clients.
	c := &Client{conn: discardConn{}, r: bufio.NewReader(bytes.NewReader(msg)), pf: pf, maxPixels: 1 << 16}
	c.setFramebuffer(w, h)
	return c
}

// discardConn takes the client's replies (clipboard capabilities and
// requests) and drops them.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error) { return len(b), nil }

func TestPixelFormats(t *testing.T) {
	tests := []struct {
		depth int
		wire  []byte // one pixel as the server sends it
		want  [4]byte
	}{
		{24, []byte{0x10, 0x20, 0x30, 0}, [4]byte{0x30, 0x20, 0x10, 0xff}},
		{16, []byte{0x00, 0xf8}, [4]byte{0xff, 0, 0, 0xff}},       // red 31
		{16, []byte{0xe0, 0x07}, [4]byte{0, 0xff, 0, 0xff}},       // green 63
		{16, []byte{0x1f, 0x00}, [4]byte{0, 0, 0xff, 0xff}},       // blue 31
		{16, []byte{0x10, 0x84}, [4]byte{0x84, 0x82, 0x84, 0xff}}, // 16, 32, 16: mid grey
		{8, []byte{0x07}, [4]byte{0xff, 0, 0, 0xff}},              // BGR233: red in the low bits
		{8, []byte{0x38}, [4]byte{0, 0xff, 0, 0xff}},
		{8, []byte{0xc0}, [4]byte{0, 0, 0xff, 0xff}},
	}
	for _, tc := range tests {
		f, err := newPixelFormat(tc.depth)
		if err != nil {
			t.Fatal(err)
		}
		if len(tc.wire) != f.bpp && tc.depth != 24 {
			t.Fatalf("depth %d: test pixel of %d bytes, format has %d", tc.depth, len(tc.wire), f.bpp)
		}
		if got := f.rgba(tc.wire); got != tc.want {
			t.Errorf("depth %d, % x: got %v, want %v", tc.depth, tc.wire, got, tc.want)
		}
	}
	if _, err := newPixelFormat(12); err == nil {
		t.Error("depth 12 accepted")
	}
}

// TestRawAtEachDepth decodes the same 2×1 raw rectangle (red, blue) sent
// at each depth.
func TestRawAtEachDepth(t *testing.T) {
	hdr := []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0}
	for depth, pix := range map[int][]byte{
		24: {0, 0, 0xff, 0, 0xff, 0, 0, 0},
		16: {0x00, 0xf8, 0x1f, 0x00},
		8:  {0x07, 0xc0},
	} {
		c := testClient(t, depth, append(append([]byte{}, hdr...), pix...), 2, 1)
		if _, err := c.ReadMessage(); err != nil {
			t.Fatalf("depth %d: %v", depth, err)
		}
		want := []byte{0xff, 0, 0, 0xff, 0, 0, 0xff, 0xff}
		if !bytes.Equal(c.fb.Pix, want) {
			t.Errorf("depth %d: pixels % x, want % x", depth, c.fb.Pix, want)
		}
	}
}
