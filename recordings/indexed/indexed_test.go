package indexed_test

import (
	"bytes"
	"compress/zlib"
	"image"
	"image/color"
	"math/rand/v2"
	"testing"

	"github.com/keyway-dev/keyway/recordings/guacrender"
	"github.com/keyway-dev/keyway/recordings/indexed"
)

// TestEncode decodes the Mimetype form as the desktop page
// does (guacrender.DecodeIndexed mirrors web/src/indexed.ts): every depth,
// odd widths, transparency (a canvas keeps colours premultiplied: a
// transparent pixel has none).
func TestEncode(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	z, _ := zlib.NewWriterLevel(nil, zlib.BestSpeed)
	enc := indexed.NewEncoder(z)
	for _, colours := range []int{1, 2, 3, 4, 5, 16, 17, 256} {
		for _, size := range []image.Point{{1, 1}, {7, 3}, {9, 5}, {33, 17}} {
			pal := make([]color.RGBA, colours)
			for i := range pal {
				pal[i] = color.RGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(2) * 255)}
			}
			idx := make([]uint8, size.X*size.Y)
			for i := range idx {
				idx[i] = uint8(rng.IntN(colours))
			}
			var out bytes.Buffer
			if err := enc.Encode(&out, idx, size.X, size.Y, pal); err != nil {
				t.Fatal(err)
			}
			img, err := guacrender.DecodeIndexed(out.Bytes(), guacrender.DefaultLimits)
			if err != nil {
				t.Fatalf("%d colours, %v: %v", colours, size, err)
			}
			for y := range size.Y {
				for x := range size.X {
					want := pal[idx[y*size.X+x]]
					if want.A == 0 {
						want = color.RGBA{}
					}
					if got := img.RGBAAt(x, y); got != want {
						t.Fatalf("%d colours, %v: pixel %d,%d is %v, want %v", colours, size, x, y, got, want)
					}
				}
			}
		}
	}
}

// TestPalette finds the palette of images of 1 to 257 colours, whose
// pixels come back as indexes into it; past 256 colours it gives up.
func TestPalette(t *testing.T) {
	enc := indexed.NewEncoder(nil)
	for _, colours := range []int{1, 2, 3, 255, 256, 257} {
		img := image.NewRGBA(image.Rect(0, 0, 40, 30))
		for i := range 40 * 30 {
			c := (i * 7) % colours
			img.SetRGBA(i%40, i/40, color.RGBA{uint8(c), uint8(c >> 8), 9, 255})
		}
		// A sub-image, so rows do not start at the buffer's start.
		sub := img.SubImage(image.Rect(3, 2, 40, 30)).(*image.RGBA)
		idx, pal, ok := enc.Palette(sub)
		if ok != (colours <= 256) {
			t.Fatalf("%d colours: ok %v", colours, ok)
		}
		if !ok {
			continue
		}
		for y := 2; y < 30; y++ {
			for x := 3; x < 40; x++ {
				if got, want := pal[idx[(y-2)*37+x-3]], img.RGBAAt(x, y); got != want {
					t.Fatalf("%d colours: pixel %d,%d is %v, want %v", colours, x, y, got, want)
				}
			}
		}
	}
}
