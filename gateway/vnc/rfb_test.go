package vnc

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/wire"
)

func dial(t *testing.T, x *targets.Xvnc, password string) (*Client, error) {
	t.Helper()
	return dialConfig(t, x, Config{Password: password, Shared: true})
}

func dialConfig(t *testing.T, x *targets.Xvnc, cfg Config) (*Client, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", x.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	return Connect(conn, cfg)
}

// waitScreen requests updates until cond holds for the framebuffer.
func waitScreen(t *testing.T, c *Client, what string, cond func(*image.RGBA) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	incremental := false
	for {
		w, h := c.Size()
		if cond(c.Snapshot(image.Rect(0, 0, w, h))) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		if err := c.RequestUpdate(incremental); err != nil {
			t.Fatal(err)
		}
		incremental = true
		if _, err := c.ReadMessage(); err != nil {
			t.Fatalf("read update: %v", err)
		}
	}
}

func TestSecurity(t *testing.T) {
	t.Parallel()
	open := targets.NewXvnc(t, targets.XvncOptions{Width: 800, Height: 600})
	locked := targets.NewXvnc(t, targets.XvncOptions{Password: "vncpw123"})

	c, err := dial(t, open, "")
	if err != nil {
		t.Fatalf("security None: %v", err)
	}
	if w, h := c.Size(); w != 800 || h != 600 || c.Name == "" {
		t.Fatalf("server init: %dx%d %q", w, h, c.Name)
	}
	if _, err := dial(t, locked, "vncpw123"); err != nil {
		t.Fatalf("VNC authentication: %v", err)
	}
	if _, err := dial(t, locked, "wrongpw1"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := dial(t, locked, ""); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "asks for a password") {
		t.Fatalf("no stored password: %v", err)
	}
}

func TestNotAVNCServer(t *testing.T) {
	t.Parallel()
	sshd := targets.NewSSHD(t)
	conn, err := net.Dial("tcp", sshd.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := Connect(conn, Config{}); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "not a VNC server") {
		t.Fatalf("an SSH server: %v", err)
	}
}

func TestPixelsAndTyping(t *testing.T) {
	t.Parallel()
	x := targets.NewXvnc(t, targets.XvncOptions{Password: "vncpw123"})
	if err := x.Run("xsetroot", "-solid", "#336699"); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, x, "vncpw123")
	if err != nil {
		t.Fatal(err)
	}
	waitScreen(t, c, "the root colour", func(fb *image.RGBA) bool {
		p := fb.RGBAAt(900, 700)
		return p.R == 0x33 && p.G == 0x66 && p.B == 0x99
	})

	// An xterm that writes the line it reads; typed through key events.
	out := filepath.Join(t.TempDir(), "typed")
	if _, err := x.Start("xterm", "-geometry", "80x10+0+0", "-e", "sh", "-c", "read line; echo \"$line\" > "+out); err != nil {
		t.Fatal(err)
	}
	// The xterm is up once its pixels differ from the root colour.
	waitScreen(t, c, "the xterm", func(fb *image.RGBA) bool {
		p := fb.RGBAAt(20, 20)
		return !(p.R == 0x33 && p.G == 0x66 && p.B == 0x99)
	})
	// TigerVNC sends the xterm in Tight, the encoding asked for first.
	if n := c.RectCounts(); n["tight-palette"]+n["tight-copy"] == 0 {
		t.Fatalf("the server did not use Tight for the xterm: %v", n)
	}
	c.Pointer(40, 40, 0) // focus follows the pointer without a window manager
	for _, r := range "hello-vnc" {
		c.Key(uint32(r), true)
		c.Key(uint32(r), false)
	}
	c.Key(0xff0d, true) // Return
	c.Key(0xff0d, false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(out)
		if err == nil && strings.TrimSpace(string(b)) == "hello-vnc" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("typed text did not reach the xterm: %q %v", b, err)
		}
		// Keep reading so the server is never blocked on us.
		c.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		c.ReadMessage()
		c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	}
}

