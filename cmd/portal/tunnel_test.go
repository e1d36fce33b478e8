package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/store"
)

// tunnelEnv is a portal with a user holding an API token, a loopback echo
// server and a tcp resource for it, and a counting front door: clients
// reach the portal through it, so a test can tell how many TCP
// connections they made.
type tunnelEnv struct {
	t     *testing.T
	p     *portal
	user  store.User
	token string
	echo  string // host:port of the echo server
	front *countingProxy
	// portalHost is the portal's host:port, the CONNECT authority.
	portalHost string
	adminToken string
}

func newTunnelEnv(t *testing.T) *tunnelEnv {
	t.Helper()
	ctx := context.Background()
	p, _ := startPortal(t, t.TempDir())
	u, err := p.Store.CreateUser(ctx, store.User{Name: "tess", Role: store.RoleUser}, mustHash(t, "user-password-9"))
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := p.Store.CreateToken(ctx, u.ID, "cli", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(p.URL)
	e := &tunnelEnv{t: t, p: p, user: u, token: token, echo: echoServer(t), portalHost: pu.Host}
	e.front = newCountingProxy(t, pu.Host)
	e.resource("echo", store.ProtocolTCP, e.echo, store.Options{}, true)
	return e
}

// resource makes a resource at addr, granted to the user when grant.
func (e *tunnelEnv) resource(name, protocol, addr string, o store.Options, grant bool) store.Resource {
	e.t.Helper()
	ctx := context.Background()
	r := store.Resource{Name: name, Protocol: protocol, Options: o}
	if addr != "" {
		host, port, _ := net.SplitHostPort(addr)
		r.Host = host
		r.Port, _ = strconv.Atoi(port)
	}
	res, err := e.p.Store.CreateResource(ctx, r, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if grant {
		if _, err := e.p.Store.CreateGrantMode(ctx, res.ID, "user", e.user.ID, store.GrantTerminal); err != nil {
			e.t.Fatal(err)
		}
	}
	return res
}

// adminAPI calls the portal's API as an administrator.
func (e *tunnelEnv) adminAPI(method, path string) (int, map[string]any) {
	e.t.Helper()
	ctx := context.Background()
	if e.adminToken == "" {
		boss, err := e.p.Store.CreateUser(ctx, store.User{Name: "boss", Role: store.RoleAdmin}, mustHash(e.t, "admin-password-9"))
		if err != nil {
			e.t.Fatal(err)
		}
		if e.adminToken, _, err = e.p.Store.CreateToken(ctx, boss.ID, "test", time.Hour); err != nil {
			e.t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(method, e.p.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+e.adminToken)
	resp, err := newBrowser(e.t, e.p.URL).client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// h2 opens one HTTP/2 connection to the portal through the front door.
func (e *tunnelEnv) h2() *http2.ClientConn {
	e.t.Helper()
	conn, err := tls.Dial("tcp", e.front.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) // self-signed, loopback
	if err != nil {
		e.t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		e.t.Fatalf("ALPN chose %q, want h2", p)
	}
	cc, err := (&http2.Transport{}).NewClientConn(conn)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return cc
}

// tstream is one CONNECT stream: write to w, read resp.Body.
type tstream struct {
	resp *http.Response
	w    *io.PipeWriter
}

// open opens a stream to target; the answer may be a refusal.
func (e *tunnelEnv) open(cc *http2.ClientConn, target string) (*tstream, error) {
	pr, pw := io.Pipe()
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Scheme: "https", Host: e.portalHost}, Host: e.portalHost,
		Header: http.Header{"Authorization": {"Bearer " + e.token}, "Keyway-Target": {target}, "User-Agent": {"keyway/test (linux/amd64)"}},
		Body:   pr, ContentLength: -1}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		pw.Close()
		return nil, err
	}
	e.t.Cleanup(func() { pw.Close(); resp.Body.Close() })
	return &tstream{resp: resp, w: pw}, nil
}

// mustOpen opens a stream and fails unless it was accepted.
func (e *tunnelEnv) mustOpen(cc *http2.ClientConn, target string) *tstream {
	e.t.Helper()
	s, err := e.open(cc, target)
	if err != nil {
		e.t.Fatal(err)
	}
	if s.resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(s.resp.Body)
		e.t.Fatalf("stream to %s: %d %s", target, s.resp.StatusCode, b)
	}
	return s
}

// refusal opens a stream that must be refused and returns its status
// and JSON error.
func (e *tunnelEnv) refusal(cc *http2.ClientConn, target string) (int, string, string) {
	e.t.Helper()
	s, err := e.open(cc, target)
	if err != nil {
		e.t.Fatal(err)
	}
	var body struct{ Error, Message string }
	if err := json.NewDecoder(io.LimitReader(s.resp.Body, 4096)).Decode(&body); err != nil {
		e.t.Fatalf("stream to %s: %d with no JSON error: %v", target, s.resp.StatusCode, err)
	}
	return s.resp.StatusCode, body.Error, body.Message
}

// echoes checks that what is written on s comes back.
func echoes(t *testing.T, s *tstream, msg string) {
	t.Helper()
	if _, err := s.w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(s.resp.Body, got); err != nil || string(got) != msg {
		t.Fatalf("echo: %q, %v; want %q", got, err, msg)
	}
}

// echoServer serves TCP echo on loopback until the test ends; each
// connection closes once its client half-closes.
func echoServer(t *testing.T) string {
	return serveTCP(t, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

// serveTCP runs handle for each connection to a loopback listener.
func serveTCP(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// countingProxy forwards loopback TCP connections to the portal and
// counts them.
type countingProxy struct {
	addr     string
	accepted atomic.Int64
}

func newCountingProxy(t *testing.T, to string) *countingProxy {
	p := &countingProxy{}
	p.addr = serveTCP(t, func(c net.Conn) {
		p.accepted.Add(1)
		up, err := net.Dial("tcp", to)
		if err != nil {
			return
		}
		defer up.Close()
		done := make(chan struct{})
		go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); close(done) }()
		io.Copy(c, up)
		c.(*net.TCPConn).CloseWrite()
		<-done
	})
	return p
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestTunnelEcho: a stream carries bytes both ways, the client's end is
// passed on to the target and the target's back, and the stream is
// audited with its target and bytes and logged as a tcp connection.
func TestTunnelEcho(t *testing.T) {
	e := newTunnelEnv(t)
	ctx := context.Background()
	cc := e.h2()
	s := e.mustOpen(cc, "resource/echo")
	id := s.resp.Header.Get("Keyway-Session")
	if id == "" {
		t.Fatal("no Keyway-Session header")
	}
	echoes(t, s, "hello through the portal")
	s.w.Close() // the echo server sees EOF and closes: the stream ends
	if rest, err := io.ReadAll(s.resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("after the client's end: %q, %v; want a clean end", rest, err)
	}
	waitFor(t, "the stream's end in the audit log", func() bool {
		evs, _ := e.p.Store.SearchAudit(ctx, store.AuditFilter{Action: "session.end", Actor: "tess"})
		return len(evs) == 1 && evs[0].Details["bytes_in"] == "24" && evs[0].Details["bytes_out"] == "24" && evs[0].Details["duration"] != ""
	}, func() string {
		evs, _ := e.p.Store.SearchAudit(ctx, store.AuditFilter{Actor: "tess"})
		return fmt.Sprintf("%+v", evs)
	})
	evs, _ := e.p.Store.SearchAudit(ctx, store.AuditFilter{Action: "connect", Actor: "tess"})
	if len(evs) != 1 || evs[0].Outcome != "success" || evs[0].Details["target"] != e.echo || evs[0].Details["session"] != id || evs[0].Target != "echo" {
		t.Fatalf("connect audited as %+v", evs)
	}
	conns, err := e.p.Store.Connections(ctx, store.ConnectionFilter{User: "tess"})
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 1 || conns[0].Protocol != "tcp" || conns[0].BytesIn != 24 || conns[0].BytesOut != 24 || conns[0].Resource != "echo" {
		t.Fatalf("connection log: %+v", conns)
	}
}

// TestTunnelManyStreamsOneConnection: 100 streams at once share one TCP
// connection to the portal, each echoing its own bytes.
func TestTunnelManyStreamsOneConnection(t *testing.T) {
	e := newTunnelEnv(t)
	cc := e.h2()
	const n = 100
	streams := make([]*tstream, n)
	for i := range streams {
		streams[i] = e.mustOpen(cc, "resource/echo")
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("stream %d says %s", i, strings.Repeat("x", i*100))
			if _, err := s.w.Write([]byte(msg)); err != nil {
				errs <- err
				return
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(s.resp.Body, got); err != nil || string(got) != msg {
				errs <- fmt.Errorf("stream %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := e.front.accepted.Load(); got != 1 {
		t.Fatalf("%d TCP connections to the portal, want 1", got)
	}
	code, out := e.adminAPI("GET", "/api/v1/sessions")
	list, _ := out["sessions"].([]any)
	if code != http.StatusOK || len(list) != n {
		t.Fatalf("GET /api/v1/sessions: %d, %d sessions listed, want %d", code, len(list), n)
	}
	if first := list[0].(map[string]any); first["kind"] != "tunnel" || first["target"] != e.echo || first["protocol"] != "tcp" {
		t.Fatalf("a stream listed as %v", first)
	}
	admin := newBrowser(t, e.p.URL)
	admin.signIn("boss", "admin-password-9")
	if code, page := admin.get("/sessions"); code != http.StatusOK || strings.Count(page, `<span class="badge">tunnel</span>`) != n ||
		!strings.Contains(page, "→ "+e.echo) {
		t.Fatalf("the Sessions page: %d, %d tunnels listed", code, strings.Count(page, `<span class="badge">tunnel</span>`))
	}
}

// TestTunnelRefusals: each refusal answers at once with its status and
// JSON error.
func TestTunnelRefusals(t *testing.T) {
	e := newTunnelEnv(t)
	ctx := context.Background()
	e.resource("secret", store.ProtocolTCP, e.echo, store.Options{}, false)
	e.resource("closed", store.ProtocolTCP, closedPort(t), store.Options{}, true)
	e.resource("lab", store.ProtocolNetwork, "", store.Options{Networks: "10.20.0.0/16 tcp/5432"}, true)
	e.resource("shell", "ssh", e.echo, store.Options{}, true)
	policed := e.resource("policed", store.ProtocolTCP, e.echo, store.Options{}, true)
	if _, err := e.p.Store.CreatePolicy(ctx, store.Policy{Name: "lab only", ScopeKind: store.ScopeResource, ScopeID: policed.ID,
		Networks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Allow: store.AllowAll, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	cc := e.h2()
	for _, tc := range []struct {
		name, target string
		status       int
		code, words  string
	}{
		{"no grant", "resource/secret", 404, "no_grant", "There is no such resource"},
		{"no such resource", "resource/nothing", 404, "no_grant", "There is no such resource"},
		{"policy", "resource/policed", 403, "policy", `"lab only"`},
		{"tunnels off", "resource/shell", 403, "no_tunnel", "Native clients may not tunnel to shell"},
		{"target refuses", "resource/closed", 502, "target_refused", "refused"},
		{"address outside the network", "net/10.21.0.1:5432", 403, "not_allowed", "None of your networks allows 10.21.0.1 port 5432"},
		{"port outside the network", "net/10.20.0.1:22", 403, "not_allowed", "port 22"},
		{"no target", "", 400, "bad_target", "no Keyway-Target"},
		{"unknown kind", "host/x", 400, "bad_target", "must start with resource/, net/ or terminal/"},
		{"bad name", "resource/../x", 400, "bad_target", "is not a resource name"},
		{"too long", "net/" + strings.Repeat("a", 600) + ":1", 400, "bad_target", "longer than 512 bytes"},
		{"bad terminal size", "terminal/echo?cols=0", 400, "bad_target", "Cols must be"},
		{"bad term", "terminal/echo?term=a%0Ab", 400, "bad_target", "Term must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			status, code, msg := e.refusal(cc, tc.target)
			if status != tc.status || code != tc.code || !strings.Contains(msg, tc.words) {
				t.Fatalf("got %d %s %q, want %d %s %q", status, code, msg, tc.status, tc.code, tc.words)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("the refusal took %s", d)
			}
		})
	}
	// no credential (not a subtest: the helpers fail the test itself)
	func() {
		tok := e.token
		e.token = "kw_nonsense"
		defer func() { e.token = tok }()
		if status, code, _ := e.refusal(cc, "resource/echo"); status != 401 || code != "invalid_credential" {
			t.Fatalf("got %d %s", status, code)
		}
	}()
	// too many streams (not a subtest: the helpers fail the test itself)
	func() {
		if err := e.p.Store.SetSetting(ctx, store.SettingClientStreamsPerUser, "2"); err != nil {
			t.Fatal(err)
		}
		defer e.p.Store.SetSetting(ctx, store.SettingClientStreamsPerUser, "")
		a := e.mustOpen(cc, "resource/echo")
		e.mustOpen(cc, "resource/echo")
		if status, code, msg := e.refusal(cc, "resource/echo"); status != 429 || code != "too_many_streams" || !strings.Contains(msg, "2 connections") {
			t.Fatalf("third stream: %d %s %q", status, code, msg)
		}
		a.w.Close()
		io.ReadAll(a.resp.Body)
		waitFor(t, "a place freed", func() bool {
			s, err := e.open(cc, "resource/echo")
			return err == nil && s.resp.StatusCode == 200
		}, func() string { return "still refused" })
	}()
}

// TestTunnelEndsWhenGrantGoes: removing the grant ends a live stream,
// with the reason in the stream's trailer.
func TestTunnelEndsWhenGrantGoes(t *testing.T) {
	e := newTunnelEnv(t)
	ctx := context.Background()
	res := e.resource("echo2", store.ProtocolTCP, e.echo, store.Options{}, true)
	s := e.mustOpen(e.h2(), "resource/echo2")
	echoes(t, s, "still here")
	grants, err := e.p.Store.ListGrants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range grants {
		if g.ResourceID == res.ID {
			if err := e.p.Store.DeleteGrant(ctx, g.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(s.resp.Body); done <- err }()
	select {
	case <-done:
	case <-time.After(15 * time.Second): // the guard checks every 2 s
		t.Fatal("the stream outlived its grant by 15 s")
	}
	t.Logf("ended %s after the grant went", time.Since(start))
	if end := s.resp.Trailer.Get("Keyway-End"); !strings.HasPrefix(end, "access_revoked: Your access to echo2 was removed") {
		t.Fatalf("trailer Keyway-End %q", end)
	}

	// An administrator ends a stream.
	s = e.mustOpen(e.h2(), "resource/echo")
	echoes(t, s, "until the admin")
	if code, out := e.adminAPI("POST", "/api/v1/sessions/"+s.resp.Header.Get("Keyway-Session")+"/terminate"); code != http.StatusOK {
		t.Fatalf("terminate: %d %v", code, out)
	}
	io.Copy(io.Discard, s.resp.Body)
	if end := s.resp.Trailer.Get("Keyway-End"); !strings.HasPrefix(end, "terminated: An administrator (boss) ended this session.") {
		t.Fatalf("trailer Keyway-End %q", end)
	}
}

// TestTunnelSlowReader: a stream whose client stops reading does not
// stall another stream on the same connection.
func TestTunnelSlowReader(t *testing.T) {
	e := newTunnelEnv(t)
	// A target that sends without end.
	flood := serveTCP(t, func(c net.Conn) {
		buf := bytes.Repeat([]byte("f"), 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	e.resource("flood", store.ProtocolTCP, flood, store.Options{}, true)
	cc := e.h2()
	stuck := e.mustOpen(cc, "resource/flood")
	// Read a little, then stop: the flood fills the stream's window.
	if _, err := io.ReadFull(stuck.resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	s := e.mustOpen(cc, "resource/echo")
	chunk := bytes.Repeat([]byte("e"), 64<<10)
	deadline := time.Now().Add(20 * time.Second)
	for i := range 64 { // 4 MiB, more than every window
		if time.Now().After(deadline) {
			t.Fatalf("the echo stream stalled after %d chunks", i)
		}
		echoes(t, s, string(chunk))
	}
}

// TestTunnelHTTP1: a client without HTTP/2 opens a stream as an HTTP/1.1
// CONNECT; refusals are HTTP errors with the JSON error, and each side's
// end is passed on.
func TestTunnelHTTP1(t *testing.T) {
	e := newTunnelEnv(t)
	dial := func(target string) (*tls.Conn, *bufio.Reader, *http.Response) {
		conn, err := tls.Dial("tcp", e.front.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nKeyway-Target: %s\r\n\r\n", e.portalHost, e.portalHost, e.token, target)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		return conn, br, resp
	}
	_, br, resp := dial("resource/nothing")
	var body struct{ Error, Message string }
	json.NewDecoder(io.LimitReader(br, 4096)).Decode(&body)
	if resp.StatusCode != 404 || body.Error != "no_grant" {
		t.Fatalf("refusal: %d %+v", resp.StatusCode, body)
	}
	conn, br, resp := dial("resource/echo")
	if resp.StatusCode != 200 || resp.Header.Get("Keyway-Session") == "" {
		t.Fatalf("CONNECT: %d %v", resp.StatusCode, resp.Header)
	}
	conn.Write([]byte("over http/1.1"))
	got := make([]byte, len("over http/1.1"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "over http/1.1" {
		t.Fatalf("echo: %q %v", got, err)
	}
	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the client's end: %q %v, want the target's end", rest, err)
	}
}

// TestTunnelTerminal: a terminal/ stream is an SSH terminal session
// carried as wire frames: a command's output comes back, then its exit.
func TestTunnelTerminal(t *testing.T) {
	e := newTunnelEnv(t)
	sshd := targets.NewSSHD(t)
	ctx := context.Background()
	res, err := e.p.Store.CreateResource(ctx, store.Resource{Name: "box", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User},
		&store.Secrets{Password: sshd.Password})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Store.CreateGrantMode(ctx, res.ID, "user", e.user.ID, store.GrantTerminal); err != nil {
		t.Fatal(err)
	}
	cc := e.h2()
	s := e.mustOpen(cc, "terminal/box?cols=100&rows=30&term=xterm")
	fw := wire.NewFrameWriter(s.w)
	if err := fw.Write(wire.FrameResize, wire.ResizePayload(120, 40)); err != nil {
		t.Fatal(err)
	}
	if err := fw.Write(wire.FrameData, []byte("echo native-$((6*7)) $COLUMNS; exit 3\n")); err != nil {
		t.Fatal(err)
	}
	fr := wire.NewFrameReader(s.resp.Body)
	var out bytes.Buffer
	for {
		ft, p, err := fr.Next()
		if err != nil {
			t.Fatalf("before the exit: %v; output %q", err, out.String())
		}
		if ft == wire.FrameData {
			out.Write(p)
			continue
		}
		if ft != wire.FrameExit {
			t.Fatalf("frame type %d from the portal", ft)
		}
		ex, err := wire.ParseExit(p)
		if err != nil || ex.Status != 3 {
			t.Fatalf("exit %+v %v", ex, err)
		}
		break
	}
	if !strings.Contains(out.String(), "native-42") {
		t.Fatalf("output %q", out.String())
	}
	// A frame a client may not send ends the stream.
	s = e.mustOpen(cc, "terminal/box")
	wire.WriteFrame(s.w, wire.FrameExit, wire.Exit{}.Payload())
	if _, err := io.Copy(io.Discard, s.resp.Body); err != nil && !errors.Is(err, io.EOF) {
		t.Logf("stream ended with %v", err)
	}
	waitFor(t, "the refused frame audited", func() bool {
		evs, _ := e.p.Store.SearchAudit(ctx, store.AuditFilter{Action: "session.end", Actor: "tess"})
		for _, ev := range evs {
			if ev.Details["end"] == "protocol error" && strings.Contains(ev.Reason, "frame of type 3") {
				return true
			}
		}
		return false
	}, func() string {
		evs, _ := e.p.Store.SearchAudit(ctx, store.AuditFilter{Action: "session.end", Actor: "tess"})
		return fmt.Sprintf("%+v", evs)
	})
}

// TestTunnelNetworks: net/ streams go through the granted network whose
// rules allow the address; a name is tried on each network allowing its
// port, in name order, until a gateway dials it (the gateway resolves it
// and refuses an address outside that network's rules).
func TestTunnelNetworks(t *testing.T) {
	e := newTunnelEnv(t)
	_, port, _ := net.SplitHostPort(e.echo)
	// "a-lab" comes first by name but does not hold loopback.
	e.resource("a-lab", store.ProtocolNetwork, "", store.Options{Networks: "10.0.0.0/8 tcp/" + port}, true)
	cc := e.h2()
	if status, code, msg := e.refusal(cc, "net/localhost:"+port); status != http.StatusBadGateway || code != "target_forbidden" {
		t.Fatalf("a name resolved outside the only network: %d %s %q", status, code, msg)
	}
	e.resource("b-loop", store.ProtocolNetwork, "", store.Options{Networks: "127.0.0.0/8 tcp/" + port}, true)
	for _, target := range []string{"net/" + e.echo, "net/localhost:" + port} {
		s := e.mustOpen(cc, target)
		echoes(t, s, "via "+target)
		s.w.Close()
		io.Copy(io.Discard, s.resp.Body)
	}
	ctx := context.Background()
	waitFor(t, "the streams audited with the network and target", func() bool {
		evs, _ := e.p.Store.SearchAudit(ctx, store.AuditFilter{Action: "connect", Actor: "tess", Outcome: "success"})
		return len(evs) == 2 && evs[0].Target == "b-loop" && evs[1].Target == "b-loop" &&
			evs[1].Details["target"] == e.echo && evs[0].Details["target"] == "localhost:"+port
	}, func() string {
		evs, _ := e.p.Store.SearchAudit(ctx, store.AuditFilter{Action: "connect", Actor: "tess"})
		return fmt.Sprintf("%+v", evs)
	})
}

// TestTunnelResourceTest: an admin's test of a tcp resource dials it
// through the gateway; a network resource has nothing to test.
func TestTunnelResourceTest(t *testing.T) {
	e := newTunnelEnv(t)
	e.adminAPI("GET", "/api/v1/me") // makes the admin
	admin := newBrowser(t, e.p.URL)
	admin.signIn("boss", "admin-password-9")
	echo, _ := e.p.Store.ResourceByName(context.Background(), "echo")
	closed := e.resource("closed", store.ProtocolTCP, closedPort(t), store.Options{}, false)
	lab := e.resource("lab", store.ProtocolNetwork, "", store.Options{Networks: "10.0.0.0/8 tcp/1"}, false)
	for _, tc := range []struct {
		id    int64
		words string
	}{
		{echo.ID, "Connected to “echo” through gateway"},
		{closed.ID, "Test failed"},
		{lab.ID, "A network resource has no single address to test"},
	} {
		path := fmt.Sprintf("/admin/resources/%d", tc.id)
		if resp := admin.post(path+"/test", url.Values{}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("test %d: %d", tc.id, resp.StatusCode)
		}
		if _, page := admin.get(path); !strings.Contains(page, tc.words) {
			t.Errorf("after the test of %d the page lacks %q", tc.id, tc.words)
		}
	}
}

// TestTunnelStuckTarget: a stream whose target stops reading holds only
// its own window of the connection: another stream on the same
// connection keeps sending.
func TestTunnelStuckTarget(t *testing.T) {
	e := newTunnelEnv(t)
	// A target that never reads.
	stuck := serveTCP(t, func(net.Conn) { <-t.Context().Done() })
	e.resource("stuck", store.ProtocolTCP, stuck, store.Options{}, true)
	cc := e.h2()
	a := e.mustOpen(cc, "resource/stuck")
	var written atomic.Int64
	go func() { // until the windows and buffers on the way are full, then blocked
		buf := bytes.Repeat([]byte("s"), 64<<10)
		for {
			n, err := a.w.Write(buf)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	s := e.mustOpen(cc, "resource/echo")
	done := make(chan error, 1)
	go func() {
		chunk := bytes.Repeat([]byte("e"), 64<<10)
		got := make([]byte, len(chunk))
		for range 64 { // 4 MiB, beyond every window
			if _, err := s.w.Write(chunk); err != nil {
				done <- err
				return
			}
			if _, err := io.ReadFull(s.resp.Body, got); err != nil || !bytes.Equal(got, chunk) {
				done <- fmt.Errorf("echo: %v", err)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the echo stream stalled beside a stuck one (%d bytes written to it)", written.Load())
	}
	t.Logf("%d bytes went to the stuck target's stream", written.Load())
}

// TestTunnelTargetEndsWhileStuck: a target that stops reading and then
// ends its side ends the stream, though the client still has bytes on
// their way to it.
func TestTunnelTargetEndsWhileStuck(t *testing.T) {
	e := newTunnelEnv(t)
	hangUp := make(chan struct{})
	quitter := serveTCP(t, func(c net.Conn) {
		c.Write([]byte("bye"))
		<-hangUp
		c.(*net.TCPConn).CloseWrite()
		<-t.Context().Done()
	})
	e.resource("quitter", store.ProtocolTCP, quitter, store.Options{}, true)
	s := e.mustOpen(e.h2(), "resource/quitter")
	go func() { // fills every buffer on the way, then blocks
		buf := bytes.Repeat([]byte("q"), 64<<10)
		for {
			if _, err := s.w.Write(buf); err != nil {
				return
			}
		}
	}()
	got := make([]byte, 3)
	if _, err := io.ReadFull(s.resp.Body, got); err != nil || string(got) != "bye" {
		t.Fatalf("%q %v", got, err)
	}
	close(hangUp)
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, s.resp.Body); ended <- err }()
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the stream did not end after its target did")
	}
	waitFor(t, "the stream's end audited", func() bool {
		evs, _ := e.p.Store.SearchAudit(context.Background(), store.AuditFilter{Action: "session.end", Actor: "tess"})
		return len(evs) == 1 && evs[0].Details["end"] == "remote ended"
	}, func() string {
		evs, _ := e.p.Store.SearchAudit(context.Background(), store.AuditFilter{Actor: "tess"})
		return fmt.Sprintf("%+v", evs)
	})
}
