package vnc

import (
	"encoding/binary"
	"fmt"
	"image"
	"image/draw"
	"io"
)

// Copy is a CopyRect: the pixels at Src moved to Dst. The display encoder
// forwards it as a Guacamole "copy" instead of re-sending pixels.
type Copy struct {
	Src image.Point
	Dst image.Rectangle
}

// Cursor is the remote pointer's shape and hotspot.
type Cursor struct {
	Hotspot image.Point
	Image   *image.RGBA
}

// Update says what one server message changed.
type Update struct {
	// Rects are regions whose pixels changed.
	Rects []image.Rectangle
	// Copies are regions moved within the screen, in order.
	Copies []Copy
	// Resized reports a new screen size; the whole screen is then new.
	Resized bool
	// Cursor is a new pointer shape, drawn by the browser itself.
	Cursor *Cursor
	// CutText is clipboard text from the server, when HasCutText.
	CutText    string
	HasCutText bool
	Bell       bool
	// Frame is set for a FramebufferUpdate, the answer to a request.
	Frame bool
}

// ReadMessage reads and applies one server message.
func (c *Client) ReadMessage() (Update, error) {
	t, err := c.r.ReadByte()
	if err != nil {
		return Update{}, err
	}
	switch t {
	case 0:
		return c.framebufferUpdate()
	case 1: // SetColourMapEntries: unused with true colour, but skip it whole
		var hdr [5]byte
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			return Update{}, err
		}
		n := int(binary.BigEndian.Uint16(hdr[3:]))
		_, err := c.r.Discard(6 * n)
		return Update{}, err
	case 2:
		return Update{Bell: true}, nil
	case 3:
		return c.serverCutText()
	}
	return Update{}, fmt.Errorf("%w: unknown server message type %d", ErrProtocol, t)
}

func (c *Client) framebufferUpdate() (Update, error) {
	var hdr [3]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return Update{}, err
	}
	n := int(binary.BigEndian.Uint16(hdr[1:]))
	u := Update{Frame: true}
	c.fbMu.Lock()
	defer c.fbMu.Unlock()
	for range n {
		var rh [12]byte
		if _, err := io.ReadFull(c.r, rh[:]); err != nil {
			return u, err
		}
		x, y := int(binary.BigEndian.Uint16(rh[0:])), int(binary.BigEndian.Uint16(rh[2:]))
		w, h := int(binary.BigEndian.Uint16(rh[4:])), int(binary.BigEndian.Uint16(rh[6:]))
		enc := int32(binary.BigEndian.Uint32(rh[8:]))
		r := image.Rect(x, y, x+w, y+h)
		if enc == encCursor {
			cur, err := c.cursor(x, y, w, h)
			if err != nil {
				return u, err
			}
			u.Cursor = cur
			continue
		}
		if enc == encExtDesktop {
			if err := c.extDesktopSize(w, h); err != nil {
				return u, err
			}
			if b := c.fb.Bounds(); b.Dx() != w || b.Dy() != h {
				c.setFramebuffer(w, h)
				u.Resized = true
			}
			continue
		}
		if enc == encDesktopSize {
			if err := c.checkSize(w, h); err != nil {
				return u, err
			}
			c.setFramebuffer(w, h)
			u.Resized = true
			continue
		}
		// An empty rectangle is "in" any other, so check the corners
		// themselves: an empty one far outside the screen must not pass.
		if b := c.fb.Bounds(); r.Min.X > b.Max.X || r.Min.Y > b.Max.Y || !r.In(b) {
			return u, fmt.Errorf("%w: rectangle %v outside the %v screen", ErrProtocol, r, b.Size())
		}
		if r.Empty() {
			if enc == encCopyRect {
				if _, err := c.r.Discard(4); err != nil {
					return u, err
				}
			} else if enc == encZRLE {
				if err := c.zrle(r); err != nil { // its length field still comes
					return u, err
				}
			} else if enc == encTight {
				if err := c.tight(r); err != nil { // its control byte and data still come
					return u, err
				}
			} else if enc == encRRE {
				if err := c.rre(r); err != nil { // may still carry subrectangles, refused as outside
					return u, err
				}
			} else if enc != encRaw && enc != encHextile {
				return u, fmt.Errorf("%w: encoding %d was not asked for", ErrProtocol, enc)
			}
			continue // no pixels
		}
		switch enc {
		case encRaw:
			if err := c.raw(r); err != nil {
				return u, err
			}
			c.counted("raw")
			u.Rects = append(u.Rects, r)
		case encZRLE:
			if err := c.zrle(r); err != nil {
				return u, err
			}
			c.counted("zrle")
			u.Rects = append(u.Rects, r)
		case encTight:
			if err := c.tight(r); err != nil {
				return u, err
			}
			u.Rects = append(u.Rects, r)
		case encHextile:
			if err := c.hextile(r); err != nil {
				return u, err
			}
			c.counted("hextile")
			u.Rects = append(u.Rects, r)
		case encRRE:
			if err := c.rre(r); err != nil {
				return u, err
			}
			c.counted("rre")
			u.Rects = append(u.Rects, r)
		case encCopyRect:
			var src [4]byte
			if _, err := io.ReadFull(c.r, src[:]); err != nil {
				return u, err
			}
			sp := image.Pt(int(binary.BigEndian.Uint16(src[0:])), int(binary.BigEndian.Uint16(src[2:])))
			if !r.Sub(r.Min).Add(sp).In(c.fb.Bounds()) {
				return u, fmt.Errorf("%w: copy source outside the screen", ErrProtocol)
			}
			copyWithin(c.fb, r, sp)
			c.counted("copyrect")
			u.Copies = append(u.Copies, Copy{Src: sp, Dst: r})
		default:
			return u, fmt.Errorf("%w: encoding %d was not asked for", ErrProtocol, enc)
		}
	}
	return u, nil
}

