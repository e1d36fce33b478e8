package rdp

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
)

// TestConnectCycles connects, takes the first frame and closes many times,
// and checks that the C heap in use, the Go heap, threads and file
// descriptors do not grow with the count: Close must free every FreeRDP
// object. RSS is reported; it moves with glibc's per-thread arenas (each
// session has its own thread) and is only checked for gross growth.
// KEYWAY_RDP_CYCLES sets the count (30; 10 with -short), and
// KEYWAY_RDP_CYCLES_VERBOSE=1 logs every tenth cycle.
//
// Not parallel: other tests' sessions would count in the heaps.
func TestConnectCycles(t *testing.T) {
	n := 30
	if testing.Short() {
		n = 10
	}
	if v := os.Getenv("KEYWAY_RDP_CYCLES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 10 {
			t.Fatalf("KEYWAY_RDP_CYCLES=%q: want a count of at least 10", v)
		}
	}
	srv := targets.NewShadowRDP(t, targets.ShadowOptions{Security: "tls", Width: 800, Height: 600})
	const warmup = 5
	var base, last procStats
	start := time.Now()
	for i := range n {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		s, err := Connect(ctx, Config{Host: srv.Host, Port: srv.Port, Security: "tls", IgnoreCertificate: true, Clipboard: true})
		cancel()
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		select {
		case <-s.Changed():
			s.Take()
		case <-time.After(20 * time.Second):
			t.Fatalf("cycle %d: no frame", i)
		}
		t1 := time.Now()
		s.Key('a', true)
		s.Key('a', false)
		s.Close()
		if os.Getenv("KEYWAY_RDP_CYCLES_VERBOSE") != "" && i%10 == 9 {
			t.Logf("cycle %d: connect and first frame %s, close %s", i+1, t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
		}
		if i == warmup-1 {
			base = readStats(t)
		}
		if os.Getenv("KEYWAY_RDP_CYCLES_VERBOSE") != "" && i%10 == 9 {
			st := readStats(t)
			t.Logf("cycle %d: %+v, %s", i+1, st, time.Since(start).Round(time.Millisecond))
		}
	}
	last = readStats(t)
	t.Logf("%d cycles in %s; after %d: %+v; after %d: %+v", n, time.Since(start).Round(time.Millisecond), warmup, base, n, last)
	// One instance leaked per cycle would be megabytes (its 800x600 GDI
	// surface alone is 1.8 MiB).
	if grow := last.cHeapKiB - base.cHeapKiB; grow > 1<<10 {
		t.Errorf("C heap in use grew by %d KiB over %d cycles", grow, n-warmup)
	}
	if grow := last.goHeapKiB - base.goHeapKiB; grow > 4<<10 {
		t.Errorf("Go heap in use grew by %d KiB over %d cycles", grow, n-warmup)
	}
	if grow := last.rssKiB - base.rssKiB; grow > 128<<10 {
		t.Errorf("RSS grew by %d KiB over %d cycles", grow, n-warmup)
	}
	if last.fds > base.fds+2 {
		t.Errorf("file descriptors grew from %d to %d", base.fds, last.fds)
	}
	// The Go runtime starts threads for blocking calls as load demands
	// and keeps them: a few more on a busy machine are not a leak, which
	// would be one a cycle.
	if slack := max(6, (n-warmup)/4); last.threads > base.threads+slack {
		t.Errorf("threads grew from %d to %d over %d cycles", base.threads, last.threads, n-warmup)
	}
}

type procStats struct {
	rssKiB, cHeapKiB, goHeapKiB int
	threads, fds                int
}

func readStats(t *testing.T) procStats {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var st procStats
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			st.rssKiB, _ = strconv.Atoi(f[0])
		case "Threads":
			st.threads, _ = strconv.Atoi(f[0])
		}
	}
	st.fds = openFDs(t)
	st.cHeapKiB = cHeapInUse() >> 10
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.goHeapKiB = int(ms.HeapInuse >> 10)
	return st
}

// Go's splice pipes. A copy from a Unix to a TCP connection (pipe.forward)
// goes through splice(2) and a kernel pipe that Go keeps for the next copy
// in a sync.Pool (internal/poll's splicePipePool, resized to its
// maxSpliceSize). The pool lets go of its pipes at garbage collections and
// a runtime cleanup closes them later, on its own goroutine, so how many
// are open when the descriptors are counted depends on timing: on a
// loaded machine two more pipes (four descriptors) were once still open
// at the end of TestConnectCycles than at its start. They belong to the
// Go runtime, not to a session, and are not counted.
const (
	goSplicePipeSize = 1 << 20
	fGetPipeSize     = 1032 // F_GETPIPE_SZ, <linux/fcntl.h>
)

// openFDs counts the process's open file descriptors except the pipes
// Go keeps for splicing.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fds {
		if !goSplicePipe(f.Name()) {
			n++
		}
	}
	return n
}

// goSplicePipe reports whether descriptor name (from /proc/self/fd) is an
// end of one of Go's splice pipes.
func goSplicePipe(name string) bool {
	link, err := os.Readlink("/proc/self/fd/" + name)
	if err != nil || !strings.HasPrefix(link, "pipe:") {
		return false
	}
	fd, err := strconv.Atoi(name)
	if err != nil {
		return false
	}
	size, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), fGetPipeSize, 0)
	return errno == 0 && size == goSplicePipeSize
}

// TestOpenFDsIgnoresSplicePipes copies from a Unix to a TCP connection as
// pipe.forward does, which leaves a splice pipe in Go's pool, and checks
// that openFDs, unlike a count of /proc/self/fd, does not see it.
// Not parallel: it counts the process's descriptors.
func TestOpenFDsIgnoresSplicePipes(t *testing.T) {
	before := openFDs(t)
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unixLn, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	received := make(chan int64, 1)
	go func() {
		c, err := tcpLn.Accept()
		if err != nil {
			received <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		received <- n
	}()
	uc, err := net.Dial("unix", unixLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	us, err := unixLn.Accept()
	if err != nil {
		t.Fatal(err)
	}
	tc, err := net.Dial("tcp", tcpLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	payload := strings.Repeat("x", 64<<10)
	go func() { io.WriteString(uc, payload); uc.Close() }()
	if _, err := io.Copy(tc, us); err != nil { // *TCPConn.ReadFrom: splice
		t.Fatal(err)
	}
	tc.Close()
	if n := <-received; n != int64(len(payload)) {
		t.Fatalf("copied %d bytes, want %d", n, len(payload))
	}
	us.Close()
	unixLn.Close()
	tcpLn.Close()

	all, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	pooled := 0
	for _, f := range all {
		if goSplicePipe(f.Name()) {
			pooled++
		}
	}
	if pooled == 0 {
		t.Fatal("the spliced copy left no pipe in Go's pool: has Go changed how it splices? Then openFDs needs another look")
	}
	if after := openFDs(t); after != before {
		t.Errorf("open descriptors %d after the copy, %d before (Go's %d pooled pipe ends included?)", after, before, pooled)
	}
}
