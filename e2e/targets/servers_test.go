package targets

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestPostgresAnswersPsql starts the harness PostgreSQL and queries it with
// psql over TCP with the test role's password, as a tunnelled psql would.
func TestPostgresAnswersPsql(t *testing.T) {
	t.Parallel()
	pg := NewPostgres(t)
	cmd := exec.Command("psql", "-X", "-At", "-c", "SELECT 42")
	cmd.Env = append(os.Environ(), pg.Env(pg.Host, pg.Port)...)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "42" {
		t.Fatalf("psql SELECT 42: %v: %q", err, out)
	}
	// A wrong password is refused: the server checks it over TCP.
	cmd = exec.Command("psql", "-X", "-At", "-c", "SELECT 1")
	cmd.Env = append(append(os.Environ(), pg.Env(pg.Host, pg.Port)...), "PGPASSWORD=wrong")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "password authentication failed") {
		t.Fatalf("psql with a wrong password: %v: %q", err, out)
	}
	dir := pg.dir
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s left behind: %v", dir, err)
	}
}

// TestIperf3Measures runs one short iperf3 test against the harness server,
// twice: the server serves tests in turn.
func TestIperf3Measures(t *testing.T) {
	t.Parallel()
	s := NewIperf3(t)
	for range 2 {
		r, err := RunIperf3(context.Background(), s.Host, s.Port, 2, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if r.BitsPerSecond <= 0 {
			t.Fatalf("iperf3 measured %v bit/s", r.BitsPerSecond)
		}
	}
}

// TestEchoAndHTTP checks the in-process servers: bytes come back, the
// server closes after the client's half-close, Close ends open
// connections, and the HTTP server answers its body.
func TestEchoAndHTTP(t *testing.T) {
	t.Parallel()
	e, err := StartEcho()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", e.Addr())
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("hello through the loop")
	c.Write(msg)
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %q, %v", got, err)
	}
	c.Close()
	open, err := net.Dial("tcp", e.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	open.Write([]byte("x")) // accepted and counted once echoed
	io.ReadFull(open, make([]byte, 1))
	if n := e.Accepted(); n != 2 {
		t.Fatalf("accepted %d connections, want 2", n)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	open.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := open.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Close")
	}

	h := NewHTTP(t)
	resp, err := http.Get(h.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != HTTPBody {
		t.Fatalf("HTTP body %q", body)
	}
}
