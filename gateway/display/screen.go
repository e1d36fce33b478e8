package display

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"image"
)

// Framebuffer is a remote screen as a desktop protocol decoded it.
type Framebuffer interface {
	// ReadRegion copies region r of the screen into dst at the same
	// coordinates; dst has the screen's bounds.
	ReadRegion(dst *image.RGBA, r image.Rectangle)
}

// A DirectFramebuffer's screen can be compared and encoded in place,
// which saves a copy of every changed region and a screen-sized buffer.
// Its pixels must not change while Update runs.
type DirectFramebuffer interface {
	Framebuffer
	// Pixels returns the screen.
	Pixels() *image.RGBA
}

// maxRectsPerFrame bounds the regions one frame is read in; more changes
// are merged.
const maxRectsPerFrame = 32

// Scroll detection: a region is searched for a vertical move only when it
// is at least this large, and a move is used when at least minScrollVotes
// rows, and a quarter of the changed ones, agree on it.
const (
	minScrollHeight = 32
	minScrollWidth  = 64
	minScrollVotes  = 8
)

// bandGap is how many unchanged rows may separate two changed bands before
// they are sent as separate images: one image costs an instruction and a
// decode in the browser, a few unchanged rows cost little.
const bandGap = 8

// Screen keeps a copy of what the browser shows and sends only what
// differs from it: rows that did not change are skipped, and content that
// moved up or down (a scrolling terminal or document) is moved in the
// browser with "copy", so only the newly exposed rows are sent as images.
// It is shared by every desktop protocol; use it from one goroutine.
type Screen struct {
	enc *Encoder
	// shown is the screen as the browser has it after what was sent.
	shown *image.RGBA
	// cur is the screen as the framebuffer has it, in the regions being
	// updated: scratch they are read into, or a DirectFramebuffer's own.
	cur, scratch *image.RGBA
	seed         maphash.Seed
	// Reused by scroll.
	curHash, after []uint64
	rowAt          map[uint64]int
	votes          map[int]int
	// shownRows caches the hash of each row of shown over the columns
	// scroll last searched it in: the search needs every shown row's hash
	// of a region, and each was hashed the frame before, as a row of cur.
	shownRows []rowHash
	// cursor is the pointer's last shape, for key frames.
	cursor *Cursor
}

// rowHash is the hash of one row of shown between columns x0 and x1; h 0
// means a row of one colour, which is never a candidate.
type rowHash struct {
	x0, x1 int
	h      uint64
	ok     bool
}

// NewScreen sends through enc.
func NewScreen(enc *Encoder) *Screen {
	return &Screen{enc: enc, seed: maphash.MakeSeed(), rowAt: map[uint64]int{}, votes: map[int]int{}}
}

// Resize sets the screen's size. What the browser shows is then unknown,
// so the next Update should cover the whole screen.
func (s *Screen) Resize(w, h int) error {
	r := image.Rect(0, 0, w, h)
	// Fully transparent pixels never match an opaque remote screen.
	s.shown = image.NewRGBA(r)
	s.shownRows = make([]rowHash, h)
	s.scratch = nil // made on first use: a DirectFramebuffer needs none
	return s.enc.Size(w, h)
}

// Copy moves the region at src, the size of dst, to dst, as the remote
// screen did (a VNC CopyRect, an RDP screen-to-screen blit).
func (s *Screen) Copy(src image.Point, dst image.Rectangle) error {
	b := s.shown.Bounds()
	sr := image.Rectangle{Min: src, Max: src.Add(dst.Size())}
	if !sr.In(b) || !dst.In(b) || dst.Empty() {
		return nil // a server's nonsense; the next Update repairs the screen
	}
	moveRows(s.shown, sr, dst.Min)
	clear(s.shownRows[dst.Min.Y:dst.Max.Y])
	return s.enc.Copy(src, dst)
}

// Update sends what changed in the regions rects of fb.
func (s *Screen) Update(fb Framebuffer, rects []image.Rectangle) error {
	direct := false
	if d, ok := fb.(DirectFramebuffer); ok {
		if img := d.Pixels(); img.Bounds() == s.shown.Bounds() {
			s.cur, direct = img, true
		}
	}
	if !direct {
		if s.scratch == nil {
			s.scratch = image.NewRGBA(s.shown.Bounds())
		}
		s.cur = s.scratch
	}
	defer func() { s.cur = nil }() // not kept: a direct screen is not ours
	for _, r := range Coalesce(rects, maxRectsPerFrame) {
		r = r.Intersect(s.shown.Bounds())
		if r.Empty() {
			continue
		}
		if !direct {
			fb.ReadRegion(s.cur, r)
		}
		searched, err := s.scroll(r)
		if err != nil {
			return err
		}
		if err := s.sendChanged(r); err != nil {
			return err
		}
		// Rows of r now show cur's, whose hashes the search took.
		for i := range r.Dy() {
			if searched {
				s.shownRows[r.Min.Y+i] = rowHash{x0: r.Min.X, x1: r.Max.X, h: s.after[i], ok: true}
			} else {
				s.shownRows[r.Min.Y+i] = rowHash{}
			}
		}
	}
	return nil
}

// row returns the pixels of row y of img between x0 and x1.
func row(img *image.RGBA, y, x0, x1 int) []byte {
	return img.Pix[img.PixOffset(x0, y):img.PixOffset(x1, y)]
}

