package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/cmd/keyway/internal/client"
	"github.com/keyway-dev/keyway/cmd/keyway/internal/config"
)

// running is a keyway command running in the test's process.
type running struct {
	stdout, stderr *syncBuffer
	addr           chan net.Addr
	done           chan int
	cancel         context.CancelFunc
	dials          *atomic.Int64
}

type cmdOpts struct {
	dir    string
	env    map[string]string
	stdin  io.Reader
	dials  *atomic.Int64
	onDial func()
	open   func(ctx context.Context, url string) error
	wait   time.Duration
}

func start(t *testing.T, f *fakePortal, o cmdOpts, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stdout: newSyncBuffer(), stderr: newSyncBuffer(), addr: make(chan net.Addr, 1), done: make(chan int, 1), cancel: cancel, dials: o.dials}
	if r.dials == nil {
		r.dials = new(atomic.Int64)
	}
	vars := map[string]string{"KEYWAY_CONFIG_DIR": o.dir}
	for k, v := range o.env {
		vars[k] = v
	}
	stdin := o.stdin
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	env := Env{
		Stdin: stdin, Stdout: r.stdout, Stderr: r.stderr,
		Getenv:  func(k string) string { return vars[k] },
		Version: "test",
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			r.dials.Add(1)
			if o.onDial != nil {
				o.onDial()
			}
			return c, err
		},
		OpenBrowser:   o.open,
		WaitForPortal: o.wait,
		Listening:     func(a net.Addr) { r.addr <- a },
	}
	go func() { r.done <- Run(ctx, env, args) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			t.Errorf("keyway %v did not end", args)
		}
	})
	return r
}

// wait waits for the command's exit status.
func (r *running) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("the command did not end; stderr:\n%s", r.stderr.String())
		return -1
	}
}

func (r *running) listening(t *testing.T) string {
	t.Helper()
	select {
	case a := <-r.addr:
		return a.String()
	case code := <-r.done:
		t.Fatalf("the command ended with %d before listening; stderr:\n%s", code, r.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("the command did not listen; stderr:\n%s", r.stderr.String())
	}
	return ""
}

// signIn runs keyway login against f, approved at once, and returns the
// configuration directory.
func signIn(t *testing.T, f *fakePortal) string {
	t.Helper()
	f.mu.Lock()
	f.autoOK = true
	f.mu.Unlock()
	dir := filepath.Join(t.TempDir(), "keyway")
	r := start(t, f, cmdOpts{dir: dir}, "login", f.url(), "--ca", f.caFile, "--no-browser")
	if code := r.wait(t); code != 0 {
		t.Fatalf("login: %d\n%s", code, r.stderr.String())
	}
	return dir
}

// echo sends msg on a new connection to addr, ends its half, and returns
// what came back.
func echo(t *testing.T, addr, msg string) string {
	t.Helper()
	got, err := tryEcho(addr, msg)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// tryEcho is echo for goroutines other than the test's.
func tryEcho(addr, msg string) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		return string(b), fmt.Errorf("read the echo of %d bytes: %w", len(msg), err)
	}
	return string(b), nil
}

