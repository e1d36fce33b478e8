package vnc

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/recordings/guacrender"
)

func TestVisibleArea(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		w, h         int
		wantW, wantH int
	}{
		{"an ordinary screen", 1024, 768, 1024, 768},
		{"a portrait screen", 1080, 1920, 1080, 1920},
		{"twice as tall as wide", 1024, 2048, 1024, 2048},
		{"x11vnc -ncache 10 (the issue's 1280x9600)", 1280, 9600, 1280, 800},
		{"x11vnc -ncache 10, full HD", 1920, 12 * 1080, 1920, 1080},
		{"x11vnc -ncache 10 -ncache_no_rootpixmap", 1024, 11 * 768, 1024, 768},
		{"x11vnc -ncache 10 on a portrait screen", 1080, 12 * 1920, 1080, 1920},
		{"x11vnc -ncache 4", 1024, 6 * 768, 1024, 768},
		{"x11vnc -ncache 20 on 1366x768", 1366, 22 * 768, 1366, 768},
		{"tall, no screen's proportions", 1000, 2003, 1000, 2003},
		{"tall, too narrow to split", 40, 12 * 40, 40, 480},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := visibleArea(tc.w, tc.h)
			if got != image.Rect(0, 0, tc.wantW, tc.wantH) {
				t.Fatalf("visibleArea(%d, %d) = %v, want %dx%d", tc.w, tc.h, got, tc.wantW, tc.wantH)
			}
		})
	}
}

// TestFramebufferLimits accepts tall framebuffers within maxPixels and
// refuses what would take more memory or could not be shown.
func TestFramebufferLimits(t *testing.T) {
	t.Parallel()
	c := &Client{maxPixels: maxPixels}
	for _, tc := range []struct {
		w, h    int
		wantErr string
	}{
		{1280, 9600, ""},
		{2560, 12 * 1440, ""},
		{8192, 8192, ""},
		{3840, 12 * 2160, "larger than the 64 Mi pixels"},
		{1000, 20011, "larger than the 8192 on a side"},
		{0, 768, "screen size 0x768"},
	} {
		err := c.checkSize(tc.w, tc.h)
		if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%dx%d: %v, want %q", tc.w, tc.h, err, tc.wantErr)
		}
	}
}

