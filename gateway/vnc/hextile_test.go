package vnc

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"testing"
)

// update wraps one rectangle of encoding enc at (0,0), w×h, with data.
func update(enc int32, w, h int, data []byte) []byte {
	msg := []byte{0, 0, 0, 1, 0, 0, 0, 0}
	msg = binary.BigEndian.AppendUint16(msg, uint16(w))
	msg = binary.BigEndian.AppendUint16(msg, uint16(h))
	msg = binary.BigEndian.AppendUint32(msg, uint32(enc))
	return append(msg, data...)
}

// px is a full pixel: blue, green, red, unused.
func px(r, g, b byte) []byte { return []byte{b, g, r, 0} }

func TestRREAndHextile(t *testing.T) {
	rgba := func(p []byte) color.RGBA { return color.RGBA{p[2], p[1], p[0], 255} }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	red, green, blue := px(255, 0, 0), px(0, 255, 0), px(0, 0, 255)
	u16 := func(v ...int) []byte {
		var b []byte
		for _, x := range v {
			b = binary.BigEndian.AppendUint16(b, uint16(x))
		}
		return b
	}
	for _, tc := range []struct {
		name string
		msg  []byte
		// want maps points to colours; ok false means the update must be refused.
		want map[image.Point][]byte
		ok   bool
	}{
		{"RRE", update(encRRE, 4, 4, cat([]byte{0, 0, 0, 1}, red, green, u16(1, 1, 2, 2))),
			map[image.Point][]byte{{0, 0}: red, {1, 1}: green, {2, 2}: green, {3, 3}: red}, true},
		{"RRE subrectangle outside", update(encRRE, 4, 4, cat([]byte{0, 0, 0, 1}, red, green, u16(3, 3, 2, 2))), nil, false},
		{"RRE empty subrectangle far away", update(encRRE, 4, 4, cat([]byte{0, 0, 0, 1}, red, green, u16(60000, 60000, 0, 9))),
			map[image.Point][]byte{{0, 0}: red}, true},
		// One 4×4 tile: background blue, foreground red, one 2×1
		// subrectangle at (1,2).
		{"Hextile subrects", update(encHextile, 4, 4, cat([]byte{hexBackground | hexForeground | hexAnySubrect}, blue, red, []byte{1, 1<<4 | 2, 1 << 4})),
			map[image.Point][]byte{{0, 0}: blue, {1, 2}: red, {2, 2}: red, {3, 2}: blue}, true},
		// A 20-wide rectangle is two tiles; the second reuses the first's
		// background and has one coloured subrectangle.
		{"Hextile carries background", update(encHextile, 20, 2, cat([]byte{hexBackground}, green, []byte{hexAnySubrect | hexColoured, 1}, red, []byte{0, 0})),
			map[image.Point][]byte{{0, 0}: green, {15, 1}: green, {16, 0}: red, {17, 0}: green}, true},
		{"Hextile raw tile", update(encHextile, 2, 1, cat([]byte{hexRaw}, red, blue)),
			map[image.Point][]byte{{0, 0}: red, {1, 0}: blue}, true},
		{"Hextile subrectangle outside the tile", update(encHextile, 4, 4, cat([]byte{hexBackground | hexAnySubrect}, blue, []byte{1, 3<<4 | 3, 1<<4 | 1})), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testClient(t, 24, tc.msg, 32, 32)
			_, err := c.ReadMessage()
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			for p, want := range tc.want {
				if got := c.fb.RGBAAt(p.X, p.Y); got != rgba(want) {
					t.Errorf("pixel %v: %v, want %v", p, got, rgba(want))
				}
			}
		})
	}
}
