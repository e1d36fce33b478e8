package guacseek

import (
	"bytes"
	"encoding/base64"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"strconv"
	"testing"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/recordings/guacrec"
	"github.com/keyway-dev/keyway/recordings/guacrender"
	"github.com/keyway-dev/keyway/recordings/indexed"
)

// golden is a desktop session recorded by the gateway's display pipeline
// (gateway/display's TestRecordingPlaysBack writes it), with its index.
func golden(t *testing.T) ([]byte, guacrec.Index) {
	t.Helper()
	rec, err := os.ReadFile("../../gateway/display/testdata/desktop.guac")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("../../gateway/display/testdata/desktop.idx")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ix, err := guacrec.ReadIndex(f)
	if err != nil {
		t.Fatal(err)
	}
	return rec, ix
}

// frames plays rec as the player does and returns the screen after each
// frame with the frame's time, in order.
func frames(t *testing.T, rec io.Reader) (times []int64, screens []*image.RGBA) {
	t.Helper()
	d := guacrender.New(guacrender.DefaultLimits)
	rd := guacrec.NewReader(rec, guacrec.RecordingLimits)
	for {
		in, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return times, screens
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Apply(in); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if in.Opcode == "sync" {
			ts, _ := strconv.ParseInt(in.Args[0], 10, 64)
			times = append(times, ts)
			screens = append(screens, d.Screen())
		}
	}
}

// TestFromShowsTheScreenAtTheTime starts the golden recording at every
// frame's time and between some, from its start and from the key frame
// before it, and checks that the first frame shows what a player replaying
// the whole recording shows then, and that the rest is the recording's own
// frames.
func TestFromShowsTheScreenAtTheTime(t *testing.T) {
	t.Parallel()
	rec, ix := golden(t)
	times, screens := frames(t, bytes.NewReader(rec))
	if len(ix) < 2 || len(times) < 10 {
		t.Fatalf("the golden recording has %d key frames and %d frames; it needs more", len(ix), len(times))
	}
	starts := append(guacrec.Index{{Offset: 0, Timestamp: times[0]}}, ix...)
	synthesized := 0
	for i := range times {
		ats := []int64{times[i]}
		if i%3 == 0 {
			// Between frames too (a third of them: the test runs under -race).
			ats = append(ats, times[i]+1)
		}
		for _, at := range ats {
			// What the player shows at "at": the last frame at or before it.
			want := 0
			for j := range times {
				if times[j] <= at {
					want = j
				}
			}
			// From the start, and from the key frame a player would use.
			for _, kf := range []guacrec.KeyFrame{starts[0], starts.At(at)} {
				if kf.Timestamp > at {
					continue
				}
				src := bytes.NewReader(rec[kf.Offset:])
				r, n, err := From(src, src.Size(), at)
				if err != nil {
					t.Fatalf("From(key frame at %d, %d): %v", kf.Offset, at, err)
				}
				out, err := io.ReadAll(r)
				if err != nil || int64(len(out)) != n {
					t.Fatalf("From(key frame at %d, %d): read %d bytes of %d: %v", kf.Offset, at, len(out), n, err)
				}
				got, screensOut := frames(t, bytes.NewReader(out))
				if !bytes.Equal(screensOut[0].Pix, screens[want].Pix) && !sameAfterFirstShown(got, at, screensOut, screens[want]) {
					t.Fatalf("From(key frame at %d, %d): the first frame differs from the screen at %d", kf.Offset, at, times[want])
				}
				// The frames after at are the recording's own.
				tail := rec[len(rec)-tailLen(t, rec, at):]
				if !bytes.HasSuffix(out, tail) {
					t.Fatalf("From(key frame at %d, %d): the frames after it are not the recording's", kf.Offset, at)
				}
				if !bytes.Equal(screensOut[len(screensOut)-1].Pix, screens[len(screens)-1].Pix) {
					t.Fatalf("From(key frame at %d, %d): the last screen differs", kf.Offset, at)
				}
				if len(out) != len(rec)-int(kf.Offset) {
					synthesized++
				}
			}
		}
	}
	if synthesized == 0 {
		t.Fatal("no start drew its first frame; the test checks nothing")
	}
}

// sameAfterFirstShown reports whether the first frame at or after at in
// got (a key frame and the frame it follows share a time) shows want.
func sameAfterFirstShown(times []int64, at int64, screens []*image.RGBA, want *image.RGBA) bool {
	for i := range times {
		if times[i] > at {
			break
		}
		if bytes.Equal(screens[i].Pix, want.Pix) {
			return true
		}
	}
	return false
}

// tailLen returns how many bytes at the end of rec are its frames after at.
func tailLen(t *testing.T, rec []byte, at int64) int {
	t.Helper()
	rd := guacrec.NewReader(bytes.NewReader(rec), guacrec.RecordingLimits)
	var frameStart int64
	for {
		in, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		if in.Opcode == "sync" {
			ts, _ := strconv.ParseInt(in.Args[0], 10, 64)
			if ts > at {
				return len(rec) - int(frameStart)
			}
			frameStart = rd.Offset()
		}
	}
}

