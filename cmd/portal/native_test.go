package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/store"
)

// The native client's end-to-end tests (issue 19): the real `keyway`
// binary, built by the test, against a portal running serveWith on
// loopback with its embedded gateway, reaching real servers. The client
// authenticates with an API token (KEYWAY_TOKEN) unless a test signs a
// device in.

// nativeFixture is a running portal with alice, her API token and the
// keyway client's environment.
type nativeFixture struct {
	p     *portal
	dir   string
	stop  func()
	log   *syncBuffer
	alice store.User
	bin   string
	env   []string
}

func newNativeFixture(t *testing.T) *nativeFixture {
	t.Helper()
	dir := t.TempDir()
	p, log, stop := startPortalAt(t, dir, "127.0.0.1:0")
	ctx := context.Background()
	alice, err := p.Store.CreateUser(ctx, store.User{Name: "alice", Role: store.RoleUser}, mustHash(t, "alice-password-1"))
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := p.Store.CreateToken(ctx, alice.ID, "native tests", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &nativeFixture{p: p, dir: dir, stop: stop, log: log, alice: alice, bin: targets.BuildKeyway(t),
		env: []string{"KEYWAY_CONFIG_DIR=" + t.TempDir(), "KEYWAY_URL=" + p.URL,
			"KEYWAY_CA=" + filepath.Join(dir, "tls.crt"), "KEYWAY_TOKEN=" + token}}
}

// grant creates r with sec and grants alice sessions on it.
func (f *nativeFixture) grant(t *testing.T, r store.Resource, sec *store.Secrets) store.Resource {
	t.Helper()
	ctx := context.Background()
	res, err := f.p.Store.CreateResource(ctx, r, sec)
	if err != nil {
		t.Fatalf("create resource %s: %v", r.Name, err)
	}
	if _, err := f.p.Store.CreateGrantMode(ctx, res.ID, "user", f.alice.ID, store.GrantTerminal); err != nil {
		t.Fatal(err)
	}
	return res
}

// tunnel starts `keyway tunnel NAME` on a free local port.
func (f *nativeFixture) tunnel(t *testing.T, name string) *targets.Keyway {
	t.Helper()
	return targets.StartKeyway(t, f.bin, f.env, "tunnel", name, "--listen", "127.0.0.1:0")
}

// command prepares a process with the client's environment.
func (f *nativeFixture) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), f.env...)
	return cmd
}

func (f *nativeFixture) portalPort(t *testing.T) int {
	u, err := url.Parse(f.p.URL)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	return port
}

func splitAddr(t *testing.T, addr string) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	port, _ := strconv.Atoi(p)
	return host, port
}

