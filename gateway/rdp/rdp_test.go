package rdp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/keyway-dev/keyway/e2e/targets"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// connect signs in to a test server and closes the session when the test
// ends.
func connect(t testing.TB, cfg Config) *Session {
	t.Helper()
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	cfg.IgnoreCertificate = cfg.IgnoreCertificate || cfg.CertFingerprint == ""
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func shadowConfig(srv *targets.ShadowRDP) Config {
	return Config{Host: srv.Host, Port: srv.Port, Username: srv.User, Password: srv.Password}
}

// waitFor takes updates until cond holds for the screen, the session ends
// or the deadline passes. It returns the updates taken.
func waitFor(t *testing.T, s *Session, what string, cond func(u Update, screen *image.RGBA) bool) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		u := s.Take()
		w, h := s.Size()
		if cond(u, s.Snapshot(image.Rect(0, 0, w, h))) {
			return
		}
		select {
		case <-s.Changed():
		case <-s.Done():
			t.Fatalf("waiting for %s: session ended: %v", what, s.Err())
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitUntil polls cond (for state outside the session: files, X
// properties) until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// xwdScreen reads the X display's root window with xwd: the truth to
// compare frames with.
func xwdScreen(t *testing.T, d *targets.Display) *image.RGBA {
	t.Helper()
	if _, err := exec.LookPath("xwd"); err != nil {
		t.Fatal("xwd not found: apt-get install x11-apps")
	}
	out, err := d.Run("xwd", "-root", "-silent")
	if err != nil {
		t.Fatal(err)
	}
	img, err := parseXWD(out)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// parseXWD decodes a 24/32-bit TrueColor XWD dump as xwd writes it for
// Xvfb.
func parseXWD(b []byte) (*image.RGBA, error) {
	if len(b) < 100 {
		return nil, errors.New("xwd: short header")
	}
	be := binary.BigEndian
	f := func(i int) int { return int(be.Uint32(b[4*i:])) }
	headerSize, w, h := f(0), f(4), f(5)
	byteOrder, bpp, bytesPerLine, ncolors := f(7), f(11), f(12), f(19)
	if bpp != 32 {
		return nil, fmt.Errorf("xwd: %d bits per pixel", bpp)
	}
	off := headerSize + 12*ncolors
	if len(b) < off+bytesPerLine*h {
		return nil, errors.New("xwd: short image")
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		row := b[off+y*bytesPerLine:]
		for x := range w {
			p := row[4*x : 4*x+4]
			var v uint32
			if byteOrder == 0 { // LSBFirst
				v = binary.LittleEndian.Uint32(p)
			} else {
				v = be.Uint32(p)
			}
			img.SetRGBA(x, y, color.RGBA{uint8(v >> 16), uint8(v >> 8), uint8(v), 0xff})
		}
	}
	return img, nil
}

// diff counts the pixels that differ between two screens of one size.
func diff(a, b *image.RGBA) int {
	if a.Bounds() != b.Bounds() {
		return -1
	}
	n := 0
	for i := 0; i < len(a.Pix); i += 4 {
		if !bytes.Equal(a.Pix[i:i+3], b.Pix[i:i+3]) {
			n++
		}
	}
	return n
}

// startXterm starts an xterm at the top left and waits until it can take
// input.
func startXterm(t *testing.T, d *targets.Display, args ...string) {
	t.Helper()
	if _, err := d.Start("xterm", append([]string{"-geometry", "80x24+0+0"}, args...)...); err != nil {
		t.Fatalf("xterm (apt-get install xterm): %v", err)
	}
	waitUntil(t, "the xterm to be viewable", func() bool { return d.Viewable("XTerm") > 0 })
}

// typeText types s as a browser would: Shift pressed around characters
// that need it on a US keyboard.
func typeText(t *testing.T, s *Session, text string) {
	t.Helper()
	for _, r := range text {
		keysym := uint32(r)
		if r == '\n' {
			keysym = 0xff0d
		}
		c, ok := usChars[r]
		shift := ok && c.shift
		if shift {
			s.Key(0xffe1, true)
		}
		if err := s.Key(keysym, true); err != nil {
			t.Fatal(err)
		}
		s.Key(keysym, false)
		if shift {
			s.Key(0xffe1, false)
		}
	}
}

func TestFirstFrameMatchesDisplay(t *testing.T) {
	t.Parallel()
	srv := targets.NewShadowRDP(t, targets.ShadowOptions{Width: 800, Height: 600})
	if _, err := srv.Run("xsetroot", "-solid", "#336699"); err != nil {
		t.Fatal(err)
	}
	startXterm(t, &srv.Display, "-bg", "white", "-fg", "black", "-e", "sh -c 'echo first frame; exec sleep 600'")
	s := connect(t, shadowConfig(srv))
	if w, h := s.Size(); w != 800 || h != 600 {
		t.Fatalf("size %dx%d, want the server's 800x600", w, h)
	}
	if !strings.HasPrefix(s.CertFingerprint(), "SHA256:") {
		t.Fatalf("certificate fingerprint %q", s.CertFingerprint())
	}
	// The xterm may still be drawing its text: compare once the screen
	// stops changing under the same truth.
	var want *image.RGBA
	waitFor(t, s, "the frame to match xwd", func(u Update, got *image.RGBA) bool {
		if got.RGBAAt(799, 599) != (color.RGBA{0x33, 0x66, 0x99, 0xff}) {
			return false
		}
		want = xwdScreen(t, &srv.Display)
		return diff(got, want) == 0
	})
}

func TestKeyboardReachesXterm(t *testing.T) {
	t.Parallel()
	srv := targets.NewShadowRDP(t, targets.ShadowOptions{Security: "tls"})
	// A plain sh: root's shell start-up files may take their time.
	startXterm(t, &srv.Display, "-e", "/bin/sh")
	s := connect(t, Config{Port: srv.Port, Security: "tls"})
	// No window manager: the focus follows the pointer.
	if err := s.Pointer(100, 100, 0); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "typed")
	typeText(t, s, "echo 'Hello, RDP: <ok> ~!@#$%^&*()_+{}|\"?' > "+out+"\n")
	waitUntil(t, "the typed command to write "+out, func() bool {
		b, _ := os.ReadFile(out)
		return string(b) == "Hello, RDP: <ok> ~!@#$%^&*()_+{}|\"?\n"
	})
}

func TestPointerClick(t *testing.T) {
	t.Parallel()
	srv := targets.NewShadowRDP(t, targets.ShadowOptions{Security: "tls"})
	ev := exec.Command("xev", "-geometry", "200x200+300+200", "-event", "button", "-event", "structure")
	ev.Env = append(os.Environ(), fmt.Sprintf("DISPLAY=:%d", srv.Number))
	var events syncBuffer
	ev.Stdout = &events
	if err := ev.Start(); err != nil {
		t.Fatalf("xev (apt-get install x11-utils): %v", err)
	}
	t.Cleanup(func() { ev.Process.Kill(); ev.Wait() })
	waitUntil(t, "the xev window", func() bool { return strings.Contains(events.String(), "MapNotify") })
	s := connect(t, Config{Port: srv.Port, Security: "tls"})
	for _, b := range []struct {
		mask uint8
		name string
	}{{1, "button 1"}, {4, "button 3"}, {2, "button 2"}, {8, "button 4"}, {16, "button 5"}} {
		s.Pointer(400, 300, 0)
		s.Pointer(400, 300, b.mask)
		s.Pointer(400, 300, 0)
		waitUntil(t, "xev to see "+b.name, func() bool {
			return strings.Contains(events.String(), b.name+",")
		})
	}
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	srv := targets.NewShadowRDP(t, targets.ShadowOptions{})
	cfg := shadowConfig(srv)
	cfg.Password = "not-the-password"
	cfg.IgnoreCertificate = true
	_, err := Connect(context.Background(), cfg)
	if !errors.Is(err, ErrAuthentication) {
		t.Fatalf("wrong password: %v", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code == 0 || !strings.Contains(err.Error(), "rejected the user name or password") {
		t.Fatalf("error without its words or code: %v", err)
	}
	cfg.Password = ""
	if _, err := Connect(context.Background(), cfg); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("no password: %v", err)
	}
}

func TestNegotiationFailure(t *testing.T) {
	t.Parallel()
	srv := targets.NewShadowRDP(t, targets.ShadowOptions{})
	cfg := shadowConfig(srv)
	cfg.Security = "tls"
	cfg.IgnoreCertificate = true
	_, err := Connect(context.Background(), cfg)
	if !errors.Is(err, ErrNegotiation) || !strings.Contains(err.Error(), "TLS only") {
		t.Fatalf("TLS against an NLA-only server: %v", err)
	}
	t.Log(err)
}

func TestRefusedAndCancelled(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	_, err := Connect(context.Background(), Config{Host: "127.0.0.1", Port: port})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("closed port: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Connect(ctx, Config{Host: "127.0.0.1", Port: port}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestCertificatePinning(t *testing.T) {
	t.Parallel()
	srv := targets.NewShadowRDP(t, targets.ShadowOptions{Security: "tls"})
	// First use: accepted and reported.
	first := connect(t, Config{Port: srv.Port, Security: "tls", CertFingerprint: ""})
	pin := first.CertFingerprint()
	first.Close()
	if pin == "" {
		t.Fatal("no fingerprint reported on first use")
	}
	connect(t, Config{Port: srv.Port, Security: "tls", CertFingerprint: "tls-cert " + pin}).Close()

	if err := srv.RegenerateCertificate(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := Connect(context.Background(), Config{Host: "127.0.0.1", Port: srv.Port, Security: "tls", CertFingerprint: pin})
	var ce *CertificateError
	if !errors.As(err, &ce) || ce.Pinned != pin || ce.Offered == pin || !strings.HasPrefix(ce.Offered, "SHA256:") {
		t.Fatalf("changed certificate: %v", err)
	}
	s := connect(t, Config{Port: srv.Port, Security: "tls", CertFingerprint: ce.Offered})
	if s.CertFingerprint() != ce.Offered {
		t.Fatalf("fingerprint %s, want %s", s.CertFingerprint(), ce.Offered)
	}
	home, _ := os.UserHomeDir()
	if _, err := os.Stat(filepath.Join(home, ".config", "freerdp", "known_hosts2")); err == nil {
		t.Error("FreeRDP wrote a known_hosts2 file in $HOME")
	}
}

func TestServerEndsSession(t *testing.T) {
	t.Parallel()
	srv := targets.NewShadowRDP(t, targets.ShadowOptions{Security: "tls"})
	s := connect(t, Config{Port: srv.Port, Security: "tls"})
	srv.Stop()
	select {
	case <-s.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the session did not end with the server")
	}
	if err := s.Err(); !errors.Is(err, ErrServerClosed) && !errors.Is(err, ErrDisconnected) {
		t.Fatalf("server gone: %v", err)
	}
	if err := s.Key('a', true); !errors.Is(err, ErrClosed) {
		t.Fatalf("input after the end: %v", err)
	}
}

// syncBuffer is a bytes.Buffer a process writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestStandardSecurityOnlyWhenChosen connects to a server that offers
// standard RDP security only, where no certificate is ever checked and
// the password travels under RC4 keys from whoever answers: "any" must
// refuse it with words that say why, a pin must never be passed by, and
// only the explicit choice connects.
func TestStandardSecurityOnlyWhenChosen(t *testing.T) {
	t.Parallel()
	srv := targets.NewShadowRDP(t, targets.ShadowOptions{Security: "rdp", Width: 800, Height: 600})
	pin := "SHA256:" + strings.Repeat("A", 43)
	for _, c := range []struct {
		security, pin string
		want          error // nil: connects
		words         string
	}{
		{"any", "", ErrNegotiation, "only when an administrator chooses it"},
		{"any", pin, ErrNegotiation, "SSL_NOT_ALLOWED_BY_SERVER"},
		{"", pin, ErrNegotiation, "the client offered NLA or TLS"},
		{"rdp", pin, ErrPinnedNeedsTLS, "standard RDP security"},
		{"rdp", "", nil, ""},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := Connect(ctx, Config{Host: srv.Host, Port: srv.Port, Security: c.security, CertFingerprint: c.pin})
		cancel()
		name := fmt.Sprintf("security %q, pin %q", c.security, c.pin)
		if c.want == nil {
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if fp := s.CertFingerprint(); fp != "" {
				t.Errorf("%s: a certificate %s under standard RDP security", name, fp)
			}
			s.Close()
			continue
		}
		if err == nil {
			s.Close()
			t.Errorf("%s: connected with standard RDP security", name)
			continue
		}
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.words) {
			t.Errorf("%s: %v; want %v saying %q", name, err, c.want, c.words)
		}
	}
}
