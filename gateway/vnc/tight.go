package vnc

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"io"
)

// Tight encoding (the RFB community specification, "Tight Encoding"): a
// rectangle is a solid fill, a JPEG image, or pixels run through an
// optional filter (copy, palette, gradient) and one of four zlib streams
// that last the whole connection.
const (
	encTight int32 = 7
	// Pseudo-encodings that set Tight's JPEG quality (0–9) and zlib
	// compression level (0–9): the base plus the level.
	encQualityLevel0     int32 = -32
	encCompressionLevel0 int32 = -256
)

// Compression types in the high nibble of the control byte.
const (
	tightFill = 0x8
	tightJPEG = 0x9
	tightPNG  = 0xa // TightPNG only; never asked for
)

// Filters of basic compression.
const (
	tightFilterCopy     = 0
	tightFilterPalette  = 1
	tightFilterGradient = 2
)

// tightMinToCompress is the data size below which the server sends the
// bytes as they are, without zlib.
const tightMinToCompress = 12

// maxTightData bounds one rectangle's compressed or JPEG data.
const maxTightData = 64 << 20

// tightStream is one of the four zlib streams.
type tightStream struct {
	in zrleInput // an io.ByteReader, so zlib reads no further than it needs
	zr io.ReadCloser
}

// tight decodes one Tight rectangle into the framebuffer.
func (c *Client) tight(r image.Rectangle) error {
	ctl, err := c.r.ReadByte()
	if err != nil {
		return err
	}
	for i := range c.tightZ {
		if ctl&(1<<i) != 0 { // the server reset this stream
			c.tightZ[i] = tightStream{}
		}
	}
	var buf [4]byte
	switch kind := ctl >> 4; {
	case kind == tightFill:
		if _, err := io.ReadFull(c.r, buf[:c.pf.cbytes]); err != nil {
			return err
		}
		c.fill(r, c.pf.tpixel(buf[:c.pf.cbytes]))
		c.counted("tight-fill")
		return nil
	case kind == tightJPEG:
		return c.tightJPEG(r)
	case kind == tightPNG || kind > tightPNG:
		return fmt.Errorf("%w: Tight compression type %d was not asked for", ErrProtocol, kind)
	}
	filter := byte(tightFilterCopy)
	if ctl&0x40 != 0 {
		if filter, err = c.r.ReadByte(); err != nil {
			return err
		}
	}
	stream := int(ctl>>4) & 3
	w, h := r.Dx(), r.Dy()
	if w == 0 {
		// Empty, and so inside the screen however far its rows reach: no
		// row of it may be drawn.
		h = 0
	}
	cb := c.pf.cbytes
	switch filter {
	case tightFilterCopy, tightFilterGradient:
		data, err := c.tightData(stream, w*h*cb)
		if err != nil {
			return err
		}
		if filter == tightFilterGradient {
			c.gradient(r, data)
			c.counted("tight-gradient")
			return nil
		}
		for y := range h {
			src := data[y*w*cb : (y+1)*w*cb]
			o := c.fb.PixOffset(r.Min.X, r.Min.Y+y)
			dst := c.fb.Pix[o : o+4*w]
			for x := range w {
				p := c.pf.tpixel(src[x*cb : x*cb+cb])
				copy(dst[4*x:4*x+4], p[:])
			}
		}
		c.counted("tight-copy")
		return nil
	case tightFilterPalette:
		n, err := c.r.ReadByte()
		if err != nil {
			return err
		}
		size := int(n) + 1
		// Colours as the framebuffer's RGBA bytes in one word each, so a
		// pixel is one store: text arrives this way, a megapixel a frame.
		var pal [256]uint32
		for i := range size {
			if _, err := io.ReadFull(c.r, buf[:cb]); err != nil {
				return err
			}
			p := c.pf.tpixel(buf[:cb])
			pal[i] = binary.LittleEndian.Uint32(p[:])
		}
		rowBytes := w
		if size == 2 {
			rowBytes = (w + 7) / 8 // one bit per pixel
		}
		data, err := c.tightData(stream, rowBytes*h)
		if err != nil {
			return err
		}
		for y := range h {
			row := data[y*rowBytes : (y+1)*rowBytes]
			o := c.fb.PixOffset(r.Min.X, r.Min.Y+y)
			dst := c.fb.Pix[o : o+4*w]
			if size == 2 {
				mono(dst, row, w, pal[0], pal[1])
				continue
			}
			for x, idx := range row {
				if int(idx) >= size {
					return fmt.Errorf("%w: Tight palette index %d of %d", ErrProtocol, idx, size)
				}
				binary.LittleEndian.PutUint32(dst[4*x:], pal[idx])
			}
		}
		c.counted("tight-palette")
		return nil
	}
	return fmt.Errorf("%w: unknown Tight filter %d", ErrProtocol, filter)
}

