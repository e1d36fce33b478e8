// Package displaytest applies display instructions to an image as
// guacamole-common-js does to its default layer, so tests can compare what
// a browser would show with the remote screen, pixel by pixel.
package displaytest

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/jpeg" // img streams may be JPEG
	_ "image/png"  // and PNG
	"io"
	"strconv"

	"github.com/keyway-dev/keyway/gateway/guac"
)

// Browser is the default layer of a Guacamole display.
type Browser struct {
	screen *image.RGBA
	// Ops counts the instructions applied, by opcode.
	Ops map[string]int
	// Open img streams: where each draws and the bytes so far.
	streams map[string]*stream
}

type stream struct {
	layer    string
	comp     string
	mimetype string
	at       image.Point
	data     []byte
}

// New returns an empty display.
func New() *Browser {
	return &Browser{screen: image.NewRGBA(image.Rectangle{}), Ops: map[string]int{}, streams: map[string]*stream{}}
}

// Size returns the screen's size.
func (b *Browser) Size() (int, int) { return b.screen.Bounds().Dx(), b.screen.Bounds().Dy() }

// Screen returns the screen; it changes with later instructions.
func (b *Browser) Screen() *image.RGBA { return b.screen }

// At returns the pixel at x, y.
func (b *Browser) At(x, y int) color.RGBA { return b.screen.RGBAAt(x, y) }

// Apply applies one instruction; instructions for other layers (the
// cursor's buffer) and non-drawing ones are counted and otherwise ignored.
func (b *Browser) Apply(in guac.Instruction) error {
	b.Ops[in.Opcode]++
	arg := func(i int) int {
		if i >= len(in.Args) {
			return 0
		}
		n, _ := strconv.Atoi(in.Args[i])
		return n
	}
	switch in.Opcode {
	case "size":
		if len(in.Args) == 3 && in.Args[0] == "0" {
			old := b.screen
			b.screen = image.NewRGBA(image.Rect(0, 0, arg(1), arg(2)))
			draw.Draw(b.screen, old.Bounds(), old, image.Point{}, draw.Src)
		}
	case "copy":
		if len(in.Args) == 9 && in.Args[0] == "0" && in.Args[6] == "0" {
			sx, sy, w, h, dx, dy := arg(1), arg(2), arg(3), arg(4), arg(7), arg(8)
			tmp := image.NewRGBA(image.Rect(0, 0, w, h))
			draw.Draw(tmp, tmp.Bounds(), b.screen, image.Pt(sx, sy), draw.Src)
			if in.Args[5] == compReplace {
				// As for images: the canvas's "copy" clears the rest.
				clear(b.screen.Pix)
			}
			draw.Draw(b.screen, image.Rect(dx, dy, dx+w, dy+h), tmp, image.Point{}, draw.Src)
		}
	case "img":
		if len(in.Args) == 6 {
			b.streams[in.Args[0]] = &stream{layer: in.Args[2], comp: in.Args[1], mimetype: in.Args[3], at: image.Pt(arg(4), arg(5))}
		}
	case "blob":
		if s := b.streams[in.Args[0]]; s != nil && len(in.Args) == 2 {
			d, err := base64.StdEncoding.DecodeString(in.Args[1])
			if err != nil {
				return fmt.Errorf("blob: %w", err)
			}
			s.data = append(s.data, d...)
		}
	case "end":
		s := b.streams[in.Args[0]]
		delete(b.streams, in.Args[0])
		if s == nil || s.layer != "0" {
			return nil
		}
		var img image.Image
		var err error
		if s.mimetype == indexedMimetype {
			img, err = DecodeIndexed(s.data)
		} else {
			img, _, err = image.Decode(bytes.NewReader(s.data))
		}
		if err != nil {
			return fmt.Errorf("image at %v: %w", s.at, err)
		}
		if s.comp == compReplace {
			// The canvas's "copy": the layer outside the image is cleared.
			clear(b.screen.Pix)
		}
		draw.Draw(b.screen, img.Bounds().Sub(img.Bounds().Min).Add(s.at), img, img.Bounds().Min, draw.Over)
	}
	return nil
}

// compReplace is Guacamole's SRC channel mask, which browsers draw with
// the canvas's "copy" operation.
const compReplace = "12"

// indexedMimetype is display.IndexedMimetype (not imported: display's own
// tests use this package).
const indexedMimetype = "image/x-keyway-indexed"

// DecodeIndexed decodes an image in the display.IndexedMimetype format, as
// the desktop page does, checking every length.
func DecodeIndexed(data []byte) (*image.RGBA, error) {
	if len(data) < 7 || data[0] != 1 {
		return nil, errors.New("indexed image: bad header")
	}
	w, h := int(data[1])<<8|int(data[2]), int(data[3])<<8|int(data[4])
	depth, colours := int(data[5]), int(data[6])+1
	if (depth != 1 && depth != 2 && depth != 4 && depth != 8) || colours > 1<<depth {
		return nil, fmt.Errorf("indexed image: %d colours at depth %d", colours, depth)
	}
	if len(data) < 7+4*colours {
		return nil, errors.New("indexed image: short palette")
	}
	pal := data[7 : 7+4*colours]
	zr, err := zlib.NewReader(bytes.NewReader(data[7+4*colours:]))
	if err != nil {
		return nil, fmt.Errorf("indexed image: %w", err)
	}
	stride := (w*depth + 7) / 8
	rows := make([]byte, stride*h)
	if _, err := io.ReadFull(zr, rows); err != nil {
		return nil, fmt.Errorf("indexed image rows: %w", err)
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	mask := byte(1<<depth - 1)
	for y := range h {
		for x := range w {
			bit := x * depth
			i := int(rows[y*stride+bit/8]>>(8-depth-bit%8)) & int(mask)
			if i >= colours {
				return nil, fmt.Errorf("indexed image: index %d of %d colours", i, colours)
			}
			copy(img.Pix[img.PixOffset(x, y):], pal[4*i:4*i+4])
		}
	}
	return img, nil
}
