package display

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image/color"
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
	depth := 8
	switch {
	case len(pal) <= 2:
		depth = 1
	case len(pal) <= 4:
		depth = 2
	case len(pal) <= 16:
		depth = 4
	}
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

	// Pack the rows: a filter byte (0, none), then the indexes at depth
	// bits each, the first pixel in the high bits.
	stride := (w*depth + 7) / 8
	need := (stride + 1) * h
	if cap(p.rows) < need {
		p.rows = make([]byte, need)
	}
	rows := p.rows[:need]
	for y := range h {
		dst := rows[y*(stride+1) : (y+1)*(stride+1)]
		dst[0] = 0
		src := idx[y*w : (y+1)*w]
		if depth == 8 {
			copy(dst[1:], src)
			continue
		}
		var b byte
		shift, o := 8-depth, 1
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
