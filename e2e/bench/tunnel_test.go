package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// The native-client benchmark's sizes (issue 19).
const (
	// iperfTime is each iperf3 run's length.
	iperfTime = 5 * time.Second
	// tunnelEchoSamples round trips are timed per echo measurement.
	tunnelEchoSamples = 2000
	// echoMessage is the size of each timed round trip's message, a small
	// request such as a database query.
	echoMessage = 64
	// idleStreams are held open to measure memory per idle stream.
	idleStreams = 1000
	// bulkChunk is what the bulk stream writes at a time.
	bulkChunk = 32 << 10
)

// pathResult is one path's measurements (direct, or through keyway).
type pathResult struct {
	one, eight       float64 // iperf3 receiver bit/s, 1 and 8 streams
	idleP50, idleP99 time.Duration
	bulkP50, bulkP99 time.Duration
	bulkMBps         float64 // the bulk stream's echoed MB/s while timed
}

// BenchmarkNativeTunnel measures `keyway tunnel` (client → HTTP/2 CONNECT
// over one TLS connection → portal → embedded gateway → target) against the
// same targets reached directly, side by side in one run: iperf3 with one
// and eight streams, 64-byte echo round trips idle and beside a bulk stream
// through the same client, and memory per idle stream with 1,000 open.
// The portal runs as its own process (`portal demo`, gateway embedded), so
// that memory is the resident size of portal and gateway together; it is
// measured again through a separate gateway process (bin/gateway, its own
// segment, tunnel mode off) for the portal and the gateway apart. Beside
// them, the same throughput and echo through two ceilings (startCeiling):
// the tunnel's architecture without the portal, with and without the
// gateway's TLS hop.
func BenchmarkNativeTunnel(b *testing.B) {
	iperf := targets.NewIperf3(b)
	echo := targets.NewEcho(b)
	tun := startTunnels(b, iperf, echo)
	iperfLocal := tun.iperf.Listen
	echoLocal := tun.echo.Listen

	// Memory first: the throughput runs leave garbage whose return to the
	// system (by the Go scavenger) would hide the streams' growth.
	m, closeEmbedded := idleStreamMemory(b, tun.filler.Listen, tun.idle.Listen, tun.idle.Cmd.Process.Pid, tun.portalPID)
	client, portal := m[0], m[1]
	// Then through the separate gateway: portal and gateway apart. The
	// first streams stay open meanwhile, or the portal would reuse the
	// heap they held and seem to grow less.
	m, closeSeparate := idleStreamMemory(b, tun.gwFiller.Listen, tun.gwIdle.Listen, tun.gwIdle.Cmd.Process.Pid, tun.portalPID, tun.gatewayPID)
	gwClient, gwPortal, gateway := m[0], m[1], m[2]
	closeEmbedded()
	closeSeparate()
	// Ending 4,000 streams (sessions, audit) keeps the portal and the
	// gateway busy for a while; the throughput runs start once they idle.
	quietCPU(b, tun.portalPID, tun.gatewayPID)

	// The ceilings: the same architecture without the portal (see
	// startCeiling), with the gateway's TLS hop and without it.
	ceil2Iperf, ceil2Echo := startCeiling(b, iperf.Addr(), true), startCeiling(b, echo.Addr(), true)
	ceil1Iperf, ceil1Echo := startCeiling(b, iperf.Addr(), false), startCeiling(b, echo.Addr(), false)

	var direct, tunnel, ceil2, ceil1 []pathResult
	for range b.N {
		direct = append(direct, measurePath(b, "direct", iperf.Addr(), echo.Addr()))
		ceil2 = append(ceil2, measurePath(b, "ceiling, two TLS hops", ceil2Iperf, ceil2Echo))
		ceil1 = append(ceil1, measurePath(b, "ceiling, one TLS hop", ceil1Iperf, ceil1Echo))
		tunnel = append(tunnel, measurePath(b, "tunnel", iperfLocal, echoLocal))
	}
	d, t := meanResult(direct), meanResult(tunnel)
	c2, c1 := meanResult(ceil2), meanResult(ceil1)
	for _, c := range []struct {
		name string
		r    pathResult
	}{{"ceiling-2tls", c2}, {"ceiling-1tls", c1}} {
		b.ReportMetric(c.r.one/d.one, c.name+"/direct-1")
		b.ReportMetric(c.r.eight/d.eight, c.name+"/direct-8")
		b.ReportMetric(float64((c.r.bulkP50-d.bulkP50).Nanoseconds())/1e3, c.name+"-added-bulk-p50-µs")
		b.Logf("%s: one stream %.2f Gbit/s = %.0f %% of direct; eight %.2f Gbit/s; echo idle p50 %v, beside bulk p50 %v p99 %v (bulk %.0f MB/s)",
			c.name, c.r.one/1e9, 100*c.r.one/d.one, c.r.eight/1e9, c.r.idleP50, c.r.bulkP50, c.r.bulkP99, c.r.bulkMBps)
	}
	gbit := func(v float64) float64 { return v / 1e9 }
	b.ReportMetric(gbit(d.one), "direct-1-Gbit/s")
	b.ReportMetric(gbit(t.one), "tunnel-1-Gbit/s")
	b.ReportMetric(t.one/d.one, "tunnel/direct-1")
	b.ReportMetric(gbit(d.eight), "direct-8-Gbit/s")
	b.ReportMetric(gbit(t.eight), "tunnel-8-Gbit/s")
	b.ReportMetric(t.eight/d.eight, "tunnel/direct-8")
	b.ReportMetric(t.eight/t.one, "tunnel-8/1")
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	b.ReportMetric(us(d.idleP50), "direct-idle-p50-µs")
	b.ReportMetric(us(t.idleP50), "tunnel-idle-p50-µs")
	b.ReportMetric(us(t.idleP50-d.idleP50), "added-idle-p50-µs")
	b.ReportMetric(us(t.idleP99-d.idleP99), "added-idle-p99-µs")
	b.ReportMetric(us(d.bulkP50), "direct-bulk-p50-µs")
	b.ReportMetric(us(t.bulkP50), "tunnel-bulk-p50-µs")
	b.ReportMetric(us(t.bulkP50-d.bulkP50), "added-bulk-p50-µs")
	b.ReportMetric(us(t.bulkP99-d.bulkP99), "added-bulk-p99-µs")
	b.ReportMetric(t.bulkMBps, "tunnel-bulk-MB/s")

	b.ReportMetric(client, "client-KiB/idle-stream")
	b.ReportMetric(portal, "portal+gateway-KiB/idle-stream")
	b.ReportMetric(gwClient, "client-via-gw-KiB/idle-stream")
	b.ReportMetric(gwPortal, "portal-alone-KiB/idle-stream")
	b.ReportMetric(gateway, "gateway-alone-KiB/idle-stream")

	goal := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	b.Logf("one stream: direct %.2f Gbit/s, tunnel %.2f Gbit/s = %.0f %% (goal ≥ 50 %%: %s)",
		gbit(d.one), gbit(t.one), 100*t.one/d.one, goal(t.one >= d.one/2))
	b.Logf("eight streams: direct %.2f Gbit/s, tunnel %.2f Gbit/s (goal tunnel-8 ≥ tunnel-1: %s)",
		gbit(d.eight), gbit(t.eight), goal(t.eight >= t.one))
	b.Logf("echo idle: p50 direct %v tunnel %v (added %v, goal < 1 ms: %s); p99 direct %v tunnel %v",
		d.idleP50, t.idleP50, t.idleP50-d.idleP50, goal(t.idleP50-d.idleP50 < time.Millisecond), d.idleP99, t.idleP99)
	b.Logf("echo beside bulk: p50 direct %v tunnel %v (added %v, goal < 5 ms: %s); p99 direct %v tunnel %v; bulk %.0f MB/s direct, %.0f MB/s tunnel",
		d.bulkP50, t.bulkP50, t.bulkP50-d.bulkP50, goal(t.bulkP50-d.bulkP50 < 5*time.Millisecond), d.bulkP99, t.bulkP99, d.bulkMBps, t.bulkMBps)
	b.Logf("memory per idle stream (%d open): client %.1f KiB, portal+gateway %.1f KiB (goal < 64 KiB each: %s)",
		idleStreams, client, portal, goal(client < 64 && portal < 64))
	b.Logf("memory per idle stream (%d open) with a separate gateway process: client %.1f KiB, portal %.1f KiB, gateway %.1f KiB (goal < 64 KiB each: %s)",
		idleStreams, gwClient, gwPortal, gateway, goal(gwClient < 64 && gwPortal < 64 && gateway < 64))
}

