package vnc

import (
	"encoding/binary"
	"fmt"
	"image"
	"io"
)

// RRE and Hextile encodings (RFC 6143 §7.7.3, §7.7.4).
const (
	encRRE     int32 = 2
	encHextile int32 = 5
)

// maxRRESubrects bounds an RRE rectangle's subrectangles.
const maxRRESubrects = 1 << 20

// Hextile subencoding bits.
const (
	hexRaw        = 1
	hexBackground = 2
	hexForeground = 4
	hexAnySubrect = 8
	hexColoured   = 16
)

func (c *Client) pixel(b []byte) ([4]byte, error) {
	return c.pf.readPixel(c.r, b, c.pf.bpp)
}

func (c *Client) fill(r image.Rectangle, p [4]byte) {
	// An empty rectangle is "in" any other, wherever it lies: it must not
	// be used to index the screen.
	if r.Empty() {
		return
	}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		row := c.fb.Pix[c.fb.PixOffset(r.Min.X, y):c.fb.PixOffset(r.Max.X, y)]
		for i := 0; i < len(row); i += 4 {
			copy(row[i:i+4], p[:])
		}
	}
}

// rre decodes a background and solid subrectangles.
func (c *Client) rre(r image.Rectangle) error {
	var buf [12]byte
	if _, err := io.ReadFull(c.r, buf[:4]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(buf[:4])
	if n > maxRRESubrects {
		return fmt.Errorf("%w: %d RRE subrectangles", ErrProtocol, n)
	}
	bg, err := c.pixel(buf[:])
	if err != nil {
		return err
	}
	c.fill(r, bg)
	for range n {
		p, err := c.pixel(buf[:])
		if err != nil {
			return err
		}
		if _, err := io.ReadFull(c.r, buf[4:12]); err != nil {
			return err
		}
		x, y := int(binary.BigEndian.Uint16(buf[4:])), int(binary.BigEndian.Uint16(buf[6:]))
		w, h := int(binary.BigEndian.Uint16(buf[8:])), int(binary.BigEndian.Uint16(buf[10:]))
		sr := image.Rect(x, y, x+w, y+h).Add(r.Min)
		if !sr.In(r) {
			return fmt.Errorf("%w: RRE subrectangle %v outside %v", ErrProtocol, sr, r)
		}
		c.fill(sr, p)
	}
	return nil
}

// hextile decodes 16×16 tiles; background and foreground carry over from
// one tile to the next within the rectangle.
func (c *Client) hextile(r image.Rectangle) error {
	var bg, fg [4]byte
	var buf [4]byte
	for ty := r.Min.Y; ty < r.Max.Y; ty += 16 {
		for tx := r.Min.X; tx < r.Max.X; tx += 16 {
			t := image.Rect(tx, ty, min(tx+16, r.Max.X), min(ty+16, r.Max.Y))
			if _, err := io.ReadFull(c.r, buf[:1]); err != nil {
				return err
			}
			mask := buf[0]
			if mask&hexRaw != 0 {
				if err := c.raw(t); err != nil {
					return err
				}
				continue
			}
			var err error
			if mask&hexBackground != 0 {
				if bg, err = c.pixel(buf[:]); err != nil {
					return err
				}
			}
			if mask&hexForeground != 0 {
				if fg, err = c.pixel(buf[:]); err != nil {
					return err
				}
			}
			c.fill(t, bg)
			if mask&hexAnySubrect == 0 {
				continue
			}
			if _, err := io.ReadFull(c.r, buf[:1]); err != nil {
				return err
			}
			for range int(buf[0]) {
				p := fg
				if mask&hexColoured != 0 {
					if p, err = c.pixel(buf[:]); err != nil {
						return err
					}
				}
				var xywh [2]byte
				if _, err := io.ReadFull(c.r, xywh[:]); err != nil {
					return err
				}
				x, y := int(xywh[0]>>4), int(xywh[0]&15)
				w, h := int(xywh[1]>>4)+1, int(xywh[1]&15)+1
				sr := image.Rect(x, y, x+w, y+h).Add(t.Min)
				if !sr.In(t) {
					return fmt.Errorf("%w: Hextile subrectangle %v outside tile %v", ErrProtocol, sr, t)
				}
				c.fill(sr, p)
			}
		}
	}
	return nil
}