func TestLoginWritesPrivateFilesAndLogoutRevokes(t *testing.T) {
	t.Parallel()
	f := newFakePortal(t, false)
	dir := filepath.Join(t.TempDir(), "keyway")
	var opened string
	r := start(t, f, cmdOpts{dir: dir, env: map[string]string{"DISPLAY": ":0"}, open: func(_ context.Context, url string) error {
		opened = url
		return f.approve(url)
	}}, "login", f.url(), "--ca", f.caFile)
	if code := r.wait(t); code != 0 {
		t.Fatalf("login: %d\n%s", code, r.stderr.String())
	}
	if !strings.Contains(r.stdout.String(), "Open "+f.url()+"/device and enter code ABCD-EF01") {
		t.Errorf("login printed:\n%s", r.stdout.String())
	}
	if opened != f.url()+"/device?code=ABCD-EF01" {
		t.Errorf("the browser was sent to %q", opened)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, "config.json"): 0o600, filepath.Join(dir, "device.key"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
		}
	}
	cfg, err := config.Load(dir)
	if err != nil || !strings.HasPrefix(string(cfg.Credential), "kwd_") || cfg.CA != f.caFile || cfg.URL != f.url() {
		t.Fatalf("config %+v, %v", cfg, err)
	}
	if _, err := config.Key(dir); err != nil {
		t.Fatal(err)
	}

	// The device's signed requests are taken.
	f.addResource(fakeResource{StatusResource: StatusResource{Name: "pg", Protocol: "tcp", Host: "127.0.0.1", Port: 5432, Tunnel: true}})
	f.mu.Lock()
	f.networks = []StatusNetwork{{Name: "lab", Segment: "default", Rules: "10.20.0.0/16 tcp/5432,6379"}}
	f.mu.Unlock()
	st := start(t, f, cmdOpts{dir: dir}, "status")
	if code := st.wait(t); code != 0 {
		t.Fatalf("status: %d\n%s", code, st.stderr.String())
	}
	for _, want := range []string{"alice", "laptop (id 1)", "Sign-in expires:", "pg", "127.0.0.1:5432", "keyway tunnel", "lab", "10.20.0.0/16 tcp/5432,6379", "256 streams"} {
		if !strings.Contains(st.stdout.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, st.stdout.String())
		}
	}

	// Signing in again replaces the device and revokes the old one.
	f.mu.Lock()
	f.autoOK = true
	f.mu.Unlock()
	re := start(t, f, cmdOpts{dir: dir}, "login", "--no-browser")
	if code := re.wait(t); code != 0 || !strings.Contains(re.stdout.String(), "Signed out the device this one replaces") {
		t.Fatalf("login again: %d\n%s%s", code, re.stdout.String(), re.stderr.String())
	}
	f.mu.Lock()
	n := len(f.devices)
	f.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d devices signed in after a second login, want 1", n)
	}

	out := start(t, f, cmdOpts{dir: dir}, "logout")
	if code := out.wait(t); code != 0 {
		t.Fatalf("logout: %d\n%s", code, out.stderr.String())
	}
	f.mu.Lock()
	n = len(f.devices)
	f.mu.Unlock()
	if n != 0 {
		t.Error("logout left the device signed in at the portal")
	}
	cfg, _ = config.Load(dir)
	if cfg.Credential != "" || cfg.URL != f.url() {
		t.Errorf("after logout the config is %+v", cfg)
	}
	if _, err := os.Stat(filepath.Join(dir, "device.key")); !os.IsNotExist(err) {
		t.Errorf("device.key is still there: %v", err)
	}
	again := start(t, f, cmdOpts{dir: dir}, "status")
	if code := again.wait(t); code == 0 || !strings.Contains(again.stderr.String(), "not signed in; run: keyway login") {
		t.Errorf("status after logout: %d %s", code, again.stderr.String())
	}
}

func TestLoginRefused(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ code, want string }{
		{"access_denied", "keyway: the sign-in was denied in the portal"},
		{"expired_token", "keyway: the code expired before the device was approved; run keyway login again"},
		{"invalid_grant", "keyway: sign in: invalid_grant"},
	} {
		t.Run(tt.code, func(t *testing.T) {
			t.Parallel()
			f := newFakePortal(t, false)
			f.mu.Lock()
			f.tokenError = tt.code
			f.mu.Unlock()
			dir := filepath.Join(t.TempDir(), "keyway")
			r := start(t, f, cmdOpts{dir: dir}, "login", f.url(), "--ca", f.caFile, "--no-browser")
			if code := r.wait(t); code != 1 || r.stderr.String() != tt.want+"\n" {
				t.Errorf("login: %d %q, want %q", code, r.stderr.String(), tt.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("a refused login left %s: %v", dir, err)
			}
		})
	}
}