// uniform reports a row of one colour: it matches too many others to
// tell where content moved. Every pixel equals the next exactly when the
// row equals itself shifted by one pixel, which bytes.Equal compares many
// bytes at a time.
func uniform(p []byte) bool {
	return len(p) <= 4 || bytes.Equal(p[4:], p[:len(p)-4])
}

// scroll looks for content in r that moved vertically since it was shown
// and, when it finds it, moves it in the browser with one copy. searched
// says it hashed every row of r: then after holds the hash each row of
// cur has, which is shown's once r is sent.
func (s *Screen) scroll(r image.Rectangle) (searched bool, err error) {
	if r.Dy() < minScrollHeight || r.Dx() < minScrollWidth {
		return false, nil
	}
	h := r.Dy()
	s.curHash = s.curHash[:0]
	s.after = s.after[:0]
	clear(s.rowAt)
	changed := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		c, o := row(s.cur, y, r.Min.X, r.Max.X), row(s.shown, y, r.Min.X, r.Max.X)
		oh := s.shownHash(y, r, o)
		if oh != 0 {
			s.rowAt[oh] = y
		}
		ch := oh
		candidate := uint64(0) // 0: not a candidate
		if !bytes.Equal(c, o) {
			changed++
			ch = 0
			if !uniform(c) {
				ch = maphash.Bytes(s.seed, c) | 1
			}
			candidate = ch
		}
		s.curHash = append(s.curHash, candidate)
		s.after = append(s.after, ch)
	}
	if changed < minScrollVotes {
		return true, nil
	}
	clear(s.votes)
	best, bestVotes := 0, 0
	for i, ch := range s.curHash {
		if ch == 0 {
			continue
		}
		y0, ok := s.rowAt[ch]
		if !ok {
			continue
		}
		dy := y0 - (r.Min.Y + i)
		if dy == 0 {
			continue
		}
		s.votes[dy]++
		if v := s.votes[dy]; v > bestVotes {
			best, bestVotes = dy, v
		}
	}
	if bestVotes < minScrollVotes || bestVotes*4 < changed {
		return true, nil
	}
	// Move the band that stays inside r: rows [a, b) come from [a+dy, b+dy).
	dy := best
	a, b := r.Min.Y, r.Max.Y-dy
	if dy < 0 {
		a, b = r.Min.Y-dy, r.Max.Y
	}
	if b-a <= 0 || abs(dy) >= h {
		return true, nil
	}
	dst := image.Rect(r.Min.X, a, r.Max.X, b)
	return true, s.Copy(image.Pt(r.Min.X, a+dy), dst)
}

// shownHash returns the hash of row y of shown over r's columns, o, from
// the cache when it holds that row over the same columns.
func (s *Screen) shownHash(y int, r image.Rectangle, o []byte) uint64 {
	if c := s.shownRows[y]; c.ok && c.x0 == r.Min.X && c.x1 == r.Max.X {
		return c.h
	}
	var h uint64
	if !uniform(o) {
		h = maphash.Bytes(s.seed, o) | 1
	}
	s.shownRows[y] = rowHash{x0: r.Min.X, x1: r.Max.X, h: h, ok: true}
	return h
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// moveRows copies the region src of img to dst, rows in an order that
// overlapping regions survive.
func moveRows(img *image.RGBA, src image.Rectangle, dst image.Point) {
	w, h := src.Dx(), src.Dy()
	cp := func(i int) {
		copy(row(img, dst.Y+i, dst.X, dst.X+w), row(img, src.Min.Y+i, src.Min.X, src.Min.X+w))
	}
	if dst.Y <= src.Min.Y {
		for i := range h {
			cp(i)
		}
		return
	}
	for i := h - 1; i >= 0; i-- {
		cp(i)
	}
}

// sendChanged sends the bands of rows in r that differ from what is
// shown, each narrowed to the columns that changed, and records them as
// shown.
func (s *Screen) sendChanged(r image.Rectangle) error {
	band := image.Rectangle{}
	flush := func() error {
		if band.Empty() {
			return nil
		}
		img := s.cur.SubImage(band).(*image.RGBA)
		if err := s.enc.Image(img, band.Min); err != nil {
			return err
		}
		for y := band.Min.Y; y < band.Max.Y; y++ {
			copy(row(s.shown, y, band.Min.X, band.Max.X), row(img, y, band.Min.X, band.Max.X))
		}
		band = image.Rectangle{}
		return nil
	}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		x0, x1, ok := changedSpan(row(s.cur, y, r.Min.X, r.Max.X), row(s.shown, y, r.Min.X, r.Max.X))
		if !ok {
			continue
		}
		line := image.Rect(r.Min.X+x0, y, r.Min.X+x1, y+1)
		if !band.Empty() && y-band.Max.Y > bandGap {
			if err := flush(); err != nil {
				return err
			}
		}
		band = band.Union(line)
	}
	return flush()
}

// changedSpan returns the pixel columns [x0, x1) where rows a and b
// differ, and whether they differ at all.
func changedSpan(a, b []byte) (int, int, bool) {
	if bytes.Equal(a, b) {
		return 0, 0, false
	}
	n := len(a) / 4
	x0 := 0
	for x0 < n && binary.LittleEndian.Uint32(a[4*x0:]) == binary.LittleEndian.Uint32(b[4*x0:]) {
		x0++
	}
	x1 := n
	for x1 > x0 && binary.LittleEndian.Uint32(a[4*x1-4:]) == binary.LittleEndian.Uint32(b[4*x1-4:]) {
		x1--
	}
	return x0, x1, true
}
