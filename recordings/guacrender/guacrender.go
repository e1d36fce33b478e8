// Package guacrender draws a desktop recording's Guacamole instructions
// the way the browser's player (guacamole-common-js 1.5 on a 2D canvas,
// with the desktop page's decoder of indexed images) draws them, onto an
// RGBA framebuffer: for exporting recordings as video, and for tests that
// compare what a browser would show with the remote screen.
//
// What the player does, and so what Display does:
//
//   - Each layer is a canvas whose size is rounded up to a multiple of 64;
//     the screen shown is the top-left corner of layer 0 of its "size".
//     Resizing keeps the pixels when the canvas size does not change, and
//     otherwise those inside both the old and the new size.
//   - "img" and "copy" set their destination layer's composite operation:
//     mask 14 draws over, mask 12 is the canvas's "copy", which clears the
//     whole layer outside what is drawn (a copy of a band of the screen
//     with mask 12 blanks the rest of the screen).
//   - Images of type image/x-keyway-indexed are written into layer 0's
//     pixels as they are (putImageData), whatever the composite operation;
//     on buffers they are drawn like any image.
//   - Buffers (negative layers) grow to fit what is drawn on them.
//   - "cursor" copies the pointer's image from a buffer; the player shows
//     the pointer only once a "mouse" instruction placed it, which the
//     gateway's recordings do not have.
//
// What it does not: visible layers other than 0 (positive indexes), and
// the drawing instructions (rect, cfill, transfer, and so on) that the
// gateway never sends, are counted and otherwise ignored; the other
// Porter-Duff masks (never sent either) draw over, and a mask Guacamole
// does not know leaves the layer's operation as it was, as the canvas
// does. An image the player could not decode is skipped, where the
// browser would stall its display.
//
// Recordings are untrusted (they come from gateways), so every size is
// checked against Limits before anything is allocated.
package guacrender

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"strconv"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/recordings/indexed"
)

// Errors of Apply; they wrap the detail.
var (
	// ErrTooLarge means an instruction asked for more than the Limits
	// allow: a screen, a layer, an image or buffered image data. The
	// display is unchanged by it.
	ErrTooLarge = errors.New("guacrender: over the limits")
	// ErrMalformed means an instruction or an image could not be
	// understood; it was skipped, as the player drops a malformed update.
	ErrMalformed = errors.New("guacrender: malformed instruction")
)

// Limits bound what a Display allocates for a recording.
type Limits struct {
	// MaxSide is the largest width or height of a layer or an image.
	MaxSide int
	// MaxPixels bounds the pixels of all layers' canvases together, and
	// of one decoded image.
	MaxPixels int
	// MaxLayers is the most layers (the screen and buffers).
	MaxLayers int
	// MaxStreams is the most image streams open at once.
	MaxStreams int
	// MaxStreamBytes bounds the image data buffered in open streams, all
	// together.
	MaxStreamBytes int
}

// DefaultLimits fit the largest desktops the gateway serves (RDP allows
// 8192 on a side; 8K screens are 7680×4320) with room for the pointer's
// buffer. The gateway numbers its streams modulo 64.
var DefaultLimits = Limits{
	MaxSide:        8192,
	MaxPixels:      40 << 20,
	MaxLayers:      16,
	MaxStreams:     64,
	MaxStreamBytes: 64 << 20,
}

// Guacamole channel masks (guac_composite_mode) that the player draws.
const (
	maskCopy = 12 // the canvas's "copy": replaces the whole layer
	maskOver = 14 // the canvas's "source-over"
)

// canvasStep is guacamole-common-js's CANVAS_SIZE_FACTOR: a layer's canvas
// is its size rounded up to this.
const canvasStep = 64

// layer is one canvas.
type layer struct {
	canvas   *image.RGBA // its bounds start at 0,0
	w, h     int         // the layer's size; the canvas may be larger
	autosize bool        // buffers grow to fit what is drawn on them
	empty    bool        // nothing was drawn yet: a resize keeps no pixels
	mask     int         // composite operation of the next drawing
	// savedMask is the operation a resize that keeps the canvas restores
	// (the canvas context's saved state, from its last change of size).
	savedMask int
	// touched is set once an indexed image was put on the layer: the
	// page draws a transparent dot the first time.
	touched bool
}

