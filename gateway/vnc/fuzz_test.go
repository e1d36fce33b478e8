package vnc

import (
	"testing"
)

// FuzzReadMessage feeds arbitrary server messages to a client with a small
// screen: nothing may panic or allocate beyond the limits.
func FuzzReadMessage(f *testing.F) {
	// A raw 1x1 rectangle, a CopyRect, a resize, a bell, cut text.
	f.Add([]byte{0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 1, 2, 3, 0})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 2, 0, 0, 0, 1, 0, 1, 0, 1})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 8, 0, 8, 0xff, 0xff, 0xff, 0x21})
	f.Add([]byte{2, 3, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c'})
	// A 2x1 cursor with hotspot (1,0): two pixels, one mask byte.
	f.Add([]byte{0, 0, 0, 1, 0, 1, 0, 0, 0, 2, 0, 1, 0xff, 0xff, 0xff, 0x11, 1, 2, 3, 0, 4, 5, 6, 0, 0x80})
	// RRE with one subrectangle; a Hextile tile with a subrectangle.
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0, 2, 0, 0, 0, 1, 1, 2, 3, 0, 4, 5, 6, 0, 0, 1, 0, 1, 0, 2, 0, 2})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0, 5, 14, 1, 2, 3, 0, 4, 5, 6, 0, 1, 0x12, 0x10})
	// Tight: a fill, a two-colour palette, a compressed copy, a JPEG header.
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 2, 0, 0, 0, 7, 0x80, 1, 2, 3})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 2, 0, 0, 0, 7, 0x40, 1, 1, 1, 2, 3, 4, 5, 6, 0x90, 0x60})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 2, 0, 0, 0, 7, 0x00, 5, 0x78, 0x9c, 0x62, 0x60, 0x00})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 2, 0, 0, 0, 7, 0x90, 4, 0xff, 0xd8, 0xff, 0xd9})
	// Extended clipboard: capabilities, notify, provide (bad zlib).
	f.Add([]byte{3, 0, 0, 0, 0xff, 0xff, 0xff, 0xf8, 0x1f, 0, 0, 1, 0, 0, 0, 64})
	f.Add([]byte{3, 0, 0, 0, 0xff, 0xff, 0xff, 0xfc, 0x08, 0, 0, 1})
	f.Add([]byte{3, 0, 0, 0, 0xff, 0xff, 0xff, 0xf8, 0x10, 0, 0, 1, 0x78, 0x9c, 0x03, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		// The message length picks the colour depth, so every decoder
		// meets each pixel size.
		c := testClient(t, []int{24, 16, 8}[len(b)%3], b, 16, 16)
		for range 64 {
			u, err := c.ReadMessage()
			if err != nil {
				return
			}
			bounds := c.fb.Bounds()
			for _, r := range u.Rects {
				if !r.In(bounds) && !u.Resized {
					t.Fatalf("changed rectangle %v outside %v", r, bounds)
				}
			}
		}
	})
}
