package guacrender

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"io"
	"strconv"
	"testing"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/recordings/guacrec"
	"github.com/keyway-dev/keyway/recordings/indexed"
)

var (
	red   = color.RGBA{0xcc, 0x33, 0x33, 0xff}
	blue  = color.RGBA{0x33, 0x66, 0x99, 0xff}
	green = color.RGBA{0x33, 0x99, 0x44, 0xff}
	none  = color.RGBA{}
)

// rec builds instructions for a test recording.
type rec struct {
	ins    []guac.Instruction
	stream int
}

func (r *rec) add(op string, args ...any) *rec {
	s := make([]string, len(args))
	for i, a := range args {
		s[i] = fmt.Sprint(a)
	}
	r.ins = append(r.ins, guac.New(op, s...))
	return r
}

// image sends data of mimetype on layer with mask at x, y, in blobs of
// at most 100 bytes.
func (r *rec) image(mask, layer int, mimetype string, x, y int, data []byte) *rec {
	r.stream++
	r.add("img", r.stream, mask, layer, mimetype, x, y)
	for len(data) > 0 {
		n := min(len(data), 100)
		r.add("blob", r.stream, base64.StdEncoding.EncodeToString(data[:n]))
		data = data[n:]
	}
	return r.add("end", r.stream)
}

func (r *rec) bytes() []byte {
	var b []byte
	for _, in := range r.ins {
		b = in.AppendTo(b)
	}
	return b
}

func solid(w, h int, c color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(c), image.Point{}, draw.Src)
	return img
}