// echoOnce writes msg on c and reads it back.
func echoOnce(c net.Conn, msg []byte) error {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// TestNativePsqlThroughTunnel queries PostgreSQL with psql through
// `keyway tunnel` to a tcp resource.
func TestNativePsqlThroughTunnel(t *testing.T) {
	t.Parallel()
	pg := targets.NewPostgres(t)
	f := newNativeFixture(t)
	f.grant(t, store.Resource{Name: "pg", Protocol: "tcp", Host: pg.Host, Port: pg.Port}, nil)
	k := f.tunnel(t, "pg")
	host, port := splitAddr(t, k.Listen)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", "-X", "-At", "-c", "SELECT 42")
	cmd.Env = append(os.Environ(), pg.Env(host, port)...)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "42" {
		t.Fatalf("psql SELECT 42 through the tunnel: %v: %q\nkeyway:\n%s", err, out, k.Output())
	}
}

// sshClientFiles writes the test user's private key and a known_hosts
// naming the server by the resource's name (what ssh checks through a
// ProxyCommand) and returns the ssh options that use them.
func sshClientFiles(t *testing.T, sshd *targets.SSHD, hostAlias, proxy string) []string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(key, sshd.PrivateKeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(known, []byte(hostAlias+" "+sshd.HostKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + known, "-o", "ProxyCommand=" + proxy}
}

// TestNativeOpenSSHThroughTunnel runs OpenSSH's ssh and scp with
// `ProxyCommand keyway tunnel --stdio` to an SSH resource with Tunnel on,
// signing in with the user's own key (the server's host key is checked by
// ssh itself), and `keyway ssh` to the same resource, which is a recorded
// terminal with the stored credentials.
func TestNativeOpenSSHThroughTunnel(t *testing.T) {
	t.Parallel()
	sshd := targets.NewSSHD(t)
	f := newNativeFixture(t)
	f.grant(t, store.Resource{Name: "box", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User,
		Options: store.Options{Tunnel: true}}, &store.Secrets{Password: sshd.Password})
	opts := sshClientFiles(t, sshd, "box", f.bin+" tunnel --stdio box")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := f.command(ctx, name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s\nportal log:\n%s", name, strings.Join(args, " "), err, out, f.log.String())
		}
		return string(out)
	}
	if out := run("ssh", append(opts, sshd.User+"@box", "echo kw-native-$((6*7))")...); !strings.Contains(out, "kw-native-42") {
		t.Fatalf("ssh through the tunnel printed %q", out)
	}

	// scp a file there and back through the tunnel.
	tu, err := user.Lookup(targets.TestUser)
	if err != nil {
		t.Fatal(err)
	}
	name := "kw-native-" + rand.Text()[:10] + ".bin"
	t.Cleanup(func() { os.Remove(filepath.Join(tu.HomeDir, name)) })
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	local := filepath.Join(t.TempDir(), "up.bin")
	back := filepath.Join(t.TempDir(), "down.bin")
	os.WriteFile(local, payload, 0o600)
	run("scp", append(opts, local, sshd.User+"@box:"+name)...)
	run("scp", append(opts, sshd.User+"@box:"+name, back)...)
	if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("scp round trip: %d bytes back, %v", len(got), err)
	}

	// keyway ssh: a terminal session with the stored password, recorded.
	// stdin is not a terminal here, so it is relayed as typed lines.
	cmd := f.command(ctx, f.bin, "ssh", "box")
	cmd.Stdin = strings.NewReader("echo kw-term-$((6*7))\nexit 3\n")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.Contains(string(out), "kw-term-42") {
		t.Fatalf("keyway ssh box: %v (want exit status 3)\n%s", err, out)
	}
	rec := recordingWith(t, f.p, "kw-term-42", f.log.String)
	if rec.User != "alice" {
		t.Fatalf("recording %+v: not alice's", rec)
	}
}

// TestNativeRDPThroughTunnel signs in with xfreerdp (NLA, /auth-only, on the
// target's own X display) to freerdp-shadow-cli through `keyway tunnel` to
// an RDP resource with Tunnel on; a wrong password fails the same way, so
// the server, not the tunnel, decided.
func TestNativeRDPThroughTunnel(t *testing.T) {
	t.Parallel()
	rdp := targets.NewShadowRDP(t, targets.ShadowOptions{})
	f := newNativeFixture(t)
	f.grant(t, store.Resource{Name: "desk", Protocol: "rdp", Host: rdp.Host, Port: rdp.Port, Login: rdp.User,
		Options: store.Options{Tunnel: true}}, &store.Secrets{Password: rdp.Password})
	k := f.tunnel(t, "desk")
	if out, err := rdp.Run("xfreerdp", "/v:"+k.Listen, "/u:"+rdp.User, "/p:"+rdp.Password, "/cert:ignore", "/auth-only", "/log-level:WARN"); err != nil {
		t.Fatalf("xfreerdp /auth-only through the tunnel: %v\n%s\nkeyway:\n%s", err, out, k.Output())
	}
	if _, err := rdp.Run("xfreerdp", "/v:"+k.Listen, "/u:"+rdp.User, "/p:wrong-password", "/cert:ignore", "/auth-only", "/log-level:OFF"); err == nil {
		t.Fatal("xfreerdp signed in with a wrong password")
	}
}