// stream is an open img stream.
type stream struct {
	layer    int
	mimetype string
	x, y     int
	data     []byte
}

// Display is the player's display: the screen (layer 0), buffers and the
// pointer. It is used from one goroutine.
type Display struct {
	limits   Limits
	layers   map[int]*layer
	streams  map[int]*stream
	pixels   int // all canvases' pixels
	buffered int // all open streams' bytes

	cursor       *layer
	hotspot      image.Point
	pointer      image.Point
	pointerShown bool
	counts       map[string]int
	version      uint64
	scratch      *image.RGBA // for copies within a layer
	indexed      indexedDecoder
}

// New returns an empty display (a screen of 0×0) within limits.
func New(limits Limits) *Display {
	d := &Display{limits: limits, layers: map[int]*layer{}, streams: map[int]*stream{}, counts: map[string]int{}}
	d.layers[0] = newLayer(false)
	d.cursor = newLayer(false)
	return d
}

func newLayer(autosize bool) *layer {
	return &layer{canvas: image.NewRGBA(image.Rectangle{}), autosize: autosize, empty: true, mask: maskOver, savedMask: maskOver}
}

// Size returns the screen's size.
func (d *Display) Size() (int, int) { l := d.layers[0]; return l.w, l.h }

// Version counts the changes to what the screen shows; it is the same as
// long as the screen, the pointer and their sizes are.
func (d *Display) Version() uint64 { return d.version }

// Screen returns a copy of what the screen shows: layer 0 at its size.
func (d *Display) Screen() *image.RGBA {
	w, h := d.Size()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	d.Draw(img)
	return img
}

// At returns the screen's pixel at x, y.
func (d *Display) At(x, y int) color.RGBA {
	l := d.layers[0]
	if x < 0 || y < 0 || x >= l.w || y >= l.h {
		return color.RGBA{}
	}
	return l.canvas.RGBAAt(x, y)
}

// Draw writes what the screen shows onto dst, from its top-left corner:
// layer 0's pixels (transparent where nothing was drawn), and the pointer
// over them when a "mouse" instruction placed it. dst outside the screen
// is left as it is.
func (d *Display) Draw(dst *image.RGBA) {
	l := d.layers[0]
	r := image.Rect(0, 0, l.w, l.h).Intersect(l.canvas.Bounds())
	draw.Draw(dst, r.Add(dst.Bounds().Min), l.canvas, image.Point{}, draw.Src)
	if d.pointerShown && d.cursor.w > 0 && d.cursor.h > 0 {
		at := d.pointer.Sub(d.hotspot).Add(dst.Bounds().Min)
		cr := image.Rect(0, 0, d.cursor.w, d.cursor.h).Intersect(d.cursor.canvas.Bounds())
		// The pointer is a layer above the screen, cut to the screen.
		clip := r.Add(dst.Bounds().Min).Intersect(cr.Add(at))
		draw.Draw(dst, clip, d.cursor.canvas, clip.Min.Sub(at), draw.Over)
	}
}

// countedOps are the opcodes Counts reports by name; others are counted
// as "other", so a recording cannot grow the table.
var countedOps = map[string]bool{"size": true, "img": true, "blob": true, "end": true, "copy": true, "cursor": true,
	"mouse": true, "sync": true, "clipboard": true, "error": true}

// Counts returns how many instructions of each opcode were applied since
// New or ResetCounts.
func (d *Display) Counts() map[string]int {
	m := make(map[string]int, len(d.counts))
	for k, v := range d.counts {
		m[k] = v
	}
	return m
}

// Count returns how many instructions of opcode were applied since New
// or ResetCounts.
func (d *Display) Count(opcode string) int { return d.counts[opcode] }

// ResetCounts sets the counts to zero.
func (d *Display) ResetCounts() { clear(d.counts) }

