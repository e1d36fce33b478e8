package bench

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/gateways"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newIdentity(b *testing.B) *wire.Identity {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	id, err := wire.NewIdentity(k)
	if err != nil {
		b.Fatal(err)
	}
	return id
}

// startGateway runs an in-process gateway on loopback that trusts portal
// and relays to the addresses relay returns (nil: none).
func startGateway(b *testing.B, portal *wire.Identity, id string, relay func() []string) (*gateway.Gateway, gateways.Gateway) {
	gwID := newIdentity(b)
	g, err := gateway.New(gateway.Config{
		SSHAddr: "127.0.0.1:0", ManagementAddr: "127.0.0.1:0", Identity: gwID, ID: id, Version: "bench",
		TrustedPortal:  func(k ed25519.PublicKey) bool { return k.Equal(portal.PublicKey()) },
		Logger:         quietLogger(),
		RelayAddresses: relay,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	return g, gateways.Gateway{ID: id, Name: id, Segment: "seg-" + id, SSHAddr: g.Addr().String(),
		ManagementAddr: g.ManagementAddr().String(), Key: gwID.PublicKey(), Embedded: id == "embedded"}
}

// session opens a terminal through pool to sshd and returns the stream.
func session(b *testing.B, pool *gateways.Pool, gw gateways.Gateway, sshd *targets.SSHD) net.Conn {
	c, resp, err := pool.Open(context.Background(), gw, &wire.Request{
		Kind: wire.KindSession, Protocol: wire.ProtocolSSH, SessionID: "bench",
		Target:      wire.Target{Host: sshd.Host, Port: sshd.Port},
		Credentials: wire.Credentials{Username: sshd.User, Password: wire.Secret(sshd.Password)},
		HostKey:     sshd.HostKey,
		Terminal:    &wire.Terminal{Term: "xterm", Cols: 200, Rows: 50},
	})
	if err != nil {
		b.Fatalf("open session: %v (%+v)", err, resp)
	}
	return c
}

// catThrough times `cat` of the bulk file over a session stream.
func catThrough(b *testing.B, c net.Conn, path string) time.Duration {
	fr := wire.NewFrameReader(c)
	wire.WriteFrame(c, wire.FrameData, []byte("stty -echo; echo RE\"\"ADY\n"))
	var seen bytes.Buffer
	for !bytes.Contains(seen.Bytes(), []byte("READY\r\n")) {
		_, p, err := fr.Next()
		if err != nil {
			b.Fatal(err)
		}
		seen.Write(p)
	}
	start := time.Now()
	wire.WriteFrame(c, wire.FrameData, []byte("cat "+path+"; echo EN\"\"D\n"))
	var n int
	tail := []byte{}
	for {
		_, p, err := fr.Next()
		if err != nil {
			b.Fatal(err)
		}
		n += len(p)
		tail = append(tail, p...)
		if bytes.Contains(tail, []byte("END")) {
			break
		}
		if len(tail) > 8 {
			tail = tail[len(tail)-8:]
		}
	}
	d := time.Since(start)
	if n < bulkSize {
		b.Fatalf("delivered %d bytes", n)
	}
	return d
}

// BenchmarkTunnelRelay compares a session relayed through the embedded
// gateway (tunnel mode) with a direct one to the same segment gateway:
// session set-up time and bulk output throughput, in one run.
func BenchmarkTunnelRelay(b *testing.B) {
	sshd := targets.NewSSHD(b)
	path := bulkFile(b)
	portal := newIdentity(b)
	var remote gateways.Gateway
	_, embedded := startGateway(b, portal, "embedded", func() []string { return []string{remote.SSHAddr} })
	_, remote = startGateway(b, portal, "remote", nil)
	pool := gateways.New(portal, quietLogger(), 30*time.Second)
	defer pool.Close()
	pool.Set([]gateways.Gateway{embedded, remote})
	pool.CheckAll(context.Background(), gateways.DefaultHealth)

	var setup, bulk [2]time.Duration // 0 direct, 1 tunnel
	for range b.N {
		for i, tunnel := range []bool{false, true} {
			pool.SetTunnel(tunnel)
			start := time.Now()
			c := session(b, pool, remote, sshd)
			setup[i] += time.Since(start)
			bulk[i] += catThrough(b, c, path)
			c.Close()
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(setup[0].Milliseconds())/n, "direct-setup-ms")
	b.ReportMetric(float64(setup[1].Milliseconds())/n, "tunnel-setup-ms")
	b.ReportMetric(float64(bulkSize)/1e6*n/bulk[0].Seconds(), "direct-MB/s")
	b.ReportMetric(float64(bulkSize)/1e6*n/bulk[1].Seconds(), "tunnel-MB/s")
	b.ReportMetric(bulk[0].Seconds()/bulk[1].Seconds(), "tunnel/direct-throughput")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHealthCycle measures one health-sync cycle over 1,000 real
// gateway management listeners (mutual TLS on loopback): wall time and the
// checking process's CPU per cycle. The gateways run in the same process,
// so the CPU figure includes their side of every handshake.
func BenchmarkHealthCycle(b *testing.B) {
	const n = 1000
	portal := newIdentity(b)
	gws := make([]gateways.Gateway, 0, n)
	for i := range n {
		_, g := startGateway(b, portal, "g"+strconv.Itoa(i), nil)
		gws = append(gws, g)
	}
	pool := gateways.New(portal, quietLogger(), 30*time.Second)
	defer pool.Close()
	pool.Set(gws)
	cfg := gateways.DefaultHealth
	// The first cycle opens a TLS connection to every gateway; later ones
	// reuse them.
	c0, t0 := cpuTime(), time.Now()
	pool.CheckAll(context.Background(), cfg)
	firstWall, firstCPU := time.Since(t0), cpuTime()-c0
	b.ResetTimer()
	var wall, cpu time.Duration
	for range b.N {
		c0, t0 := cpuTime(), time.Now()
		pool.CheckAll(context.Background(), cfg)
		wall += time.Since(t0)
		cpu += cpuTime() - c0
	}
	available := 0
	for _, s := range pool.Statuses() {
		if s.State == gateways.StateAvailable {
			available++
		}
	}
	if available != n {
		b.Fatalf("%d of %d gateways available", available, n)
	}
	b.ReportMetric(float64(firstWall.Milliseconds()), "first-cycle-ms")
	b.ReportMetric(float64(firstCPU.Milliseconds()), "first-cycle-cpu-ms")
	b.ReportMetric(float64(wall.Milliseconds())/float64(b.N), "ms/cycle")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/cycle")
	b.ReportMetric(100*cpu.Seconds()/float64(b.N)/cfg.Interval.Seconds(), "%core-at-15s")
}