func pngOf(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// indexedOf encodes a w×h image of one palette colour per pixel at 8 bits
// a pixel; idx may hold indexes past the palette.
func indexedOf(w, h int, pal []color.RGBA, idx func(x, y int) byte) []byte {
	b := []byte{1, byte(w >> 8), byte(w), byte(h >> 8), byte(h), 8, byte(len(pal) - 1)}
	for _, c := range pal {
		b = append(b, c.R, c.G, c.B, c.A)
	}
	var rows bytes.Buffer
	zw := zlib.NewWriter(&rows)
	for y := range h {
		for x := range w {
			zw.Write([]byte{idx(x, y)})
		}
	}
	zw.Close()
	return append(b, rows.Bytes()...)
}

func play(t *testing.T, d *Display, r *rec) {
	t.Helper()
	for _, in := range r.ins {
		if err := d.Apply(in); err != nil {
			t.Fatalf("%s: %v", in.Opcode, err)
		}
	}
}

// TestDrawing checks each drawing rule of the player on a small screen.
func TestDrawing(t *testing.T) {
	// A 100×100 screen: blue, with a red band at rows 50-60.
	base := func(t *testing.T) *rec {
		img := solid(100, 100, blue)
		draw.Draw(img, image.Rect(0, 50, 100, 60), image.NewUniform(red), image.Point{}, draw.Src)
		r := &rec{}
		return r.add("size", 0, 100, 100).image(maskOver, 0, "image/png", 0, 0, pngOf(t, img)).add("sync", 1000)
	}
	for _, tc := range []struct {
		name  string
		steps func(t *testing.T, r *rec)
		// want maps points to the colour the screen has there, within
		// tol of each channel.
		want map[image.Point]color.RGBA
		tol  int
	}{
		{"a copy drawn over moves the band and keeps the rest", func(t *testing.T, r *rec) {
			r.add("copy", 0, 0, 50, 100, 10, maskOver, 0, 0, 0)
		}, map[image.Point]color.RGBA{{5, 5}: red, {5, 20}: blue, {5, 55}: red, {5, 80}: blue}, 0},
		{"a copy with replace clears the rest of the screen", func(t *testing.T, r *rec) {
			r.add("copy", 0, 0, 50, 100, 10, maskCopy, 0, 0, 0)
		}, map[image.Point]color.RGBA{{5, 5}: red, {5, 20}: none, {5, 55}: none, {99, 99}: none}, 0},
		{"overlapping copies read the screen as it was", func(t *testing.T, r *rec) {
			r.add("copy", 0, 0, 45, 100, 20, maskOver, 0, 0, 50)
		}, map[image.Point]color.RGBA{{5, 50}: blue, {5, 55}: red, {5, 64}: red, {5, 65}: blue}, 0},
		{"an image with replace clears the rest of the screen", func(t *testing.T, r *rec) {
			r.image(maskCopy, 0, "image/png", 10, 10, pngOf(t, solid(5, 5, green)))
		}, map[image.Point]color.RGBA{{12, 12}: green, {5, 5}: none, {5, 55}: none}, 0},
		{"a JPEG is drawn over", func(t *testing.T, r *rec) {
			var b bytes.Buffer
			jpeg.Encode(&b, solid(16, 16, green), &jpeg.Options{Quality: 100})
			r.image(maskOver, 0, "image/jpeg", 0, 0, b.Bytes())
		}, map[image.Point]color.RGBA{{5, 5}: green, {20, 20}: blue}, 3},
		{"a half-transparent PNG blends with the screen", func(t *testing.T, r *rec) {
			img := image.NewNRGBA(image.Rect(0, 0, 4, 4))
			draw.Draw(img, img.Bounds(), image.NewUniform(color.NRGBA{0xff, 0xff, 0xff, 0x80}), image.Point{}, draw.Src)
			r.image(maskOver, 0, "image/png", 0, 0, pngOf(t, img))
		}, map[image.Point]color.RGBA{{1, 1}: {0x99, 0xb3, 0xcc, 0xff}}, 1},
		{"indexed images replace pixels, transparent past the palette", func(t *testing.T, r *rec) {
			r.image(maskOver, 0, indexed.Mimetype, 0, 0, indexedOf(4, 2, []color.RGBA{green}, func(x, y int) byte { return byte(y) }))
		}, map[image.Point]color.RGBA{{1, 0}: green, {1, 1}: none, {1, 2}: blue}, 0},
		{"the first indexed image with replace clears the screen, later ones do not", func(t *testing.T, r *rec) {
			one := indexedOf(2, 2, []color.RGBA{green}, func(x, y int) byte { return 0 })
			r.image(maskCopy, 0, indexed.Mimetype, 0, 0, one).image(maskCopy, 0, indexed.Mimetype, 90, 90, one)
		}, map[image.Point]color.RGBA{{1, 1}: green, {50, 50}: none, {91, 91}: green}, 0},
		{"a larger screen keeps its pixels, the new part transparent", func(t *testing.T, r *rec) {
			r.add("size", 0, 200, 150)
		}, map[image.Point]color.RGBA{{5, 55}: red, {99, 99}: blue, {150, 50}: none, {50, 120}: none}, 0},
		{"a screen within the same canvas keeps even what it hid", func(t *testing.T, r *rec) {
			// 100 → 90 → 100 wide: the canvas stays 128 wide.
			r.add("size", 0, 90, 100).add("size", 0, 100, 100)
		}, map[image.Point]color.RGBA{{95, 5}: blue}, 0},
		{"a screen on a new canvas keeps only what both sizes hold", func(t *testing.T, r *rec) {
			// 100 → 60 → 100 wide: the canvas goes to 64, then back to 128.
			r.add("size", 0, 60, 100).add("size", 0, 100, 100)
		}, map[image.Point]color.RGBA{{30, 5}: blue, {70, 5}: none}, 0},
		{"images to visible layers other than the screen are not drawn", func(t *testing.T, r *rec) {
			r.image(maskOver, 1, "image/png", 0, 0, pngOf(t, solid(5, 5, green)))
		}, map[image.Point]color.RGBA{{1, 1}: blue}, 0},
		{"buffers grow to fit, and copy to the screen", func(t *testing.T, r *rec) {
			r.image(maskOver, -2, "image/png", 20, 0, pngOf(t, solid(5, 5, green))).
				add("copy", -2, 20, 0, 5, 5, maskOver, 0, 0, 0)
		}, map[image.Point]color.RGBA{{1, 1}: green, {6, 6}: blue}, 0},
		{"the pointer shows once placed, at its hotspot", func(t *testing.T, r *rec) {
			r.add("size", -1, 4, 4).image(maskCopy, -1, "image/png", 0, 0, pngOf(t, solid(4, 4, green))).
				add("cursor", 1, 1, -1, 0, 0, 4, 4).add("mouse", 30, 30)
		}, map[image.Point]color.RGBA{{29, 29}: green, {32, 32}: green, {33, 33}: blue, {28, 28}: blue}, 0},
		{"the pointer is not shown without a position", func(t *testing.T, r *rec) {
			r.add("size", -1, 4, 4).image(maskCopy, -1, "image/png", 0, 0, pngOf(t, solid(4, 4, green))).
				add("cursor", 1, 1, -1, 0, 0, 4, 4)
		}, map[image.Point]color.RGBA{{0, 0}: blue}, 0},
		{"an image stream replaced by another before its end is never drawn", func(t *testing.T, r *rec) {
			r.add("img", 7, maskOver, 0, "image/png", 0, 0).add("blob", 7, base64.StdEncoding.EncodeToString(pngOf(t, solid(5, 5, green)))).
				add("clipboard", 7, "text/plain").add("end", 7)
		}, map[image.Point]color.RGBA{{1, 1}: blue}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := base(t)
			tc.steps(t, r)
			d := New(DefaultLimits)
			play(t, d, r)
			screen := d.Screen()
			for p, want := range tc.want {
				if got := screen.RGBAAt(p.X, p.Y); !near(got, want, tc.tol) {
					t.Errorf("pixel %v is %v, want %v", p, got, want)
				}
			}
		})
	}
}