// Apply applies one instruction. An error wrapping ErrTooLarge or
// ErrMalformed leaves the display as it was before the instruction (an
// image stream it ends is dropped).
func (d *Display) Apply(in guac.Instruction) error {
	if countedOps[in.Opcode] {
		d.counts[in.Opcode]++
	} else {
		d.counts["other"]++
	}
	switch in.Opcode {
	case "size":
		return d.size(in.Args)
	case "img":
		return d.img(in.Args)
	case "blob":
		return d.blob(in.Args)
	case "end":
		return d.end(in.Args)
	case "copy":
		return d.copy(in.Args)
	case "cursor":
		return d.setCursor(in.Args)
	case "mouse":
		return d.mouse(in.Args)
	case "clipboard", "file", "pipe", "audio", "video", "argv":
		// A new stream of another kind takes the index over: an image
		// stream still open there is never drawn.
		if len(in.Args) > 0 {
			if n, err := strconv.Atoi(in.Args[0]); err == nil {
				d.dropStream(n)
			}
		}
	}
	return nil
}

// maxNumber bounds the numbers of instructions, so that sums of
// coordinates and sizes cannot overflow.
const maxNumber = 1 << 30

// ints parses args[:n] as integers.
func ints(op string, args []string, n int) ([]int, error) {
	if len(args) < n {
		return nil, fmt.Errorf("%w: %s with %d arguments, want %d", ErrMalformed, op, len(args), n)
	}
	out := make([]int, n)
	for i := range n {
		v, err := strconv.Atoi(args[i])
		if err != nil || v < -maxNumber || v > maxNumber {
			return nil, fmt.Errorf("%w: %s argument %d is %q, not a number", ErrMalformed, op, i+1, args[i])
		}
		out[i] = v
	}
	return out, nil
}

// layerAt returns the layer with index n, making a buffer for a new
// negative one; visible layers other than 0 are not drawn (nil).
func (d *Display) layerAt(n int) (*layer, error) {
	if l := d.layers[n]; l != nil {
		return l, nil
	}
	if n > 0 {
		return nil, nil
	}
	if len(d.layers) >= d.limits.MaxLayers {
		return nil, fmt.Errorf("%w: more than %d layers", ErrTooLarge, d.limits.MaxLayers)
	}
	l := newLayer(true)
	d.layers[n] = l
	return l, nil
}

func (d *Display) size(args []string) error {
	a, err := ints("size", args, 3)
	if err != nil {
		return err
	}
	l, err := d.layerAt(a[0])
	if err != nil || l == nil {
		return err
	}
	if err := d.resize(l, a[1], a[2]); err != nil {
		return err
	}
	if a[0] == 0 {
		d.version++
	}
	return nil
}

// resize sets l's size as Guacamole.Layer.resize does.
func (d *Display) resize(l *layer, w, h int) error {
	w, h = max(w, 0), max(h, 0)
	if w > d.limits.MaxSide || h > d.limits.MaxSide {
		return fmt.Errorf("%w: a layer of %d×%d, more than %d on a side", ErrTooLarge, w, h, d.limits.MaxSide)
	}
	cw, ch := roundUp(w), roundUp(h)
	old := l.canvas.Bounds()
	if cw == old.Dx() && ch == old.Dy() {
		// The canvas stays, with every pixel; its context is reset.
		l.w, l.h, l.mask = w, h, l.savedMask
		return nil
	}
	if grow := cw*ch - old.Dx()*old.Dy(); d.pixels+grow > d.limits.MaxPixels {
		return fmt.Errorf("%w: layers of more than %d pixels", ErrTooLarge, d.limits.MaxPixels)
	}
	c := image.NewRGBA(image.Rect(0, 0, cw, ch))
	if !l.empty {
		keep := image.Rect(0, 0, min(l.w, w), min(l.h, h)).Intersect(old)
		draw.Draw(c, keep, l.canvas, image.Point{}, draw.Src)
	}
	d.pixels += cw*ch - old.Dx()*old.Dy()
	l.canvas, l.w, l.h = c, w, h
	l.savedMask = l.mask
	return nil
}

func roundUp(n int) int { return (n + canvasStep - 1) / canvasStep * canvasStep }