func TestAPIToken(t *testing.T) {
	t.Parallel()
	f := newFakePortal(t, false)
	f.token("kwt_script", "robot")
	r := start(t, f, cmdOpts{dir: t.TempDir(), env: map[string]string{"KEYWAY_TOKEN": "kwt_script", "KEYWAY_URL": f.url(), "KEYWAY_CA": f.caFile}}, "status")
	if code := r.wait(t); code != 0 || !strings.Contains(r.stdout.String(), "robot") || !strings.Contains(r.stdout.String(), "API token") {
		t.Fatalf("status with a token: %d\n%s%s", code, r.stdout.String(), r.stderr.String())
	}
}

// TestHundredConnectionsOneTCPConnection carries 100 parallel local
// connections and checks the portal accepted exactly one TCP connection.
func TestHundredConnectionsOneTCPConnection(t *testing.T) {
	t.Parallel()
	f := newFakePortal(t, false)
	f.addResource(fakeResource{StatusResource: StatusResource{Name: "pg", Protocol: "tcp", Host: "127.0.0.1", Port: 5432, Tunnel: true}, dial: echoServer(t)})
	dir := signIn(t, f)
	before := f.accepted.Load()
	r := start(t, f, cmdOpts{dir: dir}, "tunnel", "pg")
	addr := r.listening(t)
	if !strings.Contains(r.stdout.String(), "listening on "+addr) {
		t.Errorf("stdout: %q", r.stdout.String())
	}
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := strings.Repeat("stream "+string(rune('A'+i%26)), 100+i*50)
			if got, err := tryEcho(addr, msg); got != msg {
				t.Errorf("stream %d: got %d bytes back, want %d (%v)", i, len(got), len(msg), err)
			}
		}()
	}
	wg.Wait()
	if n := f.accepted.Load() - before; n != 1 {
		t.Errorf("the portal accepted %d TCP connections, want 1", n)
	}
	if n := f.connects.Load(); n != 100 {
		t.Errorf("the portal saw %d CONNECTs, want 100", n)
	}
}

// TestMoreStreamsThanThePortalTakes: streams beyond the portal's
// concurrent streams per connection wait for a slot on the one
// connection.
func TestMoreStreamsThanThePortalTakes(t *testing.T) {
	t.Parallel()
	f := newFakePortal(t, false)
	f.stop()
	f.maxStreams = 5
	f.start()
	f.addResource(fakeResource{StatusResource: StatusResource{Name: "pg", Protocol: "tcp", Host: "127.0.0.1", Port: 5432, Tunnel: true}, dial: echoServer(t)})
	dir := signIn(t, f)
	before := f.accepted.Load()
	r := start(t, f, cmdOpts{dir: dir}, "tunnel", "pg")
	addr := r.listening(t)
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := strings.Repeat("s", 10000+i)
			if got, err := tryEcho(addr, msg); got != msg {
				t.Errorf("stream %d: %d bytes of %d (%v)", i, len(got), len(msg), err)
			}
		}()
	}
	wg.Wait()
	if n := f.accepted.Load() - before; n != 1 {
		t.Errorf("%d TCP connections to the portal, want 1; stderr:\n%s", n, r.stderr.String())
	}
}

func TestHTTP1(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		h1Portal bool
		flags    []string
	}{
		{"portal without HTTP/2", true, nil},
		{"--http1", false, []string{"--http1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakePortal(t, tt.h1Portal)
			f.addResource(fakeResource{StatusResource: StatusResource{Name: "pg", Protocol: "tcp", Host: "127.0.0.1", Port: 5432, Tunnel: true}, dial: echoServer(t)})
			dir := signIn(t, f)
			r := start(t, f, cmdOpts{dir: dir}, append([]string{"tunnel", "pg"}, tt.flags...)...)
			addr := r.listening(t)
			for _, msg := range []string{"one", strings.Repeat("two", 100000)} {
				if got := echo(t, addr, msg); got != msg {
					t.Fatalf("echo of %d bytes: got %d", len(msg), len(got))
				}
			}
			if n := f.http1Seen.Load(); n != 2 {
				t.Errorf("%d HTTP/1.1 CONNECTs, want 2", n)
			}
		})
	}
}