// tunnels are the keyway processes the benchmark reaches its targets by.
type tunnels struct {
	portalPID   int
	iperf, echo *targets.Keyway
	// filler and idle are two more clients of the echo resource for the
	// memory measurement (each its own HTTP/2 connection, which carries
	// at most the portal's 1024 concurrent streams).
	filler, idle *targets.Keyway
	// gwFiller and gwIdle are the same for an echo resource reached
	// through a separate gateway process (gatewayPID), the portal
	// dialling it directly (tunnel mode off), so that the portal's and
	// the gateway's memory are separate figures.
	gwFiller, gwIdle *targets.Keyway
	gatewayPID       int
}

// startTunnels runs the portal (demo mode, with its embedded gateway), makes
// tcp resources for the iperf3 and echo servers granted to the admin,
// raises the stream limits above idleStreams, and starts one `keyway
// tunnel` per resource with an API token.
func startTunnels(b *testing.B, iperf *targets.Iperf3, echo *targets.EchoServer) tunnels {
	b.Helper()
	dir := b.TempDir()
	info, pid := startDemoIn(b, dir)
	admin := signIn(b, info, info.Admin)
	token := apiToken(b, admin, info)
	api := func(method, path string, in, out any) {
		b.Helper()
		var body io.Reader
		if in != nil {
			raw, _ := json.Marshal(in)
			body = bytes.NewReader(raw)
		}
		req, _ := http.NewRequest(method, info.URL+path, body)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := admin.Do(req)
		if err != nil {
			b.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			b.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
		}
		if out != nil {
			if err := json.Unmarshal(raw, out); err != nil {
				b.Fatalf("%s %s: %v: %s", method, path, err, raw)
			}
		}
	}
	var me struct {
		ID int64 `json:"id"`
	}
	api(http.MethodGet, "/api/v1/me", nil, &me)
	for _, r := range []struct {
		name string
		port int
	}{{"bench-iperf", iperf.Port}, {"bench-echo", echo.Port}} {
		var res struct {
			ID int64 `json:"id"`
		}
		api(http.MethodPost, "/api/v1/resources", map[string]any{"name": r.name, "protocol": "tcp", "host": "127.0.0.1", "port": r.port}, &res)
		api(http.MethodPost, "/api/v1/grants", map[string]any{"resource_id": res.ID, "subject_kind": "user", "subject_id": me.ID, "mode": "terminal"}, nil)
	}
	// The defaults (256 per device, 512 per user) are below idleStreams;
	// a device may have at most 1,000 (one HTTP/2 connection's worth), and
	// each keyway process opens at most idleStreams; four of them hold
	// theirs open at once for the memory measurement.
	api(http.MethodPut, "/api/v1/settings/clients", map[string]any{
		"credential_hours": 12, "streams_per_device": idleStreams, "streams_per_user": 5 * idleStreams}, nil)

	// A separate gateway in its own segment, for the memory per process.
	// Tunnel mode off: the portal dials it directly rather than relaying
	// through its embedded gateway.
	var seg struct {
		ID int64 `json:"id"`
	}
	api(http.MethodPost, "/api/v1/segments", map[string]any{"name": "bench-gw"}, &seg)
	ports := freePorts(b, 4)
	var gw struct {
		ID int64 `json:"id"`
	}
	api(http.MethodPost, "/api/v1/gateways", map[string]any{"name": "bench-gw-1", "segment_id": seg.ID, "host": "127.0.0.1",
		"ssh_port": ports[0], "rdp_port": ports[1], "vnc_port": ports[2], "management_port": ports[3]}, &gw)
	gwProc, key := startSegmentGateway(b, admin, info.URL, gw.ID, ports, dir)
	api(http.MethodPut, fmt.Sprintf("/api/v1/gateways/%d/key", gw.ID), map[string]any{"public_key": key}, nil)
	api(http.MethodPut, "/api/v1/settings/tunnel", map[string]any{"tunnel": false}, nil)
	available := time.Now().Add(60 * time.Second)
	for {
		var st struct {
			State     string `json:"state"`
			LastError string `json:"last_error"`
		}
		api(http.MethodGet, fmt.Sprintf("/api/v1/gateways/%d", gw.ID), nil, &st)
		if st.State == "available" {
			break
		}
		if time.Now().After(available) {
			b.Fatalf("gateway not available within 60 s: %s %s", st.State, st.LastError)
		}
		time.Sleep(200 * time.Millisecond) // polling the portal's health check; no event to await
	}
	var gwRes struct {
		ID int64 `json:"id"`
	}
	api(http.MethodPost, "/api/v1/resources", map[string]any{"name": "bench-echo-gw", "protocol": "tcp", "host": "127.0.0.1", "port": echo.Port,
		"tags": []string{"bench-gw"}}, &gwRes)
	api(http.MethodPost, "/api/v1/grants", map[string]any{"resource_id": gwRes.ID, "subject_kind": "user", "subject_id": me.ID, "mode": "terminal"}, nil)

	bin := targets.BuildKeyway(b)
	env := []string{"KEYWAY_CONFIG_DIR=" + b.TempDir(), "KEYWAY_URL=" + info.URL,
		"KEYWAY_CA=" + filepath.Join(dir, "tls.crt"), "KEYWAY_TOKEN=" + token}
	return tunnels{
		portalPID:  pid,
		iperf:      targets.StartKeyway(b, bin, env, "tunnel", "bench-iperf", "--listen", "127.0.0.1:0"),
		echo:       targets.StartKeyway(b, bin, env, "tunnel", "bench-echo", "--listen", "127.0.0.1:0"),
		filler:     targets.StartKeyway(b, bin, env, "tunnel", "bench-echo", "--listen", "127.0.0.1:0"),
		idle:       targets.StartKeyway(b, bin, env, "tunnel", "bench-echo", "--listen", "127.0.0.1:0"),
		gwFiller:   targets.StartKeyway(b, bin, env, "tunnel", "bench-echo-gw", "--listen", "127.0.0.1:0"),
		gwIdle:     targets.StartKeyway(b, bin, env, "tunnel", "bench-echo-gw", "--listen", "127.0.0.1:0"),
		gatewayPID: gwProc.Process.Pid,
	}
}