// TestNativeSocksProxyNetwork fetches from an HTTP server inside a network
// resource's rules with curl through `keyway proxy`, by address and by a
// name the gateway resolves, and is refused for a port outside them.
func TestNativeSocksProxyNetwork(t *testing.T) {
	t.Parallel()
	inside, outside := targets.NewHTTP(t), targets.NewHTTP(t)
	_, in := splitAddr(t, inside.Listener.Addr().String())
	_, out := splitAddr(t, outside.Listener.Addr().String())
	f := newNativeFixture(t)
	f.grant(t, store.Resource{Name: "loop", Protocol: "network",
		Options: store.Options{Networks: fmt.Sprintf("127.0.0.0/8 tcp/%d", in)}}, nil)
	k := targets.StartKeyway(t, f.bin, f.env, "proxy", "--socks", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	curl := func(u string) (string, error) {
		out, err := exec.CommandContext(ctx, "curl", "-sS", "--max-time", "30", "--socks5-hostname", k.Listen, u).CombinedOutput()
		return string(out), err
	}
	for _, u := range []string{fmt.Sprintf("http://127.0.0.1:%d/", in), fmt.Sprintf("http://localhost:%d/", in)} {
		if body, err := curl(u); err != nil || body != targets.HTTPBody {
			t.Fatalf("curl %s through the proxy: %v: %q\nkeyway:\n%s", u, err, body, k.Output())
		}
	}
	refused := fmt.Sprintf("127.0.0.1:%d", out)
	if body, err := curl("http://" + refused + "/"); err == nil {
		t.Fatalf("curl outside the network's ports got %q", body)
	}
	if _, err := k.WaitLine(10*time.Second, regexp.MustCompile(regexp.QuoteMeta(refused))); err != nil {
		t.Fatalf("no line naming the refused address: %v", err)
	}
}

// tcpConnsTo counts pid's established TCP connections to port on
// loopback, from its open sockets and the kernel's connection table.
func tcpConnsTo(t *testing.T, pid, port int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	wantPort := fmt.Sprintf(":%04X", port)
	n := 0
	for _, table := range []string{"tcp", "tcp6"} {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			f := strings.Fields(sc.Text())
			if len(f) > 9 && strings.HasSuffix(f[2], wantPort) && f[3] == "01" && inodes[f[9]] {
				n++
			}
		}
	}
	return n
}

// TestNativeHundredStreamsOneConnection opens 100 connections through one
// `keyway tunnel` at once and checks that they all reach the target while
// the client holds exactly one TCP connection to the portal.
func TestNativeHundredStreamsOneConnection(t *testing.T) {
	t.Parallel()
	echo := targets.NewEcho(t)
	f := newNativeFixture(t)
	f.grant(t, store.Resource{Name: "echo", Protocol: "tcp", Host: echo.Host, Port: echo.Port}, nil)
	k := f.tunnel(t, "echo")
	const streams = 100
	conns := make([]net.Conn, streams)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", k.Listen, 30*time.Second)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
			if err := echoOnce(c, []byte(fmt.Sprintf("stream %d", i))); err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("%v\nkeyway:\n%s", err, k.Output())
	}
	if n := echo.Accepted(); n != streams {
		t.Fatalf("the target accepted %d connections, want %d", n, streams)
	}
	if n := tcpConnsTo(t, k.Cmd.Process.Pid, f.portalPort(t)); n != 1 {
		t.Fatalf("keyway holds %d TCP connections to the portal for %d streams, want 1", n, streams)
	}
}

// TestNativePortalRestart stops the portal under an open stream: the stream
// ends, the client reconnects to the restarted portal on the same port,
// and new connections through the same `keyway tunnel` work.
func TestNativePortalRestart(t *testing.T) {
	t.Parallel()
	echo := targets.NewEcho(t)
	f := newNativeFixture(t)
	f.grant(t, store.Resource{Name: "echo", Protocol: "tcp", Host: echo.Host, Port: echo.Port}, nil)
	k := f.tunnel(t, "echo")
	c, err := net.Dial("tcp", k.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echoOnce(c, []byte("before")); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(f.portalPort(t)))
	f.stop()
	// The open stream ends with the portal.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stream still open after the portal stopped: %v", err)
	}
	startPortalAt(t, f.dir, addr)
	// A new connection waits for the reconnection (up to 10 s) and works.
	c2, err := net.Dial("tcp", k.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := echoOnce(c2, []byte("after")); err != nil {
		t.Fatalf("after the restart: %v\nkeyway:\n%s", err, k.Output())
	}
}

