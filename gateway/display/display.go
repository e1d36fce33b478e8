// Package display turns a remote screen's changes into Guacamole protocol
// instructions: the one display pipeline for every desktop protocol (VNC
// now, RDP later). It sends changed regions as PNG images, moves as "copy",
// and ends each frame with "sync", which the browser acknowledges so the
// session can pace itself to the link.
package display

import (
	"bufio"
	"bytes"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"strconv"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/recordings/indexed"
	"github.com/klauspost/compress/zlib"
)

// Guacamole composite modes (guacamole-server's guac_composite_mode).
const (
	compSrc  = "12" // replace: the whole layer, as the canvas's "copy" does
	compOver = "14" // draw over
)

// Encoder writes display instructions to a stream. It is used from one
// goroutine; Flush sends what was written.
type Encoder struct {
	w      *bufio.Writer
	buf    []byte
	stream int
	png    png.Encoder
	ix     *indexed.Encoder
	pal    palettedPNG
	// indexed sends few-colour images as indexed.Mimetype, which the
	// browser announced it decodes.
	indexed bool
	img     bytes.Buffer
}

// NewEncoder writes to w.
func NewEncoder(w io.Writer) *Encoder {
	z, _ := zlib.NewWriterLevel(nil, zlib.BestSpeed) // a valid level: no error
	return &Encoder{w: bufio.NewWriterSize(w, 64<<10), png: png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &pngBuffers{}},
		ix: indexed.NewEncoder(z)}
}

func (e *Encoder) write(in guac.Instruction) error {
	e.buf = in.AppendTo(e.buf[:0])
	_, err := e.w.Write(e.buf)
	return err
}

func itoa(n int) string { return strconv.Itoa(n) }

// SetIndexed makes few-colour images go as indexed.Mimetype instead of
// PNG; call it when the browser announced it decodes them.
func (e *Encoder) SetIndexed(on bool) { e.indexed = on }

// Size sets the size of the default layer (the screen).
func (e *Encoder) Size(w, h int) error {
	return e.write(guac.New("size", "0", itoa(w), itoa(h)))
}

// Copy moves the screen region at src, the size of dst, to dst. It is
// drawn over what is there, which, the screen being opaque, replaces it:
// "replace" (compSrc) is the canvas's "copy", which would clear the whole
// screen outside dst.
func (e *Encoder) Copy(src image.Point, dst image.Rectangle) error {
	return e.write(guac.New("copy", "0", itoa(src.X), itoa(src.Y), itoa(dst.Dx()), itoa(dst.Dy()),
		compOver, "0", itoa(dst.Min.X), itoa(dst.Min.Y)))
}

// Image sends img drawn at at on the screen: as JPEG when it is large and
// photo-like (many colours), where PNG would be several times larger, and
// as PNG otherwise, which keeps text and flat areas exact.
func (e *Encoder) Image(img *image.RGBA, at image.Point) error {
	// Text and UI drawing mostly have few colours: palette indexes (or a
	// paletted PNG) are smaller and several times faster to encode.
	if sent, err := e.sendPaletted(img, at); sent || err != nil {
		return err
	}
	if photoLike(img) {
		return e.jpegTo("0", img, at)
	}
	return e.imageTo("0", compOver, img, at)
}

// sendPaletted sends img at at as palette indexes (or a paletted PNG)
// when it has at most 256 colours, and reports whether it did.
func (e *Encoder) sendPaletted(img *image.RGBA, at image.Point) (bool, error) {
	idx, pal, ok := e.ix.Palette(img)
	if !ok {
		return false, nil
	}
	e.img.Reset()
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	mimetype := "image/png"
	var err error
	if e.indexed {
		mimetype = indexed.Mimetype
		err = e.ix.Encode(&e.img, idx, w, h, pal)
	} else {
		err = e.pal.encode(&e.img, e.ix.Pack(idx, w, h, indexed.Depth(len(pal)), true), w, h, pal)
	}
	if err != nil {
		return true, err
	}
	return true, e.sendImage("0", compOver, mimetype, at)
}

// pngBuffers keeps one PNG encoder's buffers (its compressor among them)
// for the next image of the same session.
type pngBuffers struct{ b *png.EncoderBuffer }

func (p *pngBuffers) Get() *png.EncoderBuffer  { return p.b }
func (p *pngBuffers) Put(b *png.EncoderBuffer) { p.b = b }

// Thresholds for choosing JPEG.
const (
	jpegMinArea   = 128 * 128
	jpegMinColors = 1024
	jpegQuality   = 85
)

// photoLike samples img's colours and reports a large region with more
// distinct colours than text or UI drawing has.
func photoLike(img *image.RGBA) bool {
	b := img.Bounds()
	if b.Dx()*b.Dy() < jpegMinArea {
		return false
	}
	seen := make(map[uint32]struct{}, jpegMinColors)
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		row := img.Pix[img.PixOffset(b.Min.X, y):img.PixOffset(b.Max.X, y)]
		for i := 0; i+3 < len(row); i += 4 * 3 {
			seen[uint32(row[i])<<16|uint32(row[i+1])<<8|uint32(row[i+2])] = struct{}{}
			if len(seen) >= jpegMinColors {
				return true
			}
		}
	}
	return false
}

