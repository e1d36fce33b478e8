package gateway

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/gateway/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testGateway is a running gateway and the portal identity it trusts.
type testGateway struct {
	*Gateway
	portal *wire.Identity
	key    ed25519.PublicKey
}

func identity(t *testing.T) *wire.Identity {
	t.Helper()
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	id, err := wire.NewIdentity(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// startGateway starts a gateway whose handshake timeout is generous, so a
// loaded machine (race detector, parallel tests) does not fail the dial.
func startGateway(t *testing.T) *testGateway {
	t.Helper()
	return startGatewayWith(t, 5*time.Second)
}

func startGatewayWith(t *testing.T, handshake time.Duration) *testGateway {
	t.Helper()
	gwID, portal := identity(t), identity(t)
	g, err := New(Config{
		SSHAddr: "127.0.0.1:0", Identity: gwID,
		TrustedPortal:    func(k ed25519.PublicKey) bool { return k.Equal(portal.PublicKey()) },
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		DialTimeout:      5 * time.Second,
		HandshakeTimeout: handshake,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return &testGateway{Gateway: g, portal: portal, key: gwID.PublicKey()}
}

// session is the portal side of one session connection.
type session struct {
	t    *testing.T
	conn net.Conn
	fr   *wire.FrameReader
	out  bytes.Buffer
	exit *wire.Exit
}

func (g *testGateway) open(t *testing.T, req *wire.Request) (*session, *wire.Response) {
	t.Helper()
	c, err := tls.Dial("tcp", g.Addr().String(), wire.ClientTLSConfig(g.portal, g.key))
	if err != nil {
		t.Fatalf("dial gateway: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if err := wire.WriteRequest(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := wire.ReadResponse(c)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return &session{t: t, conn: c, fr: wire.NewFrameReader(c)}, resp
}

func (s *session) send(text string) {
	if err := wire.WriteFrame(s.conn, wire.FrameData, []byte(text)); err != nil {
		s.t.Fatal(err)
	}
}

// waitFor reads output until it contains want, or the session ends.
func (s *session) waitFor(want string) {
	s.t.Helper()
	for !strings.Contains(s.out.String(), want) {
		ft, p, err := s.fr.Next()
		if err != nil {
			s.t.Fatalf("waiting for %q: %v; output so far:\n%s", want, err, s.out.String())
		}
		switch ft {
		case wire.FrameData:
			s.out.Write(p)
		case wire.FrameExit:
			ex, _ := wire.ParseExit(p)
			s.exit = &ex
			if !strings.Contains(s.out.String(), want) {
				s.t.Fatalf("session ended (%+v) before %q; output:\n%s", ex, want, s.out.String())
			}
		}
	}
}

// waitExit reads until the exit frame.
func (s *session) waitExit() wire.Exit {
	s.t.Helper()
	for s.exit == nil {
		ft, p, err := s.fr.Next()
		if err != nil {
			s.t.Fatalf("waiting for exit: %v", err)
		}
		if ft == wire.FrameExit {
			ex, _ := wire.ParseExit(p)
			s.exit = &ex
		}
	}
	return *s.exit
}

func sshRequest(sshd *targets.SSHD) *wire.Request {
	return &wire.Request{
		Kind: wire.KindSession, Protocol: wire.ProtocolSSH, SessionID: "test", User: "tester",
		Target:      wire.Target{Host: sshd.Host, Port: sshd.Port},
		Credentials: wire.Credentials{Username: sshd.User, Password: wire.Secret(sshd.Password)},
		Terminal:    &wire.Terminal{Term: "xterm-256color", Cols: 80, Rows: 24},
	}
}

// TestTerminalSession runs terminals against every kind of SSH server the
// tests know (OpenSSH, and Dropbear with only an Ed25519 host key).
func TestTerminalSession(t *testing.T) {
	t.Parallel()
	for _, server := range targets.SSHServers() {
		t.Run(server.Name, func(t *testing.T) {
			t.Parallel()
			testTerminalSession(t, startGateway(t), server.Start(t))
		})
	}
}

func testTerminalSession(t *testing.T, g *testGateway, sshd *targets.SSHD) {

	t.Run("password, first use reports the host key", func(t *testing.T) {
		t.Parallel()
		s, resp := g.open(t, sshRequest(sshd))
		if !resp.OK {
			t.Fatalf("refused: %+v", resp)
		}
		if resp.HostKey != sshd.HostKey {
			t.Fatalf("reported host key %q, want %q", resp.HostKey, sshd.HostKey)
		}
		s.send("echo kw-$((6*7))-ok\n")
		s.waitFor("kw-42-ok")
		s.send("exit 3\n")
		if ex := s.waitExit(); ex.Status != 3 {
			t.Fatalf("exit %+v, want status 3", ex)
		}
	})

	t.Run("private key and pinned host key", func(t *testing.T) {
		t.Parallel()
		req := sshRequest(sshd)
		req.Credentials = wire.Credentials{Username: sshd.User, PrivateKey: wire.Secret(sshd.PrivateKeyPEM)}
		req.HostKey = sshd.HostKey
		s, resp := g.open(t, req)
		if !resp.OK {
			t.Fatalf("refused: %+v", resp)
		}
		s.send("whoami\n")
		s.waitFor(targets.TestUser)
	})

	t.Run("resize reaches the pty", func(t *testing.T) {
		t.Parallel()
		s, resp := g.open(t, sshRequest(sshd))
		if !resp.OK {
			t.Fatalf("refused: %+v", resp)
		}
		wire.WriteFrame(s.conn, wire.FrameResize, wire.ResizePayload(132, 43))
		s.send("stty size\n")
		s.waitFor("43 132")
	})

	for _, tc := range []struct {
		name string
		edit func(*wire.Request)
		code wire.Code
		msg  string
	}{
		{"wrong password", func(r *wire.Request) { r.Credentials.Password = "wrong-password" }, wire.CodeAuthFailed, "rejected the login"},
		{"host key mismatch", func(r *wire.Request) { r.HostKey = otherHostKey(t) }, wire.CodeHostKeyMismatch, "has changed: expected SHA256:"},
		{"refused port", func(r *wire.Request) { r.Target.Port = closedPort(t) }, wire.CodeRefused, "refused the connection"},
		{"not an RDP server", func(r *wire.Request) { r.Protocol = wire.ProtocolRDP }, wire.CodeUnsupported, "security negotiation failed"},
		{"no terminal", func(r *wire.Request) { r.Terminal = nil }, wire.CodeBadRequest, "terminal"},
		{"invalid port", func(r *wire.Request) { r.Target.Port = 0 }, wire.CodeBadRequest, "port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := sshRequest(sshd)
			tc.edit(req)
			_, resp := g.open(t, req)
			if resp.OK || resp.Code != tc.code || !strings.Contains(resp.Message, tc.msg) {
				t.Fatalf("got %+v, want code %s with %q", resp, tc.code, tc.msg)
			}
			if tc.code == wire.CodeHostKeyMismatch && resp.HostKey != sshd.HostKey {
				t.Fatalf("mismatch did not report the offered key: %q", resp.HostKey)
			}
		})
	}
}

// TestProtocolPorts checks that each session port takes its own protocol
// (and relays) only.
func TestProtocolPorts(t *testing.T) {
	t.Parallel()
	gwID, portal := identity(t), identity(t)
	g, err := New(Config{
		SSHAddr: "127.0.0.1:0", RDPAddr: "127.0.0.1:0", VNCAddr: "127.0.0.1:0", Identity: gwID,
		TrustedPortal: func(k ed25519.PublicKey) bool { return k.Equal(portal.PublicKey()) },
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)), DialTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	addrs := map[string]string{}
	for _, p := range []string{wire.ProtocolSSH, wire.ProtocolRDP, wire.ProtocolVNC} {
		addrs[p] = g.SessionAddr(p).String()
	}
	if tcp := g.SessionAddr(wire.ProtocolTCP).String(); tcp != addrs["ssh"] {
		t.Fatalf("tcp sessions on %s, want the SSH listener %s", tcp, addrs["ssh"])
	}
	if addrs["ssh"] == addrs["rdp"] || addrs["rdp"] == addrs["vnc"] {
		t.Fatalf("listeners share an address: %v", addrs)
	}
	for _, tc := range []struct{ port, protocol string }{
		{"vnc", wire.ProtocolSSH}, {"rdp", wire.ProtocolVNC}, {"ssh", wire.ProtocolRDP}, {"ssh", wire.ProtocolVNC},
		{"rdp", wire.ProtocolTCP}, {"vnc", wire.ProtocolTCP},
	} {
		c, err := tls.Dial("tcp", addrs[tc.port], wire.ClientTLSConfig(portal, gwID.PublicKey()))
		if err != nil {
			t.Fatal(err)
		}
		req := &wire.Request{Kind: wire.KindSession, Protocol: tc.protocol, SessionID: "x", Target: wire.Target{Host: "127.0.0.1", Port: 1}}
		if tc.protocol == wire.ProtocolSSH {
			req.Terminal = &wire.Terminal{Term: "xterm", Cols: 80, Rows: 24}
		}
		if err := wire.WriteRequest(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := wire.ReadResponse(c)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.OK || resp.Code != wire.CodeBadRequest || !strings.Contains(resp.Message, "does not take "+tc.protocol) {
			t.Errorf("%s session on the %s port: %+v", tc.protocol, tc.port, resp)
		}
	}
}

func otherHostKey(t *testing.T) string {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// closedPort returns a loopback port that refuses connections until the
// test ends: a socket is bound to it but does not listen, so no other
// test's listener can take the port meanwhile (a port merely closed again
// could be, and then a test expecting a refusal gets an answer).
func closedPort(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

// TestPortalDisconnectEndsRemoteSession checks that a portal that goes away
// mid-session takes the remote shell with it.
func TestPortalDisconnectEndsRemoteSession(t *testing.T) {
	t.Parallel()
	sshd := targets.NewSSHD(t)
	g := startGateway(t)
	s, resp := g.open(t, sshRequest(sshd))
	if !resp.OK {
		t.Fatalf("refused: %+v", resp)
	}
	marker := fmt.Sprintf("keyway-marker-%d", time.Now().UnixNano())
	s.send("exec -a " + marker + " sleep 600\n")
	waitUntil(t, "remote sleep to start", func() bool { return exec.Command("pgrep", "-f", marker).Run() == nil })
	s.conn.Close()
	waitUntil(t, "remote sleep to end", func() bool { return exec.Command("pgrep", "-f", marker).Run() != nil })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBadClients checks that strangers and broken clients are refused
// quickly, leaving nothing behind (goleak checks at the end).
func TestBadClients(t *testing.T) {
	t.Parallel()
	g := startGatewayWith(t, 500*time.Millisecond) // silent clients must go quickly
	dialTLS := func(id *wire.Identity) (*tls.Conn, error) {
		c, err := tls.Dial("tcp", g.Addr().String(), wire.ClientTLSConfig(id, g.key))
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c, nil
	}

	t.Run("unpinned client key", func(t *testing.T) {
		c, err := dialTLS(identity(t))
		if err == nil {
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if err == nil {
			t.Fatal("a client with an unknown key was served")
		}
	})
	t.Run("garbage request", func(t *testing.T) {
		c, err := dialTLS(g.portal)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("\x00\x00\x00\x05hello"))
		resp, err := wire.ReadResponse(c)
		if err != nil || resp.Code != wire.CodeBadRequest {
			t.Fatalf("got %+v, %v; want bad_request", resp, err)
		}
	})
	t.Run("oversized request header", func(t *testing.T) {
		c, err := dialTLS(g.portal)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], 1<<30)
		c.Write(hdr[:])
		resp, err := wire.ReadResponse(c)
		if err != nil || resp.Code != wire.CodeBadRequest {
			t.Fatalf("got %+v, %v; want bad_request", resp, err)
		}
	})
	t.Run("silent client is dropped", func(t *testing.T) {
		c, err := dialTLS(g.portal)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		io.ReadAll(c) // returns once the gateway closes the connection
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("silent client held for %s", d)
		}
	})
	t.Run("plain TCP that never handshakes", func(t *testing.T) {
		c, err := net.Dial("tcp", g.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		io.ReadAll(c)
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("half-open client held for %s", d)
		}
	})
}

// TestCloseEndsSessions checks that closing the gateway ends live sessions.
func TestCloseEndsSessions(t *testing.T) {
	t.Parallel()
	sshd := targets.NewSSHD(t)
	g := startGateway(t)
	s, resp := g.open(t, sshRequest(sshd))
	if !resp.OK {
		t.Fatalf("refused: %+v", resp)
	}
	s.send("echo ready\n")
	s.waitFor("ready")
	done := make(chan struct{})
	go func() { g.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while a session was running")
	}
	// Output still in flight may arrive; then the stream must end.
	for {
		if _, _, err := s.fr.Next(); err != nil {
			return
		}
	}
}

// TestVNCDesktop runs a VNC desktop through the gateway as the portal
// would: Guacamole display instructions out, key instructions in.
func TestVNCDesktop(t *testing.T) {
	t.Parallel()
	x := targets.NewXvnc(t, targets.XvncOptions{Password: "vncpw123"})
	if err := x.Run("xsetroot", "-solid", "#336699"); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t)
	req := func(pw string) *wire.Request {
		return &wire.Request{Kind: wire.KindSession, Protocol: wire.ProtocolVNC, SessionID: "vnc", User: "tester",
			Target: wire.Target{Host: x.Host, Port: x.Port}, Credentials: wire.Credentials{Password: wire.Secret(pw)}}
	}
	if _, resp := g.open(t, req("wrongpw1")); resp.OK || resp.Code != wire.CodeAuthFailed || !strings.Contains(resp.Message, "refused the password") {
		t.Fatalf("wrong VNC password: %+v", resp)
	}
	s, resp := g.open(t, req("vncpw123"))
	if !resp.OK {
		t.Fatalf("refused: %+v", resp)
	}
	rd := guac.NewReader(s.conn, guac.Limits{MaxElement: 1 << 20, MaxElements: 16})
	next := func(want string) guac.Instruction {
		t.Helper()
		for {
			in, err := rd.Read()
			if err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			if in.Opcode == want {
				return in
			}
		}
	}
	if in := next("size"); strings.Join(in.Args, "x") != "0x1024x768" {
		t.Fatalf("size %v", in.Args)
	}
	next("img")
	ts := next("sync").Args[0]
	send := func(in guac.Instruction) {
		if _, err := s.conn.Write(in.AppendTo(nil)); err != nil {
			t.Fatal(err)
		}
	}
	send(guac.New("sync", ts))

	out := filepath.Join(t.TempDir(), "typed")
	if _, err := x.Start("xterm", "-geometry", "80x10+0+0", "-e", "sh", "-c", "read line; echo \"$line\" > "+out); err != nil {
		t.Fatal(err)
	}
	// Frames keep coming as the xterm appears; acknowledge them. The
	// acknowledgements stop with the connection, so their errors are not
	// the test's (t.Fatal belongs to the test's own goroutine).
	acks := make(chan struct{})
	go func() {
		defer close(acks)
		for {
			in, err := rd.Read()
			if err != nil {
				return
			}
			if in.Opcode == "sync" {
				if _, err := s.conn.Write(guac.New("sync", in.Args[0]).AppendTo(nil)); err != nil {
					return
				}
			}
		}
	}()
	defer func() { s.conn.Close(); <-acks }()
	waitUntil(t, "the xterm window", func() bool { return x.Viewable("XTerm") > 0 })
	send(guac.New("mouse", "40", "40", "0"))
	for _, r := range "via-gateway" {
		send(guac.New("key", strconv.Itoa(int(r)), "1"))
		send(guac.New("key", strconv.Itoa(int(r)), "0"))
	}
	send(guac.New("key", "65293", "1"))
	send(guac.New("key", "65293", "0"))
	waitUntil(t, "typed text on the remote side", func() bool {
		b, _ := os.ReadFile(out)
		return strings.TrimSpace(string(b)) == "via-gateway"
	})
	s.conn.Close()
}

func TestVNCClipboard(t *testing.T) {
	t.Parallel()
	x := targets.NewXvnc(t, targets.XvncOptions{})
	g := startGateway(t)
	s, resp := g.open(t, &wire.Request{Kind: wire.KindSession, Protocol: wire.ProtocolVNC, SessionID: "clip", User: "tester",
		Target: wire.Target{Host: x.Host, Port: x.Port}})
	if !resp.OK {
		t.Fatalf("refused: %+v", resp)
	}
	send := func(in guac.Instruction) {
		if _, err := s.conn.Write(in.AppendTo(nil)); err != nil {
			t.Fatal(err)
		}
	}
	// Browser → remote: a clipboard stream becomes the X clipboard.
	send(guac.New("clipboard", "5", "text/plain"))
	// Text beyond Latin-1 and several lines: the extended clipboard
	// carries UTF-8.
	const fromBrowser, fromRemote = "from-browser-42 ✓ 世界\nsecond line", "from-remote-7 – ü ✓"
	send(guac.New("blob", "5", base64.StdEncoding.EncodeToString([]byte(fromBrowser))))
	send(guac.New("end", "5"))
	waitUntil(t, "the remote clipboard to hold the browser's text", func() bool {
		cmd := exec.Command("xclip", "-o", "-selection", "clipboard")
		cmd.Env = append(os.Environ(), "DISPLAY=:"+strconv.Itoa(x.Display))
		out, _ := cmd.Output()
		return string(out) == fromBrowser
	})

	// Remote → browser: a new X clipboard owner reaches the client as a
	// clipboard stream (acknowledging frames so the session keeps going).
	if _, err := x.Start("sh", "-c", "printf %s '"+fromRemote+"' | xclip -selection clipboard"); err != nil {
		t.Fatal(err)
	}
	rd := guac.NewReader(s.conn, guac.Limits{MaxElement: 1 << 20, MaxElements: 16})
	var clip string
	streamID := ""
	for {
		in, err := rd.Read()
		if err != nil {
			t.Fatalf("waiting for the clipboard: %v", err)
		}
		switch in.Opcode {
		case "sync":
			send(guac.New("sync", in.Args[0]))
		case "clipboard":
			streamID = in.Args[0]
			clip = ""
		case "blob":
			if in.Args[0] == streamID {
				b, _ := base64.StdEncoding.DecodeString(in.Args[1])
				clip += string(b)
			}
		case "end":
			if in.Args[0] == streamID && clip == fromRemote {
				s.conn.Close()
				return
			}
		}
	}
}

// TestVNCViewOnly checks that a view-only session's keys never reach the
// desktop, while a normal session's do.
func TestVNCViewOnly(t *testing.T) {
	t.Parallel()
	x := targets.NewXvnc(t, targets.XvncOptions{})
	g := startGateway(t)
	out := filepath.Join(t.TempDir(), "typed")
	if _, err := x.Start("xterm", "-geometry", "80x10+0+0", "-e", "sh", "-c", "read line; echo \"$line\" > "+out); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the xterm window", func() bool { return x.Viewable("XTerm") > 0 })
	typeLine := func(desktop *wire.Desktop, text string, enter bool) {
		s, resp := g.open(t, &wire.Request{Kind: wire.KindSession, Protocol: wire.ProtocolVNC, SessionID: "vo", User: "tester",
			Target: wire.Target{Host: x.Host, Port: x.Port}, Desktop: desktop})
		if !resp.OK {
			t.Fatalf("refused: %+v", resp)
		}
		// Type only once the session is running: the first frame.
		rd := guac.NewReader(s.conn, guac.Limits{MaxElement: 1 << 20, MaxElements: 16})
		for {
			in, err := rd.Read()
			if err != nil {
				t.Fatal(err)
			}
			if in.Opcode == "sync" {
				break
			}
		}
		var b []byte
		b = guac.New("mouse", "40", "40", "0").AppendTo(b)
		for _, r := range text {
			b = guac.New("key", strconv.Itoa(int(r)), "1").AppendTo(b)
			b = guac.New("key", strconv.Itoa(int(r)), "0").AppendTo(b)
		}
		if enter {
			b = guac.New("key", "65293", "1").AppendTo(b)
			b = guac.New("key", "65293", "0").AppendTo(b)
		}
		if _, err := s.conn.Write(b); err != nil {
			t.Fatal(err)
		}
		// Sessions stay open until the end of the test: closing one at
		// once could reset the VNC connection before the server read the
		// keys, hiding a leak.
	}
	typeLine(&wire.Desktop{ViewOnly: true}, "blocked", true)
	typeLine(nil, "allowed", true)
	waitUntil(t, "the typed line", func() bool {
		b, _ := os.ReadFile(out)
		return len(b) > 0
	})
	if b, _ := os.ReadFile(out); strings.TrimSpace(string(b)) != "allowed" {
		t.Fatalf("the xterm read %q: keys from the view-only session got through", b)
	}
}

// TestVNCCertificatePinning connects to a VeNCrypt X509 server: the first
// session reports the certificate for pinning, a pinned one connects, and
// a different pin is refused with the certificate offered.
func TestVNCCertificatePinning(t *testing.T) {
	t.Parallel()
	x := targets.NewXvnc(t, targets.XvncOptions{Password: "vncpw123", Security: "X509Vnc"})
	g := startGateway(t)
	fp := wire.CertFingerprint(x.CertDER)
	req := func(pin string) *wire.Request {
		return &wire.Request{Kind: wire.KindSession, Protocol: wire.ProtocolVNC, SessionID: "vnc-tls", User: "tester",
			Target: wire.Target{Host: x.Host, Port: x.Port}, Credentials: wire.Credentials{Password: "vncpw123"}, HostKey: pin}
	}
	s, resp := g.open(t, req(""))
	if !resp.OK || resp.HostKey != wire.CertPrefix+fp || resp.HostKeyFingerprint != fp {
		t.Fatalf("first connection: %+v, want certificate %s", resp, fp)
	}
	s.conn.Close()
	s, resp = g.open(t, req(wire.CertPrefix+fp))
	if !resp.OK {
		t.Fatalf("pinned certificate refused: %+v", resp)
	}
	s.conn.Close()
	_, resp = g.open(t, req(wire.CertPrefix+"SHA256:c29tZXRoaW5nIGVsc2U"))
	if resp.OK || resp.Code != wire.CodeHostKeyMismatch || resp.HostKey != wire.CertPrefix+fp || !strings.Contains(resp.Message, "TLS certificate") {
		t.Fatalf("changed certificate: %+v", resp)
	}
}