// raw reads r's pixels into the framebuffer.
func (c *Client) raw(r image.Rectangle) error {
	bpp := c.pf.bpp
	row := make([]byte, bpp*r.Dx())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		if _, err := io.ReadFull(c.r, row); err != nil {
			return err
		}
		dst := c.fb.Pix[c.fb.PixOffset(r.Min.X, y):]
		for i, o := 0, 0; i < len(row); i, o = i+bpp, o+4 {
			p := c.pf.rgba(row[i : i+bpp])
			copy(dst[o:o+4], p[:])
		}
	}
	return nil
}

// copyWithin moves the pixels at src (size of dst) to dst, correctly when
// the two overlap.
func copyWithin(fb *image.RGBA, dst image.Rectangle, src image.Point) {
	w := 4 * dst.Dx()
	rows := make([]int, 0, dst.Dy())
	for y := 0; y < dst.Dy(); y++ {
		rows = append(rows, y)
	}
	if src.Y < dst.Min.Y { // moving down: copy bottom rows first
		for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
			rows[i], rows[j] = rows[j], rows[i]
		}
	}
	for _, y := range rows {
		s := fb.PixOffset(src.X, src.Y+y)
		d := fb.PixOffset(dst.Min.X, dst.Min.Y+y)
		copy(fb.Pix[d:d+w], fb.Pix[s:s+w]) // copy handles overlap within a row
	}
}

// Snapshot returns a copy of the screen region r.
func (c *Client) Snapshot(r image.Rectangle) *image.RGBA {
	c.fbMu.RLock()
	defer c.fbMu.RUnlock()
	r = r.Intersect(c.fb.Bounds())
	out := image.NewRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
	draw.Draw(out, out.Bounds(), c.fb, r.Min, draw.Src)
	return out
}

// ReadRegion copies the screen region r into dst at the same coordinates.
func (c *Client) ReadRegion(dst *image.RGBA, r image.Rectangle) {
	c.fbMu.RLock()
	defer c.fbMu.RUnlock()
	draw.Draw(dst, r, c.fb, r.Min, draw.Src)
}

// cursor reads a Cursor pseudo-rectangle: w×h pixels, then a bitmask with
// one bit per pixel (rows padded to bytes) saying which are opaque.
func (c *Client) cursor(hx, hy, w, h int) (*Cursor, error) {
	if w > maxCursor || h > maxCursor {
		return nil, fmt.Errorf("%w: cursor of %dx%d", ErrProtocol, w, h)
	}
	bpp := c.pf.bpp
	pix := make([]byte, bpp*w*h)
	mask := make([]byte, (w+7)/8*h)
	if _, err := io.ReadFull(c.r, pix); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(c.r, mask); err != nil {
		return nil, err
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	stride := (w + 7) / 8
	for y := range h {
		for x := range w {
			i := bpp * (y*w + x)
			o := img.PixOffset(x, y)
			if mask[y*stride+x/8]&(0x80>>(x%8)) != 0 {
				p := c.pf.rgba(pix[i : i+bpp])
				copy(img.Pix[o:o+4], p[:])
			}
		}
	}
	return &Cursor{Hotspot: image.Pt(hx, hy), Image: img}, nil
}

// extDesktopSize reads the screen list of an ExtendedDesktopSize
// rectangle; the caller holds fbMu. Its arrival means the server accepts
// SetDesktopSize.
func (c *Client) extDesktopSize(w, h int) error {
	if err := c.checkSize(w, h); err != nil {
		return err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return err
	}
	n := int(hdr[0])
	if n > maxScreens {
		return fmt.Errorf("%w: %d screens", ErrProtocol, n)
	}
	screens := make([]byte, 16*n)
	if _, err := io.ReadFull(c.r, screens); err != nil {
		return err
	}
	c.resizable = true
	if n > 0 {
		c.screenID = binary.BigEndian.Uint32(screens[0:])
	}
	return nil
}