// jpegTo sends img as a JPEG. It is drawn over what is below, which,
// JPEG being opaque, replaces it: "replace" (compSrc) is the canvas's
// "copy", which clears the whole layer outside the image.
func (e *Encoder) jpegTo(layer string, img image.Image, at image.Point) error {
	e.img.Reset()
	if err := jpeg.Encode(&e.img, img, &jpeg.Options{Quality: jpegQuality}); err != nil {
		return err
	}
	return e.sendImage(layer, compOver, "image/jpeg", at)
}

// cursorLayer is the off-screen buffer the cursor image is drawn into
// (negative layer indexes are buffers in Guacamole).
const cursorLayer = "-1"

// Cursor sets the pointer's shape; the browser draws it locally, so
// pointer movement does not wait for the remote screen.
func (e *Encoder) Cursor(img *image.RGBA, hotspot image.Point) error {
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	if err := e.write(guac.New("size", cursorLayer, itoa(w), itoa(h))); err != nil {
		return err
	}
	if err := e.imageTo(cursorLayer, compSrc, img, image.Point{}); err != nil {
		return err
	}
	return e.write(guac.New("cursor", itoa(hotspot.X), itoa(hotspot.Y), cursorLayer, "0", "0", itoa(w), itoa(h)))
}

func (e *Encoder) imageTo(layer, comp string, img image.Image, at image.Point) error {
	e.img.Reset()
	if err := e.png.Encode(&e.img, img); err != nil {
		return err
	}
	return e.sendImage(layer, comp, "image/png", at)
}

// sendImage sends the encoded image in e.img as an img stream.
func (e *Encoder) sendImage(layer, comp, mimetype string, at image.Point) error {
	s := e.nextStream()
	if err := e.write(guac.New("img", s, comp, layer, mimetype, itoa(at.X), itoa(at.Y))); err != nil {
		return err
	}
	return e.blobs(s, e.img.Bytes())
}

// Sync ends a frame at timestamp ms.
func (e *Encoder) Sync(ms int64) error {
	return e.write(guac.New("sync", strconv.FormatInt(ms, 10)))
}

// Clipboard sends text as the remote clipboard's new content.
func (e *Encoder) Clipboard(text string) error {
	st := e.nextStream()
	if err := e.write(guac.New("clipboard", st, "text/plain")); err != nil {
		return err
	}
	return e.blobs(st, []byte(text))
}

// ClipboardNoticePipe names the pipe stream that tells the browser why
// its clipboard text did not reach the remote clipboard (web/src/desktop.ts
// shows it in the clipboard panel).
const ClipboardNoticePipe = "keyway-clipboard-notice"

// ClipboardNotice tells the browser, in words for the user, why the text
// it sent did not reach the remote clipboard.
func (e *Encoder) ClipboardNotice(text string) error {
	st := e.nextStream()
	if err := e.write(guac.New("pipe", st, "text/plain", ClipboardNoticePipe)); err != nil {
		return err
	}
	return e.blobs(st, []byte(text))
}

// nextStream numbers a new stream; streams are numbered by the sender,
// and a small range is reused.
func (e *Encoder) nextStream() string {
	e.stream = (e.stream + 1) % 64
	return itoa(e.stream)
}

// blobs sends data on stream st in base64 chunks, then ends the stream.
func (e *Encoder) blobs(st string, data []byte) error {
	for len(data) > 0 {
		n := min(len(data), guac.BlobChunk)
		e.buf = guac.AppendBlob(e.buf[:0], st, data[:n])
		if _, err := e.w.Write(e.buf); err != nil {
			return err
		}
		data = data[n:]
	}
	return e.write(guac.New("end", st))
}

// Error tells the browser the session ended, with a Guacamole status code.
func (e *Encoder) Error(message string, status int) error {
	return e.write(guac.New("error", message, itoa(status)))
}

// Flush sends the buffered instructions.
func (e *Encoder) Flush() error { return e.w.Flush() }

// Coalesce merges rectangles that overlap or nearly touch, so a frame with
// many small changes is sent as fewer images. It keeps at most max
// rectangles, merging the closest ones first.
func Coalesce(rects []image.Rectangle, max int) []image.Rectangle {
	out := make([]image.Rectangle, 0, len(rects))
	for _, r := range rects {
		if r.Empty() {
			continue
		}
		merged := true
		for merged {
			merged = false
			for i, o := range out {
				// Merge when the union costs little more than the two.
				u := r.Union(o)
				if area(u) <= area(r)+area(o)+64*64 {
					r = u
					out = append(out[:i], out[i+1:]...)
					merged = true
					break
				}
			}
		}
		out = append(out, r)
	}
	for len(out) > max {
		out[len(out)-2] = out[len(out)-2].Union(out[len(out)-1])
		out = out[:len(out)-1]
	}
	return out
}

func area(r image.Rectangle) int { return r.Dx() * r.Dy() }
