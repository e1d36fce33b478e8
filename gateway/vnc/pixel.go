package vnc

import (
	"fmt"
	"io"
)

// pixelFormat is the true-colour format the client asks the server for.
// A lower colour depth trades colours for bandwidth on slow links.
type pixelFormat struct {
	depth int // 24, 16 or 8 significant bits
	bpp   int // bytes per pixel on the wire: 4, 2 or 1
	// cbytes is the size of a compressed pixel (ZRLE's CPIXEL, Tight's
	// TPIXEL): 3 for 32-bit pixels whose colour fits in three bytes.
	cbytes         int
	max            [3]uint16 // red, green, blue maxima
	shift          [3]uint8
	scaleR, scaleG []byte // channel value → 0..255
	scaleB         []byte
	wire           [16]byte // the PIXEL_FORMAT structure
}

// newPixelFormat returns the format for a colour depth of 24 (the default
// when 0), 16 or 8 bits.
func newPixelFormat(depth int) (pixelFormat, error) {
	f := pixelFormat{depth: depth}
	switch depth {
	case 0, 24:
		f.depth, f.bpp, f.cbytes = 24, 4, 3
		f.max, f.shift = [3]uint16{255, 255, 255}, [3]uint8{16, 8, 0}
	case 16: // RGB565
		f.bpp, f.cbytes = 2, 2
		f.max, f.shift = [3]uint16{31, 63, 31}, [3]uint8{11, 5, 0}
	case 8: // BGR233
		f.bpp, f.cbytes = 1, 1
		f.max, f.shift = [3]uint16{7, 7, 3}, [3]uint8{0, 3, 6}
	default:
		return f, fmt.Errorf("colour depth %d: choose 24, 16 or 8", depth)
	}
	scales := make([][]byte, 3)
	for i, m := range f.max {
		scales[i] = make([]byte, int(m)+1)
		for v := range scales[i] {
			scales[i][v] = byte((v*255 + int(m)/2) / int(m))
		}
	}
	f.scaleR, f.scaleG, f.scaleB = scales[0], scales[1], scales[2]
	f.wire = [16]byte{byte(8 * f.bpp), byte(f.depth), 0, 1,
		byte(f.max[0] >> 8), byte(f.max[0]), byte(f.max[1] >> 8), byte(f.max[1]), byte(f.max[2] >> 8), byte(f.max[2]),
		f.shift[0], f.shift[1], f.shift[2]}
	return f, nil
}

// rgba converts one little-endian pixel of len(b) bytes (bpp, or cbytes
// for a compressed one) to R, G, B, A.
func (f *pixelFormat) rgba(b []byte) [4]byte {
	if f.bpp == 4 { // blue, green, red in the first three bytes
		return [4]byte{b[2], b[1], b[0], 0xff}
	}
	var v uint32
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint32(b[i])
	}
	return [4]byte{
		f.scaleR[v>>f.shift[0]&uint32(f.max[0])],
		f.scaleG[v>>f.shift[1]&uint32(f.max[1])],
		f.scaleB[v>>f.shift[2]&uint32(f.max[2])],
		0xff,
	}
}

// tpixel converts one of Tight's compressed pixels: at 24 bits these are
// R, G, B in that order, whatever the pixel format's byte order.
func (f *pixelFormat) tpixel(b []byte) [4]byte {
	if f.bpp == 4 {
		return [4]byte{b[0], b[1], b[2], 0xff}
	}
	return f.rgba(b)
}

// components splits one of Tight's compressed pixels into red, green and
// blue in the format's own ranges.
func (f *pixelFormat) components(b []byte) [3]int {
	if f.bpp == 4 {
		return [3]int{int(b[0]), int(b[1]), int(b[2])}
	}
	var v uint32
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint32(b[i])
	}
	return [3]int{int(v >> f.shift[0] & uint32(f.max[0])), int(v >> f.shift[1] & uint32(f.max[1])), int(v >> f.shift[2] & uint32(f.max[2]))}
}

// readPixel reads one pixel of n bytes from r; buf holds at least 4.
func (f *pixelFormat) readPixel(r io.Reader, buf []byte, n int) ([4]byte, error) {
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return [4]byte{}, err
	}
	return f.rgba(buf[:n]), nil
}
