package vnc

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"strings"
	"testing"
)

// compact is Tight's compact length.
func compact(n int) []byte {
	switch {
	case n < 1<<7:
		return []byte{byte(n)}
	case n < 1<<14:
		return []byte{byte(n) | 0x80, byte(n >> 7)}
	}
	return []byte{byte(n) | 0x80, byte(n>>7) | 0x80, byte(n >> 14)}
}

// tightZ compresses data on one of a test server's zlib streams, with a
// sync flush as servers do after each rectangle.
type tightZ struct {
	out bytes.Buffer
	zw  *zlib.Writer
}

func (z *tightZ) data(b []byte) []byte {
	if z.zw == nil {
		z.zw = zlib.NewWriter(&z.out)
	}
	z.out.Reset()
	z.zw.Write(b)
	z.zw.Flush()
	return append(compact(z.out.Len()), z.out.Bytes()...)
}

// tp is a 24-bit Tight pixel: red, green, blue.
func tp(r, g, b byte) []byte { return []byte{r, g, b} }

func TestTight(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	rgba := func(p []byte) color.RGBA { return color.RGBA{p[0], p[1], p[2], 255} }
	red, green, blue, white := tp(255, 0, 0), tp(0, 255, 0), tp(0, 0, 255), tp(255, 255, 255)

	var stream bytes.Buffer
	c := testClient(t, 24, nil, 4, 2)
	c.r = bufio.NewReader(&stream)
	var z0, z1 tightZ
	z0b := &tightZ{}

	// A 4×2 gradient-filtered ramp: each component is sent as its
	// difference from left + above - above-left.
	ramp := [][3]int{{10, 20, 30}, {20, 30, 40}, {30, 40, 50}, {40, 50, 60}, {20, 30, 40}, {30, 40, 50}, {40, 50, 60}, {250, 0, 5}}
	var grad []byte
	at := func(x, y, k int) int {
		if x < 0 || y < 0 {
			return 0
		}
		return ramp[y*4+x][k]
	}
	for i, p := range ramp {
		x, y := i%4, i/4
		for k := range 3 {
			pred := max(0, min(at(x-1, y, k)+at(x, y-1, k)-at(x-1, y-1, k), 255))
			grad = append(grad, byte(p[k]-pred))
		}
	}
	rampPixels := make([][]byte, len(ramp))
	for i, p := range ramp {
		rampPixels[i] = tp(byte(p[0]), byte(p[1]), byte(p[2]))
	}

	for _, tc := range []struct {
		name string
		data []byte
		want [][]byte // row-major, 4×2
	}{
		{"fill", cat([]byte{0x80}, blue), [][]byte{blue, blue, blue, blue, blue, blue, blue, blue}},
		// Two colours, one bit per pixel: 1 byte a row, small enough to
		// come without zlib.
		{"palette of two, raw", cat([]byte{0x40, 1, 1}, red, green, []byte{0b1001_0000, 0b0110_0000}),
			[][]byte{green, red, red, green, red, green, green, red}},
		// Three colours, a byte a pixel: 8 bytes, still raw.
		{"palette of three", cat([]byte{0x40, 1, 2}, red, green, white, []byte{0, 1, 2, 0, 2, 2, 1, 1}),
			[][]byte{red, green, white, red, white, white, green, green}},
		// Copy filter: 24 bytes, compressed on stream 0.
		{"copy, stream 0", cat([]byte{0x00}, z0.data(cat(red, green, blue, white, white, blue, green, red))),
			[][]byte{red, green, blue, white, white, blue, green, red}},
		// Stream 1, with an explicit copy filter.
		{"copy, stream 1", cat([]byte{0x50, 0}, z1.data(cat(white, white, red, red, blue, blue, green, green))),
			[][]byte{white, white, red, red, blue, blue, green, green}},
		// Stream 0 again, continuing the same zlib stream.
		{"copy, stream 0 continued", cat([]byte{0x00}, z0.data(cat(blue, blue, blue, blue, red, red, red, red))),
			[][]byte{blue, blue, blue, blue, red, red, red, red}},
		// The server resets stream 0 (bit 0) and starts a new one.
		{"stream 0 reset", cat([]byte{0x01}, z0b.data(cat(green, green, green, green, white, white, white, white))),
			[][]byte{green, green, green, green, white, white, white, white}},
		{"gradient", cat([]byte{0x40, 2}, z0b.data(grad)), rampPixels},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream.Write(update(encTight, 4, 2, tc.data))
			u, err := c.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if len(u.Rects) != 1 || stream.Len() != 0 || c.r.Buffered() != 0 {
				t.Fatalf("changed %v, %d bytes left over", u.Rects, stream.Len()+c.r.Buffered())
			}
			for i, want := range tc.want {
				if got := c.fb.RGBAAt(i%4, i/4); got != rgba(want) {
					t.Fatalf("pixel %d: %v, want %v", i, got, rgba(want))
				}
			}
		})
	}

	t.Run("jpeg", func(t *testing.T) {
		img := image.NewRGBA(image.Rect(0, 0, 4, 2))
		for i := range 8 {
			img.Set(i%4, i/4, color.RGBA{200, 100, 50, 255})
		}
		var j bytes.Buffer
		jpeg.Encode(&j, img, &jpeg.Options{Quality: 100})
		stream.Write(update(encTight, 4, 2, cat([]byte{0x90}, compact(j.Len()), j.Bytes())))
		if _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		for i := range 8 {
			p := c.fb.RGBAAt(i%4, i/4)
			if absDiff(p.R, 200) > 3 || absDiff(p.G, 100) > 3 || absDiff(p.B, 50) > 3 {
				t.Fatalf("pixel %d: %v, want about (200, 100, 50)", i, p)
			}
		}
		// A JPEG of another size than its rectangle is refused.
		stream.Write(update(encTight, 2, 2, cat([]byte{0x90}, compact(j.Len()), j.Bytes())))
		if _, err := c.ReadMessage(); err == nil || !strings.Contains(err.Error(), "JPEG of 4x2") {
			t.Fatalf("mis-sized JPEG: %v", err)
		}
	})

	for _, tc := range []struct{ name, data, want string }{
		{"PNG", "\xa0", "compression type 10"},
		{"unknown filter", "\x40\x07", "filter 7"},
		{"palette index", "\x40\x01\x02" + "\x00\x00\x00\xff\xff\xff\x00\x00\x00" + "\x00\x01\x03\x00\x00\x00\x00\x00", "palette index 3"},
		{"truncated data", "\x00\xff\xff\x7f", "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testClient(t, 24, update(encTight, 4, 2, []byte(tc.data)), 4, 2)
			if _, err := c.ReadMessage(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func absDiff(a, b uint8) uint8 {
	if a > b {
		return a - b
	}
	return b - a
}

// TestTightAt16Bits decodes a palette and a fill whose pixels are 16-bit
// RGB565, little-endian.
func TestTightAt16Bits(t *testing.T) {
	red, blue := []byte{0x00, 0xf8}, []byte{0x1f, 0x00}
	msg := update(encTight, 2, 1, append(append([]byte{0x40, 1, 1}, append(red, blue...)...), 0b0100_0000))
	c := testClient(t, 16, msg, 2, 1)
	if _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if got := c.fb.Pix; !bytes.Equal(got, []byte{255, 0, 0, 255, 0, 0, 255, 255}) {
		t.Fatalf("pixels % x", got)
	}
}

// TestMono checks the eight-at-a-time drawing of two-colour rows against
// a pixel-at-a-time reading of the bits, at widths around whole bytes.
func TestMono(t *testing.T) {
	bits := []byte{0b1011_0010, 0b0111_1000, 0b1100_0101}
	const c0, c1 = 0x11223344, 0xaabbccdd
	for w := 1; w <= 8*len(bits); w++ {
		dst := make([]byte, 4*w+4) // one pixel more, which must stay 0
		mono(dst, bits, w, c0, c1)
		for x := range w + 1 {
			want := uint32(0)
			if x < w {
				want = c0
				if bits[x/8]>>(7-x%8)&1 == 1 {
					want = c1
				}
			}
			if got := binary.LittleEndian.Uint32(dst[4*x:]); got != want {
				t.Fatalf("width %d, pixel %d: %#x, want %#x", w, x, got, want)
			}
		}
	}
}
