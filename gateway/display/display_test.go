package display

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/gateway/guac"
)

func TestImageRoundTrip(t *testing.T) {
	var out bytes.Buffer
	e := NewEncoder(&out)
	img := image.NewRGBA(image.Rect(0, 0, 300, 200))
	for y := range 200 {
		for x := range 300 {
			img.SetRGBA(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	e.Size(1024, 768)
	e.Image(img, image.Pt(10, 20))
	e.Copy(image.Pt(0, 0), image.Rect(5, 6, 105, 56))
	e.Sync(1234)
	e.Flush()

	rd := guac.NewReader(&out, guac.Limits{MaxElement: 1 << 20, MaxElements: 16})
	var ops []string
	var data []byte
	for {
		in, err := rd.Read()
		if err != nil {
			break
		}
		ops = append(ops, in.Opcode)
		switch in.Opcode {
		case "img":
			if strings.Join(in.Args[2:], ",") != "0,image/png,10,20" {
				t.Fatalf("img args %v", in.Args)
			}
		case "blob":
			b, err := base64.StdEncoding.DecodeString(in.Args[1])
			if err != nil {
				t.Fatal(err)
			}
			data = append(data, b...)
		case "copy":
			if strings.Join(in.Args, ",") != "0,0,0,100,50,12,0,5,6" {
				t.Fatalf("copy args %v", in.Args)
			}
		case "sync":
			if in.Args[0] != "1234" {
				t.Fatalf("sync %v", in.Args)
			}
		}
	}
	got := strings.Join(ops, " ")
	if !strings.HasPrefix(got, "size img blob") || !strings.HasSuffix(got, "end copy sync") {
		t.Fatalf("instructions %s", got)
	}
	decoded, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []image.Point{{0, 0}, {299, 199}, {123, 45}} {
		if decoded.At(p.X, p.Y) != img.At(p.X, p.Y) {
			t.Fatalf("pixel %v: %v, want %v", p, decoded.At(p.X, p.Y), img.At(p.X, p.Y))
		}
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
