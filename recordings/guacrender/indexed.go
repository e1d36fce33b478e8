package guacrender

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"image"
	"io"
)

// maxIndexedSide is the largest side the desktop page decodes
// (web/src/indexed.ts).
const maxIndexedSide = 8192

// DecodeIndexed decodes an image of type IndexedMimetype as the desktop
// page does (web/src/indexed.ts): an index past the palette is a
// transparent pixel, data after the rows is ignored. Its size is checked
// against limits, and the page's own bound, before anything is
// allocated; the rows are inflated to exactly their size.
func DecodeIndexed(data []byte, limits Limits) (*image.RGBA, error) {
	if len(data) < 7 || data[0] != 1 {
		return nil, fmt.Errorf("%w: indexed image: bad header", ErrMalformed)
	}
	w, h := int(data[1])<<8|int(data[2]), int(data[3])<<8|int(data[4])
	depth, colours := int(data[5]), int(data[6])+1
	if (depth != 1 && depth != 2 && depth != 4 && depth != 8) || colours > 1<<depth || w < 1 || h < 1 || w > maxIndexedSide || h > maxIndexedSide {
		return nil, fmt.Errorf("%w: indexed image of %d×%d, %d colours at depth %d", ErrMalformed, w, h, colours, depth)
	}
	if w > limits.MaxSide || h > limits.MaxSide || w*h > limits.MaxPixels {
		return nil, fmt.Errorf("%w: an image of %d×%d", ErrTooLarge, w, h)
	}
	palEnd := 7 + 4*colours
	// A zlib stream is at least 7 bytes (web/src/indexed.ts).
	if len(data) < palEnd+7 {
		return nil, fmt.Errorf("%w: indexed image: short palette or rows", ErrMalformed)
	}
	// The palette as premultiplied RGBA, as the canvas keeps it; indexes
	// past it stay transparent.
	var pal [256][4]byte
	for i := range colours {
		p := data[7+4*i : 11+4*i]
		a := uint32(p[3])
		pal[i] = [4]byte{premul(p[0], a), premul(p[1], a), premul(p[2], a), p[3]}
	}
	zr, err := zlib.NewReader(bytes.NewReader(data[palEnd:]))
	if err != nil {
		return nil, fmt.Errorf("%w: indexed image rows: %v", ErrMalformed, err)
	}
	stride := (w*depth + 7) / 8
	rows := make([]byte, stride*h)
	if _, err := io.ReadFull(zr, rows); err != nil {
		return nil, fmt.Errorf("%w: indexed image rows: %v", ErrMalformed, err)
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	mask := 1<<depth - 1
	perByte := 8 / depth
	for y := range h {
		row := rows[y*stride : (y+1)*stride]
		out := img.Pix[y*img.Stride : y*img.Stride+4*w]
		for x := range w {
			b := row[x/perByte]
			shift := 8 - depth*(x%perByte+1)
			copy(out[4*x:4*x+4], pal[int(b>>shift)&mask][:])
		}
	}
	return img, nil
}

// premul premultiplies colour channel c by alpha a, rounding as the
// canvas does.
func premul(c byte, a uint32) byte {
	return byte((uint32(c)*a + 127) / 255)
}