// TestNativeSlowReaderDoesNotStallOthers fills one stream (its local
// reader stops reading, so the echo backs up through client, portal and
// gateway until writes block) and checks another stream of the same client
// still moves data in both directions.
func TestNativeSlowReaderDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	echo := targets.NewEcho(t)
	f := newNativeFixture(t)
	f.grant(t, store.Resource{Name: "echo", Protocol: "tcp", Host: echo.Host, Port: echo.Port}, nil)
	k := f.tunnel(t, "echo")
	stalled, err := net.Dial("tcp", k.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if err := echoOnce(stalled, []byte("open")); err != nil {
		t.Fatal(err)
	}
	// Write without reading until a write cannot go on for a second: every
	// buffer and window on the way is full.
	chunk := make([]byte, 64<<10)
	var pending int64
	for {
		stalled.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := stalled.Write(chunk)
		pending += int64(n)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("stalled stream failed after %d bytes: %v", pending, err)
		}
		if pending > 1<<30 {
			t.Fatal("1 GiB written to a stream nobody reads: nothing pushes back")
		}
	}
	// Another stream still carries 8 MiB each way and quick round trips.
	other, err := net.Dial("tcp", k.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetDeadline(time.Now().Add(60 * time.Second))
	payload := make([]byte, 8<<20)
	rand.Read(payload)
	got := make([]byte, len(payload))
	var wg sync.WaitGroup
	wg.Add(1)
	var werr error
	go func() {
		defer wg.Done()
		_, werr = other.Write(payload)
	}()
	_, rerr := io.ReadFull(other, got)
	wg.Wait()
	if err := errors.Join(werr, rerr); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("the other stream stalled beside a full one (%d bytes pending there): %v\nkeyway:\n%s", pending, err, k.Output())
	}
	for i := range 20 {
		if err := echoOnce(other, []byte(fmt.Sprintf("ping %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	// The full stream still delivers what it holds once read.
	stalled.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(stalled, make([]byte, 4)); err != nil {
		t.Fatalf("the full stream: %v", err)
	}
}

// userCodeLine is keyway login's instruction, with the code to approve.
var userCodeLine = regexp.MustCompile(`enter code ([A-Z]{4}-[A-Z]{4})`)

// TestNativeDeviceRevokeEndsStream signs a device in with `keyway login`
// (alice approves its code on /device in her browser session), opens a
// stream with the device's credential, and revokes the device from her
// Account page: the open stream ends within seconds and the next one is
// refused with the advice to sign in again.
func TestNativeDeviceRevokeEndsStream(t *testing.T) {
	t.Parallel()
	echo := targets.NewEcho(t)
	f := newNativeFixture(t)
	f.grant(t, store.Resource{Name: "echo", Protocol: "tcp", Host: echo.Host, Port: echo.Port}, nil)
	env := []string{"KEYWAY_CONFIG_DIR=" + t.TempDir(), "KEYWAY_CA=" + filepath.Join(f.dir, "tls.crt"), "KEYWAY_TOKEN="}
	login := targets.LaunchKeyway(t, f.bin, env, "login", "--no-browser", f.p.URL)
	line, err := login.WaitLine(30*time.Second, userCodeLine)
	if err != nil {
		t.Fatal(err)
	}
	alice := newBrowser(t, f.p.URL)
	alice.signIn("alice", "alice-password-1")
	if resp := alice.post("/device/approve", url.Values{"code": {userCodeLine.FindStringSubmatch(line)[1]}}); resp.StatusCode >= 400 {
		t.Fatalf("approve the device: %d", resp.StatusCode)
	}
	select {
	case <-login.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("keyway login did not finish after approval:\n%s", login.Output())
	}
	if !login.Cmd.ProcessState.Success() {
		t.Fatalf("keyway login: %v\n%s", login.Cmd.ProcessState, login.Output())
	}
	devices, err := f.p.Store.ListDevices(context.Background(), f.alice.ID)
	if err != nil || len(devices) != 1 {
		t.Fatalf("alice's devices: %v, %v", devices, err)
	}

	k := targets.StartKeyway(t, f.bin, env, "tunnel", "echo", "--listen", "127.0.0.1:0")
	c, err := net.Dial("tcp", k.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echoOnce(c, []byte("signed in")); err != nil {
		t.Fatalf("stream with the device credential: %v\nkeyway:\n%s\nportal:\n%s", err, k.Output(), f.log.String())
	}
	if resp := alice.post(fmt.Sprintf("/account/devices/%d/revoke", devices[0].ID), nil); resp.StatusCode >= 400 {
		t.Fatalf("revoke the device: %d", resp.StatusCode)
	}
	// The guard checks every 2 s; allow a loaded machine some more.
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stream still open after the device was revoked: %v", err)
	}
	c2, err := net.Dial("tcp", k.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatalf("a revoked device's new stream read %d bytes", n)
	}
	if _, err := k.WaitLine(10*time.Second, regexp.MustCompile(`keyway login`)); err != nil {
		t.Fatalf("no advice to sign in again: %v", err)
	}
}