func near(a, b color.RGBA, tol int) bool {
	d := func(x, y uint8) int { return max(int(x)-int(y), int(y)-int(x)) }
	return d(a.R, b.R) <= tol && d(a.G, b.G) <= tol && d(a.B, b.B) <= tol && a.A == b.A
}

// TestVersion checks that Version changes with what the screen shows
// only.
func TestVersion(t *testing.T) {
	d := New(DefaultLimits)
	r := (&rec{}).add("size", 0, 10, 10)
	play(t, d, r)
	v := d.Version()
	play(t, d, (&rec{}).add("sync", 1).add("clipboard", 3, "text/plain").add("blob", 3, "aGk=").add("end", 3).
		image(maskOver, -1, "image/png", 0, 0, pngOf(t, solid(2, 2, red))))
	if d.Version() != v {
		t.Error("the version changed without a change to the screen")
	}
	play(t, d, (&rec{}).image(maskOver, 0, "image/png", 0, 0, pngOf(t, solid(2, 2, red))))
	if d.Version() == v {
		t.Error("the version did not change with the screen")
	}
}

// TestBadInput checks that malformed instructions and data over the
// limits are refused with errors that say why, and change nothing.
func TestBadInput(t *testing.T) {
	small := Limits{MaxSide: 64, MaxPixels: 64 * 64 * 2, MaxLayers: 3, MaxStreams: 2, MaxStreamBytes: 1000}
	big := make([]byte, 800)
	for _, tc := range []struct {
		name string
		r    *rec
		want error
	}{
		{"a screen over the limit", (&rec{}).add("size", 0, 65, 10), ErrTooLarge},
		{"layers over the limit", (&rec{}).add("size", 0, 64, 64).add("size", -1, 64, 64).add("size", -2, 1, 1), ErrTooLarge},
		{"too many layers", (&rec{}).add("size", -1, 1, 1).add("size", -2, 1, 1).add("size", -3, 1, 1), ErrTooLarge},
		{"too many streams", (&rec{}).add("img", 1, 14, 0, "image/png", 0, 0).add("img", 2, 14, 0, "image/png", 0, 0).add("img", 3, 14, 0, "image/png", 0, 0), ErrTooLarge},
		{"too much image data", (&rec{}).add("img", 1, 14, 0, "image/png", 0, 0).add("blob", 1, base64.StdEncoding.EncodeToString(big)).
			add("blob", 1, base64.StdEncoding.EncodeToString(big)), ErrTooLarge},
		{"an image over the limit", (&rec{}).add("size", 0, 10, 10).image(maskOver, 0, "image/png", 0, 0, pngOf(t, solid(65, 1, red))), ErrTooLarge},
		{"an indexed image over the limit", (&rec{}).add("size", 0, 10, 10).image(maskOver, 0, indexed.Mimetype, 0, 0,
			indexedOf(65, 1, []color.RGBA{red}, func(x, y int) byte { return 0 })), ErrTooLarge},
		{"a buffer grown over the limit", (&rec{}).image(maskOver, -1, "image/png", 60, 0, pngOf(t, solid(5, 1, red))), ErrTooLarge},
		{"a size that is not a number", (&rec{}).add("size", 0, "wide", 10), ErrMalformed},
		{"a huge coordinate", (&rec{}).add("copy", 0, 0, 0, 1, 1, 14, 0, "99999999999", 0), ErrMalformed},
		{"a short copy", (&rec{}).add("copy", 0, 0, 0), ErrMalformed},
		{"a blob that is not base64", (&rec{}).add("img", 1, 14, 0, "image/png", 0, 0).add("blob", 1, "***"), ErrMalformed},
		{"an image that is not one", (&rec{}).add("size", 0, 10, 10).image(maskOver, 0, "image/png", 0, 0, []byte("GIF89a")), ErrMalformed},
		{"a broken PNG", (&rec{}).add("size", 0, 10, 10).image(maskOver, 0, "image/png", 0, 0, pngOf(t, solid(5, 5, red))[:40]), ErrMalformed},
		{"an image type the player does not draw", (&rec{}).add("size", 0, 10, 10).image(maskOver, 0, "image/webp", 0, 0, []byte("RIFF")), ErrMalformed},
		{"an indexed image with a bad header", (&rec{}).add("size", 0, 10, 10).image(maskOver, 0, indexed.Mimetype, 0, 0, []byte{2, 0, 1, 0, 1, 8, 0}), ErrMalformed},
		{"an indexed image with short rows", (&rec{}).add("size", 0, 10, 10).image(maskOver, 0, indexed.Mimetype, 0, 0,
			indexedOf(32, 32, []color.RGBA{red, blue}, func(x, y int) byte { return byte(x*7+y*y) % 2 })[:30]), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := New(small)
			var err error
			var before *image.RGBA
			for _, in := range tc.r.ins {
				before = d.Screen()
				if err = d.Apply(in); err != nil {
					break
				}
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if after := d.Screen(); !bytes.Equal(before.Pix, after.Pix) || before.Rect != after.Rect {
				t.Error("the failed instruction changed the screen")
			}
		})
	}
}