func TestVNCAuthResponse(t *testing.T) {
	// Known answer computed independently: DES-ECB (OpenSSL, legacy
	// provider) keyed by "password" with each byte bit-reversed
	// (0e86ceceeef64e26), over the challenge 00 01 … 0f.
	var challenge [16]byte
	for i := range challenge {
		challenge[i] = byte(i)
	}
	got, err := vncAuthResponse("password", challenge)
	if err != nil {
		t.Fatal(err)
	}
	if want := "b866924125c8eebb9debc1db61c538e2"; hex.EncodeToString(got[:]) != want {
		t.Fatalf("response %x, want %s", got, want)
	}
}

func TestCursorShape(t *testing.T) {
	t.Parallel()
	x := targets.NewXvnc(t, targets.XvncOptions{})
	c, err := dial(t, x, "")
	if err != nil {
		t.Fatal(err)
	}
	// The server sends a shape when the pointer's shape changes: over an
	// xterm it becomes an I-beam.
	if _, err := x.Start("xterm", "-geometry", "80x24+0+0"); err != nil {
		t.Fatal(err)
	}
	waitScreen(t, c, "the xterm", func(fb *image.RGBA) bool {
		p := fb.RGBAAt(20, 20)
		return p.R != 0 || p.G != 0 || p.B != 0
	})
	c.Pointer(100, 100, 0)
	deadline := time.Now().Add(10 * time.Second)
	incremental := true
	for time.Now().Before(deadline) {
		c.RequestUpdate(incremental)
		u, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if u.Cursor != nil && !u.Cursor.Image.Bounds().Empty() {
			b := u.Cursor.Image.Bounds()
			if !u.Cursor.Hotspot.In(b.Inset(-1)) {
				t.Fatalf("hotspot %v outside the %v cursor", u.Cursor.Hotspot, b)
			}
			opaque := 0
			for i := 3; i < len(u.Cursor.Image.Pix); i += 4 {
				if u.Cursor.Image.Pix[i] == 0xff {
					opaque++
				}
			}
			if opaque == 0 {
				t.Fatal("cursor has no visible pixel")
			}
			return
		}
	}
	t.Fatal("no cursor shape from the server")
}

func TestResize(t *testing.T) {
	t.Parallel()
	x := targets.NewXvnc(t, targets.XvncOptions{})
	c, err := dial(t, x, "")
	if err != nil {
		t.Fatal(err)
	}
	// The first update announces ExtendedDesktopSize.
	waitScreen(t, c, "the first update", func(*image.RGBA) bool {
		c.fbMu.RLock()
		defer c.fbMu.RUnlock()
		return c.resizable
	})
	if ok, err := c.SetDesktopSize(800, 600); !ok || err != nil {
		t.Fatalf("SetDesktopSize: %v %v", ok, err)
	}
	waitScreen(t, c, "the new size", func(fb *image.RGBA) bool { return fb.Bounds().Dx() == 800 && fb.Bounds().Dy() == 600 })
}

// TestColourDepths views the same black-on-white xterm through each
// lossless encoding at 24, 16 and 8 bits: every combination must decode
// it to the same pixels.
func TestColourDepths(t *testing.T) {
	t.Parallel()
	sameXtermEverywhere(t, targets.NewXvnc(t, targets.XvncOptions{Width: 640, Height: 480}), "")
}

// TestX11vnc does the same against x11vnc (LibVNCServer's encoders) on
// Xvfb with VNC Authentication, then types into the xterm.
func TestX11vnc(t *testing.T) {
	t.Parallel()
	x := targets.NewX11vnc(t, targets.XvncOptions{Width: 640, Height: 480, Password: "x11pw123"})
	if _, err := dial(t, x, "wrongpw1"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("wrong password: %v", err)
	}
	sameXtermEverywhere(t, x, "x11pw123")

	c, err := dial(t, x, "x11pw123")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "typed")
	if _, err := x.Start("xterm", "-geometry", "40x5+0+300", "-e", "sh", "-c", "read line; echo \"$line\" > "+out); err != nil {
		t.Fatal(err)
	}
	waitScreen(t, c, "the second xterm", func(fb *image.RGBA) bool {
		return fb.RGBAAt(20, 320) != (color.RGBA{0xff, 0, 0, 0xff}) && x.Viewable("XTerm") == 2
	})
	typeLine(t, c, 40, 330, "typed-into-x11vnc", out)
}

