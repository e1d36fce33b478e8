package vnc

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"image"
	"io"
)

// encZRLE is Zlib Run-Length Encoding (RFC 6143 §7.7.6): 64×64 tiles,
// each raw, solid, palette-packed or run-length encoded, all in one zlib
// stream that lasts the whole connection.
const encZRLE int32 = 16

// maxZRLEData bounds one rectangle's compressed data.
const maxZRLEData = 64 << 20

// zrleInput feeds the connection's zlib stream one rectangle's data at a
// time. It is an io.ByteReader so the decompressor reads no further than
// it needs, leaving the rest of the stream for the next rectangle.
type zrleInput struct{ bytes.Buffer }

func (c *Client) zrle(r image.Rectangle) error {
	var n uint32
	if err := binary.Read(c.r, binary.BigEndian, &n); err != nil {
		return err
	}
	if n > maxZRLEData {
		return fmt.Errorf("%w: ZRLE data of %d bytes", ErrProtocol, n)
	}
	if c.zin == nil {
		c.zin = &zrleInput{}
	}
	if _, err := io.CopyN(&c.zin.Buffer, c.r, int64(n)); err != nil {
		return err
	}
	// Compressed data the tiles never use would otherwise pile up.
	if c.zin.Len() > maxZRLEData {
		return fmt.Errorf("%w: %d bytes of unused ZRLE data", ErrProtocol, c.zin.Len())
	}
	if c.zr == nil {
		zr, err := zlib.NewReader(c.zin)
		if err != nil {
			return fmt.Errorf("%w: ZRLE stream: %v", ErrProtocol, err)
		}
		c.zr = zr
	}
	for ty := r.Min.Y; ty < r.Max.Y; ty += 64 {
		for tx := r.Min.X; tx < r.Max.X; tx += 64 {
			tile := image.Rect(tx, ty, min(tx+64, r.Max.X), min(ty+64, r.Max.Y))
			if err := c.zrleTile(tile); err != nil {
				return fmt.Errorf("%w: ZRLE tile at %v: %v", ErrProtocol, tile.Min, err)
			}
		}
	}
	return nil
}

// cpixel reads one compressed pixel (CPIXEL).
func (c *Client) cpixel(b []byte) ([4]byte, error) {
	return c.pf.readPixel(c.zr, b, c.pf.cbytes)
}

func (c *Client) zrleTile(t image.Rectangle) error {
	var one [4]byte
	var sub [1]byte
	if _, err := io.ReadFull(c.zr, sub[:]); err != nil {
		return err
	}
	w, h := t.Dx(), t.Dy()
	set := func(i int, p [4]byte) {
		o := c.fb.PixOffset(t.Min.X+i%w, t.Min.Y+i/w)
		copy(c.fb.Pix[o:o+4], p[:])
	}
	readPalette := func(size int) ([][4]byte, error) {
		pal := make([][4]byte, size)
		for i := range pal {
			p, err := c.cpixel(one[:])
			if err != nil {
				return nil, err
			}
			pal[i] = p
		}
		return pal, nil
	}
	// runLength reads a ZRLE run: 1 plus bytes summed until one is not 255.
	runLength := func(limit int) (int, error) {
		n := 1
		for {
			if _, err := io.ReadFull(c.zr, one[:1]); err != nil {
				return 0, err
			}
			n += int(one[0])
			if n > limit {
				return 0, fmt.Errorf("run of %d pixels in a tile of %d", n, limit)
			}
			if one[0] != 255 {
				return n, nil
			}
		}
	}
	s := int(sub[0])
	switch {
	case s == 0: // raw
		for i := range w * h {
			p, err := c.cpixel(one[:])
			if err != nil {
				return err
			}
			set(i, p)
		}
	case s == 1: // solid
		p, err := c.cpixel(one[:])
		if err != nil {
			return err
		}
		for i := range w * h {
			set(i, p)
		}
	case s <= 16: // packed palette
		pal, err := readPalette(s)
		if err != nil {
			return err
		}
		bits := 4
		switch {
		case s == 2:
			bits = 1
		case s <= 4:
			bits = 2
		}
		rowBytes := (w*bits + 7) / 8
		row := make([]byte, rowBytes)
		for y := range h {
			if _, err := io.ReadFull(c.zr, row); err != nil {
				return err
			}
			for x := range w {
				bit := x * bits
				idx := int(row[bit/8]>>(8-bits-bit%8)) & (1<<bits - 1)
				if idx >= len(pal) {
					return fmt.Errorf("palette index %d of %d", idx, len(pal))
				}
				set(y*w+x, pal[idx])
			}
		}
	case s == 128: // plain RLE
		for i := 0; i < w*h; {
			p, err := c.cpixel(one[:])
			if err != nil {
				return err
			}
			n, err := runLength(w*h - i)
			if err != nil {
				return err
			}
			for range n {
				set(i, p)
				i++
			}
		}
	case s >= 130: // palette RLE
		pal, err := readPalette(s - 128)
		if err != nil {
			return err
		}
		for i := 0; i < w*h; {
			if _, err := io.ReadFull(c.zr, one[:1]); err != nil {
				return err
			}
			idx, n := int(one[0]&0x7f), 1
			if one[0]&0x80 != 0 {
				if n, err = runLength(w*h - i); err != nil {
					return err
				}
			}
			if idx >= len(pal) {
				return fmt.Errorf("palette index %d of %d", idx, len(pal))
			}
			for range n {
				set(i, pal[idx])
				i++
			}
		}
	default:
		return fmt.Errorf("unknown subencoding %d", s)
	}
	return nil
}