// setMask sets l's composite operation; the canvas ignores operations it
// does not know, and Guacamole maps only some masks to one.
func setMask(l *layer, mask int) {
	switch mask {
	case maskCopy, maskOver:
		l.mask = mask
	case 1, 2, 4, 6, 8, 9, 10, 11, 15:
		// Porter-Duff operations the gateway never sends: drawn over.
		l.mask = maskOver
	}
}

func (d *Display) img(args []string) error {
	a, err := ints("img", args, 3)
	if err != nil {
		return err
	}
	if len(args) < 6 {
		return fmt.Errorf("%w: img with %d arguments, want 6", ErrMalformed, len(args))
	}
	xy, err := ints("img", args[4:], 2)
	if err != nil {
		return err
	}
	idx, mask, ln := a[0], a[1], a[2]
	d.dropStream(idx)
	l, err := d.layerAt(ln)
	if err != nil {
		return err
	}
	if l != nil {
		setMask(l, mask)
	}
	if len(d.streams) >= d.limits.MaxStreams {
		return fmt.Errorf("%w: more than %d image streams open", ErrTooLarge, d.limits.MaxStreams)
	}
	d.streams[idx] = &stream{layer: ln, mimetype: args[3], x: xy[0], y: xy[1]}
	return nil
}

func (d *Display) dropStream(idx int) {
	if s := d.streams[idx]; s != nil {
		d.buffered -= len(s.data)
		delete(d.streams, idx)
	}
}

func (d *Display) blob(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("%w: blob with %d arguments, want 2", ErrMalformed, len(args))
	}
	idx, err := strconv.Atoi(args[0])
	if err != nil {
		return fmt.Errorf("%w: blob stream %q", ErrMalformed, args[0])
	}
	s := d.streams[idx]
	if s == nil {
		return nil // a stream of another kind, or one never opened
	}
	b64 := args[1]
	if n := base64.RawStdEncoding.DecodedLen(len(b64)); d.buffered+n > d.limits.MaxStreamBytes {
		d.dropStream(idx)
		return fmt.Errorf("%w: more than %d bytes of image data in open streams", ErrTooLarge, d.limits.MaxStreamBytes)
	}
	n := len(s.data)
	s.data, err = appendBase64(s.data, b64)
	d.buffered += len(s.data) - n
	if err != nil {
		return fmt.Errorf("%w: blob of stream %d: %v", ErrMalformed, idx, err)
	}
	return nil
}

// appendBase64 decodes s as the browser's atob does (forgiving base64:
// ASCII whitespace ignored, padding optional) and appends it to dst. On
// error dst is returned unchanged.
func appendBase64(dst []byte, s string) ([]byte, error) {
	clean := s
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' {
			b := make([]byte, 0, len(s))
			for j := 0; j < len(s); j++ {
				if c := s[j]; c != ' ' && c != '\t' && c != '\n' && c != '\f' && c != '\r' {
					b = append(b, c)
				}
			}
			clean = string(b)
			break
		}
	}
	if len(clean)%4 == 0 {
		for range 2 {
			if len(clean) > 0 && clean[len(clean)-1] == '=' {
				clean = clean[:len(clean)-1]
			}
		}
	}
	if len(clean)%4 == 1 {
		return dst, errors.New("not base64")
	}
	out, err := base64.RawStdEncoding.AppendDecode(dst, []byte(clean))
	if err != nil {
		return dst, errors.New("not base64")
	}
	return out, nil
}

func (d *Display) end(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("%w: end without a stream", ErrMalformed)
	}
	idx, err := strconv.Atoi(args[0])
	if err != nil {
		return fmt.Errorf("%w: end of stream %q", ErrMalformed, args[0])
	}
	s := d.streams[idx]
	if s == nil {
		return nil
	}
	d.dropStream(idx)
	l, err := d.layerAt(s.layer)
	if err != nil || l == nil {
		return err
	}
	if s.mimetype == indexed.Mimetype && !l.autosize {
		return d.putIndexed(l, s)
	}
	var img image.Image
	switch s.mimetype {
	case indexed.Mimetype:
		img, err = DecodeIndexed(s.data, d.limits)
	case "image/png", "image/jpeg":
		img, err = d.decode(s.data, s.mimetype)
	default:
		return fmt.Errorf("%w: images of type %q are not drawn", ErrMalformed, s.mimetype)
	}
	if err != nil {
		return err
	}
	return d.drawImage(l, img, s.x, s.y)
}