func TestPortalRestart(t *testing.T) {
	t.Parallel()
	f := newFakePortal(t, false)
	f.addResource(fakeResource{StatusResource: StatusResource{Name: "pg", Protocol: "tcp", Host: "127.0.0.1", Port: 5432, Tunnel: true}, dial: echoServer(t)})
	dir := signIn(t, f)
	failedDial := make(chan struct{}, 100)
	var down atomic.Bool
	r := start(t, f, cmdOpts{dir: dir, onDial: func() {
		if down.Load() {
			failedDial <- struct{}{}
		}
	}}, "tunnel", "pg")
	addr := r.listening(t)
	if got := echo(t, addr, "before"); got != "before" {
		t.Fatalf("got %q", got)
	}
	// A stream open when the connection drops ends with it.
	open, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	open.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(open, "ping")
	if _, err := io.ReadFull(open, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	f.stop()
	if _, err := open.Read(make([]byte, 1)); isTimeout(err) {
		t.Fatal("a stream open when the portal went stayed open")
	}
	// The client notices and dials again in vain.
	<-failedDial
	// A connection made while the portal is down waits for it.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "while down")
	c.(*net.TCPConn).CloseWrite()
	<-failedDial
	down.Store(false)
	f.start()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "while down" {
		t.Fatalf("the waiting connection got %q, %v; stderr:\n%s", b, err, r.stderr.String())
	}
	if got := echo(t, addr, "after"); got != "after" {
		t.Fatalf("got %q", got)
	}
}

// TestPortalGone: with the portal away longer than the wait, a command
// and a local connection fail with one line saying so.
func TestPortalGone(t *testing.T) {
	t.Parallel()
	f := newFakePortal(t, false)
	f.addResource(fakeResource{StatusResource: StatusResource{Name: "pg", Protocol: "tcp", Host: "127.0.0.1", Port: 5432, Tunnel: true}, dial: echoServer(t)})
	dir := signIn(t, f)
	const wait = 300 * time.Millisecond
	r := start(t, f, cmdOpts{dir: dir, wait: wait}, "tunnel", "pg")
	addr := r.listening(t)
	f.stop()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Read(make([]byte, 1)); isTimeout(err) {
		t.Fatal("the local connection stayed open")
	}
	// The reason after the colon is the last dial's error, when one
	// failed within the wait.
	r.stderr.waitFor(t, "keyway: pg (127.0.0.1:5432): cannot reach the portal at "+f.addr+" within 300ms")
	s := start(t, f, cmdOpts{dir: dir, wait: wait}, "status")
	code := s.wait(t)
	got := s.stderr.String()
	if code != 1 || !strings.HasPrefix(got, "keyway: cannot reach the portal at "+f.addr+" within 300ms") || strings.Count(got, "\n") != 1 {
		t.Errorf("status: %d %q", code, got)
	}
}

func TestRefusedStreamClosesAtOnce(t *testing.T) {
	t.Parallel()
	f := newFakePortal(t, false)
	f.addResource(fakeResource{StatusResource: StatusResource{Name: "down", Protocol: "tcp", Host: "127.0.0.1", Port: 1, Tunnel: true},
		refusal: &client.Refusal{Status: 502, Code: "target_refused", Message: "the target refused the connection"}})
	dir := signIn(t, f)
	r := start(t, f, cmdOpts{dir: dir}, "tunnel", "down")
	addr := r.listening(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// No write and no half-close: the close comes from the refusal.
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from a refused stream", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the local connection stayed open")
	}
	r.stderr.waitFor(t, "keyway: down (127.0.0.1:1): the target refused the connection\n")
}

