package display

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/color"
	_ "image/jpeg"
	"image/png"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/gateway/guac"
)

// sent encodes img with an Encoder and returns the img instruction's mime
// type and the decoded image.
func sent(t *testing.T, img *image.RGBA) (string, image.Image, int) {
	t.Helper()
	var out bytes.Buffer
	e := NewEncoder(&out)
	e.Image(img, image.Pt(10, 20))
	e.Flush()
	rd := guac.NewReader(&out, guac.Limits{MaxElement: 1 << 20, MaxElements: 16})
	var mime string
	var data []byte
	for {
		in, err := rd.Read()
		if err != nil {
			break
		}
		switch in.Opcode {
		case "img":
			mime = in.Args[3]
			if strings.Join(in.Args[4:], ",") != "10,20" {
				t.Fatalf("img position %v", in.Args)
			}
		case "blob":
			b, err := base64.StdEncoding.DecodeString(in.Args[1])
			if err != nil {
				t.Fatal(err)
			}
			data = append(data, b...)
		}
	}
	dec, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decode %s: %v", mime, err)
	}
	return mime, dec, len(data)
}

func TestImageFormats(t *testing.T) {
	// A photo-like region: smooth shading with sensor-like noise. JPEG,
	// close to the original.
	rng := rand.New(rand.NewPCG(1, 2))
	noisy := func(v int) uint8 { return uint8(max(0, min(255, v+rng.IntN(17)-8))) }
	photo := image.NewRGBA(image.Rect(0, 0, 300, 200))
	for y := range 200 {
		for x := range 300 {
			photo.SetRGBA(x, y, color.RGBA{noisy(x * 255 / 300), noisy(y * 255 / 200), noisy(128), 255})
		}
	}
	mime, dec, jpegSize := sent(t, photo)
	if mime != "image/jpeg" {
		t.Fatalf("photo-like region sent as %s", mime)
	}
	for _, p := range []image.Point{{5, 5}, {150, 100}, {290, 190}} {
		r, g, b, _ := dec.At(p.X, p.Y).RGBA()
		want := photo.RGBAAt(p.X, p.Y)
		if d := absDiff(r>>8, want.R) + absDiff(g>>8, want.G) + absDiff(b>>8, want.B); d > 60 {
			t.Errorf("pixel %v off by %d", p, d)
		}
	}
	var png bytes.Buffer
	(&pngEncoderForTest{}).encode(&png, photo)
	if jpegSize >= png.Len() {
		t.Errorf("JPEG of %d bytes is not smaller than PNG's %d", jpegSize, png.Len())
	}

	// Text and UI drawing: few colours. PNG, exact.
	text := image.NewRGBA(image.Rect(0, 0, 300, 200))
	for y := range 200 {
		for x := range 300 {
			c := color.RGBA{255, 255, 255, 255}
			if (x/3+y/5)%4 == 0 {
				c = color.RGBA{20, 20, 20, 255}
			}
			text.SetRGBA(x, y, c)
		}
	}
	mime, dec, _ = sent(t, text)
	if mime != "image/png" {
		t.Fatalf("text-like region sent as %s", mime)
	}
	for _, p := range []image.Point{{0, 0}, {299, 199}, {123, 45}} {
		if color.RGBAModel.Convert(dec.At(p.X, p.Y)) != text.RGBAAt(p.X, p.Y) {
			t.Fatalf("PNG pixel %v changed", p)
		}
	}
}

func absDiff(a uint32, b uint8) int {
	d := int(a) - int(b)
	if d < 0 {
		return -d
	}
	return d
}

type pngEncoderForTest struct{}

func (pngEncoderForTest) encode(w *bytes.Buffer, img image.Image) { png.Encode(w, img) }

func TestInstructions(t *testing.T) {
	var out bytes.Buffer
	e := NewEncoder(&out)
	e.Size(1024, 768)
	e.Copy(image.Pt(0, 0), image.Rect(5, 6, 105, 56))
	e.Sync(1234)
	e.Flush()
	// The copy is drawn over (14): replace (12) would clear the rest of
	// the screen in a browser.
	want := "4.size,1.0,4.1024,3.768;4.copy,1.0,1.0,1.0,3.100,2.50,2.14,1.0,1.5,1.6;4.sync,4.1234;"
	if out.String() != want {
		t.Fatalf("got %s\nwant %s", out.String(), want)
	}
}

func TestCoalesce(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []image.Rectangle
		max  int
		want int
	}{
		{"adjacent merge", []image.Rectangle{image.Rect(0, 0, 10, 10), image.Rect(10, 0, 20, 10)}, 10, 1},
		{"far apart stay", []image.Rectangle{image.Rect(0, 0, 10, 10), image.Rect(500, 500, 510, 510)}, 10, 2},
		{"capped", []image.Rectangle{image.Rect(0, 0, 50, 50), image.Rect(300, 0, 350, 50), image.Rect(600, 0, 650, 50)}, 2, 2},
		{"empties dropped", []image.Rectangle{{}, image.Rect(0, 0, 5, 5)}, 10, 1},
	} {
		got := Coalesce(tc.in, tc.max)
		if len(got) != tc.want {
			t.Errorf("%s: %v", tc.name, got)
		}
		// Every input pixel is still covered.
		for _, r := range tc.in {
			covered := r.Empty()
			for _, g := range got {
				covered = covered || r.In(g)
			}
			if !covered {
				t.Errorf("%s: %v not covered by %v", tc.name, r, got)
			}
		}
	}
}
