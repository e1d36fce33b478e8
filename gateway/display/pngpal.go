package display

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image/color"

	"github.com/klauspost/compress/zlib"
)

// palettedPNG writes paletted images as PNG faster than image/png, which
// packs rows of fewer than 256 colours one pixel at a time through an
// interface call: screen text is mostly two to sixteen colours, so this is
// the common case. Rows go unfiltered (filters do not help indexed text)
// through one zlib writer kept for the session.
type palettedPNG struct {
	zw   *zlib.Writer
	rows []byte
	hdr  []byte
	data bytes.Buffer
}

// encode appends to out the PNG of a w×h image whose pixels are the
// palette indexes idx (row by row, no padding).
func (p *palettedPNG) encode(out *bytes.Buffer, idx []uint8, w, h int, pal []color.RGBA) error {
	depth := bitDepth(len(pal))
	out.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = byte(depth), 3 // colour type 3: indexed
	p.chunk(out, "IHDR", ihdr)

	plte := make([]byte, 0, 3*len(pal))
	opaque := true
	for _, c := range pal {
		plte = append(plte, c.R, c.G, c.B)
		opaque = opaque && c.A == 0xff
	}
	p.chunk(out, "PLTE", plte)
	if !opaque {
		trns := make([]byte, len(pal))
		for i, c := range pal {
			trns[i] = c.A
		}
		p.chunk(out, "tRNS", trns)
	}

	rows := p.pack(idx, w, h, depth, true)

	p.data.Reset()
	if p.zw == nil {
		p.zw, _ = zlib.NewWriterLevel(&p.data, zlib.BestSpeed)
	} else {
		p.zw.Reset(&p.data)
	}
	if _, err := p.zw.Write(rows); err != nil {
		return err
	}
	if err := p.zw.Close(); err != nil {
		return err
	}
	p.chunk(out, "IDAT", p.data.Bytes())
	p.chunk(out, "IEND", nil)
	return nil
}

// IndexedMimetype is the img stream type of a few-colour image as
// palette indexes: a format of this project that the desktop page decodes
// in JavaScript, several times faster than a browser decodes the same
// image as PNG. It is a header, the palette and a zlib stream:
//
//	1 byte version (1), 2 bytes width, 2 bytes height (big-endian),
//	1 byte bits per pixel (1, 2, 4 or 8), 1 byte colours minus one,
//	colours × 4 bytes RGBA,
//	zlib(rows of indexes packed at that depth, first pixel in the high
//	bits, each row starting on a byte)
const IndexedMimetype = "image/x-keyway-indexed"

// encodeIndexed appends the IndexedMimetype form of a w×h image whose
// pixels are the palette indexes idx.
func (p *palettedPNG) encodeIndexed(out *bytes.Buffer, idx []uint8, w, h int, pal []color.RGBA) error {
	depth := bitDepth(len(pal))
	hdr := []byte{1, byte(w >> 8), byte(w), byte(h >> 8), byte(h), byte(depth), byte(len(pal) - 1)}
	out.Write(hdr)
	for _, c := range pal {
		out.Write([]byte{c.R, c.G, c.B, c.A})
	}
	rows := p.pack(idx, w, h, depth, false)
	if p.zw == nil {
		p.zw, _ = zlib.NewWriterLevel(out, zlib.BestSpeed)
	} else {
		p.zw.Reset(out)
	}
	if _, err := p.zw.Write(rows); err != nil {
		return err
	}
	return p.zw.Close()
}

// bitDepth is the fewest bits per pixel PNG allows for n colours.
func bitDepth(n int) int {
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

// pack packs the rows of idx at depth bits a pixel, each row on a byte
// boundary and, for PNG, after a filter byte (0, none).
func (p *palettedPNG) pack(idx []uint8, w, h, depth int, filterByte bool) []byte {
	stride := (w*depth + 7) / 8
	lead := 0
	if filterByte {
		lead = 1
	}
	need := (stride + lead) * h
	if cap(p.rows) < need {
		p.rows = make([]byte, need)
	}
	rows := p.rows[:need]
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

// chunk appends one PNG chunk: length, type, data, CRC of type and data.
func (p *palettedPNG) chunk(out *bytes.Buffer, typ string, data []byte) {
	p.hdr = binary.BigEndian.AppendUint32(p.hdr[:0], uint32(len(data)))
	p.hdr = append(p.hdr, typ...)
	out.Write(p.hdr)
	out.Write(data)
	crc := crc32.NewIEEE()
	crc.Write(p.hdr[4:])
	crc.Write(data)
	out.Write(binary.BigEndian.AppendUint32(p.hdr[:0], crc.Sum32()))
}
