package display

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/keyway-dev/keyway/gateway/guac"
)

// fakeFB is a framebuffer held in memory.
type fakeFB struct{ img *image.RGBA }

func (f fakeFB) ReadRegion(dst *image.RGBA, r image.Rectangle) {
	draw.Draw(dst, r, f.img, r.Min, draw.Src)
}

// browser applies the display instructions a Screen sends to an image,
// as guacamole-common-js does to its default layer.
type browser struct {
	t      *testing.T
	screen *image.RGBA
	ops    map[string]int
}

func (b *browser) apply(out *bytes.Buffer) {
	b.t.Helper()
	rd := guac.NewReader(out, guac.Limits{MaxElement: 1 << 22, MaxElements: 16})
	var at image.Point
	var data []byte
	atoi := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.t.Fatal(err)
		}
		return n
	}
	for {
		in, err := rd.Read()
		if err != nil {
			return
		}
		b.ops[in.Opcode]++
		switch in.Opcode {
		case "size":
			if in.Args[0] == "0" {
				b.screen = image.NewRGBA(image.Rect(0, 0, atoi(in.Args[1]), atoi(in.Args[2])))
			}
		case "copy":
			sx, sy, w, h, dx, dy := atoi(in.Args[1]), atoi(in.Args[2]), atoi(in.Args[3]), atoi(in.Args[4]), atoi(in.Args[7]), atoi(in.Args[8])
			tmp := image.NewRGBA(image.Rect(0, 0, w, h))
			draw.Draw(tmp, tmp.Bounds(), b.screen, image.Pt(sx, sy), draw.Src)
			draw.Draw(b.screen, image.Rect(dx, dy, dx+w, dy+h), tmp, image.Point{}, draw.Src)
		case "img":
			at = image.Pt(atoi(in.Args[4]), atoi(in.Args[5]))
			data = data[:0]
		case "blob":
			d, _ := base64.StdEncoding.DecodeString(in.Args[1])
			data = append(data, d...)
		case "end":
			img, err := png.Decode(bytes.NewReader(data))
			if err != nil {
				b.t.Fatal(err)
			}
			draw.Draw(b.screen, img.Bounds().Add(at), img, img.Bounds().Min, draw.Over)
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

func TestScreenScrollsWithCopy(t *testing.T) {
	fb := fakeFB{image.NewRGBA(image.Rect(0, 0, 640, 480))}
	var out bytes.Buffer
	enc := NewEncoder(&out)
	s := NewScreen(enc)
	b := &browser{t: t, ops: map[string]int{}}
	if err := s.Resize(640, 480); err != nil {
		t.Fatal(err)
	}
	whole := []image.Rectangle{fb.img.Bounds()}
	textLines(fb.img, 0, 30)
	s.Update(fb, whole)
	enc.Flush()
	b.apply(&out)
	for step := 1; step <= 5; step++ {
		textLines(fb.img, step*3, 30) // scrolled by three lines
		clear(b.ops)
		if err := s.Update(fb, whole); err != nil {
			t.Fatal(err)
		}
		enc.Flush()
		n := out.Len()
		b.apply(&out)
		if !bytes.Equal(b.screen.Pix, fb.img.Pix) {
			t.Fatalf("step %d: the browser's screen differs from the remote one", step)
		}
		if b.ops["copy"] != 1 || b.ops["img"] != 1 {
			t.Errorf("step %d: %v, want one copy and one image of the new lines", step, b.ops)
		}
		if n > 20000 {
			t.Errorf("step %d: %d bytes for three new lines", step, n)
		}
	}
	// Nothing changed: nothing sent.
	s.Update(fb, whole)
	enc.Flush()
	if out.Len() != 0 {
		t.Errorf("an unchanged screen sent %d bytes", out.Len())
	}
}