// TestTargetEndsFirst: the portal ends a stream (END_STREAM, then
// RST_STREAM) while the client still sends; the local application still
// gets every byte the target sent before the end.
func TestTargetEndsFirst(t *testing.T) {
	t.Parallel()
	answer := []byte(strings.Repeat("0123456789abcdef", 1<<16))
	f := newFakePortal(t, false)
	f.addResource(fakeResource{StatusResource: StatusResource{Name: "web", Protocol: "tcp", Host: "127.0.0.1", Port: 80, Tunnel: true}, answer: answer})
	dir := signIn(t, f)
	r := start(t, f, cmdOpts{dir: dir}, "tunnel", "web")
	addr := r.listening(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		chunk := make([]byte, 4096)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	// Read slowly at first, so the end overtakes the data in flight.
	first := make([]byte, 1)
	if _, err := io.ReadFull(c, first); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(c)
	got := append(first, rest...)
	if len(got) != len(answer) || string(got) != string(answer) {
		t.Fatalf("got %d of %d bytes (%v)", len(got), len(answer), err)
	}
	c.Close()
	<-wrote
}

func TestPortalEndsStream(t *testing.T) {
	t.Parallel()
	f := newFakePortal(t, false)
	f.addResource(fakeResource{StatusResource: StatusResource{Name: "pg", Protocol: "tcp", Host: "127.0.0.1", Port: 5432, Tunnel: true},
		dial: echoServer(t), end: "ended_by_admin: ended by admin bob"})
	dir := signIn(t, f)
	r := start(t, f, cmdOpts{dir: dir}, "tunnel", "pg")
	addr := r.listening(t)
	if got := echo(t, addr, "data"); got != "data" {
		t.Fatalf("got %q", got)
	}
	r.stderr.waitFor(t, "keyway: pg (127.0.0.1:5432): the portal ended the connection: ended_by_admin: ended by admin bob\n")
}

func TestExpiredSignIn(t *testing.T) {
	t.Parallel()
	f := newFakePortal(t, false)
	f.addResource(fakeResource{StatusResource: StatusResource{Name: "pg", Protocol: "tcp", Host: "127.0.0.1", Port: 5432, Tunnel: true}, dial: echoServer(t)})
	dir := signIn(t, f)
	r := start(t, f, cmdOpts{dir: dir}, "tunnel", "pg")
	addr := r.listening(t)
	f.mu.Lock()
	f.expired = true
	f.mu.Unlock()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "x")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	// The close may come as a reset: "x" was not read.
	if b, err := io.ReadAll(c); len(b) != 0 || isTimeout(err) {
		t.Fatalf("got %q, %v through an expired sign-in", b, err)
	}
	r.stderr.waitFor(t, "keyway: your sign-in has expired; run: keyway login "+f.url()+"\n")
	s := start(t, f, cmdOpts{dir: dir}, "status")
	if code := s.wait(t); code != 1 || !strings.Contains(s.stderr.String(), "your sign-in has expired; run: keyway login "+f.url()) {
		t.Errorf("status: %d %q", code, s.stderr.String())
	}
}

// TestFloodBound holds streams open up to the portal's limit per device:
// the next local connection is closed at once with a line.
func TestFloodBound(t *testing.T) {
	t.Parallel()
	f := newFakePortal(t, false)
	f.limit = 2
	f.addResource(fakeResource{StatusResource: StatusResource{Name: "pg", Protocol: "tcp", Host: "127.0.0.1", Port: 5432, Tunnel: true}, dial: echoServer(t)})
	dir := signIn(t, f)
	r := start(t, f, cmdOpts{dir: dir}, "tunnel", "pg")
	addr := r.listening(t)
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	f.waitUntil(t, "two open streams", func() bool { return f.active.Load() == 2 })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection over the limit was carried")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the connection over the limit was kept waiting")
	}
	r.stderr.waitFor(t, "more than 2 connections at once")
	if n := f.connects.Load(); n != 2 {
		t.Errorf("%d CONNECTs, want 2", n)
	}
	// The held ones still work.
	io.WriteString(held[0], "still")
	held[0].(*net.TCPConn).CloseWrite()
	held[0].SetReadDeadline(time.Now().Add(20 * time.Second))
	if b, _ := io.ReadAll(held[0]); string(b) != "still" {
		t.Errorf("held stream got %q", b)
	}
}

