// Package indexed writes the image format of few-colour screen regions
// as palette indexes, Mimetype: the gateway's display pipeline sends it
// and so does a seek in a recording; the desktop page (web/src/indexed.ts)
// and recordings/guacrender decode it. Text and UI drawing mostly have
// few colours, and the page decodes this several times faster than a
// browser decodes the same image as PNG.
package indexed

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"io"
)

// Mimetype is the img stream type of the format. An image is a header,
// the palette and a zlib stream:
//
//	1 byte version (1), 2 bytes width, 2 bytes height (big-endian),
//	1 byte bits per pixel (1, 2, 4 or 8), 1 byte colours minus one,
//	colours × 4 bytes RGBA,
//	zlib(rows of indexes packed at that depth, first pixel in the high
//	bits, each row starting on a byte)
const Mimetype = "image/x-keyway-indexed"

// Compressor is a zlib writer: compress/zlib's, or a faster one with the
// same methods.
type Compressor interface {
	io.WriteCloser
	Reset(w io.Writer)
}

// Encoder finds images' palettes and writes them in the format. It keeps
// its buffers for the next image; use it from one goroutine.
type Encoder struct {
	z       Compressor
	indexes []uint8
	palette []color.RGBA
	colours []uint32
	// colourTable maps a colour to its palette index in Palette.
	colourTable struct {
		keys [colourTableSize]uint32
		vals [colourTableSize]uint8
		used [colourTableSize]bool
	}
	rows []byte
}

// NewEncoder compresses rows with z.
func NewEncoder(z Compressor) *Encoder { return &Encoder{z: z} }

// Encode appends the Mimetype form of a w×h image whose pixels are the
// palette indexes idx (row by row, no padding).
func (e *Encoder) Encode(out *bytes.Buffer, idx []uint8, w, h int, pal []color.RGBA) error {
	depth := Depth(len(pal))
	out.Write([]byte{1, byte(w >> 8), byte(w), byte(h >> 8), byte(h), byte(depth), byte(len(pal) - 1)})
	for _, c := range pal {
		out.Write([]byte{c.R, c.G, c.B, c.A})
	}
	rows := e.Pack(idx, w, h, depth, false)
	e.z.Reset(out)
	if _, err := e.z.Write(rows); err != nil {
		return err
	}
	return e.z.Close()
}

// colourTableSize is the size of Palette's hash table: twice the most
// colours a palette holds, so probes stay short.
const (
	colourTableBits = 9
	colourTableSize = 1 << colourTableBits
)

// Palette returns img's pixels as indexes into a palette of its colours,
// or false when it has more than 256. The results reuse the encoder's
// buffers until the next call.
func (e *Encoder) Palette(img *image.RGBA) ([]uint8, []color.RGBA, bool) {
	b := img.Bounds()
	n := b.Dx() * b.Dy()
	if cap(e.indexes) < n {
		e.indexes = make([]uint8, n)
	}
	pal := e.palette[:0]
	colours := e.colours[:0]
	idx := e.indexes[:n]
	// Colours are found through a small hash table, whose lookup is the
	// same few instructions and a branch that is almost always taken,
	// whatever the pattern of colours: text alternates between two all
	// along a row, which defeats a cache of the last colour.
	t := &e.colourTable
	clear(t.used[:])
	i := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		row := img.Pix[img.PixOffset(b.Min.X, y):img.PixOffset(b.Max.X, y)]
		for o := 0; o+4 <= len(row); o += 4 {
			c := binary.BigEndian.Uint32(row[o : o+4])
			h := (c * 0x9E3779B1) >> (32 - colourTableBits)
			for t.used[h] && t.keys[h] != c {
				h = (h + 1) & (colourTableSize - 1)
			}
			if !t.used[h] {
				if len(colours) == 256 {
					return nil, nil, false
				}
				t.used[h], t.keys[h], t.vals[h] = true, c, uint8(len(colours))
				colours = append(colours, c)
				pal = append(pal, color.RGBA{row[o], row[o+1], row[o+2], row[o+3]})
			}
			idx[i] = t.vals[h]
			i++
		}
	}
	e.palette, e.colours = pal, colours
	return idx, pal, true
}

// Depth is the fewest bits per pixel, as PNG allows them, for n colours.
func Depth(n int) int {
	switch {
	case n <= 2:
		return 1
	case n <= 4:
		return 2
	case n <= 16:
		return 4
	}
	return 8
}

// Pack packs the w×h indexes idx at depth bits a pixel, each row on a
// byte boundary and, for PNG, after a filter byte (0, none). The result
// reuses the encoder's buffer until the next call.
func (e *Encoder) Pack(idx []uint8, w, h, depth int, filterByte bool) []byte {
	stride := (w*depth + 7) / 8
	lead := 0
	if filterByte {
		lead = 1
	}
	need := (stride + lead) * h
	if cap(e.rows) < need {
		e.rows = make([]byte, need)
	}
	rows := e.rows[:need]
	for y := range h {
		dst := rows[y*(stride+lead) : (y+1)*(stride+lead)]
		if filterByte {
			dst[0] = 0
		}
		src := idx[y*w : (y+1)*w]
		if depth == 8 {
			copy(dst[lead:], src)
			continue
		}
		// Whole bytes first, a loop per depth (this runs for every pixel
		// sent), then the pixels of a last partial byte.
		perByte := 8 / depth
		whole := w / perByte
		out := dst[lead : lead+whole]
		switch depth {
		case 1:
			for j := range out {
				v := src[j*8 : j*8+8 : j*8+8]
				out[j] = v[0]<<7 | v[1]<<6 | v[2]<<5 | v[3]<<4 | v[4]<<3 | v[5]<<2 | v[6]<<1 | v[7]
			}
		case 2:
			for j := range out {
				v := src[j*4 : j*4+4 : j*4+4]
				out[j] = v[0]<<6 | v[1]<<4 | v[2]<<2 | v[3]
			}
		default:
			for j := range out {
				v := src[j*2 : j*2+2 : j*2+2]
				out[j] = v[0]<<4 | v[1]
			}
		}
		src = src[whole*perByte:]
		var b byte
		shift, o := 8-depth, lead+whole
		for _, v := range src {
			b |= v << shift
			if shift == 0 {
				dst[o], o, b, shift = b, o+1, 0, 8-depth
			} else {
				shift -= depth
			}
		}
		if shift != 8-depth {
			dst[o] = b
		}
	}
	return rows
}
