package display

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image/color"

	"github.com/keyway-dev/keyway/recordings/indexed"
	"github.com/klauspost/compress/zlib"
)

// palettedPNG writes paletted images as PNG faster than image/png, which
// packs rows of fewer than 256 colours one pixel at a time through an
// interface call: screen text is mostly two to sixteen colours, so this is
// the common case. Rows go unfiltered (filters do not help indexed text)
// through one zlib writer kept for the session.
type palettedPNG struct {
	zw   *zlib.Writer
	hdr  []byte
	data bytes.Buffer
}

// encode appends to out the PNG of a w×h image of palette pal whose rows
// are packed at indexed.Depth(len(pal)) bits a pixel, after a filter byte
// (indexed.Encoder.Pack).
func (p *palettedPNG) encode(out *bytes.Buffer, rows []byte, w, h int, pal []color.RGBA) error {
	depth := indexed.Depth(len(pal))
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
