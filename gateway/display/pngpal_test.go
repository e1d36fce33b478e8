package display

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/keyway-dev/keyway/recordings/indexed"
)

// TestPalettedPNG decodes what palettedPNG wrote with image/png: every
// bit depth, odd widths (rows that end mid-byte), transparency.
func TestPalettedPNG(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, colours := range []int{1, 2, 3, 4, 5, 16, 17, 256} {
		for _, size := range []image.Point{{1, 1}, {7, 3}, {9, 5}, {64, 2}, {33, 17}} {
			pal := make([]color.RGBA, colours)
			for i := range pal {
				pal[i] = color.RGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 0xff}
			}
			if colours == 3 {
				pal[1].A = 0 // a transparent entry needs tRNS
			}
			idx := make([]uint8, size.X*size.Y)
			for i := range idx {
				idx[i] = uint8(rng.IntN(colours))
			}
			var out bytes.Buffer
			var p palettedPNG
			rows := NewEncoder(io.Discard).ix.Pack(idx, size.X, size.Y, indexed.Depth(colours), true)
			if err := p.encode(&out, rows, size.X, size.Y, pal); err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(&out)
			if err != nil {
				t.Fatalf("%d colours, %v: %v", colours, size, err)
			}
			if img.Bounds().Size() != size {
				t.Fatalf("%d colours: size %v, want %v", colours, img.Bounds().Size(), size)
			}
			for y := range size.Y {
				for x := range size.X {
					got := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
					want := pal[idx[y*size.X+x]]
					if got.A != want.A || (want.A != 0 && (got.R != want.R || got.G != want.G || got.B != want.B)) {
						t.Fatalf("%d colours, %v: pixel %d,%d is %v, want %v", colours, size, x, y, got, want)
					}
				}
			}
		}
	}
}
