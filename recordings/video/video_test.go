package video

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/recordings/guacrec"
	"github.com/keyway-dev/keyway/recordings/guacrender"
)

// need returns the path of a program the tests need. A missing one fails
// the test: ffmpeg is in DEBS_TEST, and a skipped export test would hide
// a broken export.
func need(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed for this test (make deps-test installs the ffmpeg package): %v", name, err)
	}
	return p
}

// recording builds a desktop recording as the gateway writes one.
type recording struct {
	b      []byte
	stream int
}

func (r *recording) add(op string, args ...any) {
	s := make([]string, len(args))
	for i, a := range args {
		s[i] = fmt.Sprint(a)
	}
	r.b = guac.New(op, s...).AppendTo(r.b)
}

// rect draws a w×h rectangle of colour c at x, y, as a PNG drawn over.
func (r *recording) rect(x, y, w, h int, c color.RGBA) {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(c), image.Point{}, draw.Src)
	var b bytes.Buffer
	png.Encode(&b, img)
	r.stream++
	r.add("img", r.stream, 14, 0, "image/png", x, y)
	r.add("blob", r.stream, base64.StdEncoding.EncodeToString(b.Bytes()))
	r.add("end", r.stream)
}

const start = 1714564800000 // the recording's first sync, ms

var (
	blue  = color.RGBA{0x33, 0x66, 0x99, 0xff}
	red   = color.RGBA{0xcc, 0x33, 0x33, 0xff}
	green = color.RGBA{0x33, 0x99, 0x44, 0xff}
	white = color.RGBA{0xf0, 0xf0, 0xf0, 0xff}
)

// sample is a 3.2 s session: a 96×64 blue screen, a red block from 1 s,
// the screen growing to 128×64 with a green block at 2 s (a still screen
// in between: no frames), a white block at 3.2 s.
func sample() []byte {
	var r recording
	r.add("size", 0, 96, 64)
	r.rect(0, 0, 96, 64, blue)
	r.add("sync", start)
	r.rect(16, 16, 32, 32, red)
	r.add("sync", start+1000)
	r.add("size", 0, 128, 64)
	r.rect(96, 0, 32, 64, green)
	r.add("sync", start+2000)
	r.rect(0, 48, 16, 16, white)
	r.add("sync", start+3200)
	return r.b
}

// rendered is what the renderer shows at ms after the first frame, on a
// w×h black frame.
func rendered(t *testing.T, rec []byte, ms int64, w, h int) *image.RGBA {
	t.Helper()
	d := guacrender.New(guacrender.DefaultLimits)
	rd := guacrec.NewReader(bytes.NewReader(rec), guacrec.RecordingLimits)
	// A frame's instructions come before its sync: they are applied once
	// the sync says the frame is due.
	var frame []guac.Instruction
	for {
		in, err := rd.Next()
		if err != nil {
			break
		}
		if in.Opcode != "sync" {
			frame = append(frame, in)
			continue
		}
		if ts, _ := strconv.ParseInt(in.Args[0], 10, 64); ts-start > ms {
			break
		}
		for _, in := range frame {
			if err := d.Apply(in); err != nil {
				t.Fatal(err)
			}
		}
		frame = frame[:0]
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	d.Draw(img)
	return img
}

type probe struct {
	Streams []struct {
		CodecName string `json:"codec_name"`
		Width     int    `json:"width"`
		Height    int    `json:"height"`
		PixFmt    string `json:"pix_fmt"`
		NbFrames  string `json:"nb_read_frames"`
	} `json:"streams"`
	Format struct {
		Duration string `json:"duration"`
		Format   string `json:"format_name"`
	} `json:"format"`
}

func ffprobe(t *testing.T, file string) probe {
	t.Helper()
	out, err := exec.Command(need(t, "ffprobe"), "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", file).Output()
	if err != nil {
		t.Fatalf("ffprobe does not accept the video: %v", err)
	}
	var p probe
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Streams) != 1 {
		t.Fatalf("ffprobe: %s", out)
	}
	return p
}

