// Package bench measures the portal's paths against the peers' paths side by
// side in one run, and reports the ratios. Run with `make bench`; results
// are recorded in docs/benchmarks.md.
package bench

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// demoInfo is the part of DATA/demo.json the benchmarks read.
type demoInfo struct {
	URL    string    `json:"url"`
	Admin  demoLogin `json:"admin"`
	User   demoLogin `json:"user"`
	Target struct {
		Resource string `json:"resource"`
		Host     string `json:"host"`
		Port     int    `json:"port"`
		Login    string `json:"login"`
		Password string `json:"password"`
	} `json:"ssh_target"`
}

type demoLogin struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// startDemo runs the built portal binary in demo mode (portal, embedded
// gateway and a real sshd on loopback) and stops it when b ends.
func startDemo(b *testing.B) demoInfo {
	info, _ := startDemoProcess(b)
	return info
}

// startDemoProcess is startDemo that also returns the portal's process id.
func startDemoProcess(b *testing.B) (demoInfo, int) {
	b.Helper()
	return startDemoIn(b, b.TempDir())
}

// startDemoIn is startDemoProcess with the portal's data in dir (its
// certificate is dir/tls.crt).
func startDemoIn(b *testing.B, dir string) (demoInfo, int) {
	b.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", "portal"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		b.Fatalf("%s: build it first with make build", bin)
	}
	cmd := exec.Command(bin, "demo", "--data", dir, "--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0",
		"--gateway-rdp-listen", "127.0.0.1:0", "--gateway-vnc-listen", "127.0.0.1:0", "--log-level", "warn")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	deadline := time.After(60 * time.Second)
	for {
		if raw, err := os.ReadFile(filepath.Join(dir, "demo.json")); err == nil {
			var info demoInfo
			if err := json.Unmarshal(raw, &info); err != nil {
				b.Fatal(err)
			}
			return info, cmd.Process.Pid
		}
		select {
		case err := <-exited:
			b.Fatalf("portal demo stopped: %v\n%s", err, log.String())
		case <-deadline:
			b.Fatalf("portal demo did not start within 60 s\n%s", log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// signedInClient signs in to the portal and returns the client and the
// WebSocket URL of the demo resource's terminal.
func signedInClient(b *testing.B, info demoInfo) (*websocket.Dialer, string) {
	b.Helper()
	jar, _ := cookiejar.New(nil)
	// The demo portal has a self-signed certificate on loopback.
	tlsConf := &tls.Config{InsecureSkipVerify: true}
	c := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: tlsConf}}
	resp, err := c.PostForm(info.URL+"/signin", url.Values{"username": {info.User.Name}, "password": {info.User.Password}})
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	resp, err = c.Get(info.URL + "/")
	if err != nil {
		b.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The demo also has desktops: pick the SSH resource's Connect link.
	m := regexp.MustCompile(`href="(/connect/\d+)"[^>]*aria-label="Connect to ` + regexp.QuoteMeta(info.Target.Resource) + `"`).FindSubmatch(page)
	if m == nil {
		b.Fatalf("no Connect link for %s on the home page (status %d)", info.Target.Resource, resp.StatusCode)
	}
	u, _ := url.Parse(info.URL)
	return &websocket.Dialer{TLSClientConfig: tlsConf, Jar: jar, HandshakeTimeout: 10 * time.Second},
		"wss://" + u.Host + string(m[1]) + "/ws?cols=200&rows=50"
}

// portalTerm is a terminal session through portal, gateway and sshd, read
// as a browser would: message by message, without per-message allocation.
type portalTerm struct {
	ws  *websocket.Conn
	cur io.Reader
}

func openPortalTerm(b *testing.B, d *websocket.Dialer, wsURL, origin string) *portalTerm {
	b.Helper()
	ws, _, err := d.Dial(wsURL, http.Header{"Origin": {origin}})
	if err != nil {
		b.Fatalf("open terminal WebSocket: %v", err)
	}
	b.Cleanup(func() { ws.Close() })
	for {
		mt, p, err := ws.ReadMessage()
		if err != nil {
			b.Fatalf("wait for connected: %v", err)
		}
		if mt == websocket.TextMessage {
			if !bytes.Contains(p, []byte(`"connected"`)) {
				b.Fatalf("terminal refused: %s", p)
			}
			return &portalTerm{ws: ws}
		}
	}
}

func (t *portalTerm) Write(p []byte) (int, error) {
	return len(p), t.ws.WriteMessage(websocket.BinaryMessage, p)
}

func (t *portalTerm) Read(p []byte) (int, error) {
	for {
		if t.cur != nil {
			n, err := t.cur.Read(p)
			if err == io.EOF {
				t.cur = nil
				if n > 0 {
					return n, nil
				}
				continue
			}
			return n, err
		}
		mt, r, err := t.ws.NextReader()
		if err != nil {
			return 0, err
		}
		if mt == websocket.BinaryMessage {
			t.cur = r
		}
	}
}

// directSSH runs OpenSSH's ssh client straight to the target with a remote
// pty, as a user at a terminal would.
func directSSH(b *testing.B, info demoInfo, remote string) (io.WriteCloser, io.Reader, func()) {
	b.Helper()
	t := info.Target
	cmd := exec.Command("sshpass", "-p", t.Password, "ssh", "-tt", "-q",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-p", fmt.Sprint(t.Port), t.Login+"@"+t.Host, remote)
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start ssh (apt-get install openssh-client sshpass): %v", err)
	}
	return in, out, func() { in.Close(); cmd.Process.Kill(); cmd.Wait() }
}

// readUntil reads from r until marker has been seen and returns how many
// bytes that took. It reads in chunks, so the client is never what limits
// the throughput being measured; bytes after the marker are put back.
func readUntil(r *bufio.Reader, marker string) (int64, error) {
	var n int64
	m := []byte(marker)
	var tail []byte // the end of the previous chunk, for a marker split across chunks
	for {
		chunk, _ := r.Peek(r.Buffered()) // never more than is buffered: no error
		if len(chunk) == 0 {
			if _, err := r.Peek(1); err != nil {
				return n, err
			}
			continue
		}
		joined := append(tail, chunk...)
		if i := bytes.Index(joined, m); i >= 0 {
			used := i + len(m) - len(tail)
			r.Discard(used)
			return n + int64(used), nil
		}
		r.Discard(len(chunk))
		n += int64(len(chunk))
		if k := len(m) - 1; len(joined) > k {
			tail = append(tail[:0], joined[len(joined)-k:]...)
		} else {
			tail = append(tail[:0], joined...)
		}
	}
}

const (
	echoSamples = 1000
	// rawCat turns the remote pty raw and echoes each byte back with cat; the
	// quotes keep the typed line from containing the READY marker itself.
	rawCat = `stty raw -echo; echo RE""ADY; exec cat`
)

// echoLatencies sends one byte at a time and waits for its echo.
func echoLatencies(w io.Writer, r *bufio.Reader) ([]time.Duration, error) {
	if _, err := readUntil(r, "READY"); err != nil {
		return nil, fmt.Errorf("wait for raw mode: %w", err)
	}
	// Drain the line end after READY.
	if _, err := readUntil(r, "\n"); err != nil {
		return nil, err
	}
	lat := make([]time.Duration, 0, echoSamples)
	key := []byte{'x'}
	for range echoSamples {
		start := time.Now()
		if _, err := w.Write(key); err != nil {
			return nil, err
		}
		c, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if c != 'x' {
			return nil, fmt.Errorf("echo was %q, not x", c)
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

// BenchmarkKeystrokeEcho measures keystroke-to-echo latency through
// browser WebSocket → portal → gateway → sshd, against OpenSSH's ssh client
// straight to the same sshd, and reports both and the added latency.
func BenchmarkKeystrokeEcho(b *testing.B) {
	info := startDemo(b)
	dialer, wsURL := signedInClient(b, info)
	for range b.N {
		pt := openPortalTerm(b, dialer, wsURL, info.URL)
		pt.Write([]byte(rawCat + "\n"))
		portal, err := echoLatencies(pt, bufio.NewReader(pt))
		if err != nil {
			b.Fatalf("portal path: %v", err)
		}
		pt.ws.Close()

		in, out, stop := directSSH(b, info, rawCat)
		direct, err := echoLatencies(in, bufio.NewReader(out))
		stop()
		if err != nil {
			b.Fatalf("ssh path: %v", err)
		}
		for _, q := range []struct {
			name string
			p    float64
		}{{"p50", 0.5}, {"p99", 0.99}} {
			pp, dp := percentile(portal, q.p), percentile(direct, q.p)
			b.ReportMetric(float64(pp.Microseconds()), "portal-"+q.name+"-µs")
			b.ReportMetric(float64(dp.Microseconds()), "ssh-"+q.name+"-µs")
			b.ReportMetric(float64((pp - dp).Microseconds()), "added-"+q.name+"-µs")
		}
	}
}

const bulkSize = 100 << 20

// bulkFile makes a 100 MB text file the target user can read.
func bulkFile(b *testing.B) string {
	path := filepath.Join(os.TempDir(), "keyway-bench-100M.txt")
	if fi, err := os.Stat(path); err == nil && fi.Size() == bulkSize {
		return path
	}
	line := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"), 2)
	line = append(line[:127], '\n')
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := 0; i < bulkSize/len(line); i++ {
		w.Write(line)
	}
	if err := errors.Join(w.Flush(), f.Chmod(0o644), f.Close()); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkBulkOutput measures `cat` of a 100 MB file through the portal
// against OpenSSH's ssh client, both with a remote pty and both timed from
// an open session (setup excluded), and reports MB/s and the ratio.
func BenchmarkBulkOutput(b *testing.B) {
	info := startDemo(b)
	dialer, wsURL := signedInClient(b, info)
	path := bulkFile(b)
	const ready, end = `RE""ADY`, `EN""D` // quoted so the echoed command line does not match
	var portalSecs, sshSecs float64
	for range b.N {
		pt := openPortalTerm(b, dialer, wsURL, info.URL)
		r := bufio.NewReaderSize(pt, 64<<10)
		pt.Write([]byte("stty -echo; echo " + ready + "\n"))
		if _, err := readUntil(r, "READY\r\n"); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		pt.Write([]byte("cat " + path + "; echo " + end + "\n"))
		n, err := readUntil(r, "END")
		portalSecs += time.Since(start).Seconds()
		if err != nil || n < bulkSize {
			b.Fatalf("portal path delivered %d bytes: %v", n, err)
		}
		pt.ws.Close()

		in, out, stop := directSSH(b, info, "stty -echo; echo "+ready+"; read go; cat "+path+"; echo "+end)
		sr := bufio.NewReaderSize(out, 64<<10)
		if _, err := readUntil(sr, "READY\r\n"); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		in.Write([]byte("\n"))
		m, err := readUntil(sr, "END")
		sshSecs += time.Since(start).Seconds()
		stop()
		if err != nil || m < bulkSize {
			b.Fatalf("ssh path delivered %d bytes: %v", m, err)
		}
	}
	mb := float64(bulkSize) / 1e6 * float64(b.N)
	b.ReportMetric(mb/portalSecs, "portal-MB/s")
	b.ReportMetric(mb/sshSecs, "ssh-MB/s")
	b.ReportMetric(sshSecs/portalSecs, "portal/ssh-throughput")
}

// rssMB reads a process's resident memory from /proc.
func rssMB(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkSlowReader checks that a browser that reads slowly holds back
// the target instead of making the portal buffer: while 100 MB of output is
// pending and the client drains 1 MB/s, the portal's memory stays flat.
func BenchmarkSlowReader(b *testing.B) {
	info, pid := startDemoProcess(b)
	dialer, wsURL := signedInClient(b, info)
	path := bulkFile(b)
	for range b.N {
		pt := openPortalTerm(b, dialer, wsURL, info.URL)
		r := bufio.NewReaderSize(pt, 64<<10)
		pt.Write([]byte("stty -echo; echo RE\"\"ADY\n"))
		if _, err := readUntil(r, "READY\r\n"); err != nil {
			b.Fatal(err)
		}
		before := rssMB(b, pid)
		pt.Write([]byte("cat " + path + "\n"))
		buf := make([]byte, 16<<10)
		var read int64
		peak := before
		deadline := time.Now().Add(4 * time.Second)
		for tick := time.NewTicker(16 * time.Millisecond); time.Now().Before(deadline); <-tick.C {
			n, err := io.ReadFull(r, buf) // 16 KiB per 16 ms: about 1 MB/s
			if err != nil {
				b.Fatal(err)
			}
			read += int64(n)
			peak = max(peak, rssMB(b, pid))
		}
		pt.ws.Close()
		b.ReportMetric(peak-before, "portal-RSS-growth-MB")
		b.ReportMetric(float64(read)/1e6, "MB-read")
		b.ReportMetric(float64(bulkSize)/1e6, "MB-pending")
	}
}
