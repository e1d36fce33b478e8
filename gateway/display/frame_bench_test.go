package display

import (
	"fmt"
	"image"
	"image/draw"
	"io"
	"math/rand/v2"
	"testing"
)

// imageFB is a Framebuffer over an image.
type imageFB struct{ img *image.RGBA }

func (f imageFB) ReadRegion(dst *image.RGBA, r image.Rectangle) {
	draw.Draw(dst, r, f.img, r.Min, draw.Src)
}

// textScreens returns n w×h screens of random two-colour "text" in 6×13
// cells, each unlike the last, as a terminal scrolling faster than frames
// are sent shows.
func textScreens(n, w, h int) []*image.RGBA {
	rng := rand.New(rand.NewPCG(1, 2))
	fg, bg := [4]byte{0, 0, 0, 255}, [4]byte{255, 255, 255, 255}
	var out []*image.RGBA
	for range n {
		img := image.NewRGBA(image.Rect(0, 0, w, h))
		for cy := 0; cy+13 <= h; cy += 13 {
			for cx := 0; cx+6 <= w; cx += 6 {
				glyph := rng.Uint64()
				for y := range 13 {
					for x := range 6 {
						c := bg
						if y > 1 && y < 11 && x < 5 && glyph>>(y*5+x)&1 == 1 {
							c = fg
						}
						copy(img.Pix[img.PixOffset(cx+x, cy+y):], c[:])
					}
				}
			}
		}
		out = append(out, img)
	}
	return out
}

// BenchmarkTextFrame is the gateway's cost of one full-screen frame of
// new text (read, compare, scroll search, palette, pack, compress):
//
//	go test -run '^$' -bench TextFrame ./gateway/display
func BenchmarkTextFrame(b *testing.B) {
	for _, size := range []image.Point{{1200, 780}, {1920, 1080}} {
		b.Run(fmt.Sprintf("%dx%d", size.X, size.Y), func(b *testing.B) {
			screens := textScreens(4, size.X, size.Y)
			enc := NewEncoder(io.Discard)
			enc.SetIndexed(true)
			s := NewScreen(enc)
			if err := s.Resize(size.X, size.Y); err != nil {
				b.Fatal(err)
			}
			all := []image.Rectangle{image.Rect(0, 0, size.X, size.Y)}
			b.SetBytes(int64(size.X * size.Y * 4))
			for i := 0; b.Loop(); i++ {
				if err := s.Update(imageFB{screens[i%len(screens)]}, all); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