// putIndexed writes an indexed image's pixels into l as the desktop page
// does (web/src/indexed.ts).
func (d *Display) putIndexed(l *layer, s *stream) error {
	img, err := d.indexed.decode(s.data, d.limits)
	if err != nil {
		return err
	}
	if !l.touched {
		// The page first draws a transparent dot through the layer, so
		// that the layer keeps its pixels on a resize; with "copy" that
		// clears the layer.
		l.touched, l.empty = true, false
		if l.mask == maskCopy {
			clear(l.canvas.Pix)
		}
	}
	at := image.Pt(s.x, s.y)
	r := img.Bounds().Add(at).Intersect(l.canvas.Bounds())
	draw.Draw(l.canvas, r, img, r.Min.Sub(at), draw.Src)
	d.changed(l)
	return nil
}

func (d *Display) changed(l *layer) {
	if l == d.layers[0] {
		d.version++
	}
}

// decode decodes a PNG or JPEG image within the limits.
func (d *Display) decode(data []byte, mimetype string) (image.Image, error) {
	// The browser sniffs the format from the bytes, not the type.
	var (
		cfg    image.Config
		err    error
		decode func([]byte) (image.Image, error)
	)
	switch {
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		cfg, err = png.DecodeConfig(bytes.NewReader(data))
		decode = func(b []byte) (image.Image, error) { return png.Decode(bytes.NewReader(b)) }
	case bytes.HasPrefix(data, []byte("\xff\xd8\xff")):
		cfg, err = jpeg.DecodeConfig(bytes.NewReader(data))
		decode = func(b []byte) (image.Image, error) { return jpeg.Decode(bytes.NewReader(b)) }
	default:
		return nil, fmt.Errorf("%w: %s image that is neither PNG nor JPEG", ErrMalformed, mimetype)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s image: %v", ErrMalformed, mimetype, err)
	}
	if err := d.checkImage(cfg.Width, cfg.Height); err != nil {
		return nil, err
	}
	img, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s image: %v", ErrMalformed, mimetype, err)
	}
	return img, nil
}

func (d *Display) checkImage(w, h int) error {
	if w > d.limits.MaxSide || h > d.limits.MaxSide || w*h > d.limits.MaxPixels {
		return fmt.Errorf("%w: an image of %d×%d", ErrTooLarge, w, h)
	}
	return nil
}

// drawImage draws img with its top-left corner at x, y on l, as
// Guacamole.Layer.drawImage does with l's composite operation.
func (d *Display) drawImage(l *layer, img image.Image, x, y int) error {
	b := img.Bounds()
	if l.autosize {
		if err := d.fit(l, x, y, b.Dx(), b.Dy()); err != nil {
			return err
		}
	}
	at := image.Pt(x, y)
	d.composite(l, b.Sub(b.Min).Add(at), img, b.Min)
	l.empty = false
	d.changed(l)
	return nil
}

// fit grows an autosized layer to hold a w×h drawing at x, y.
func (d *Display) fit(l *layer, x, y, w, h int) error {
	return d.resize(l, max(l.w, x+w), max(l.h, y+h))
}

// composite draws src (from sp) into r of l's canvas with l's composite
// operation; "copy" clears the rest of the canvas.
func (d *Display) composite(l *layer, r image.Rectangle, src image.Image, sp image.Point) {
	clip := r.Intersect(l.canvas.Bounds())
	sp = sp.Add(clip.Min.Sub(r.Min))
	if l.mask == maskCopy {
		clearOutside(l.canvas, clip)
		draw.Draw(l.canvas, clip, src, sp, draw.Src)
		return
	}
	op := draw.Over
	if opaque(src) {
		op = draw.Src // the same for an opaque image, and faster
	}
	draw.Draw(l.canvas, clip, src, sp, op)
}

