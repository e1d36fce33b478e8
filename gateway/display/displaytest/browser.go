// Package displaytest applies display instructions to an image as
// guacamole-common-js does to its default layer, so tests can compare what
// a browser would show with the remote screen, pixel by pixel.
package displaytest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/jpeg" // img streams may be JPEG
	_ "image/png"  // and PNG
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
	layer string
	at    image.Point
	data  []byte
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
			draw.Draw(b.screen, image.Rect(dx, dy, dx+w, dy+h), tmp, image.Point{}, draw.Src)
		}
	case "img":
		if len(in.Args) == 6 {
			b.streams[in.Args[0]] = &stream{layer: in.Args[2], at: image.Pt(arg(4), arg(5))}
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
		img, _, err := image.Decode(bytes.NewReader(s.data))
		if err != nil {
			return fmt.Errorf("image at %v: %w", s.at, err)
		}
		draw.Draw(b.screen, img.Bounds().Sub(img.Bounds().Min).Add(s.at), img, img.Bounds().Min, draw.Over)
	}
	return nil
}
