package display

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/recordings/guacrec"
	"github.com/keyway-dev/keyway/recordings/guacrender"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// play applies a recording, from its start or from a key frame, to an
// empty display, as a player does, and returns the final screen.
func play(t *testing.T, rec []byte, kf guacrec.KeyFrame) *image.RGBA {
	t.Helper()
	s, err := guacrec.Stream(bytes.NewReader(rec), int64(len(rec)), kf)
	if err != nil {
		t.Fatalf("stream from %+v: %v", kf, err)
	}
	b := guacrender.New(guacrender.DefaultLimits)
	rd := guacrec.NewReader(s, guacrec.RecordingLimits)
	first := true
	for {
		in, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return b.Screen()
		}
		if err != nil {
			t.Fatalf("play from %+v: %v", kf, err)
		}
		if first && kf.Offset > 0 && in.Opcode != "size" {
			t.Fatalf("key frame at %d starts with %s, not size", kf.Offset, in.Opcode)
		}
		first = false
		if err := b.Apply(in); err != nil {
			t.Fatalf("play from %+v: %v", kf, err)
		}
	}
}

// sameScreen reports the first pixel where a and b differ.
func sameScreen(a, b *image.RGBA) error {
	if a.Bounds().Size() != b.Bounds().Size() {
		return fmt.Errorf("size %v, want %v", a.Bounds().Size(), b.Bounds().Size())
	}
	for y := range a.Bounds().Dy() {
		for x := range a.Bounds().Dx() {
			if p, q := a.RGBAAt(x, y), b.RGBAAt(x, y); p != q {
				return fmt.Errorf("pixel %d,%d is %v, want %v", x, y, p, q)
			}
		}
	}
	return nil
}

// session drives a desktop session through Serve with a recording: a
// browser that draws what it gets and acknowledges every frame, and a
// screen the test paints, one frame at a time.
type session struct {
	t      *testing.T
	src    *pushSource
	live   *guacrender.Display
	syncs  chan struct{}
	clock  atomic.Int64 // seconds since start, for key frames
	served chan error
	cancel context.CancelFunc
}

func startSession(t *testing.T, rec Recorder, w, h int, interval time.Duration) *session {
	s := &session{t: t, src: newPushSource(w, h), live: guacrender.New(guacrender.DefaultLimits), syncs: make(chan struct{}, 1), served: make(chan error, 1)}
	draw.Draw(s.src.fb, s.src.fb.Bounds(), image.NewUniform(color.RGBA{0x33, 0x66, 0x99, 255}), image.Point{}, draw.Src)
	base := time.Unix(1714564800, 0)
	now := func() time.Time { return base.Add(time.Duration(s.clock.Load()) * time.Second) }
	gw, browser := net.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	s.cancel = cancel
	t.Cleanup(cancel)
	r := NewRecording(rec, interval, true, now)
	go func() {
		s.served <- Serve(ctx, gw, s.src, &recordingRemote{}, wire.Desktop{IndexedImages: true}, func(error) string { return "ended" }, r)
	}()
	go func() {
		rd := guac.NewReader(browser, guac.Limits{MaxElement: 1 << 22, MaxElements: 16})
		for {
			in, err := rd.Read()
			if err != nil {
				close(s.syncs)
				return
			}
			if err := s.live.Apply(in); err != nil {
				t.Error(err)
			}
			if in.Opcode == "sync" {
				s.syncs <- struct{}{}
				browser.Write(in.AppendTo(nil))
			}
		}
	}()
	s.frame()
	return s
}

// frame waits for the browser to have the next frame.
func (s *session) frame() {
	s.t.Helper()
	select {
	case _, ok := <-s.syncs:
		if !ok {
			s.t.Fatal("the session ended")
		}
	case <-time.After(10 * time.Second):
		s.t.Fatal("no frame")
	}
}

// change makes one change a second and waits for the browser to have it.
func (s *session) change(f func(fb *image.RGBA) Change) {
	s.t.Helper()
	s.clock.Add(1)
	s.src.mu.Lock()
	ch := f(s.src.fb)
	s.src.pending.Rects = append(s.src.pending.Rects, ch.Rects...)
	if ch.Cursor != nil {
		s.src.pending.Cursor = ch.Cursor
	}
	s.src.mu.Unlock()
	select {
	case s.src.changed <- struct{}{}:
	default:
	}
	s.frame()
}

func (s *session) end() {
	s.t.Helper()
	s.cancel()
	if err := <-s.served; err != nil {
		s.t.Fatal(err)
	}
}

// textLine paints a line of "text": glyph-like blocks in two colours,
// different for each n.
func textLine(fb *image.RGBA, y, n int) image.Rectangle {
	r := image.Rect(0, y, fb.Bounds().Dx(), y+10)
	draw.Draw(fb, r, image.NewUniform(color.RGBA{0, 0, 0, 255}), image.Point{}, draw.Src)
	for x := 4; x+6 < r.Max.X; x += 8 {
		if (x/8*7+n*13)%5 != 0 {
			draw.Draw(fb, image.Rect(x, y+2, x+5+(x+n)%2, y+8-(x/8+n)%3), image.NewUniform(color.RGBA{0xe0, 0xe0, 0xe0, 255}), image.Point{}, draw.Src)
		}
	}
	return r
}