// FuzzApply plays arbitrary recordings within small limits: nothing may
// panic, every error is one of the package's, and the limits hold.
func FuzzApply(f *testing.F) {
	one := indexedOf(3, 3, []color.RGBA{red, green}, func(x, y int) byte { return byte(x+y) % 3 })
	var jb bytes.Buffer
	jpeg.Encode(&jb, solid(8, 8, green), nil)
	seed := (&rec{}).add("size", 0, 40, 30).image(maskOver, 0, "image/png", 0, 0, pngOf(f, solid(40, 30, blue))).add("sync", 1).
		image(maskOver, 0, indexed.Mimetype, 5, 5, one).image(maskCopy, 0, indexed.Mimetype, 7, 7, one).
		image(maskOver, 0, "image/jpeg", 20, 10, jb.Bytes()).add("copy", 0, 0, 5, 40, 10, maskCopy, 0, 0, 0).
		add("size", -1, 4, 4).image(maskCopy, -1, "image/png", 0, 0, pngOf(f, solid(4, 4, red))).
		add("cursor", 1, 1, -1, 0, 0, 4, 4).add("mouse", 10, 10).add("size", 0, 70, 20).add("sync", 2)
	f.Add(seed.bytes())
	f.Add([]byte("4.size,1.0,2.20,2.20;3.img,1.1,2.14,1.0,22.image/x-keyway-indexed,1.0,1.0;4.blob,1.1,4.AQAB;3.end,1.1;4.sync,1.5;"))
	limits := Limits{MaxSide: 64, MaxPixels: 64 * 64 * 3, MaxLayers: 4, MaxStreams: 4, MaxStreamBytes: 64 << 10}
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := guacrec.NewReader(bytes.NewReader(b), guacrec.Limits{MaxInstruction: 1 << 16, MaxElements: 16})
		d := New(limits)
		for {
			in, err := rd.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, guacrec.ErrMalformed) && !errors.Is(err, guacrec.ErrTooLarge) && !errors.Is(err, guacrec.ErrTruncated) {
					t.Fatalf("reader: %v", err)
				}
				break
			}
			if err := d.Apply(in); err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%s: error of no kind: %v", in.Opcode, err)
			}
			if w, h := d.Size(); w > limits.MaxSide || h > limits.MaxSide || w < 0 || h < 0 {
				t.Fatalf("screen of %d×%d", w, h)
			}
			if d.pixels > limits.MaxPixels || d.buffered > limits.MaxStreamBytes || d.buffered < 0 ||
				len(d.layers) > limits.MaxLayers || len(d.streams) > limits.MaxStreams {
				t.Fatalf("over the limits: %d pixels, %d bytes buffered, %d layers, %d streams", d.pixels, d.buffered, len(d.layers), len(d.streams))
			}
		}
		d.Draw(image.NewRGBA(image.Rect(0, 0, 16, 16)))
	})
}

