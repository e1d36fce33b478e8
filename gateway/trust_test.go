package gateway

import (
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// startGatewayConfig starts a gateway with a management listener, after
// edit changed its config.
func startGatewayConfig(t *testing.T, edit func(*Config)) *testGateway {
	t.Helper()
	gwID, portal := identity(t), identity(t)
	cfg := Config{
		SSHAddr: "127.0.0.1:0", ManagementAddr: "127.0.0.1:0", Identity: gwID,
		TrustedPortal:    func(k ed25519.PublicKey) bool { return k.Equal(portal.PublicKey()) },
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		DialTimeout:      5 * time.Second,
		HandshakeTimeout: 5 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return &testGateway{Gateway: g, portal: portal, key: gwID.PublicKey()}
}

// status asks the gateway's management listener, as the portal's health
// check does.
func (g *testGateway) status(t *testing.T) (int, wire.Status) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: wire.ClientTLSConfig(g.portal, g.key), DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + g.ManagementAddr().String() + "/status")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	defer resp.Body.Close()
	var st wire.Status
	json.NewDecoder(resp.Body).Decode(&st)
	return resp.StatusCode, st
}

// probe returns the status of the plain health listener's path.
func (g *testGateway) probe(t *testing.T, path string) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + g.HealthAddr().String() + path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// relay asks g to relay to addr and returns its answer and the connection.
func (g *testGateway) relay(t *testing.T, addr string) (*tls.Conn, *wire.Response) {
	t.Helper()
	c, err := tls.Dial("tcp", g.Addr().String(), wire.ClientTLSConfig(g.portal, g.key))
	if err != nil {
		t.Fatalf("dial gateway: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if err := wire.WriteRequest(c, &wire.Request{Kind: wire.KindRelay, Relay: &wire.Relay{GatewayID: "2", Address: addr}}); err != nil {
		t.Fatal(err)
	}
	resp, err := wire.ReadResponse(c)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return c, resp
}

// TestRelayOnlyToEnrolledGateways: a relay reaches only the gateways the
// portal enrolled, and its refusals say nothing of what listens where.
func TestRelayOnlyToEnrolledGateways(t *testing.T) {
	t.Parallel()
	far := startGateway(t)
	down := closedPort(t)
	downAddr := fmt.Sprintf("127.0.0.1:%d", down)
	g := startGatewayConfig(t, func(c *Config) {
		c.RelayAddresses = func() []string { return []string{far.Addr().String(), downAddr} }
	})
	open, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	closed := fmt.Sprintf("127.0.0.1:%d", closedPort(t))

	_, toOpen := g.relay(t, open.Addr().String())
	_, toClosed := g.relay(t, closed)
	if toOpen.OK || toOpen.Code != wire.CodeForbiddenTarget {
		t.Fatalf("relay to a port that is no gateway: %+v", toOpen)
	}
	if strings.ReplaceAll(toOpen.Message, open.Addr().String(), "ADDR") != strings.ReplaceAll(toClosed.Message, closed, "ADDR") || toOpen.Code != toClosed.Code {
		t.Fatalf("open and closed ports answered differently:\n%+v\n%+v", toOpen, toClosed)
	}
	// Never dialed: a dial would have been queued before the answer.
	open.(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
	if c, err := open.Accept(); err == nil {
		c.Close()
		t.Fatal("the gateway dialed an address that is no enrolled gateway")
	}
	// An enrolled gateway that is down: the reason stays in the log.
	if _, resp := g.relay(t, downAddr); resp.OK || resp.Code != wire.CodeGatewayDown ||
		strings.Contains(resp.Message, "refused") || strings.Contains(resp.Message, "connect") {
		t.Fatalf("relay to an enrolled gateway that is down: %+v", resp)
	}
	// An enrolled one: the portal's own handshake with it runs through.
	c, resp := g.relay(t, far.Addr().String())
	if !resp.OK {
		t.Fatalf("relay to an enrolled gateway: %+v", resp)
	}
	inner := tls.Client(c, wire.ClientTLSConfig(far.portal, far.key))
	if err := wire.WriteRequest(inner, &wire.Request{Kind: wire.KindSession, Protocol: "gopher"}); err != nil {
		t.Fatal(err)
	}
	if r, err := wire.ReadResponse(inner); err != nil || r.Code != wire.CodeBadRequest {
		t.Fatalf("far gateway's answer through the relay: %+v %v", r, err)
	}
}

// TestRefusesSessionsUntilReady: a gateway without a signed config takes
// no session and reports itself unavailable until it has one.
func TestRefusesSessionsUntilReady(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	notYet := errors.New("it has no signed config from the portal yet")
	g := startGatewayConfig(t, func(c *Config) {
		c.HealthAddr = "127.0.0.1:0"
		c.Ready = func() error {
			if ready.Load() {
				return nil
			}
			return notYet
		}
		c.RelayAddresses = func() []string { return []string{"127.0.0.1:1"} }
	})
	for _, req := range []*wire.Request{
		{Kind: wire.KindSession, Protocol: wire.ProtocolSSH, SessionID: "s", User: "u", Resource: "r",
			Target: wire.Target{Host: "127.0.0.1", Port: 22}, Terminal: &wire.Terminal{Term: "xterm", Cols: 80, Rows: 24}},
		{Kind: wire.KindRelay, Relay: &wire.Relay{GatewayID: "2", Address: "127.0.0.1:1"}},
	} {
		_, resp := g.open(t, req)
		if resp.OK || resp.Code != wire.CodeGatewayDown || !strings.Contains(resp.Message, "signed config") {
			t.Fatalf("%s before the first config: %+v", req.Kind, resp)
		}
	}
	if code, st := g.status(t); code != http.StatusServiceUnavailable || !strings.Contains(st.Error, "signed config") {
		t.Fatalf("status before the first config: %d %+v", code, st)
	}
	// Not ready, but alive: a restart would not bring the config.
	if live, ready := g.probe(t, "/healthz"), g.probe(t, "/readyz"); live != 200 || ready != 503 {
		t.Fatalf("probes before the first config: healthz %d, readyz %d", live, ready)
	}
	ready.Store(true)
	if code, st := g.status(t); code != http.StatusOK || st.Error != "" {
		t.Fatalf("status with a config: %d %+v", code, st)
	}
	if code := g.probe(t, "/readyz"); code != 200 {
		t.Fatalf("readyz with a config: %d", code)
	}
}

// failingListener fails every Accept while fail is set, as a process out
// of file descriptors does.
type failingListener struct {
	net.Listener
	fail  *atomic.Bool
	tries *atomic.Int64
}

func (l failingListener) Accept() (net.Conn, error) {
	if l.fail.Load() {
		l.tries.Add(1)
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptErrorsRetried: an Accept that fails does not end the session
// listener; meanwhile the gateway reports itself unavailable.
func TestAcceptErrorsRetried(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	var tries atomic.Int64
	fail.Store(true)
	g := startGatewayConfig(t, func(c *Config) {
		c.HealthAddr = "127.0.0.1:0"
		c.Listen = func(network, addr string) (net.Listener, error) {
			l, err := net.Listen(network, addr)
			return failingListener{Listener: l, fail: &fail, tries: &tries}, err
		}
	})
	waitUntil(t, "accept to fail twice", func() bool { return tries.Load() >= 2 })
	if code, st := g.status(t); code != http.StatusServiceUnavailable || !strings.Contains(st.Error, "cannot accept") {
		t.Fatalf("status while accept fails: %d %+v", code, st)
	}
	if live, ready := g.probe(t, "/healthz"), g.probe(t, "/readyz"); live != 503 || ready != 503 {
		t.Fatalf("probes while accept fails: healthz %d, readyz %d", live, ready)
	}
	fail.Store(false)
	_, resp := g.open(t, &wire.Request{Kind: wire.KindSession, Protocol: "gopher"})
	if resp.Code != wire.CodeBadRequest {
		t.Fatalf("session after accept recovered: %+v", resp)
	}
	if code, _ := g.status(t); code != http.StatusOK {
		t.Fatalf("status after accept recovered: %d", code)
	}
}