func TestStdio(t *testing.T) {
	t.Parallel()
	f := newFakePortal(t, false)
	f.addResource(fakeResource{StatusResource: StatusResource{Name: "pg", Protocol: "tcp", Host: "127.0.0.1", Port: 5432, Tunnel: true}, dial: echoServer(t)})
	dir := signIn(t, f)
	r := start(t, f, cmdOpts{dir: dir, stdin: strings.NewReader("over stdio")}, "tunnel", "--stdio", "pg")
	if code := r.wait(t); code != 0 || r.stdout.String() != "over stdio" {
		t.Fatalf("stdio: %d %q %s", code, r.stdout.String(), r.stderr.String())
	}
}

func TestSSHTerminal(t *testing.T) {
	t.Parallel()
	f := newFakePortal(t, false)
	f.addResource(fakeResource{StatusResource: StatusResource{Name: "web", Protocol: "ssh", Host: "127.0.0.1", Port: 22, Terminal: true}})
	dir := signIn(t, f)
	r := start(t, f, cmdOpts{dir: dir, env: map[string]string{"TERM": "vt100"}, stdin: strings.NewReader("ls\nexit\n")}, "ssh", "web")
	if code := r.wait(t); code != 3 {
		t.Fatalf("ssh exited %d, want the remote 3; stderr:\n%s", code, r.stderr.String())
	}
	out := r.stdout.String()
	if !strings.Contains(out, "hello cols=80&rows=24&term=vt100") || !strings.Contains(out, "exit") {
		t.Errorf("stdout %q", out)
	}
}

func TestSOCKS(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed (Debian package curl)")
	}
	web := httptestServer(t)
	_, port, _ := net.SplitHostPort(web)
	f := newFakePortal(t, false)
	f.mu.Lock()
	f.networks = []StatusNetwork{{Name: "lo", Segment: "default", Rules: "127.0.0.0/8 tcp/" + port}}
	f.mu.Unlock()
	dir := signIn(t, f)
	r := start(t, f, cmdOpts{dir: dir}, "proxy", "--socks", "127.0.0.1:0")
	addr := r.listening(t)
	curl := func(url string) (string, error) {
		out, err := exec.Command("curl", "-sS", "--max-time", "20", "--socks5-hostname", addr, url).CombinedOutput()
		return string(out), err
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		out, err := curl("http://" + host + ":" + port + "/")
		if err != nil || out != "hello through socks" {
			t.Errorf("curl to %s: %q %v; stderr:\n%s", host, out, err, r.stderr.String())
		}
	}
	f.mu.Lock()
	seen := strings.Join(f.netSeen, " ")
	f.mu.Unlock()
	if want := "127.0.0.1:" + port + " localhost:" + port; seen != want {
		t.Errorf("the portal was asked for %q, want %q", seen, want)
	}
	// Refused here, never asked of the portal.
	if out, err := curl("http://10.9.9.9:" + port + "/"); err == nil {
		t.Errorf("curl to an address outside the networks: %q", out)
	}
	r.stderr.waitFor(t, "keyway: 10.9.9.9:"+port+": no network granted to you allows this address and port; refused here\n")
	if out, err := curl("http://localhost:1/"); err == nil {
		t.Errorf("curl to a port outside the networks: %q", out)
	}
	r.stderr.waitFor(t, "keyway: localhost:1: no network granted to you allows port 1; refused here\n")
	f.mu.Lock()
	n := len(f.netSeen)
	f.mu.Unlock()
	if n != 2 {
		t.Errorf("the portal was asked %d times, want 2", n)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func httptestServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httpServer{}
	go srv.serve(l)
	t.Cleanup(func() { l.Close(); srv.wg.Wait() })
	return l.Addr().String()
}

// httpServer answers every HTTP request on a connection with a fixed body.
type httpServer struct{ wg sync.WaitGroup }