// typeLine points at (x, y), types line and Return, and waits for the
// xterm there to write it to out.
func typeLine(t *testing.T, c *Client, x, y int, line, out string) {
	t.Helper()
	c.Pointer(x, y, 0) // focus follows the pointer without a window manager
	for _, r := range line {
		c.Key(uint32(r), true)
		c.Key(uint32(r), false)
	}
	c.Key(0xff0d, true) // Return
	c.Key(0xff0d, false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(out)
		if err == nil && strings.TrimSpace(string(b)) == line {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("typed text did not reach the xterm: %q %v", b, err)
		}
		// Keep reading so the server is never blocked on us.
		c.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		c.ReadMessage()
		c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	}
}

// sameXtermEverywhere puts a black-on-white xterm on a red screen and
// checks that every lossless encoding at every depth decodes it to the
// same pixels, and that each encoding was really used.
func sameXtermEverywhere(t *testing.T, x *targets.Xvnc, password string) {
	t.Helper()
	if err := x.Run("xsetroot", "-solid", "#ff0000"); err != nil {
		t.Fatal(err)
	}
	// The text cursor is hidden (DECTCEM): its look follows the pointer's
	// focus, which would make the screens differ between connections.
	if _, err := x.Start("xterm", "-geometry", "40x10+0+0", "-bg", "white", "-fg", "black", "-e", "sh", "-c", `printf 'colour-depth-test\n\033[?25l'; sleep 60`); err != nil {
		t.Fatal(err)
	}
	area := image.Rect(0, 0, 200, 60)
	var want *image.RGBA
	for _, enc := range []struct {
		name    string
		offer   int32
		counter string // a rectangle count that shows the decoder was used
	}{
		{"ZRLE", encZRLE, "zrle"},
		{"Tight", encTight, "tight-"},
		{"Hextile", encHextile, "hextile"},
		{"Raw", encRaw, "raw"},
	} {
		for _, depth := range []int{24, 16, 8} {
			c, err := dialConfig(t, x, Config{Password: password, Shared: true, Depth: depth, encodings: []int32{enc.offer, encRaw}})
			if err != nil {
				t.Fatalf("%s at depth %d: %v", enc.name, depth, err)
			}
			// Ready once the root is red and the xterm has printed its
			// line: black text in the top rows of a white window.
			waitScreen(t, c, fmt.Sprintf("the xterm in %s at depth %d", enc.name, depth), func(fb *image.RGBA) bool {
				root, bg := fb.RGBAAt(600, 400), fb.RGBAAt(150, 50)
				if root != (color.RGBA{0xff, 0, 0, 0xff}) || bg != (color.RGBA{0xff, 0xff, 0xff, 0xff}) {
					return false
				}
				// The line is printed (black far into its row) and the
				// cursor below it is hidden (no black in the next row;
				// the window's black border is left out).
				black := func(x0, x1, y0, y1 int) bool {
					for y := y0; y < y1; y++ {
						for x := x0; x < x1; x++ {
							if fb.RGBAAt(x, y) == (color.RGBA{0, 0, 0, 0xff}) {
								return true
							}
						}
					}
					return false
				}
				return black(60, 120, 4, 17) && !black(5, 150, 17, 32)
			})
			used := 0
			for k, n := range c.RectCounts() {
				if strings.HasPrefix(k, enc.counter) {
					used += n
				}
			}
			if used == 0 {
				t.Errorf("%s at depth %d: the server sent no %s rectangle: %v", enc.name, depth, enc.name, c.RectCounts())
			}
			got := c.Snapshot(area)
			c.Close()
			if want == nil {
				want = got
				continue
			}
			if !bytes.Equal(got.Pix, want.Pix) {
				t.Errorf("%s at depth %d decodes the xterm differently from ZRLE at depth 24", enc.name, depth)

			}
		}
	}
}

