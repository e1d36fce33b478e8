package vnc

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"image/color"
	"testing"
)

// zrleUpdate builds a FramebufferUpdate with one ZRLE rectangle at (0,0)
// of w×h whose decompressed tile data is tiles.
func zrleUpdate(t *testing.T, zw *zlib.Writer, out *bytes.Buffer, w, h int, tiles []byte) []byte {
	t.Helper()
	out.Reset()
	zw.Write(tiles)
	zw.Flush() // a sync flush, as servers do after each rectangle
	msg := []byte{0, 0, 0, 1}
	msg = binary.BigEndian.AppendUint16(msg, 0)
	msg = binary.BigEndian.AppendUint16(msg, 0)
	msg = binary.BigEndian.AppendUint16(msg, uint16(w))
	msg = binary.BigEndian.AppendUint16(msg, uint16(h))
	msg = binary.BigEndian.AppendUint32(msg, uint32(encZRLE))
	msg = binary.BigEndian.AppendUint32(msg, uint32(out.Len()))
	return append(msg, out.Bytes()...)
}

// cp is a compressed pixel: blue, green, red.
func cp(r, g, b byte) []byte { return []byte{b, g, r} }

func TestZRLESubencodings(t *testing.T) {
	red, green, blue, white := cp(255, 0, 0), cp(0, 255, 0), cp(0, 0, 255), cp(255, 255, 255)
	rgba := func(p []byte) color.RGBA { return color.RGBA{p[2], p[1], p[0], 255} }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	var compressed bytes.Buffer
	zw := zlib.NewWriter(&compressed)
	var stream bytes.Buffer
	c := testClient(t, 24, nil, 4, 2)
	c.r = bufio.NewReader(&stream)

	for _, tc := range []struct {
		name  string
		tiles []byte
		want  [][]byte // row-major, 4×2
	}{
		{"raw", cat([]byte{0}, red, green, blue, white, white, blue, green, red),
			[][]byte{red, green, blue, white, white, blue, green, red}},
		{"solid", cat([]byte{1}, blue),
			[][]byte{blue, blue, blue, blue, blue, blue, blue, blue}},
		// Two colours, one bit per pixel, rows padded to a byte: 1001, 0110.
		{"packed palette", cat([]byte{2}, red, green, []byte{0b1001_0000, 0b0110_0000}),
			[][]byte{green, red, red, green, red, green, green, red}},
		// Runs of 3 and 5 (length-1 bytes 2 and 4).
		{"plain RLE", cat([]byte{128}, white, []byte{2}, red, []byte{4}),
			[][]byte{white, white, white, red, red, red, red, red}},
		// Palette of two: index 1 once, then index 0 run of 7.
		{"palette RLE", cat([]byte{130}, blue, green, []byte{1, 0x80, 6}),
			[][]byte{green, blue, blue, blue, blue, blue, blue, blue}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream.Write(zrleUpdate(t, zw, &compressed, 4, 2, tc.tiles))
			u, err := c.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if len(u.Rects) != 1 {
				t.Fatalf("changed %v", u.Rects)
			}
			for i, want := range tc.want {
				if got := c.fb.RGBAAt(i%4, i/4); got != rgba(want) {
					t.Fatalf("pixel %d: %v, want %v", i, got, rgba(want))
				}
			}
		})
	}
	// A palette index past the palette is refused.
	stream.Write(zrleUpdate(t, zw, &compressed, 4, 2, cat([]byte{130}, blue, green, []byte{5})))
	if _, err := c.ReadMessage(); err == nil {
		t.Fatal("palette index out of range accepted")
	}
}