// desktopSession is the scripted session of the golden test: text typed
// line by line, a terminal scrolling (sent as copy), a many-coloured
// picture (PNG), a pointer shape and a window moving.
func desktopSession(t *testing.T, rec Recorder) *image.RGBA {
	s := startSession(t, rec, 320, 200, 3*time.Second)
	term := image.Rect(0, 0, 320, 160)
	for i := range 24 {
		s.change(func(fb *image.RGBA) Change {
			if y := i * 10; y < term.Max.Y {
				return Change{Rects: []image.Rectangle{textLine(fb, y, i)}}
			}
			// Scroll up a line, and write the new one at the bottom.
			moveRows(fb, image.Rect(0, 10, 320, term.Max.Y), image.Pt(0, 0))
			textLine(fb, term.Max.Y-10, i)
			return Change{Rects: []image.Rectangle{term}}
		})
	}
	s.change(func(fb *image.RGBA) Change {
		r := image.Rect(200, 165, 300, 195)
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				fb.SetRGBA(x, y, color.RGBA{uint8(x * 7), uint8(y * 5), uint8(x ^ y), 255})
			}
		}
		cur := image.NewRGBA(image.Rect(0, 0, 8, 8))
		draw.Draw(cur, image.Rect(0, 0, 4, 8), image.NewUniform(color.RGBA{255, 255, 255, 255}), image.Point{}, draw.Src)
		return Change{Rects: []image.Rectangle{r}, Cursor: &Cursor{Image: cur, Hotspot: image.Pt(1, 1)}}
	})
	for i := range 6 {
		s.change(func(fb *image.RGBA) Change {
			r := image.Rect(10+i*20, 165, 90+i*20, 195)
			old := image.Rect(10+(i-1)*20, 165, 90+(i-1)*20, 195)
			draw.Draw(fb, old, image.NewUniform(color.RGBA{0x33, 0x66, 0x99, 255}), image.Point{}, draw.Src)
			draw.Draw(fb, r, image.NewUniform(color.RGBA{0xcc, 0x33, 0x33, 255}), image.Point{}, draw.Src)
			return Change{Rects: []image.Rectangle{r.Union(old)}}
		})
	}
	if err := sameScreen(s.live.Screen(), s.src.fb); err != nil {
		t.Fatalf("the browser's screen differs from the remote one: %v", err)
	}
	s.end()
	return s.src.fb
}

// TestRecordingPlaysBack records a scripted desktop session and plays the
// recording back, from its start and from each key frame, onto an empty
// display: each time the screen must end as the gateway had it. The
// golden recording in testdata is played too, so that a change to the
// encoder that older recordings would not survive is noticed.
func TestRecordingPlaysBack(t *testing.T) {
	var recBuf, idxBuf bytes.Buffer
	w, err := guacrec.NewWriter(&recBuf, &idxBuf)
	if err != nil {
		t.Fatal(err)
	}
	final := desktopSession(t, w)
	ix, err := guacrec.ReadIndex(&idxBuf)
	if err != nil {
		t.Fatal(err)
	}
	// Ten seconds of changes at one a second, a key frame due every three
	// once the session sent more than the last key frame's size.
	if len(ix) < 3 {
		t.Fatalf("%d key frames in %d bytes: %+v", len(ix), recBuf.Len(), ix)
	}
	check := func(name string, rec []byte, ix guacrec.Index, want *image.RGBA) {
		t.Helper()
		for _, kf := range append(guacrec.Index{{}}, ix...) {
			if err := sameScreen(play(t, rec, kf), want); err != nil {
				t.Errorf("%s played from %+v: %v", name, kf, err)
			}
		}
	}
	check("recording", recBuf.Bytes(), ix, final)

	var png1 bytes.Buffer
	if err := png.Encode(&png1, final); err != nil {
		t.Fatal(err)
	}
	if *update {
		var idx bytes.Buffer
		guacrec.WriteIndex(&idx, ix)
		for name, b := range map[string][]byte{"desktop.guac": recBuf.Bytes(), "desktop.idx": idx.Bytes(), "desktop-final.png": png1.Bytes()} {
			if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		return b
	}
	img, err := png.Decode(bytes.NewReader(read("desktop-final.png")))
	if err != nil {
		t.Fatal(err)
	}
	want := image.NewRGBA(img.Bounds())
	draw.Draw(want, want.Bounds(), img, image.Point{}, draw.Src)
	if err := sameScreen(final, want); err != nil {
		t.Fatalf("the scripted session's screen changed from the golden one: %v", err)
	}
	gix, err := guacrec.ReadIndex(bytes.NewReader(read("desktop.idx")))
	if err != nil {
		t.Fatal(err)
	}
	check("golden recording", read("desktop.guac"), gix, want)
}

// failingRecorder fails after n bytes.
type failingRecorder struct{ n int }

func (f *failingRecorder) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}
func (f *failingRecorder) KeyFrame() error { return nil }

// TestRequiredRecordingFails checks that a recording that fails ends the
// session with a reason the browser shows.
func TestRequiredRecordingFails(t *testing.T) {
	s := startSession(t, &failingRecorder{n: 8 << 10}, 320, 200, time.Second)
	for i := 0; ; i++ {
		s.clock.Add(1)
		s.src.paint(image.Rect(0, 0, 320, 200), color.RGBA{uint8(i), uint8(i * 3), 0, 255})
		select {
		case _, ok := <-s.syncs:
			if ok {
				continue
			}
		case err := <-s.served:
			if !errors.Is(err, ErrRecording) {
				t.Fatalf("Serve: %v, want a recording error", err)
			}
			return
		case <-time.After(10 * time.Second):
			t.Fatal("the session went on")
		}
		if err := <-s.served; !errors.Is(err, ErrRecording) {
			t.Fatalf("Serve: %v, want a recording error", err)
		}
		return
	}
}