// TestTightJPEG shows a screen of 256 colours, which TigerVNC sends as
// Tight JPEG when a quality level is asked for, and compares it with the
// same screen received losslessly.
func TestTightJPEG(t *testing.T) {
	t.Parallel()
	x := targets.NewXvnc(t, targets.XvncOptions{Width: 640, Height: 480})
	drawn := filepath.Join(t.TempDir(), "drawn")
	script := `for i in $(seq 0 255); do printf '\033[48;5;%dm   ' $i; done; printf '\033[0m'; echo; touch ` + drawn + `; sleep 60`
	if _, err := x.Start("xterm", "-geometry", "80x24+0+0", "-e", "sh", "-c", script); err != nil {
		t.Fatal(err)
	}
	waitFile(t, drawn)
	area := image.Rect(0, 0, 400, 150)
	lossless, err := dialConfig(t, x, Config{Shared: true, encodings: []int32{encZRLE, encRaw}})
	if err != nil {
		t.Fatal(err)
	}
	colourful := func(fb *image.RGBA) bool {
		seen := map[color.RGBA]bool{}
		for y := area.Min.Y; y < area.Max.Y; y += 2 {
			for x := area.Min.X; x < area.Max.X; x += 2 {
				seen[fb.RGBAAt(x, y)] = true
			}
		}
		return len(seen) > 100
	}
	waitScreen(t, lossless, "the colour cells", colourful)
	want := lossless.Snapshot(area)

	c, err := dialConfig(t, x, Config{Shared: true, encodings: []int32{encTight, encRaw, encQualityLevel0 + 9}})
	if err != nil {
		t.Fatal(err)
	}
	waitScreen(t, c, "the colour cells in JPEG", colourful)
	if n := c.RectCounts(); n["tight-jpeg"] == 0 {
		t.Fatalf("the server sent no JPEG: %v", n)
	}
	got := c.Snapshot(area)
	var sum, worst int
	for i := 0; i < len(got.Pix); i++ {
		d := int(absDiff(got.Pix[i], want.Pix[i]))
		sum += d
		worst = max(worst, d)
	}
	if mean := float64(sum) / float64(len(got.Pix)); mean > 4 {
		t.Fatalf("JPEG differs from the lossless screen by %.1f on average (worst %d)", mean, worst)
	}
}

