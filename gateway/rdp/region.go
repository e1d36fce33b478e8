package rdp

import "image"

// ReadRegion copies the desktop region r into dst at the same
// coordinates, without allocating: the display pipeline reads changed
// regions this way at every frame.
func (s *Session) ReadRegion(dst *image.RGBA, r image.Rectangle) {
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	r = r.Intersect(s.fb.Bounds()).Intersect(dst.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		copy(dst.Pix[dst.PixOffset(r.Min.X, y):dst.PixOffset(r.Max.X, y)], s.fb.Pix[s.fb.PixOffset(r.Min.X, y):s.fb.PixOffset(r.Max.X, y)])
	}
}
