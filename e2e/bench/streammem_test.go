package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/gateways"
)

// echoHelperEnv makes this test binary an echo server (TestEchoHelper),
// so that a benchmark's in-process memory figures leave the target out.
const echoHelperEnv = "KEYWAY_BENCH_ECHO_HELPER"

// TestEchoHelper is not a test: run with echoHelperEnv set it serves a
// loopback echo and prints its port, until its stdin closes.
func TestEchoHelper(t *testing.T) {
	if os.Getenv(echoHelperEnv) == "" {
		t.Skip("helper process for BenchmarkGatewayStreamMemory")
	}
	e, err := targets.StartEcho()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	fmt.Println(e.Port)
	io.Copy(io.Discard, os.Stdin)
}

// BenchmarkGatewayStreamMemory measures what one idle tcp stream costs on
// the portal → gateway hop, in process (runtime.MemStats after a GC, so
// live memory, not resident size): the pool's TLS client connection and
// the gateway's side (TLS server, target connection, relay). The target is
// an echo server in a child process.
func BenchmarkGatewayStreamMemory(b *testing.B) {
	helper := exec.Command(os.Args[0], "-test.run=^TestEchoHelper$")
	helper.Env = append(os.Environ(), echoHelperEnv+"=1")
	stdin, _ := helper.StdinPipe()
	stdout, _ := helper.StdoutPipe()
	if err := helper.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); helper.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	port, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		b.Fatalf("echo helper: %q %v %v", line, err, perr)
	}
	portal := newIdentity(b)
	_, gw := startGateway(b, portal, "embedded", nil)
	pool := gateways.New(portal, quietLogger(), 30*time.Second)
	defer pool.Close()
	pool.Set([]gateways.Gateway{gw})
	pool.CheckAll(context.Background(), gateways.DefaultHealth)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	open := func(n int) {
		for i := range n {
			c, resp, err := pool.Open(context.Background(), gw, &wire.Request{Kind: wire.KindSession, Protocol: wire.ProtocolTCP,
				SessionID: "mem-" + strconv.Itoa(len(conns)+i), Target: wire.Target{Host: "127.0.0.1", Port: port}})
			if err != nil || !resp.OK {
				b.Fatalf("open stream %d: %v %+v", i, err, resp)
			}
			conns = append(conns, c)
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write([]byte{'m'}); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				b.Fatal(err)
			}
			c.SetDeadline(time.Time{})
		}
	}
	open(100) // what streams share is in place
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	open(idleStreams)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapInuse-before.HeapInuse) / idleStreams / 1024
	stacks := float64(after.StackInuse-before.StackInuse) / idleStreams / 1024
	b.ReportMetric(heap, "heap-KiB/stream")
	b.ReportMetric(stacks, "stack-KiB/stream")
	b.Logf("portal→gateway hop per idle stream: %.1f KiB heap + %.1f KiB stacks (live, after GC)", heap, stacks)
}
