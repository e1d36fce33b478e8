package gateway

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// startTarget serves each connection on a loopback port with handle, and
// returns the port. Cleanup waits for the handlers, which end when their
// peer does.
func startTarget(t *testing.T, handle func(*net.TCPConn)) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// echo sends back what it reads, and ends its side when the peer does.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// answerAtEnd reads everything, then answers: it needs the half-close.
func answerAtEnd(c *net.TCPConn) {
	b, err := io.ReadAll(c)
	if err != nil {
		return
	}
	fmt.Fprintf(c, "read %d bytes: %s", len(b), b)
}

func tcpRequest(host string, port int) *wire.Request {
	return &wire.Request{Kind: wire.KindSession, Protocol: wire.ProtocolTCP, SessionID: "tcp", User: "tester",
		Resource: "pg", Target: wire.Target{Host: host, Port: port}}
}

func rules(t *testing.T, text string) wire.NetRules {
	t.Helper()
	rs, err := wire.ParseNetRules(text)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// roundTrip writes msg on the session and reads as much back.
func roundTrip(t *testing.T, s *session, msg string) {
	t.Helper()
	if _, err := io.WriteString(s.conn, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(s.conn, got); err != nil || string(got) != msg {
		t.Fatalf("echo: got %q, %v; want %q", got, err, msg)
	}
}

func TestTCPSession(t *testing.T) {
	t.Parallel()
	echoPort := startTarget(t, echo)
	answerPort := startTarget(t, answerAtEnd)
	g := startGateway(t)

	t.Run("echo, counted while it runs", func(t *testing.T) {
		t.Parallel()
		s, resp := g.open(t, tcpRequest("127.0.0.1", echoPort))
		if !resp.OK {
			t.Fatalf("refused: %+v", resp)
		}
		roundTrip(t, s, "hello through the gateway")
		roundTrip(t, s, strings.Repeat("bulk", 100_000))
		if n := g.ActiveSessions(); n < 1 {
			t.Fatalf("%d active sessions while a tcp session runs", n)
		}
	})
	t.Run("half-close: the target answers after the client's end", func(t *testing.T) {
		t.Parallel()
		s, resp := g.open(t, tcpRequest("127.0.0.1", answerPort))
		if !resp.OK {
			t.Fatalf("refused: %+v", resp)
		}
		io.WriteString(s.conn, "question")
		if err := s.conn.(*tls.Conn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(s.conn)
		if err != nil || string(got) != "read 8 bytes: question" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("a name is resolved by the gateway", func(t *testing.T) {
		t.Parallel()
		req := tcpRequest("localhost", echoPort)
		req.Allow = rules(t, fmt.Sprintf("127.0.0.0/8 tcp/%d", echoPort))
		s, resp := g.open(t, req)
		if !resp.OK {
			t.Fatalf("refused: %+v", resp)
		}
		roundTrip(t, s, "by name")
	})
	t.Run("an optional recording is ignored", func(t *testing.T) {
		t.Parallel()
		req := tcpRequest("127.0.0.1", echoPort)
		req.Recording = &wire.Recording{}
		s, resp := g.open(t, req)
		if !resp.OK {
			t.Fatalf("refused: %+v", resp)
		}
		roundTrip(t, s, "unrecorded")
	})

	refused := closedPort(t)
	for _, tc := range []struct {
		name string
		req  func() *wire.Request
		code wire.Code
		msg  []string
	}{
		{"refused", func() *wire.Request { return tcpRequest("127.0.0.1", refused) }, wire.CodeRefused,
			[]string{fmt.Sprintf("target 127.0.0.1:%d refused the connection", refused)}},
		{"refused, by name", func() *wire.Request { return tcpRequest("localhost", refused) }, wire.CodeRefused,
			[]string{fmt.Sprintf("target localhost:%d (127.0.0.1) refused", refused)}},
		{"unresolvable name", func() *wire.Request { return tcpRequest("no..such.name", echoPort) }, wire.CodeUnreachable,
			[]string{"no..such.name could not be resolved by the gateway"}},
		{"address outside Allow", func() *wire.Request {
			r := tcpRequest("localhost", echoPort)
			r.Allow = rules(t, "10.0.0.0/8 tcp/1-65535")
			return r
		}, wire.CodeForbiddenTarget, []string{fmt.Sprintf("target localhost:%d (127.0.0.1) is outside the networks and ports the network resource allows", echoPort)}},
		{"port outside Allow", func() *wire.Request {
			r := tcpRequest("127.0.0.1", echoPort)
			r.Allow = rules(t, fmt.Sprintf("127.0.0.0/8 tcp/%d", echoPort+1))
			return r
		}, wire.CodeForbiddenTarget, []string{fmt.Sprintf("target 127.0.0.1:%d is outside", echoPort)}},
		{"bad Allow", func() *wire.Request {
			r := tcpRequest("127.0.0.1", echoPort)
			r.Allow = wire.NetRules{{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}
			return r
		}, wire.CodeBadRequest, []string{"invalid session request", "network rule"}},
		{"required recording", func() *wire.Request {
			r := tcpRequest("127.0.0.1", echoPort)
			r.Recording = &wire.Recording{Required: true}
			return r
		}, wire.CodeRecordingUnavailable, []string{"sessions on pg must be recorded", "raw TCP tunnels cannot be recorded"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			_, resp := g.open(t, tc.req())
			if resp.OK || resp.Code != tc.code {
				t.Fatalf("got %+v, want %s", resp, tc.code)
			}
			for _, m := range tc.msg {
				if !strings.Contains(resp.Message, m) {
					t.Fatalf("message %q does not say %q", resp.Message, m)
				}
			}
			// Promptly: well within the gateway's dial timeout.
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("answered after %s", d)
			}
		})
	}
}

// TestTCPSessionNetworks checks tcp sessions against the segment's allowed
// networks, with and without a request's Allow.
func TestTCPSessionNetworks(t *testing.T) {
	t.Parallel()
	port := startTarget(t, echo)
	g := startGatewayConfig(t, func(c *Config) {
		c.Networks = func() []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} }
	})
	for _, host := range []string{"127.0.0.1", "localhost"} {
		req := tcpRequest(host, port)
		req.Allow = rules(t, "127.0.0.0/8 tcp/1-65535") // the resource's rules do not widen the segment's
		_, resp := g.open(t, req)
		if resp.OK || resp.Code != wire.CodeForbiddenTarget || !strings.Contains(resp.Message, "outside the networks this gateway may reach") ||
			!strings.Contains(resp.Message, "127.0.0.1") {
			t.Fatalf("%s: got %+v, want target_forbidden naming the address", host, resp)
		}
	}
	open := startGatewayConfig(t, func(c *Config) {
		c.Networks = func() []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} }
	})
	s, resp := open.open(t, tcpRequest("localhost", port))
	if !resp.OK {
		t.Fatalf("inside the segment's networks: %+v", resp)
	}
	roundTrip(t, s, "inside")
}

// TestTCPSessionEnds checks that a session's end is seen on both sides and
// that it no longer counts as active.
func TestTCPSessionEnds(t *testing.T) {
	t.Parallel()
	ended := make(chan struct{})
	port := startTarget(t, func(c *net.TCPConn) {
		defer close(ended)
		io.Copy(io.Discard, c) // until the session ends
	})
	g := startGateway(t)
	s, resp := g.open(t, tcpRequest("127.0.0.1", port))
	if !resp.OK {
		t.Fatalf("refused: %+v", resp)
	}
	waitUntil(t, "the session to count as active", func() bool { return g.ActiveSessions() == 1 })
	s.conn.Close()
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the target connection outlived the session")
	}
	waitUntil(t, "the session to stop counting", func() bool { return g.ActiveSessions() == 0 })
}