// mono draws w pixels of one-bit-per-pixel data, most significant bit
// first, in colours c0 and c1: whole bytes eight pixels at a time, with
// one bounds check for the eight.
func mono(dst []byte, bits []byte, w int, c0, c1 uint32) {
	pal := [2]uint32{c0, c1}
	whole := w / 8
	for i, b := range bits[:whole] {
		d := dst[32*i : 32*i+32 : 32*i+32]
		binary.LittleEndian.PutUint32(d[0:], pal[b>>7&1])
		binary.LittleEndian.PutUint32(d[4:], pal[b>>6&1])
		binary.LittleEndian.PutUint32(d[8:], pal[b>>5&1])
		binary.LittleEndian.PutUint32(d[12:], pal[b>>4&1])
		binary.LittleEndian.PutUint32(d[16:], pal[b>>3&1])
		binary.LittleEndian.PutUint32(d[20:], pal[b>>2&1])
		binary.LittleEndian.PutUint32(d[24:], pal[b>>1&1])
		binary.LittleEndian.PutUint32(d[28:], pal[b&1])
	}
	for x := 8 * whole; x < w; x++ {
		binary.LittleEndian.PutUint32(dst[4*x:], pal[bits[x>>3]>>(7-x&7)&1])
	}
}

// compactLength reads Tight's 1–3 byte length: 7 bits a byte, low first,
// the high bit saying another byte follows.
func (c *Client) compactLength() (int, error) {
	n := 0
	for i := range 3 {
		b, err := c.r.ReadByte()
		if err != nil {
			return 0, err
		}
		if i == 2 {
			return n | int(b)<<14, nil
		}
		n |= int(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			break
		}
	}
	return n, nil
}

// scratch returns a buffer of n bytes for one rectangle's data, valid
// until the next call: reused, so a busy screen does not make garbage of
// a buffer per rectangle (and the heap twice the session's size).
func (c *Client) scratch(n int) []byte {
	if cap(c.tightBuf) < n {
		c.tightBuf = make([]byte, n)
	}
	return c.tightBuf[:n]
}

// tightData reads size bytes of filtered pixel data: as they are when
// small, else through the given zlib stream.
func (c *Client) tightData(stream, size int) ([]byte, error) {
	out := c.scratch(size)
	if size < tightMinToCompress {
		_, err := io.ReadFull(c.r, out)
		return out, err
	}
	n, err := c.compactLength()
	if err != nil {
		return nil, err
	}
	if n > maxTightData {
		return nil, fmt.Errorf("%w: Tight data of %d bytes", ErrProtocol, n)
	}
	z := &c.tightZ[stream]
	if _, err := io.CopyN(&z.in.Buffer, c.r, int64(n)); err != nil {
		return nil, err
	}
	if z.in.Len() > maxTightData {
		return nil, fmt.Errorf("%w: %d bytes of unused Tight data", ErrProtocol, z.in.Len())
	}
	if z.zr == nil {
		if z.zr, err = zlib.NewReader(&z.in); err != nil {
			return nil, fmt.Errorf("%w: Tight zlib stream %d: %v", ErrProtocol, stream, err)
		}
	}
	if _, err := io.ReadFull(z.zr, out); err != nil {
		return nil, fmt.Errorf("%w: Tight zlib stream %d: %v", ErrProtocol, stream, err)
	}
	return out, nil
}

// gradient undoes the gradient filter: each component was sent as its
// difference from left + above - above-left, clamped to the component's
// range.
func (c *Client) gradient(r image.Rectangle, data []byte) {
	w, h, cb := r.Dx(), r.Dy(), c.pf.cbytes
	prev := make([][3]int, w) // the row above, as components
	cur := make([][3]int, w)
	for y := range h {
		for x := range w {
			diff := c.pf.components(data[(y*w+x)*cb : (y*w+x+1)*cb])
			for k := range 3 {
				m := int(c.pf.max[k])
				left, up, upLeft := 0, prev[x][k], 0
				if x > 0 {
					left, upLeft = cur[x-1][k], prev[x-1][k]
				}
				pred := max(0, min(left+up-upLeft, m))
				cur[x][k] = (pred + diff[k]) & m
			}
			o := c.fb.PixOffset(r.Min.X+x, r.Min.Y+y)
			c.fb.Pix[o] = c.pf.scaleR[cur[x][0]]
			c.fb.Pix[o+1] = c.pf.scaleG[cur[x][1]]
			c.fb.Pix[o+2] = c.pf.scaleB[cur[x][2]]
			c.fb.Pix[o+3] = 0xff
		}
		prev, cur = cur, prev
	}
}

// tightJPEG decodes a JPEG image the size of r.
func (c *Client) tightJPEG(r image.Rectangle) error {
	n, err := c.compactLength()
	if err != nil {
		return err
	}
	if n > maxTightData {
		return fmt.Errorf("%w: JPEG of %d bytes", ErrProtocol, n)
	}
	data := c.scratch(n)
	if _, err := io.ReadFull(c.r, data); err != nil {
		return err
	}
	// Check the size in the header before decoding allocates for it.
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: Tight JPEG: %v", ErrProtocol, err)
	}
	if cfg.Width != r.Dx() || cfg.Height != r.Dy() {
		return fmt.Errorf("%w: Tight JPEG of %dx%d for a %v rectangle", ErrProtocol, cfg.Width, cfg.Height, r.Size())
	}
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: Tight JPEG: %v", ErrProtocol, err)
	}
	draw.Draw(c.fb, r, img, img.Bounds().Min, draw.Src)
	c.counted("tight-jpeg")
	return nil
}