// TestPixelCacheNotSent serves a framebuffer with a pixel cache below the
// screen, as x11vnc -ncache does, through Serve: the browser gets a
// screen of the real screen's size that matches the server's, changes
// and moves within the cache send nothing, and moves out of the cache
// send the pixels they bring.
func TestPixelCacheNotSent(t *testing.T) {
	t.Parallel()
	const w, sh = 128, 96
	h := 12 * sh
	srvConn, cliConn := net.Pipe()
	browser, gwSide := net.Pipe()
	t.Cleanup(func() { srvConn.Close(); cliConn.Close(); browser.Close(); gwSide.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for _, c := range []net.Conn{srvConn, cliConn, browser, gwSide} {
		c.SetDeadline(deadline)
	}

	blue, red, green := color.RGBA{0, 0, 0xff, 0xff}, color.RGBA{0xff, 0, 0, 0xff}, color.RGBA{0, 0xff, 0, 0xff}
	model := fbModel{image.NewRGBA(image.Rect(0, 0, w, h))}
	shown := image.Rect(0, 0, w, sh)
	frames := [][]byte{
		// The whole framebuffer: the screen blue, the cache red.
		fbUpdate(model.fill(shown, blue), model.fill(image.Rect(0, sh, w, h), red)),
		// Within the cache only: new pixels, and a window saved from the
		// screen into it.
		fbUpdate(model.fill(image.Rect(0, 500, 16, 516), green), model.copy(image.Pt(0, 0), image.Rect(32, 600, 48, 616))),
		// Out of the cache onto the screen (green); within the screen;
		// from the cache onto the screen's last rows (red); and from what
		// came out of the cache in this very frame.
		fbUpdate(model.copy(image.Pt(0, 500), image.Rect(0, 10, 16, 26)),
			model.copy(image.Pt(64, 0), image.Rect(64, 40, 80, 56)),
			model.copy(image.Pt(0, 200), image.Rect(100, 90, 116, 106)),
			model.copy(image.Pt(0, 10), image.Rect(16, 20, 32, 36))),
	}
	// The screen the browser must show after each frame.
	var want []*image.RGBA
	{
		m := fbModel{image.NewRGBA(model.img.Bounds())}
		snap := func() { want = append(want, m.img.SubImage(shown).(*image.RGBA)) }
		m.fill(shown, blue)
		m.fill(image.Rect(0, sh, w, h), red)
		snap()
		m = fbModel{cloneRGBA(m.img)}
		m.fill(image.Rect(0, 500, 16, 516), green)
		m.copy(image.Pt(0, 0), image.Rect(32, 600, 48, 616))
		snap()
		m = fbModel{cloneRGBA(m.img)}
		m.copy(image.Pt(0, 500), image.Rect(0, 10, 16, 26))
		m.copy(image.Pt(64, 0), image.Rect(64, 40, 80, 56))
		m.copy(image.Pt(0, 200), image.Rect(100, 90, 116, 106))
		m.copy(image.Pt(0, 10), image.Rect(16, 20, 32, 36))
		snap()
	}

	step := make(chan struct{})
	srvErr := make(chan error, 1)
	go func() {
		srv := rfbServer{srvConn}
		if err := srv.acceptNone(w, h); err != nil {
			srvErr <- err
			return
		}
		reqs := make(chan bool, 16)
		readErr := make(chan error, 1)
		go func() { readErr <- srv.requests(reqs) }()
		for _, f := range frames {
			<-step
			<-reqs
			if err := srv.send(f); err != nil {
				srvErr <- err
				return
			}
		}
		srvErr <- <-readErr
	}()

	c, err := Connect(cliConn, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if sw, shh := c.Size(); sw != w || shh != sh {
		t.Fatalf("screen shown %dx%d, want %dx%d", sw, shh, w, sh)
	}
	if fw, fh := c.FramebufferSize(); fw != w || fh != h {
		t.Fatalf("framebuffer %dx%d, want %dx%d", fw, fh, w, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx, gwSide, wire.Desktop{}, nil) }()

	rd := guac.NewReader(browser, guac.Limits{MaxElement: 1 << 22, MaxElements: 16})
	disp := guacrender.New(guacrender.DefaultLimits)
	for i := range frames {
		disp.ResetCounts()
		step <- struct{}{}
		for {
			in, err := rd.Read()
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if err := disp.Apply(in); err != nil {
				t.Fatalf("frame %d: %v: %v", i, in, err)
			}
			if in.Opcode == "sync" {
				if _, err := browser.Write(guac.New("sync", in.Args[0]).AppendTo(nil)); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
		if dw, dh := disp.Size(); dw != w || dh != sh {
			t.Fatalf("frame %d: the browser's screen is %dx%d, want %dx%d", i, dw, dh, w, sh)
		}
		if got := disp.Screen(); !sameRGBA(got, want[i]) {
			t.Errorf("frame %d: the browser's screen differs from the server's", i)
		}
		switch i {
		case 1:
			if n := disp.Count("img") + disp.Count("copy"); n != 0 {
				t.Errorf("changes within the cache sent %d images and copies: %v", n, disp.Counts())
			}
		case 2:
			if n := disp.Count("copy"); n != 1 {
				t.Errorf("%d copies, want 1 (the one within the screen): %v", n, disp.Counts())
			}
		}
	}
	cancel()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if err := <-srvErr; !errClosed(err) {
		t.Fatalf("server: %v", err)
	}
}

func cloneRGBA(img *image.RGBA) *image.RGBA {
	c := image.NewRGBA(img.Bounds())
	copy(c.Pix, img.Pix)
	return c
}

// sameRGBA compares two images' pixels over their bounds.
func sameRGBA(a, b *image.RGBA) bool {
	if a.Bounds().Size() != b.Bounds().Size() {
		return false
	}
	for y := range a.Bounds().Dy() {
		for x := range a.Bounds().Dx() {
			if a.RGBAAt(a.Rect.Min.X+x, a.Rect.Min.Y+y) != b.RGBAAt(b.Rect.Min.X+x, b.Rect.Min.Y+y) {
				return false
			}
		}
	}
	return true
}

// TestX11vncPixelCache connects to x11vnc with its pixel cache (-ncache
// 10, which its banner recommends): a 1280x800 screen in a 1280x9600
// framebuffer. The client shows the screen, and typing reaches an xterm.
func TestX11vncPixelCache(t *testing.T) {
	t.Parallel()
	x := targets.NewX11vnc(t, targets.XvncOptions{Width: 1280, Height: 800, Password: "x11pw123", NCache: 10})
	if err := x.Run("xsetroot", "-solid", "#336699"); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, x, "x11pw123")
	if err != nil {
		t.Fatalf("connect to x11vnc -ncache 10: %v", err)
	}
	if w, h := c.FramebufferSize(); w != 1280 || h != 9600 {
		t.Fatalf("framebuffer %dx%d, want x11vnc's 1280x9600", w, h)
	}
	if w, h := c.Size(); w != 1280 || h != 800 {
		t.Fatalf("screen shown %dx%d, want the real 1280x800", w, h)
	}
	waitScreen(t, c, "the root colour at the screen's bottom right", func(fb *image.RGBA) bool {
		p := fb.RGBAAt(1279, 799)
		return fb.Bounds().Dy() == 800 && p.R == 0x33 && p.G == 0x66 && p.B == 0x99
	})
	out := filepath.Join(t.TempDir(), "typed")
	if _, err := x.Start("xterm", "-geometry", "40x5+0+0", "-e", "sh", "-c", "read line; echo \"$line\" > "+out); err != nil {
		t.Fatal(err)
	}
	waitScreen(t, c, "the xterm", func(fb *image.RGBA) bool {
		p := fb.RGBAAt(20, 20)
		return !(p.R == 0x33 && p.G == 0x66 && p.B == 0x99) && x.Viewable("XTerm") == 1
	})
	typeLine(t, c, 40, 30, "typed-over-ncache", out)
	c.Close()

	// Through Serve, to a browser: windows that come and go are saved in
	// the cache and restored from it with CopyRect; the browser gets only
	// the screen, and once the windows are gone it shows the background.
	conn, err := net.DialTimeout("tcp", x.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c, err = Connect(conn, Config{Password: "x11pw123", Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Time{})
	browser, gwSide := net.Pipe()
	t.Cleanup(func() { browser.Close(); gwSide.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx, gwSide, wire.Desktop{}, nil) }()
	// The browser: applies what it gets, acknowledges frames, and says
	// when its screen is all background again after it showed a window,
	// once the cache has been used.
	restored := make(chan struct{}, 1)
	window := false
	outside := make(chan string, 1)
	go func() {
		rd := guac.NewReader(browser, guac.Limits{MaxElement: 1 << 22, MaxElements: 16})
		disp := guacrender.New(guacrender.DefaultLimits)
		for {
			in, err := rd.Read()
			if err != nil {
				return
			}
			disp.Apply(in)
			if at, ok := beyond(in, 1280, 800); ok {
				select {
				case outside <- at:
				default:
				}
			}
			if in.Opcode != "sync" {
				continue
			}
			browser.Write(guac.New("sync", in.Args[0]).AppendTo(nil))
			all := true
			for y := 0; y < 800 && all; y += 7 {
				for x := 0; x < 1280 && all; x += 7 {
					all = disp.At(x, y) == color.RGBA{0x33, 0x66, 0x99, 0xff}
				}
			}
			if !all {
				window = true
			} else if window && c.RectCounts()["copyrect"] > 0 {
				window = false
				select {
				case restored <- struct{}{}:
				default:
				}
			}
		}
	}()
	// x11vnc saves a window it has seen for a while; try a few.
	for i := 0; c.RectCounts()["copyrect"] == 0; i++ {
		if i == 5 {
			t.Fatalf("x11vnc moved nothing in or out of its cache: %v", c.RectCounts())
		}
		// Run waits for the xterm; a Start'ed process belongs to the target,
		// which waits for it itself.
		if err := x.Run("xterm", "-geometry", "40x5+100+100", "-e", "sleep", "2"); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-restored:
	case <-time.After(15 * time.Second):
		t.Fatal("the browser never showed the background alone once the windows closed")
	}
	select {
	case at := <-outside:
		t.Errorf("the browser got %s, outside the 1280x800 screen", at)
	default:
	}
	cancel()
	<-served
}

// beyond reports an img or copy instruction that draws on the screen
// (layer 0) outside w×h.
func beyond(in guac.Instruction, w, h int) (string, bool) {
	var x, y int
	switch {
	case in.Opcode == "img" && len(in.Args) == 6 && in.Args[2] == "0":
		x, _ = strconv.Atoi(in.Args[4])
		y, _ = strconv.Atoi(in.Args[5])
	case in.Opcode == "copy" && len(in.Args) == 9 && in.Args[6] == "0":
		x, _ = strconv.Atoi(in.Args[7])
		y, _ = strconv.Atoi(in.Args[8])
	default:
		return "", false
	}
	return fmt.Sprintf("%s at %d,%d", in.Opcode, x, y), x >= w || y >= h
}
