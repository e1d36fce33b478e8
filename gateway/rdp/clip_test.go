package rdp

import (
	"image"
	"image/color"
	"testing"

	"github.com/keyway-dev/keyway/e2e/targets"
)

// TestClipboardWithoutServerClipboard sends clipboard text to
// freerdp-shadow-cli, which joins the clipboard channel but has no
// clipboard behind it: it never sends Monitor Ready, and any PDU a client
// sends on the channel makes it drop the connection. The text must be
// kept back with a notice for the user, and the session must go on.
func TestClipboardWithoutServerClipboard(t *testing.T) {
	t.Parallel()
	srv := targets.NewShadowRDP(t, targets.ShadowOptions{Width: 800, Height: 600})
	cfg := shadowConfig(srv)
	cfg.Clipboard = true
	s := connect(t, cfg)
	waitFor(t, s, "the first frame", func(u Update, _ *image.RGBA) bool { return len(u.Rects) > 0 || u.Resized })
	for _, text := range []string{"first paste", "second paste"} {
		if err := s.CutText(text); err != nil {
			t.Fatal(err)
		}
		waitFor(t, s, "a notice that the clipboard is not open", func(u Update, _ *image.RGBA) bool {
			return u.ClipboardNotice != ""
		})
	}
	if s.ClipboardReady() {
		t.Fatal("freerdp-shadow-cli opened a clipboard channel")
	}
	// The session still shows the screen: a new background arrives.
	if _, err := srv.Run("xsetroot", "-solid", "#228844"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, "the new background after the clipboard was sent", func(_ Update, screen *image.RGBA) bool {
		return screen.RGBAAt(790, 590) == color.RGBA{0x22, 0x88, 0x44, 0xff}
	})
}
