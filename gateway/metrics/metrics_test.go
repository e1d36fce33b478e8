package metrics

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestListenAddrs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in, metrics, pprof string // "" pprof: refused
	}{
		{":9090", "127.0.0.1:9090", "127.0.0.1:9090"},
		{"9090", "127.0.0.1:9090", "127.0.0.1:9090"},
		{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"},
		{"[::1]:6060", "[::1]:6060", "[::1]:6060"},
		{"localhost:6060", "localhost:6060", "localhost:6060"},
		{"0.0.0.0:9090", "0.0.0.0:9090", ""},
		{"[::]:9090", "[::]:9090", ""},
		{"192.0.2.1:9090", "192.0.2.1:9090", ""},
		{"example.com:9090", "example.com:9090", ""},
	} {
		got, err := ListenAddr(c.in)
		if err != nil || got != c.metrics {
			t.Errorf("ListenAddr(%q) = %q, %v; want %q", c.in, got, err, c.metrics)
		}
		got, err = LoopbackAddr(c.in)
		switch {
		case c.pprof == "" && (err == nil || !strings.Contains(err.Error(), "not a loopback address")):
			t.Errorf("LoopbackAddr(%q) = %q, %v; want refused", c.in, got, err)
		case c.pprof != "" && (err != nil || got != c.pprof):
			t.Errorf("LoopbackAddr(%q) = %q, %v; want %q", c.in, got, err, c.pprof)
		}
	}
	if _, err := ListenAddr("not an address"); err == nil {
		t.Error("a bad address was taken")
	}
}

// TestNilSafe checks that parts built without metrics can call them.
func TestNilSafe(t *testing.T) {
	t.Parallel()
	var p *Portal
	p.SessionOpened("ssh", 0)
	p.SessionRefused("ssh", "no_grant")
	p.SessionEnded("ssh", 1, 2)
	p.RecordingUploaded(true, 3)
	p.Hook("allow", 0)
	p.SignIn("password", true)
	var g *Gateway
	g.SessionOpened("ssh")
	g.SessionRefused("ssh", "x")
	g.SessionEnded("ssh")
	g.RecordingSpooled()
	g.Upload(false)
	a, _ := net.Pipe()
	if g.CountConn(a) != a {
		t.Error("CountConn without metrics wrapped the connection")
	}
}

func TestCountConnAndStates(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	g := NewGateway(reg)
	a, b := net.Pipe()
	c := g.CountConn(a)
	go func() {
		buf := make([]byte, 10)
		n, _ := b.Read(buf)
		b.Write(buf[:n-1])
		b.Close()
	}()
	c.Write([]byte("hello"))
	buf := make([]byte, 10)
	c.Read(buf)
	if in, out := testutil.ToFloat64(g.bytesRelayed.WithLabelValues("in")), testutil.ToFloat64(g.bytesRelayed.WithLabelValues("out")); in != 4 || out != 5 {
		t.Errorf("in %v out %v, want 4 and 5", in, out)
	}

	GatewayStates(reg, func() []GatewayState { return []GatewayState{{"embedded", "available"}, {"office", "unavailable"}} })
	want := `
# HELP keyway_portal_gateway_state 1 for the health state each gateway is in (pending, checking, available, unavailable), 0 for the others.
# TYPE keyway_portal_gateway_state gauge
keyway_portal_gateway_state{gateway="embedded",state="available"} 1
keyway_portal_gateway_state{gateway="embedded",state="checking"} 0
keyway_portal_gateway_state{gateway="embedded",state="pending"} 0
keyway_portal_gateway_state{gateway="embedded",state="unavailable"} 0
keyway_portal_gateway_state{gateway="office",state="available"} 0
keyway_portal_gateway_state{gateway="office",state="checking"} 0
keyway_portal_gateway_state{gateway="office",state="pending"} 0
keyway_portal_gateway_state{gateway="office",state="unavailable"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "keyway_portal_gateway_state"); err != nil {
		t.Error(err)
	}
}

func TestGatewayTokenMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	p := NewPortal(reg)
	p.GatewayToken("office", TokenIssued)
	p.GatewayToken("office", TokenIssued)
	p.GatewayToken("office", TokenRenewFailed)
	GatewayTokenExpiries(reg, func() []GatewayTokenExpiry {
		// A gateway never issued a token has no series.
		return []GatewayTokenExpiry{{"office", time.Unix(1800000000, 0)}, {"new", time.Time{}}}
	})
	want := `
# HELP keyway_portal_gateway_token_events_total Gateway access token events, by kind: issued, refused, expiring (a gateway called with under 7 days left), renew_failed (a gateway reported a failed renewal).
# TYPE keyway_portal_gateway_token_events_total counter
keyway_portal_gateway_token_events_total{event="issued",gateway="office"} 2
keyway_portal_gateway_token_events_total{event="renew_failed",gateway="office"} 1
# HELP keyway_portal_gateway_token_expiry_timestamp_seconds When each gateway's last issued access token expires, in Unix seconds; alert on time() above it minus 7 days.
# TYPE keyway_portal_gateway_token_expiry_timestamp_seconds gauge
keyway_portal_gateway_token_expiry_timestamp_seconds{gateway="office"} 1.8e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "keyway_portal_gateway_token_events_total",
		"keyway_portal_gateway_token_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}
}