// opaque reports images whose type is always opaque: JPEG's.
func opaque(img image.Image) bool {
	switch img.(type) {
	case *image.YCbCr, *image.Gray:
		return true
	}
	return false
}

// clearOutside makes img transparent outside r.
func clearOutside(img *image.RGBA, r image.Rectangle) {
	b := img.Bounds()
	if r.Empty() {
		clear(img.Pix)
		return
	}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		row := img.Pix[img.PixOffset(b.Min.X, y) : img.PixOffset(b.Min.X, y)+4*b.Dx()]
		if y < r.Min.Y || y >= r.Max.Y {
			clear(row)
			continue
		}
		clear(row[:4*(r.Min.X-b.Min.X)])
		clear(row[4*(r.Max.X-b.Min.X):])
	}
}

func (d *Display) copy(args []string) error {
	a, err := ints("copy", args, 9)
	if err != nil {
		return err
	}
	src, err := d.layerAt(a[0])
	if err != nil {
		return err
	}
	dst, err := d.layerAt(a[6])
	if err != nil || src == nil || dst == nil {
		return err
	}
	setMask(dst, a[5])
	sr := image.Rect(a[1], a[2], a[1]+a[3], a[2]+a[4])
	if a[3] <= 0 || a[4] <= 0 {
		return nil
	}
	// The source is cut to its canvas, the destination moved alike.
	at := image.Pt(a[7], a[8])
	clipped := sr.Intersect(src.canvas.Bounds())
	if clipped.Empty() {
		return nil
	}
	at = at.Add(clipped.Min.Sub(sr.Min))
	if dst.autosize {
		if err := d.fit(dst, a[7], a[8], clipped.Dx(), clipped.Dy()); err != nil {
			return err
		}
	}
	var from image.Image = src.canvas
	sp := clipped.Min
	if src == dst {
		// drawImage of a canvas onto itself reads it as it was before.
		from, sp = d.snapshot(src.canvas, clipped), image.Point{}
	}
	d.composite(dst, image.Rectangle{Min: at, Max: at.Add(clipped.Size())}, from, sp)
	dst.empty = false
	d.changed(dst)
	return nil
}

// snapshot copies r of img into the display's scratch image.
func (d *Display) snapshot(img *image.RGBA, r image.Rectangle) *image.RGBA {
	if d.scratch == nil || len(d.scratch.Pix) < 4*r.Dx()*r.Dy() {
		d.scratch = image.NewRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
	}
	s := &image.RGBA{Pix: d.scratch.Pix[:4*r.Dx()*r.Dy()], Stride: 4 * r.Dx(), Rect: image.Rect(0, 0, r.Dx(), r.Dy())}
	draw.Draw(s, s.Rect, img, r.Min, draw.Src)
	return s
}

func (d *Display) setCursor(args []string) error {
	a, err := ints("cursor", args, 7)
	if err != nil {
		return err
	}
	src, err := d.layerAt(a[2])
	if err != nil || src == nil {
		return err
	}
	w, h := a[5], a[6]
	if err := d.checkImage(w, h); err != nil {
		return err
	}
	// Guacamole.Display.setCursor: the cursor layer takes the size and
	// the copy is drawn onto it with the layer's own operation.
	if err := d.resize(d.cursor, w, h); err != nil {
		return err
	}
	d.hotspot = image.Pt(a[0], a[1])
	sr := image.Rect(a[3], a[4], a[3]+w, a[4]+h)
	if clipped := sr.Intersect(src.canvas.Bounds()); w > 0 && h > 0 && !clipped.Empty() {
		at := clipped.Min.Sub(sr.Min)
		d.composite(d.cursor, image.Rectangle{Min: at, Max: at.Add(clipped.Size())}, src.canvas, clipped.Min)
		d.cursor.empty = false
	}
	if d.pointerShown {
		d.version++
	}
	return nil
}

func (d *Display) mouse(args []string) error {
	a, err := ints("mouse", args, 2)
	if err != nil {
		return err
	}
	d.pointer, d.pointerShown = image.Pt(a[0], a[1]), true
	d.version++
	return nil
}
