package rdp

import (
	"context"
	"errors"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
)

// TestXRDPSession signs in to xrdp with autologon (no login dialog) and
// uses the whole Xorg session: its first frame and pointer image,
// keyboard, clipboard both ways, resizing, and logging off.
func TestXRDPSession(t *testing.T) {
	t.Parallel()
	srv := targets.NewXRDP(t, targets.XRDPOptions{})
	s := connect(t, Config{Port: srv.Port, Username: srv.User, Password: srv.Password, Clipboard: true, Width: 1024, Height: 768})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := srv.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("display", d.Number)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(srv.Logs())
		}
	})
	waitUntil(t, "the session's xterm", func() bool { return d.Viewable("XTerm") > 0 })
	// The xterm (white, 80x24 characters) must show at the top left.
	// xrdp also sends the pointer's image.
	var cursor *Cursor
	waitFor(t, s, "the xterm and a pointer image", func(u Update, screen *image.RGBA) bool {
		if u.Cursor != nil {
			cursor = u.Cursor
		}
		c := screen.RGBAAt(200, 200)
		return cursor != nil && c.R > 200 && c.G > 200 && c.B > 200
	})
	if b := cursor.Image.Bounds(); b.Empty() || !cursor.Hotspot.In(b) || opaque(cursor.Image) == 0 {
		t.Fatalf("pointer image %v, hotspot %v, %d opaque pixels", b, cursor.Hotspot, opaque(cursor.Image))
	}

	// Keyboard.
	s.Pointer(100, 100, 0)
	// The session's shell runs as the test user: it writes where it may.
	dir, err := os.MkdirTemp("", "keyway-rdp-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777)
	out := filepath.Join(dir, "typed")
	typeText(t, s, "echo xrdp-typed > "+out+"\n")
	waitUntil(t, "the typed command to write "+out, func() bool {
		b, _ := os.ReadFile(out)
		return string(b) == "xrdp-typed\n"
	})

	// Clipboard, local to remote.
	if err := s.CutText("from the gateway\nsecond line ü"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the X clipboard to hold the text", func() bool {
		// Text goes with Windows line ends; xrdp passes them on to X.
		got, _ := d.Clipboard()
		return got == "from the gateway\r\nsecond line ü"
	})
	// Clipboard, remote to local.
	if err := d.SetClipboard("from X ✓"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, "the server's clipboard text", func(u Update, _ *image.RGBA) bool {
		return u.HasCutText && u.CutText == "from X ✓"
	})

	// Resize over the display control channel, where xrdp offers it.
	// Its capabilities come over a dynamic channel soon after connecting.
	waitUntil(t, "display control", s.disp.Load)
	ok, err := s.Resize(800, 600)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal("xrdp offers no display control channel")
	}
	resized := false
	waitFor(t, s, "the desktop to become 800x600", func(u Update, screen *image.RGBA) bool {
		resized = resized || u.Resized
		return resized && screen.Bounds().Dx() == 800 && screen.Bounds().Dy() == 600
	})

	// Leaving the session's only program ends the session.
	s.Pointer(100, 100, 0)
	typeText(t, s, "exit\n")
	select {
	case <-s.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the session did not end when its program exited")
	}
	if err := s.Err(); !errors.Is(err, ErrLoggedOff) || !strings.Contains(err.Error(), "ERRINFO_LOGOFF_BY_USER") {
		t.Fatalf("session end: %v", err)
	}
}

func opaque(img *image.RGBA) int {
	n := 0
	for i := 3; i < len(img.Pix); i += 4 {
		if img.Pix[i] != 0 {
			n++
		}
	}
	return n
}
