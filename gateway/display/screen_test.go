package display

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math/rand/v2"
	"testing"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/recordings/guacrender"
)

// fakeFB is a framebuffer held in memory.
type fakeFB struct{ img *image.RGBA }

func (f fakeFB) ReadRegion(dst *image.RGBA, r image.Rectangle) {
	draw.Draw(dst, r, f.img, r.Min, draw.Src)
}

// apply applies what out holds to b.
func apply(t *testing.T, b *guacrender.Display, out *bytes.Buffer) {
	t.Helper()
	rd := guac.NewReader(out, guac.Limits{MaxElement: 1 << 22, MaxElements: 16})
	for {
		in, err := rd.Read()
		if err != nil {
			return
		}
		if err := b.Apply(in); err != nil {
			t.Fatal(err)
		}
	}
}

// textLines draws n rows of "text": lines 16 pixels high with random
// glyph-like blocks, line i seeded by its number so a line looks the
// same wherever it is drawn.
func textLines(img *image.RGBA, first, n int) {
	draw.Draw(img, img.Bounds(), image.NewUniform(color.RGBA{0, 0, 0, 255}), image.Point{}, draw.Src)
	for i := range n {
		rng := rand.New(rand.NewPCG(uint64(first+i), 7))
		for x := 0; x+8 <= img.Bounds().Dx(); x += 8 {
			if rng.IntN(3) == 0 {
				continue
			}
			for yy := 3; yy < 13; yy++ {
				for xx := 1; xx < 7; xx++ {
					if rng.IntN(2) == 0 {
						img.Set(x+xx, i*16+yy, color.RGBA{200, 200, 200, 255})
					}
				}
			}
		}
	}
}

// screenWithText returns a 640×480 framebuffer of 30 lines of text, and a
// Screen that has sent it to out (not yet flushed) for the browser model b.
func screenWithText(t *testing.T) (fakeFB, *bytes.Buffer, *Encoder, *Screen, *guacrender.Display) {
	t.Helper()
	fb := fakeFB{image.NewRGBA(image.Rect(0, 0, 640, 480))}
	out := &bytes.Buffer{}
	enc := NewEncoder(out)
	s := NewScreen(enc)
	if err := s.Resize(640, 480); err != nil {
		t.Fatal(err)
	}
	textLines(fb.img, 0, 30)
	if err := s.Update(fb, []image.Rectangle{fb.img.Bounds()}); err != nil {
		t.Fatal(err)
	}
	return fb, out, enc, s, guacrender.New(guacrender.DefaultLimits)
}

func TestScreenScrollsWithCopy(t *testing.T) {
	fb, out, enc, s, b := screenWithText(t)
	whole := []image.Rectangle{fb.img.Bounds()}
	enc.Flush()
	apply(t, b, out)
	for step := 1; step <= 5; step++ {
		scrollTo(t, fmt.Sprintf("step %d", step), fb, out, enc, s, b, step*3) // three lines more
	}
	// Nothing changed: nothing sent.
	s.Update(fb, whole)
	enc.Flush()
	if out.Len() != 0 {
		t.Errorf("an unchanged screen sent %d bytes", out.Len())
	}
}

// TestScreenScrollsAfterServerCopy scrolls the screen with a copy from
// the server (a VNC CopyRect), then by itself: the search must see the
// rows where the server's copy put them, not where they were.
func TestScreenScrollsAfterServerCopy(t *testing.T) {
	fb, out, enc, s, b := screenWithText(t)

	// The server moves the screen up two lines and sends the two new ones.
	textLines(fb.img, 2, 30)
	if err := s.Copy(image.Pt(0, 32), image.Rect(0, 0, 640, 448)); err != nil {
		t.Fatal(err)
	}
	s.Update(fb, []image.Rectangle{image.Rect(0, 448, 640, 480)})
	enc.Flush()
	apply(t, b, out)

	scrollTo(t, "after the server's copy", fb, out, enc, s, b, 5) // three lines more
}

// scrollTo draws text from line first on fb, which is three lines further
// than shown, and checks that s sends it as one copy and one image of the
// new lines, which b draws as fb is.
func scrollTo(t *testing.T, name string, fb fakeFB, out *bytes.Buffer, enc *Encoder, s *Screen, b *guacrender.Display, first int) {
	t.Helper()
	textLines(fb.img, first, 30)
	b.ResetCounts()
	if err := s.Update(fb, []image.Rectangle{fb.img.Bounds()}); err != nil {
		t.Fatal(err)
	}
	enc.Flush()
	n := out.Len()
	apply(t, b, out)
	if !bytes.Equal(b.Screen().Pix, fb.img.Pix) {
		t.Fatalf("%s: the browser's screen differs from the remote one", name)
	}
	if b.Count("copy") != 1 || b.Count("img") != 1 || n > 20000 {
		t.Errorf("%s: %v in %d bytes, want one copy and one image of three new lines", name, b.Counts(), n)
	}
}