// TestFromKeepsThePointer: a seek lands after the pointer's shape was set,
// and the frame drawn sets it again.
func TestFromKeepsThePointer(t *testing.T) {
	var rec []byte
	add := func(ins ...guac.Instruction) {
		for _, in := range ins {
			rec = in.AppendTo(rec)
		}
	}
	red, green := pngB64(t, color.RGBA{255, 0, 0, 255}), pngB64(t, color.RGBA{0, 255, 0, 255})
	add(guac.New("size", "0", "4", "4"), guac.New("img", "1", "14", "0", "image/png", "0", "0"), guac.New("blob", "1", red), guac.New("end", "1"),
		guac.New("sync", "1000"))
	add(guac.New("size", "-1", "1", "1"), guac.New("img", "2", "12", "-1", "image/png", "0", "0"), guac.New("blob", "2", green), guac.New("end", "2"),
		guac.New("cursor", "0", "0", "-1", "0", "0", "1", "1"), guac.New("sync", "2000"))
	add(guac.New("img", "3", "14", "0", "image/png", "1", "1"), guac.New("blob", "3", green), guac.New("end", "3"), guac.New("sync", "3000"))
	add(guac.New("img", "4", "14", "0", "image/png", "2", "2"), guac.New("blob", "4", green), guac.New("end", "4"), guac.New("sync", "4000"))

	r, _, err := From(bytes.NewReader(rec), int64(len(rec)), 3500)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(r)
	first := out[:bytes.Index(out, []byte("4.sync,4.3500;"))]
	if !bytes.Contains(first, []byte("6.cursor,1.0,1.0,2.-1,")) || !bytes.Contains(first, []byte("4.size,2.-1,1.1,1.1;")) {
		t.Fatalf("the first frame does not set the pointer: %s", first)
	}
	times, screens := frames(t, bytes.NewReader(out))
	if len(times) != 2 || times[0] != 3500 || times[1] != 4000 {
		t.Fatalf("frame times %v, want [3500 4000]", times)
	}
	d := guacrender.New(guacrender.DefaultLimits)
	for _, in := range mustRead(t, rec) {
		d.Apply(in)
	}
	if !bytes.Equal(screens[1].Pix, d.Screen().Pix) {
		t.Fatal("the last screen differs from the recording's")
	}
}

// pngB64 is a 1×1 PNG of c, in base64.
func pngB64(t *testing.T, c color.RGBA) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 1, 1))
	img.SetRGBA(0, 0, c)
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

func mustRead(t *testing.T, rec []byte) []guac.Instruction {
	t.Helper()
	rd := guacrec.NewReader(bytes.NewReader(rec), guacrec.RecordingLimits)
	var out []guac.Instruction
	for {
		in, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, in)
	}
}

// TestFromRefusesMalformed: a recording that is not one is an error, not
// a frame of garbage.
func TestFromRefusesMalformed(t *testing.T) {
	for _, rec := range []string{"4.sync,3.abc;", "x.size;", "4.size,1.0,1.4,1.4;4.sync,1.1;4.sync,1.x;"} {
		if _, _, err := From(bytes.NewReader([]byte(rec)), int64(len(rec)), 5); err == nil {
			t.Errorf("From(%q) = nil error", rec)
		}
	}
}

// FuzzFrom: whatever a gateway uploaded, From returns an error or a
// stream of the length it says, without panicking.
func FuzzFrom(f *testing.F) {
	rec, _ := os.ReadFile("../../gateway/display/testdata/desktop.guac")
	f.Add(rec, int64(1795581453700))
	f.Add([]byte("4.size,1.0,1.4,1.4;4.sync,1.1;4.size,2.-1,1.1,1.1;6.cursor,1.0,1.0,2.-1,1.0,1.0,1.1,1.1;4.sync,1.2;4.sync,1.3;"), int64(2))
	f.Add([]byte("4.size,1.0,5.99999,5.99999;4.sync,1.1;4.sync,1.2;"), int64(5))
	f.Fuzz(func(t *testing.T, rec []byte, at int64) {
		r, n, err := From(bytes.NewReader(rec), int64(len(rec)), at)
		if err != nil {
			return
		}
		out, err := io.ReadAll(r)
		if err != nil || int64(len(out)) != n {
			t.Fatalf("read %d bytes of %d: %v", len(out), n, err)
		}
	})
}

// TestWholeScreenColours: a screen of up to 256 colours and one of more
// both come back exact.
func TestWholeScreenColours(t *testing.T) {
	for _, colours := range []int{1, 2, 256, 257, 5000} {
		screen := image.NewRGBA(image.Rect(0, 0, 100, 70))
		for i := range 100 * 70 {
			c := i % colours
			screen.SetRGBA(i%100, i/100, color.RGBA{uint8(c), uint8(c >> 8), 7, 255})
		}
		var b bytes.Buffer
		if err := wholeScreen(&b, screen); err != nil {
			t.Fatal(err)
		}
		want := indexed.Mimetype // a band of at most 256 colours
		if colours > 256 {
			want = "image/png"
		}
		d := guacrender.New(guacrender.DefaultLimits)
		for _, in := range mustRead(t, b.Bytes()) {
			if in.Opcode == "img" && in.Args[3] != want {
				t.Errorf("%d colours: an image of type %s, want %s", colours, in.Args[3], want)
			}
			if err := d.Apply(in); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(d.Screen().Pix, screen.Pix) {
			t.Errorf("%d colours: the screen drawn differs", colours)
		}
	}
}
