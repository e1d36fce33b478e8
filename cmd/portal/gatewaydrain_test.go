package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/store"
)

// TestGatewayDrain: a remote gateway process given SIGTERM fails its
// readiness at once and refuses new sessions, which the portal then
// opens through the other gateway of the segment; the user of a session
// running through it is told it closes in N seconds; at its drain
// timeout the gateway closes the session (the user is told its gateway
// restarted), uploads the recording, complete, and exits 0.
func TestGatewayDrain(t *testing.T) {
	ctx := context.Background()
	bin := buildGateway(t)
	sshd := targets.NewSSHD(t)
	dir := t.TempDir()
	run(ctx, []string{"users", "add", "root-admin", "--role", "admin", "--password-stdin", "--data", dir},
		strings.NewReader("admin-password-1\n"), io.Discard, io.Discard)
	p, _ := startPortal(t, dir)
	admin := newBrowser(t, p.URL)
	admin.signIn("root-admin", "admin-password-1")
	if resp := admin.post("/admin/segments", map[string][]string{"name": {"gateway-a"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create segment: %d", resp.StatusCode)
	}
	seg, _ := p.Store.SegmentByName(ctx, "gateway-a")
	const drainTimeout = 15 * time.Second
	healthPort := freePort(t)
	a1 := enrol(t, admin, bin, strconv.FormatInt(seg.ID, 10), "a1", dir, "--drain-timeout", drainTimeout.String(),
		"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", healthPort))
	enrol(t, admin, bin, strconv.FormatInt(seg.ID, 10), "a2", dir)
	for _, name := range []string{"a1", "a2"} {
		waitFor(t, name+" to become available", func() bool { return stateOf(p, name) == gateways.StateAvailable }, nil)
	}
	u, _ := p.Store.CreateUser(ctx, store.User{Name: "alice", Role: store.RoleUser}, mustHash(t, "user-password-1"))
	res, err := p.Store.CreateResource(ctx, store.Resource{Name: "in-a", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User,
		Tags: []string{"gateway-a"}}, &store.Secrets{Password: sshd.Password})
	if err != nil {
		t.Fatal(err)
	}
	p.Store.CreateGrant(ctx, res.ID, "user", u.ID)
	alice := newBrowser(t, p.URL)
	alice.signIn("alice", "user-password-1")

	// A session through a1: selection is random, so until one lands there.
	var term *websocket.Conn
	for i := 0; term == nil; i++ {
		if i == 32 {
			t.Fatal("no session went through a1 in 32 tries")
		}
		before := servedBy(t, p, "in-a")["a1"]
		c, ws := alice.terminal(res.ID)
		if c["type"] != "connected" {
			t.Fatalf("connect: %v", c)
		}
		if servedBy(t, p, "in-a")["a1"] > before {
			term = ws
		} else {
			ws.Close()
		}
	}
	typeLine(t, term, "echo gw-drain-$((6*7))")
	readUntil(t, term, "gw-drain-42")

	readyz := func() (int, string) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Fatalf("a1's /readyz before the drain: %d %s", code, body)
	}
	a1.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, "a1 to drain", func() bool { return strings.Contains(a1.log.String(), "draining") }, func() string { return a1.log.String() })
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Fatalf("a1's /readyz while draining: %d %s", code, body)
	}
	// New sessions: a1 refuses those chosen for it before the portal's
	// health check sees the drain, and the portal takes them to a2.
	before := servedBy(t, p, "in-a")
	opened := 0
	for !strings.Contains(a1.log.String(), "refused session: the gateway drains") {
		if opened == 16 {
			t.Fatalf("no new session was sent to a1 in 16 tries\n%s", a1.log.String())
		}
		c, ws := alice.terminal(res.ID)
		if c["type"] != "connected" {
			t.Fatalf("a new session while a1 drains: %v", c)
		}
		ws.Close()
		opened++
	}
	if after := servedBy(t, p, "in-a"); after["a1"] != before["a1"] || after["a2"] != before["a2"]+opened {
		t.Fatalf("new sessions while a1 drains went %v, then %v", before, after)
	}
	// The health check sees the drain: a1 is out of selection and its
	// session's user is told when it closes.
	// A drain is an answer, not a failure to retry: with a minute between
	// attempts, a retry would outlast a1's drain.
	p.Pool.CheckAll(ctx, gateways.HealthConfig{Attempts: 2, Backoff: time.Minute, Timeout: 5 * time.Second, Parallel: 4})
	if s := stateOf(p, "a1"); s != gateways.StateUnavailable {
		t.Fatalf("a1 is %s while draining", s)
	}
	n := nextControl(t, term, 10*time.Second)
	if n["type"] != "warning" || n["code"] != "gateway_draining" || n["seconds"].(float64) > drainTimeout.Seconds() ||
		!strings.Contains(n["notice"].(string), "The gateway of this session is restarting") {
		t.Fatalf("the session through a1 was told %v", n)
	}
	typeLine(t, term, "echo gw-still-$((40+2))")
	readUntil(t, term, "gw-still-42")
	terminalTold(t, term, "gateway_shutting_down", "The gateway of this session restarted")

	select {
	case <-a1.done:
	case <-time.After(time.Minute):
		t.Fatalf("a1 did not exit after its drain\n%s", a1.log.String())
	}
	if code := a1.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("a1 exited with %d\n%s", code, a1.log.String())
	}
	if !strings.Contains(a1.log.String(), "drained") {
		t.Fatalf("a1 did not say it drained:\n%s", a1.log.String())
	}
	rec := recordingWith(t, p, "gw-drain-42", nil)
	if rec.Incomplete || rec.Gateway != "a1" {
		t.Fatalf("recording: incomplete %v, gateway %s", rec.Incomplete, rec.Gateway)
	}
	data, err := os.ReadFile(filepath.Join(dir, "recordings", rec.Path))
	if err != nil || !strings.Contains(string(data), "gw-still-42") {
		t.Fatalf("the recording lacks what ran during the drain (%v)", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "a1", "spool", "*.json")); len(left) != 0 {
		t.Fatalf("a1 left recordings in its spool: %v", left)
	}
	evs, _ := p.Store.SearchAudit(ctx, store.AuditFilter{Action: "session.end", Actor: "alice", Text: "gateway shutting down"})
	if len(evs) != 1 {
		t.Fatalf("%d session ends audited as gateway shutting down, want 1", len(evs))
	}
}
