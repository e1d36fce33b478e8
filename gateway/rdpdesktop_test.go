package gateway

import (
	"image/color"
	"os"
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

func rdpRequest(s *targets.ShadowRDP, password, pin string) *wire.Request {
	return &wire.Request{Kind: wire.KindSession, Protocol: wire.ProtocolRDP, SessionID: "rdp", User: "tester",
		Target:      wire.Target{Host: s.Host, Port: s.Port},
		Credentials: wire.Credentials{Username: s.User, Password: wire.Secret(password)}, HostKey: pin,
		Desktop: &wire.Desktop{Security: "nla", Width: 1024, Height: 768}}
}

// TestRDPDesktop signs in to freerdp-shadow-cli through the gateway with
// NLA, checks the refusals a user can meet, then types into an xterm on
// the shared display.
func TestRDPDesktop(t *testing.T) {
	t.Parallel()
	srv := targets.NewShadowRDP(t, targets.ShadowOptions{})
	if _, err := srv.Run("xsetroot", "-solid", "#336699"); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t)

	if _, resp := g.open(t, rdpRequest(srv, "wrong-password", "")); resp.OK || resp.Code != wire.CodeAuthFailed || !strings.Contains(resp.Message, "user name or password") {
		t.Fatalf("wrong RDP password: %+v", resp)
	}
	bogus := "tls-cert SHA256:" + strings.Repeat("A", 43)
	if _, resp := g.open(t, rdpRequest(srv, srv.Password, bogus)); resp.OK || resp.Code != wire.CodeHostKeyMismatch || resp.HostKeyFingerprint == "" {
		t.Fatalf("changed certificate: %+v", resp)
	}

	s, resp := g.open(t, rdpRequest(srv, srv.Password, ""))
	if !resp.OK || !strings.HasPrefix(resp.HostKey, wire.CertPrefix) {
		t.Fatalf("refused or no certificate to pin: %+v", resp)
	}
	rd := guac.NewReader(s.conn, guac.Limits{MaxElement: 1 << 22, MaxElements: 16})
	send := func(in guac.Instruction) {
		if _, err := s.conn.Write(in.AppendTo(nil)); err != nil {
			t.Fatal(err)
		}
	}
	screen := guacrender.New(guacrender.DefaultLimits)
	readFrame := func() {
		t.Helper()
		for {
			// The session's deadline (20 s from its opening) moves with
			// each instruction: under -race on a loaded machine the whole
			// journey (xterm start, typing) can take longer while frames
			// still flow; a desktop that goes silent still fails.
			s.conn.SetDeadline(time.Now().Add(20 * time.Second))
			in, err := rd.Read()
			if err != nil {
				t.Fatalf("reading the desktop: %v", err)
			}
			if err := screen.Apply(in); err != nil {
				t.Fatal(err)
			}
			if in.Opcode == "sync" {
				send(guac.New("sync", in.Args[0]))
				return
			}
		}
	}
	readFrame()
	if w, h := screen.Size(); w != 1024 || h != 768 {
		t.Fatalf("screen %dx%d", w, h)
	}
	// The shared display's background reaches the browser, pixel for pixel.
	for screen.At(900, 700) != (color.RGBA{0x33, 0x66, 0x99, 0xff}) {
		readFrame()
	}

	out := filepath.Join(t.TempDir(), "typed")
	if _, err := srv.Start("xterm", "-geometry", "80x10+0+0", "-e", "sh", "-c", "read line; echo \"$line\" > "+out); err != nil {
		t.Fatal(err)
	}
	for srv.Viewable("XTerm") == 0 {
		readFrame()
	}
	send(guac.New("mouse", "40", "40", "0"))
	// As a browser types: Shift is held for the capital.
	key := func(keysym int, down bool) {
		send(guac.New("key", strconv.Itoa(keysym), map[bool]string{true: "1", false: "0"}[down]))
	}
	for _, r := range "via-rdp-Gateway" {
		if r == 'G' {
			key(0xffe1, true)
		}
		key(int(r), true)
		key(int(r), false)
		if r == 'G' {
			key(0xffe1, false)
		}
	}
	send(guac.New("key", "65293", "1"))
	send(guac.New("key", "65293", "0"))
	for {
		if b, _ := os.ReadFile(out); strings.TrimSpace(string(b)) == "via-rdp-Gateway" {
			break
		}
		readFrame() // frames keep coming while the xterm draws
	}
	s.conn.Close()
}

// TestRDPStandardSecurityRefusals: a server offering only standard RDP
// security is refused unless the resource names it, and a pinned
// certificate is never passed by; each refusal says what an
// administrator can do.
func TestRDPStandardSecurityRefusals(t *testing.T) {
	t.Parallel()
	srv := targets.NewShadowRDP(t, targets.ShadowOptions{Security: "rdp"})
	g := startGateway(t)
	pin := wire.CertPrefix + "SHA256:" + strings.Repeat("A", 43)
	for _, c := range []struct {
		security, pin, words string
	}{
		{"any", "", "it is used only when an administrator chooses it for the resource"},
		{"any", pin, "it is used only when an administrator chooses it for the resource"},
		{"rdp", pin, "forget the pinned certificate on the resource's page"},
	} {
		req := rdpRequest(srv, "", c.pin)
		req.Desktop.Security = c.security
		if _, resp := g.open(t, req); resp.OK || resp.Code != wire.CodeUnsupported || !strings.Contains(resp.Message, c.words) {
			t.Errorf("security %s, pin %q: %+v", c.security, c.pin, resp)
		}
	}
	req := rdpRequest(srv, "", "")
	req.Desktop.Security = "rdp"
	if _, resp := g.open(t, req); !resp.OK || resp.HostKey != "" {
		t.Fatalf("standard RDP security chosen by name: %+v", resp)
	}
}