// TestTCPSessionThroughRelay runs a tcp session relayed through a tunnel
// gateway, half-close included: the relay passes the end on too.
func TestTCPSessionThroughRelay(t *testing.T) {
	t.Parallel()
	port := startTarget(t, answerAtEnd)
	far := startGateway(t)
	g := startGatewayConfig(t, func(c *Config) {
		c.RelayAddresses = func() []string { return []string{far.Addr().String()} }
	})
	c, resp := g.relay(t, far.Addr().String())
	if !resp.OK {
		t.Fatalf("relay refused: %+v", resp)
	}
	inner := tls.Client(c, wire.ClientTLSConfig(far.portal, far.key))
	if err := wire.WriteRequest(inner, tcpRequest("127.0.0.1", port)); err != nil {
		t.Fatal(err)
	}
	if r, err := wire.ReadResponse(inner); err != nil || !r.OK {
		t.Fatalf("far gateway's answer: %+v %v", r, err)
	}
	io.WriteString(inner, "relayed")
	if err := inner.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(inner)
	if err != nil || string(got) != "read 7 bytes: relayed" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// TestEngineTargetChecks checks the same target checks for a terminal: a
// name is dialed by the address the segment's networks allowed, and a
// request's Allow applies too.
func TestEngineTargetChecks(t *testing.T) {
	t.Parallel()
	port := startTarget(t, func(*net.TCPConn) {}) // closes at once: no SSH server
	terminal := func(host string) *wire.Request {
		return &wire.Request{Kind: wire.KindSession, Protocol: wire.ProtocolSSH, SessionID: "ssh", User: "tester",
			Target: wire.Target{Host: host, Port: port}, Terminal: &wire.Terminal{Term: "xterm", Cols: 80, Rows: 24}}
	}
	inside := startGatewayConfig(t, func(c *Config) {
		c.Networks = func() []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} }
	})
	outside := startGatewayConfig(t, func(c *Config) {
		c.Networks = func() []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} }
	})
	allowed := terminal("localhost")
	allowed.Allow = rules(t, "10.0.0.0/8 tcp/22")
	for _, tc := range []struct {
		name string
		g    *testGateway
		req  *wire.Request
		code wire.Code
		msg  string
	}{
		{"dialed by address", inside, terminal("localhost"), wire.CodeUnreachable, fmt.Sprintf("target 127.0.0.1:%d closed the connection", port)},
		{"outside the segment", outside, terminal("localhost"), wire.CodeForbiddenTarget, "outside the networks this gateway may reach"},
		{"outside Allow", inside, allowed, wire.CodeForbiddenTarget, "outside the networks and ports the network resource allows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, resp := tc.g.open(t, tc.req)
			if resp.OK || resp.Code != tc.code || !strings.Contains(resp.Message, tc.msg) {
				t.Fatalf("got %+v, want %s saying %q", resp, tc.code, tc.msg)
			}
		})
	}
}

// TestCloseEndsTCPSessions checks that closing the gateway ends an idle tcp
// session, and its target connection, at once.
func TestCloseEndsTCPSessions(t *testing.T) {
	t.Parallel()
	port := startTarget(t, echo)
	g := startGateway(t)
	s, resp := g.open(t, tcpRequest("127.0.0.1", port))
	if !resp.OK {
		t.Fatalf("refused: %+v", resp)
	}
	roundTrip(t, s, "before close")
	done := make(chan struct{})
	go func() { g.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while a tcp session was idle")
	}
	if _, err := io.ReadAll(s.conn); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("after Close: %v", err)
	}
}