func (s *httpServer) serve(l net.Listener) {
	s.wg.Add(1)
	defer s.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			buf := make([]byte, 4096)
			c.SetDeadline(time.Now().Add(20 * time.Second))
			var req []byte
			for !strings.Contains(string(req), "\r\n\r\n") {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				req = append(req, buf[:n]...)
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 19\r\nConnection: close\r\n\r\nhello through socks")
		}()
	}
}

// floodServer sends without end to every connection until it fails.
func floodServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// socksDial connects to target through the SOCKS5 proxy at proxy.
func socksDial(t *testing.T, proxy, target string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	ap := netip.MustParseAddrPort(target)
	a := ap.Addr().As4()
	req := []byte{5, 1, 0, 5, 1, 0, 1, a[0], a[1], a[2], a[3], byte(ap.Port() >> 8), byte(ap.Port())}
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 2+10)
	if _, err := io.ReadFull(c, reply); err != nil || reply[3] != 0 {
		t.Fatalf("SOCKS reply % x, %v", reply, err)
	}
	c.SetDeadline(time.Time{})
	return c
}

// TestSlowReaderDoesNotStallOthers: one local application stops reading
// a stream that has endless data; other streams on the same connection
// to the portal keep flowing.
func TestSlowReaderDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	floodAddr, echoAddr := floodServer(t), echoServer(t)
	_, fp, _ := net.SplitHostPort(floodAddr)
	_, ep, _ := net.SplitHostPort(echoAddr)
	f := newFakePortal(t, false)
	f.mu.Lock()
	f.networks = []StatusNetwork{{Name: "lo", Segment: "default", Rules: "127.0.0.1 tcp/" + fp + "," + ep}}
	f.mu.Unlock()
	dir := signIn(t, f)
	before := f.accepted.Load()
	r := start(t, f, cmdOpts{dir: dir}, "proxy", "--socks", "127.0.0.1:0")
	proxy := r.listening(t)
	stalled := socksDial(t, proxy, floodAddr)
	// Read a little, so the stream is open and full, then stop reading.
	stalled.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(stalled, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("x", 1<<20)
	for range 3 {
		c := socksDial(t, proxy, echoAddr)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		go func() {
			io.WriteString(c, msg)
			c.(*net.TCPConn).CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if string(got) != msg {
			t.Fatalf("echo beside a stalled stream: %d bytes of %d (%v)", len(got), len(msg), err)
		}
	}
	if n := f.accepted.Load() - before; n != 1 {
		t.Errorf("%d connections to the portal, want 1", n)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	f := newFakePortal(t, false)
	for _, tt := range []struct {
		args []string
		code int
		want string // on stderr, or stdout for version
	}{
		{nil, 2, "keyway login URL"},
		{[]string{"frobnicate"}, 1, `keyway: there is no command "frobnicate"`},
		{[]string{"tunnel"}, 1, "keyway: usage: keyway tunnel RESOURCE"},
		{[]string{"tunnel", "pg", "--bogus"}, 1, "keyway: tunnel: flag provided but not defined: -bogus"},
		{[]string{"proxy"}, 1, "keyway: usage: keyway proxy --socks 127.0.0.1:1080"},
		{[]string{"status"}, 1, "keyway: this device is not signed in; run: keyway login https://PORTAL"},
		{[]string{"login"}, 1, "keyway: usage: keyway login URL"},
		{[]string{"login", "http://portal"}, 1, `keyway: the portal address "http://portal" is not an https:// URL`},
		{[]string{"version"}, 0, "keyway test ("},
	} {
		r := start(t, f, cmdOpts{dir: filepath.Join(t.TempDir(), "none")}, tt.args...)
		code := r.wait(t)
		out := r.stderr.String()
		if tt.code == 0 {
			out = r.stdout.String()
		}
		if code != tt.code || !strings.Contains(out, tt.want) {
			t.Errorf("keyway %v: %d %q, want %d and %q", tt.args, code, out, tt.code, tt.want)
		}
	}
}