// frameAt decodes the video's frame at second s as RGBA.
func frameAt(t *testing.T, file string, s float64, w, h int) *image.RGBA {
	t.Helper()
	out, err := exec.Command(need(t, "ffmpeg"), "-v", "error", "-ss", strconv.FormatFloat(s, 'f', 3, 64), "-i", file,
		"-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgba", "-").Output()
	if err != nil {
		t.Fatalf("decode the frame at %.2f s: %v", s, err)
	}
	if len(out) != 4*w*h {
		t.Fatalf("frame at %.2f s: %d bytes, want %d", s, len(out), 4*w*h)
	}
	return &image.RGBA{Pix: out, Stride: 4 * w, Rect: image.Rect(0, 0, w, h)}
}

// TestExport runs the real ffmpeg on a short recording and checks the
// video with ffprobe and against the renderer's frames.
func TestExport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec := sample()
	dst := filepath.Join(dir, "out.mp4")
	var seen []float64
	e := New(Config{FFmpeg: need(t, "ffmpeg")})
	if err := e.Export(context.Background(), Source{Data: bytes.NewReader(rec), Size: int64(len(rec))}, dst, func(p float64) { seen = append(seen, p) }); err != nil {
		t.Fatal(err)
	}
	p := ffprobe(t, dst)
	s := p.Streams[0]
	// The largest screen (128×64) sets the size; 3.2 s at 10 fps and the
	// last frame: 33 frames.
	if s.CodecName != "h264" || s.Width != 128 || s.Height != 64 || s.PixFmt != "yuv420p" || s.NbFrames != "33" ||
		!strings.Contains(p.Format.Format, "mp4") {
		t.Fatalf("video %+v, format %+v", s, p.Format)
	}
	if d, _ := strconv.ParseFloat(p.Format.Duration, 64); d < 3.2 || d > 3.4 {
		t.Errorf("duration %s s, want 3.3", p.Format.Duration)
	}
	for _, at := range []float64{0.5, 1.5, 2.5, 3.2} {
		got := frameAt(t, dst, at, 128, 64)
		want := rendered(t, rec, int64(at*1000), 128, 64)
		mean, worst := diff(got, want)
		t.Logf("frame at %.2f s: mean difference %.2f, largest %d", at, mean, worst)
		if mean > 1.5 || worst > 32 {
			t.Errorf("frame at %.2f s: mean difference %.2f, largest %d", at, mean, worst)
		}
	}
	// The padding of the smaller screen is black until it grows.
	if c := frameAt(t, dst, 0.5, 128, 64).RGBAAt(110, 30); c.R > 8 || c.G > 8 || c.B > 8 {
		t.Errorf("the margin of the first screen is %v, not black", c)
	}
	if len(seen) == 0 || seen[len(seen)-1] != 1 {
		t.Errorf("progress %v does not end at 1", seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("progress went back: %v", seen)
		}
	}
	assertOnly(t, dir, "out.mp4")
}

// TestExportToSessionEnd checks that the video runs to the session's end
// when the screen was still at its end, as the player's timeline does.
func TestExportToSessionEnd(t *testing.T) {
	t.Parallel()
	rec := sample()
	dst := filepath.Join(t.TempDir(), "out.mp4")
	e := New(Config{FFmpeg: need(t, "ffmpeg")})
	src := Source{Data: bytes.NewReader(rec), Size: int64(len(rec)), End: time.UnixMilli(start + 5000)}
	if err := e.Export(context.Background(), src, dst, nil); err != nil {
		t.Fatal(err)
	}
	p := ffprobe(t, dst)
	if p.Streams[0].NbFrames != "51" {
		t.Fatalf("%s frames, want 51 (5 s at 10 fps and the last)", p.Streams[0].NbFrames)
	}
	got := frameAt(t, dst, 4.5, 128, 64)
	if mean, _ := diff(got, rendered(t, rec, 4500, 128, 64)); mean > 1.5 {
		t.Errorf("frame at 4.5 s: mean difference %.2f from the last screen", mean)
	}
}