// waitFile waits for a file that a process on the display writes.
func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestVeNCrypt(t *testing.T) {
	t.Parallel()
	x509vnc := targets.NewXvnc(t, targets.XvncOptions{Password: "vncpw123", Security: "X509Vnc"})
	x509plain := targets.NewXvnc(t, targets.XvncOptions{Security: "X509Plain"})
	anonymous := targets.NewXvnc(t, targets.XvncOptions{Password: "vncpw123", Security: "TLSVnc"})
	userPW, err := targets.TestUserPassword()
	if err != nil {
		t.Fatal(err)
	}
	fp := wire.CertFingerprint(x509vnc.CertDER)
	pin := wire.CertPrefix + fp

	// First connection: the certificate is reported for pinning.
	c, err := dialConfig(t, x509vnc, Config{Password: "vncpw123"})
	if err != nil {
		t.Fatalf("X509Vnc: %v", err)
	}
	if c.CertFingerprint != fp {
		t.Fatalf("certificate seen %q, want %q", c.CertFingerprint, fp)
	}
	if _, ok := c.conn.(*tls.Conn); !ok {
		t.Fatal("the session does not run over TLS")
	}
	// The screen arrives through TLS.
	waitScreen(t, c, "the first screen", func(fb *image.RGBA) bool { return len(c.RectCounts()) > 0 })

	for _, tc := range []struct {
		name    string
		x       *targets.Xvnc
		cfg     Config
		wantErr string // empty: success
	}{
		{"pinned certificate", x509vnc, Config{Password: "vncpw123", PinnedCert: pin}, ""},
		{"changed certificate", x509vnc, Config{Password: "vncpw123", PinnedCert: wire.CertPrefix + "SHA256:AAAA"}, "certificate changed: expected SHA256:AAAA, got " + fp},
		{"wrong VNC password over TLS", x509vnc, Config{Password: "wrongpw1"}, ErrAuthFailed.Error()},
		{"plain login", x509plain, Config{Username: targets.TestUser, Password: userPW}, ""},
		{"plain, wrong password", x509plain, Config{Username: targets.TestUser, Password: "not-the-password"}, ErrAuthFailed.Error()},
		{"plain without a login", x509plain, Config{Password: userPW}, "need a login name"},
		{"anonymous TLS only", anonymous, Config{Password: "vncpw123"}, "anonymous TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dialConfig(t, tc.x, tc.cfg)
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}

// TestPinnedCertificateNotDowngraded offers a client with a pinned
// certificate only security types that cannot check it: it must refuse
// them, naming what was offered, before sending a choice or a DES
// response.
func TestPinnedCertificateNotDowngraded(t *testing.T) {
	t.Parallel()
	version := []byte("RFB 003.008\n")
	challenge := bytes.Repeat([]byte{7}, 16)
	classic := func(types ...byte) []byte {
		return slices.Concat(version, []byte{byte(len(types))}, types, challenge, []byte{0, 0, 0, 0}, serverInit(64, 64, "fake"))
	}
	vencrypt := func(subs ...uint32) []byte {
		b := slices.Concat(version, []byte{1, secVeNCrypt, 0, 2, 0, byte(len(subs))})
		for _, s := range subs {
			b = binary.BigEndian.AppendUint32(b, s)
		}
		return slices.Concat(b, challenge, []byte{0, 0, 0, 0}, serverInit(64, 64, "fake"))
	}
	pin := wire.CertPrefix + "SHA256:c29tZXRoaW5nIHBpbm5lZA"
	for _, tc := range []struct {
		name    string
		script  []byte
		offered string
		// sent is all the client may send after its version.
		sent []byte
	}{
		{"None and VNC Authentication", classic(secNone, secVNCAuth), "None, VNC Authentication", nil},
		{"None", classic(secNone), "None", nil},
		{"VNC Authentication", classic(secVNCAuth), "VNC Authentication", nil},
		{"VeNCrypt carrying None and VNC Authentication", vencrypt(secNone, secVNCAuth), "VeNCrypt with None, VNC Authentication", []byte{secVeNCrypt, 0, 2}},
		{"VeNCrypt with anonymous TLS", vencrypt(vencTLSVnc, vencTLSNone), "VeNCrypt with TLSVnc, TLSNone", []byte{secVeNCrypt, 0, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, got := scriptedServer(t, tc.script)
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			_, err = Connect(conn, Config{Password: "vncpw123", PinnedCert: pin})
			conn.Close()
			var unverified *UnverifiedPinError
			if !errors.As(err, &unverified) || unverified.Offered != tc.offered || !strings.Contains(err.Error(), "SHA256:c29tZXRoaW5nIHBpbm5lZA") {
				t.Fatalf("got %v, want a refusal naming %q and the pin", err, tc.offered)
			}
			if sent := <-got; !bytes.Equal(sent, slices.Concat(version, tc.sent)) {
				t.Fatalf("the client sent %q after its version, want %q (no choice, no DES response)", sent[min(len(sent), 12):], tc.sent)
			}
		})
	}
	// Without a pin, the same server gets the DES response: the script
	// would catch a client that sends one.
	addr, got := scriptedServer(t, classic(secNone, secVNCAuth))
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := Connect(conn, Config{Password: "vncpw123"}); err != nil {
		t.Fatalf("no pin: %v", err)
	}
	conn.Close()
	if sent := <-got; len(sent) < 12+1+16 || sent[12] != secVNCAuth {
		t.Fatalf("without a pin the client sent %q, want VNC Authentication's response", sent)
	}
}
