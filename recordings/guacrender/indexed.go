package guacrender

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"image"
	"io"
)

// maxIndexedSide is the largest side the desktop page decodes
// (web/src/indexed.ts).
const maxIndexedSide = 8192

// DecodeIndexed decodes an image of type indexed.Mimetype as the desktop
// page does (web/src/indexed.ts): an index past the palette is a
// transparent pixel, data after the rows is ignored. Its size is checked
// against limits, and the page's own bound, before anything is
// allocated; the rows are inflated to exactly their size.
func DecodeIndexed(data []byte, limits Limits) (*image.RGBA, error) {
	var dec indexedDecoder
	return dec.decode(data, limits)
}

// indexedDecoder decodes indexed images into buffers it keeps for the
// next one: a recording has thousands, and allocating (and zeroing) each
// image's rows and pixels cost as much as decoding them.
type indexedDecoder struct {
	zr   io.ReadCloser // a zlib reader, reset for each image
	rows []byte
	pix  []byte
}

// decode decodes data as DecodeIndexed does; the image is valid until
// the next call.
func (dec *indexedDecoder) decode(data []byte, limits Limits) (*image.RGBA, error) {
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
	// The palette as premultiplied RGBA, as the canvas keeps it, in one
	// word a colour; indexes past it stay transparent.
	var pal [256]uint32
	for i := range colours {
		p := data[7+4*i : 11+4*i]
		a := uint32(p[3])
		pal[i] = uint32(premul(p[0], a)) | uint32(premul(p[1], a))<<8 | uint32(premul(p[2], a))<<16 | a<<24
	}
	src := bytes.NewReader(data[palEnd:])
	var err error
	if dec.zr == nil {
		dec.zr, err = zlib.NewReader(src)
	} else {
		err = dec.zr.(zlib.Resetter).Reset(src, nil)
	}
	if err != nil {
		dec.zr = nil
		return nil, fmt.Errorf("%w: indexed image rows: %v", ErrMalformed, err)
	}
	stride := (w*depth + 7) / 8
	dec.rows = grow(dec.rows, stride*h)
	if _, err := io.ReadFull(dec.zr, dec.rows); err != nil {
		return nil, fmt.Errorf("%w: indexed image rows: %v", ErrMalformed, err)
	}
	dec.pix = grow(dec.pix, 4*w*h)
	img := &image.RGBA{Pix: dec.pix, Stride: 4 * w, Rect: image.Rect(0, 0, w, h)}
	perByte := 8 / depth
	mask := byte(1<<depth - 1)
	for y := range h {
		row := dec.rows[y*stride : (y+1)*stride]
		out := img.Pix[y*img.Stride : y*img.Stride+4*w]
		if depth == 8 {
			for x, b := range row[:w] {
				binary.LittleEndian.PutUint32(out[4*x:], pal[b])
			}
			continue
		}
		// Whole bytes first (perByte pixels each, first in the high bits),
		// then what is left of the row.
		x := 0
		for _, b := range row {
			for k := perByte - 1; k >= 0 && x < w; k-- {
				binary.LittleEndian.PutUint32(out[4*x:], pal[(b>>(uint(k)*uint(depth)))&mask])
				x++
			}
		}
	}
	return img, nil
}

// grow returns b resized to n bytes, reusing its array when large enough;
// the contents are overwritten by the caller.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// premul premultiplies colour channel c by alpha a, rounding as the
// canvas does.
func premul(c byte, a uint32) byte {
	return byte((uint32(c)*a + 127) / 255)
}