// freePorts returns n loopback ports that were free a moment ago (the
// gateway's listen addresses must be known before it starts, as they go
// into its record in the portal).
func freePorts(b *testing.B, n int) []int {
	b.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// startSegmentGateway downloads gateway id's configuration file, runs bin/gateway
// with it on the given ports (ssh, rdp, vnc, management) and returns the
// process and the public key it printed.
func startSegmentGateway(b *testing.B, admin *http.Client, portalURL string, id int64, ports []int, dir string) (*exec.Cmd, string) {
	b.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", "gateway"))
	if err != nil {
		b.Fatal(err)
	}
	resp, err := admin.Get(fmt.Sprintf("%s/admin/gateways/%d/config", portalURL, id))
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("gateway config: %d %s", resp.StatusCode, raw)
	}
	var f wire.GatewayFile
	if err := json.Unmarshal(raw, &f); err != nil {
		b.Fatal(err)
	}
	f.StateDir = filepath.Join(dir, "gateway")
	f.Listen = map[string]string{}
	for i, name := range []string{"ssh", "rdp", "vnc", "management"} {
		f.Listen[name] = fmt.Sprintf("127.0.0.1:%d", ports[i])
	}
	f.PullIntervalSecs = 1
	cfg := filepath.Join(dir, "gateway.json")
	raw, _ = json.Marshal(f)
	if err := os.WriteFile(cfg, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	// No drain: the benchmark's streams may still run when it stops the
	// gateway.
	cmd := exec.Command(bin, "run", "--config", cfg, "--log-level", "info", "--drain-timeout", "0")
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	keyRE := regexp.MustCompile(`ed25519:[A-Za-z0-9+/=]+`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if key := keyRE.FindString(log.String()); key != "" {
			return cmd, key
		}
		select {
		case <-exited:
			b.Fatalf("gateway stopped:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("gateway printed no key within 30 s:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond) // its output is a buffer; no event to await
	}
}

// lockedBuffer is a bytes.Buffer a child process writes while the test
// reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// measurePath runs the throughput and latency measurements against an
// iperf3 server and an echo server at the given addresses.
func measurePath(b *testing.B, name, iperfAddr, echoAddr string) pathResult {
	b.Helper()
	host, portStr, _ := net.SplitHostPort(iperfAddr)
	port, _ := strconv.Atoi(portStr)
	var r pathResult
	ctx := context.Background()
	one, err := targets.RunIperf3(ctx, host, port, 1, iperfTime)
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	eight, err := targets.RunIperf3(ctx, host, port, 8, iperfTime)
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	r.one, r.eight = one.BitsPerSecond, eight.BitsPerSecond

	idle, err := echoRoundTrips(echoAddr, tunnelEchoSamples)
	if err != nil {
		b.Fatalf("%s: idle echo: %v", name, err)
	}
	r.idleP50, r.idleP99 = percentile(idle, 0.5), percentile(idle, 0.99)

	stop, err := startBulk(echoAddr)
	if err != nil {
		b.Fatalf("%s: bulk stream: %v", name, err)
	}
	busy, err := echoRoundTrips(echoAddr, tunnelEchoSamples)
	mbps, bulkErr := stop()
	if err = errors.Join(err, bulkErr); err != nil {
		b.Fatalf("%s: echo beside bulk: %v", name, err)
	}
	r.bulkP50, r.bulkP99, r.bulkMBps = percentile(busy, 0.5), percentile(busy, 0.99), mbps
	return r
}

func meanResult(rs []pathResult) pathResult {
	var m pathResult
	n := float64(len(rs))
	for _, r := range rs {
		m.one += r.one / n
		m.eight += r.eight / n
		m.bulkMBps += r.bulkMBps / n
		m.idleP50 += r.idleP50 / time.Duration(len(rs))
		m.idleP99 += r.idleP99 / time.Duration(len(rs))
		m.bulkP50 += r.bulkP50 / time.Duration(len(rs))
		m.bulkP99 += r.bulkP99 / time.Duration(len(rs))
	}
	return m
}

// echoRoundTrips times n round trips of an echoMessage-byte message on one
// connection to an echo server, after a few untimed ones.
func echoRoundTrips(addr string, n int) ([]time.Duration, error) {
	c, err := net.DialTimeout("tcp", addr, 20*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	msg, got := bytes.Repeat([]byte{'k'}, echoMessage), make([]byte, echoMessage)
	lat := make([]time.Duration, 0, n)
	const warmUp = 20
	for i := range n + warmUp {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return nil, fmt.Errorf("round trip %d: %w", i, err)
		}
		if i >= warmUp {
			lat = append(lat, time.Since(start))
		}
	}
	return lat, nil
}

// startBulk opens a connection to an echo server that sends as fast as it
// can and drains the echo. stop ends it (half-close, then the echo's end)
// and returns the echoed MB/s.
func startBulk(addr string) (stop func() (float64, error), err error) {
	c, err := net.DialTimeout("tcp", addr, 20*time.Second)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	var quit atomic.Bool
	var wg sync.WaitGroup
	var werr, rerr error
	var read int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		chunk := bytes.Repeat([]byte("bulk"), bulkChunk/4)
		for !quit.Load() {
			if _, werr = c.Write(chunk); werr != nil {
				return
			}
		}
		werr = c.(*net.TCPConn).CloseWrite()
	}()
	go func() {
		defer wg.Done()
		read, rerr = io.Copy(io.Discard, c)
	}()
	return func() (float64, error) {
		secs := time.Since(start).Seconds()
		quit.Store(true)
		// The echo ends once it has returned everything sent; a path that
		// loses the half-close would hang here, so bound it.
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		wg.Wait()
		c.Close()
		return float64(read) / 1e6 / secs, errors.Join(werr, rerr)
	}, nil
}

// idleStreamMemory opens idle streams through the echo tunnel, each echoing
// one byte so the stream is open end to end, and returns the growth of
// each process's resident memory per stream in KiB (pids: the measured
// client first, then the portal, then a gateway). A Go process reuses heap
// it already holds (garbage of its start, of the admin's password hashing)
// before it grows, so idleStreams are first opened through another client
// (fillerAddr) and only then idleStreams through the measured one
// (idleAddr). closeStreams closes them all.
func idleStreamMemory(b *testing.B, fillerAddr, idleAddr string, pids ...int) (growth []float64, closeStreams func()) {
	b.Helper()
	first := openIdleStreams(b, fillerAddr, idleStreams)
	// Wait until no process shrinks (the Go scavenger returning memory),
	// or the baseline would hide the streams' growth.
	before := make([]float64, len(pids))
	for i, pid := range pids {
		before[i] = settledRSS(b, pid)
	}
	second := openIdleStreams(b, idleAddr, idleStreams)
	growth = make([]float64, len(pids))
	for i, pid := range pids {
		growth[i] = (rssKiB(b, pid) - before[i]) / idleStreams
	}
	return growth, func() { closeAll(first); closeAll(second) }
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// openIdleStreams opens n connections, 50 at a time (a real flood, within
// the listen backlog), each echoing one byte.
func openIdleStreams(b *testing.B, echoAddr string, n int) []net.Conn {
	b.Helper()
	const parallel = 50
	conns := make([]net.Conn, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", echoAddr, 30*time.Second)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
			c.SetDeadline(time.Now().Add(60 * time.Second))
			if _, err := c.Write([]byte{'i'}); err != nil {
				errs <- err
				return
			}
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
			}
			c.SetDeadline(time.Time{})
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		closeAll(conns)
		b.Fatalf("open %d idle streams: %v", n, err)
	}
	return conns
}

// settledRSS waits until pid's resident memory changes by less than
// rssSettled over a second (at most rssSettleTimeout) and returns it in KiB.
func settledRSS(b *testing.B, pid int) float64 {
	const (
		rssSettled       = 256 // KiB
		rssSettleTimeout = 90 * time.Second
	)
	deadline := time.Now().Add(rssSettleTimeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := rssKiB(b, pid)
	for range tick.C {
		now := rssKiB(b, pid)
		if math.Abs(now-last) < rssSettled || time.Now().After(deadline) {
			return now
		}
		last = now
	}
	return last
}

// quietCPU waits until each process used less than a twentieth of a core
// over a second (at most quietTimeout).
func quietCPU(b *testing.B, pids ...int) {
	b.Helper()
	const (
		quietTicks   = 5 // of 100 per second (USER_HZ)
		quietTimeout = 120 * time.Second
	)
	deadline := time.Now().Add(quietTimeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := make([]int64, len(pids))
	for i, pid := range pids {
		last[i] = cpuTicks(b, pid)
	}
	for range tick.C {
		quiet := true
		for i, pid := range pids {
			now := cpuTicks(b, pid)
			if now-last[i] >= quietTicks {
				quiet = false
			}
			last[i] = now
		}
		if quiet || time.Now().After(deadline) {
			return
		}
	}
}

// cpuTicks reads a process's user and system CPU time from /proc in
// clock ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are the 12th and 13th.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, raw)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// rssKiB reads a process's resident memory from /proc in KiB.
func rssKiB(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