// FuzzDecodeIndexed decodes arbitrary indexed images: no panic, only the
// package's errors, and an image of the size the header gives.
func FuzzDecodeIndexed(f *testing.F) {
	f.Add(indexedOf(5, 3, []color.RGBA{red, green, blue}, func(x, y int) byte { return byte(x * y) }))
	f.Add([]byte{1, 0, 1, 0, 1, 1, 1})
	limits := Limits{MaxSide: 256, MaxPixels: 256 * 256}
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := DecodeIndexed(b, limits)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error of no kind: %v", err)
			}
			return
		}
		w, h := int(b[1])<<8|int(b[2]), int(b[3])<<8|int(b[4])
		if img.Rect != image.Rect(0, 0, w, h) {
			t.Fatalf("image %v, header says %d×%d", img.Rect, w, h)
		}
	})
}

// TestCounts keeps the table of counts bounded: opcodes it does
// not name are counted together.
func TestCounts(t *testing.T) {
	d := New(DefaultLimits)
	for i := range 100 {
		d.Apply(guac.New("x" + strconv.Itoa(i)))
	}
	d.Apply(guac.New("sync", "1"))
	if c := d.Counts(); len(c) != 2 || c["other"] != 100 || c["sync"] != 1 {
		t.Fatalf("counts %v", c)
	}
	d.ResetCounts()
	if d.Count("sync") != 0 {
		t.Fatal("counts not reset")
	}
}

// TestDecodeIndexedDepths decodes images packed at each depth, of widths
// that fill and that do not fill their last byte, twice with one decoder
// (whose buffers are reused), and checks every pixel.
func TestDecodeIndexedDepths(t *testing.T) {
	pal := []color.RGBA{red, green, blue, {10, 20, 30, 255}}
	var dec indexedDecoder
	for _, depth := range []int{1, 2, 4, 8} {
		for _, w := range []int{1, 7, 8, 13, 64} {
			colours := min(len(pal), 1<<depth)
			idx := func(x, y int) byte { return byte(x*3+y) % byte(colours) }
			h := 3
			b := []byte{1, byte(w >> 8), byte(w), byte(h >> 8), byte(h), byte(depth), byte(colours - 1)}
			for _, c := range pal[:colours] {
				b = append(b, c.R, c.G, c.B, c.A)
			}
			var rows bytes.Buffer
			zw := zlib.NewWriter(&rows)
			for y := range h {
				row := make([]byte, (w*depth+7)/8)
				for x := range w {
					row[x*depth/8] |= idx(x, y) << (8 - depth - x*depth%8)
				}
				zw.Write(row)
			}
			zw.Close()
			b = append(b, rows.Bytes()...)
			for range 2 {
				img, err := dec.decode(b, DefaultLimits)
				if err != nil {
					t.Fatalf("depth %d, width %d: %v", depth, w, err)
				}
				for y := range h {
					for x := range w {
						if got, want := img.RGBAAt(x, y), pal[idx(x, y)]; got != want {
							t.Fatalf("depth %d, width %d: pixel %d,%d is %v, want %v", depth, w, x, y, got, want)
						}
					}
				}
			}
		}
	}
}