// diff compares two images' colour channels: their mean and largest
// difference.
func diff(a, b *image.RGBA) (float64, int) {
	sum, worst, n := 0, 0, 0
	for i := 0; i < len(a.Pix); i += 4 {
		for c := range 3 {
			d := int(a.Pix[i+c]) - int(b.Pix[i+c])
			d = max(d, -d)
			sum += d
			worst = max(worst, d)
			n++
		}
	}
	return float64(sum) / float64(n), worst
}

// assertOnly checks that dir holds exactly the files names.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}

// TestExportFailures checks that each way an export fails says why in
// words and leaves no file.
func TestExportFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A stand-in for an ffmpeg that cannot encode.
	broken := filepath.Join(dir, "ffmpeg-broken")
	os.WriteFile(broken, []byte("#!/bin/sh\ncat >/dev/null\necho \"Unknown encoder 'libx264'\" >&2\nexit 1\n"), 0o755)
	// One that fails if it is started at all.
	started := filepath.Join(dir, "started")
	marker := filepath.Join(dir, "ffmpeg-marker")
	os.WriteFile(marker, []byte("#!/bin/sh\ntouch "+started+"\nexit 1\n"), 0o755)

	long := func() []byte {
		var r recording
		r.add("size", 0, 8, 8)
		r.add("sync", start)
		r.add("sync", start+int64(25*time.Hour/time.Millisecond))
		return r.b
	}
	huge := func() []byte {
		var r recording
		r.add("size", 0, 9000, 100)
		r.add("sync", start)
		return r.b
	}
	for _, tc := range []struct {
		name   string
		ffmpeg string
		rec    []byte
		want   error
		words  string
	}{
		{"ffmpeg fails", broken, sample(), ErrFFmpeg, "ffmpeg failed: Unknown encoder 'libx264'"},
		{"ffmpeg missing", filepath.Join(dir, "no-such-ffmpeg"), sample(), ErrFFmpeg, "ffmpeg failed to start"},
		{"not a recording", marker, []byte("{\"version\": 2, \"width\": 80}\n"), ErrBadRecording, "the recording is damaged or not a desktop recording"},
		{"no frames", marker, []byte("4.size,1.0,2.10,2.10;"), ErrEmpty, "it holds no frame"},
		{"no screen", marker, []byte("4.sync,1.1;"), ErrEmpty, "never sets a screen size"},
		{"too long", marker, long(), ErrTooLarge, "it spans 25h0m0s, longer than the 24h0m0s an export allows"},
		{"too large", marker, huge(), ErrTooLarge, "its screen is 9000×100 pixels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			e := New(Config{FFmpeg: tc.ffmpeg})
			err := e.Export(context.Background(), Source{Data: bytes.NewReader(tc.rec), Size: int64(len(tc.rec))}, filepath.Join(out, "x.mp4"), nil)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("error %v, want %v saying %q", err, tc.want, tc.words)
			}
			assertOnly(t, out)
			if _, err := os.Stat(started); err == nil {
				t.Fatal("ffmpeg was started for a recording that cannot be exported")
			}
		})
	}
}

// TestExportCancelled stops an export midway: ffmpeg is stopped and no
// file is left.
func TestExportCancelled(t *testing.T) {
	t.Parallel()
	var r recording
	r.add("size", 0, 64, 64)
	for i := range 60 {
		r.rect(0, 0, 64, 64, color.RGBA{uint8(i * 4), 0, 0, 255})
		r.add("sync", start+int64(i)*1000)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := New(Config{FFmpeg: need(t, "ffmpeg")})
	err := e.Export(ctx, Source{Data: bytes.NewReader(r.b), Size: int64(len(r.b))}, filepath.Join(dir, "x.mp4"), func(p float64) {
		if p > 0.2 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want cancelled", err)
	}
	assertOnly(t, dir)
}
