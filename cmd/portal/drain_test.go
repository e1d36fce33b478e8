package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/shutdown"
	"github.com/keyway-dev/keyway/portal/store"
)

// drainingPortal is a portal run by serveWith whose drain and stop-now
// signals the test gives, as the first and second SIGTERM would.
type drainingPortal struct {
	*portal
	log        *syncBuffer
	drain, now context.CancelFunc
	done       chan error
}

// startDrainingPortal runs a portal with the drain timeout given, a user
// alice and an SSH resource box on a real sshd granted to her, recorded.
func startDrainingPortal(t *testing.T, timeout string) (*drainingPortal, *browser, store.Resource) {
	t.Helper()
	sshd := targets.NewSSHD(t)
	cfg := serveConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0", GatewayListen: "127.0.0.1:0", LogLevel: "info",
		MetricsListen: "127.0.0.1:0", DrainTimeout: timeout}
	ctx, drain := context.WithCancel(context.Background())
	now, stopNow := context.WithCancel(context.Background())
	d := &drainingPortal{log: &syncBuffer{}, drain: drain, now: stopNow, done: make(chan error, 1)}
	ready := make(chan *portal, 1)
	go func() {
		d.done <- serveWith(shutdown.WithStopNow(ctx, now), cfg, d.log, func(_ context.Context, p *portal) error { ready <- p; return nil })
	}()
	t.Cleanup(func() {
		stopNow()
		drain()
		select {
		case <-d.done:
		case <-time.After(time.Minute):
			t.Error("the portal did not stop within a minute of the second signal")
		}
	})
	select {
	case d.portal = <-ready:
	case err := <-d.done:
		t.Fatalf("portal did not start: %v\n%s", err, d.log.String())
	}
	st := d.Store
	bg := context.Background()
	if _, err := st.CreateUser(bg, store.User{Name: "alice", Role: store.RoleUser}, mustHash(t, "alice-password-1")); err != nil {
		t.Fatal(err)
	}
	alice, _ := st.UserByName(bg, "alice")
	res, err := st.CreateResource(bg, store.Resource{Name: "box", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User},
		&store.Secrets{Password: sshd.Password})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateGrantMode(bg, res.ID, "user", alice.ID, store.GrantBoth); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, d.URL)
	b.signIn("alice", "alice-password-1")
	return d, b, res
}

// wait returns serveWith's result, failing the test if it takes longer
// than within.
func (d *drainingPortal) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-d.done:
		d.done <- err // for the cleanup
		return err
	case <-time.After(within):
		t.Fatalf("the portal did not stop within %s\n%s", within, d.log.String())
	}
	return nil
}

// readiness asks /readyz and returns its status and its drain check.
func (b *browser) readiness(t *testing.T) (int, string) {
	t.Helper()
	resp, err := b.client.Get(b.base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct{ Checks map[string]string }
	json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r.Checks["drain"]
}

// nextControl reads a terminal's socket until its next control message.
func nextControl(t *testing.T, ws *websocket.Conn, within time.Duration) map[string]any {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(within))
	for {
		mt, p, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("the terminal closed before its next control message: %v", err)
		}
		if mt == websocket.TextMessage {
			var c map[string]any
			json.Unmarshal(p, &c)
			return c
		}
	}
}

// TestDrainTerminal: SIGTERM makes the portal fail its readiness at
// once and refuse new sessions in words, tells the user of a running
// terminal that it closes in N seconds, closes it at the drain timeout
// with its recording complete and uploaded and its end audited, and
// returns nil; pages keep working meanwhile.
func TestDrainTerminal(t *testing.T) {
	t.Parallel()
	const timeout = 6 * time.Second
	d, alice, res := startDrainingPortal(t, timeout.String())
	if code, check := alice.readiness(t); code != http.StatusOK || check != "ok" {
		t.Fatalf("before the drain /readyz is %d with drain check %q", code, check)
	}
	if resp, err := alice.client.Get(d.URL + "/"); err != nil || resp.Close {
		t.Fatalf("a page before the drain closed its connection (%v)", err)
	} else {
		resp.Body.Close()
	}
	c, term := alice.terminal(res.ID)
	if c["type"] != "connected" {
		t.Fatalf("connect: %v", c)
	}
	typeLine(t, term, "echo drain-marker-$((6*7))")
	readUntil(t, term, "drain-marker-42")

	d.drain()
	// At once: the live session is told first (it is the drain's first
	// act after the readiness flag), then the probe fails.
	n := nextControl(t, term, 10*time.Second)
	secs, _ := n["seconds"].(float64)
	if n["type"] != "warning" || n["code"] != "draining" || secs <= 0 || secs > timeout.Seconds() ||
		!strings.Contains(n["notice"].(string), "This portal is restarting") || !strings.Contains(n["message"].(string), "It closes in") {
		t.Fatalf("the running terminal was told %v", n)
	}
	if _, err := time.Parse(time.RFC3339, n["deadline"].(string)); err != nil {
		t.Fatalf("notice deadline: %v", err)
	}
	if code, check := alice.readiness(t); code != http.StatusServiceUnavailable || !strings.HasPrefix(check, "draining") {
		t.Fatalf("while draining /readyz is %d with drain check %q", code, check)
	}
	// A new session is refused in words; pages still answer.
	second := newBrowser(t, d.URL)
	second.signIn("alice", "alice-password-1")
	c2, _ := second.terminal(res.ID)
	if c2["type"] != "error" || c2["code"] != "draining" || c2["message"] != "This portal is restarting; reconnect in a moment." {
		t.Fatalf("a new terminal while draining got %v", c2)
	}
	if code, page := second.get("/"); code != http.StatusOK || !strings.Contains(page, "box") {
		t.Fatalf("home page while draining: %d", code)
	}
	// HTTP/1 connections close after each answer, so that a load
	// balancer's pooled ones move to ready replicas.
	if resp, err := second.client.Get(d.URL + "/"); err != nil || !resp.Close {
		t.Fatalf("a page while draining kept its connection open (%v)", err)
	} else {
		resp.Body.Close()
	}
	if code, page := second.get(fmt.Sprintf("/files/%d", res.ID)); code != http.StatusServiceUnavailable || !strings.Contains(page, "This portal is restarting; reconnect in a moment.") {
		t.Fatalf("file browser while draining: %d", code)
	}
	// Signing in goes on working.
	third := newBrowser(t, d.URL)
	third.signIn("alice", "alice-password-1")
	// The session goes on until the timeout.
	typeLine(t, term, "echo still-$((40+2))")
	readUntil(t, term, "still-42")
	terminalTold(t, term, "portal_shutting_down", "This portal is restarting, so the session was closed.")

	if err := d.wait(t, time.Minute); err != nil {
		t.Fatalf("serve returned %v after a clean drain\n%s", err, d.log.String())
	}
	// The recording reached the store, complete and whole, and the spool
	// is empty; the session's end is audited.
	st, err := openStore(context.Background(), d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.SearchRecordings(context.Background(), store.RecordingFilter{Text: "drain-marker-42"})
	if err != nil || len(recs) != 1 {
		t.Fatalf("recordings with the marker: %v %v", recs, err)
	}
	rec := recs[0]
	if rec.Incomplete {
		t.Errorf("the recording is marked incomplete")
	}
	data, err := os.ReadFile(filepath.Join(d.cfg.DataDir, "recordings", rec.Path))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != rec.SHA256 {
		t.Errorf("the stored recording does not match its checksum")
	}
	if !strings.Contains(string(data), "still-42") {
		t.Errorf("the recording lacks what ran during the drain")
	}
	if left, _ := filepath.Glob(filepath.Join(d.cfg.DataDir, "gateway", "spool", "*.json")); len(left) != 0 {
		t.Errorf("recordings left in the spool: %v", left)
	}
	evs, err := st.SearchAudit(context.Background(), store.AuditFilter{Action: "session.end", Actor: "alice"})
	if err != nil || len(evs) != 1 || evs[0].Details["end"] != "portal shutting down" {
		t.Fatalf("session end audited as %+v (%v)", evs, err)
	}
	// The terminal and the file browser refused, each audited on box.
	refused, _ := st.SearchAudit(context.Background(), store.AuditFilter{Action: "connect", Actor: "alice", Text: "draining"})
	if len(refused) != 2 || refused[0].Target != "box" || refused[1].Target != "box" {
		t.Errorf("the refused sessions are audited as %+v, want twice on box", refused)
	}
}

// TestDrainSecondSignal: with a long drain timeout, the second signal
// closes the running terminal at once, with its recording finished in
// the spool (complete, not cut), and serve returns nil.
func TestDrainSecondSignal(t *testing.T) {
	t.Parallel()
	d, alice, res := startDrainingPortal(t, "30m")
	_, term := alice.terminal(res.ID)
	typeLine(t, term, "echo second-$((6*7))")
	readUntil(t, term, "second-42")
	d.drain()
	if n := nextControl(t, term, 10*time.Second); n["code"] != "draining" {
		t.Fatalf("the running terminal was told %v", n)
	}
	d.now()
	terminalTold(t, term, "portal_shutting_down", "This portal is restarting")
	if err := d.wait(t, 30*time.Second); err != nil {
		t.Fatalf("serve returned %v", err)
	}
	st, err := openStore(context.Background(), d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, _ := st.SearchAudit(context.Background(), store.AuditFilter{Action: "session.end", Actor: "alice"})
	if len(evs) != 1 || evs[0].Details["end"] != "portal shutting down" {
		t.Fatalf("session end audited as %+v", evs)
	}
	// Uploaded, or finished in the spool for the next start: never open.
	metas, _ := filepath.Glob(filepath.Join(d.cfg.DataDir, "gateway", "spool", "*.json"))
	for _, m := range metas {
		raw, _ := os.ReadFile(m)
		var meta struct {
			End      time.Time
			Complete bool
		}
		json.Unmarshal(raw, &meta)
		if meta.End.IsZero() || !meta.Complete {
			t.Errorf("recording %s left unfinished: %s", filepath.Base(m), raw)
		}
	}
}

// TestDrainIdleExitsPromptly: a portal with no session running stops at
// once on SIGTERM, whatever its drain timeout.
func TestDrainIdleExitsPromptly(t *testing.T) {
	t.Parallel()
	d, _, _ := startDrainingPortal(t, "30m")
	d.drain()
	if err := d.wait(t, 20*time.Second); err != nil {
		t.Fatalf("serve returned %v", err)
	}
	if !strings.Contains(d.log.String(), "drained") {
		t.Errorf("the log does not say the portal drained:\n%s", d.log.String())
	}
}

// TestDrainTimeoutFlag: a bad --drain-timeout stops the start in words.
func TestDrainTimeoutFlag(t *testing.T) {
	t.Parallel()
	err := serveWith(context.Background(), serveConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0", LogLevel: "info", DrainTimeout: "soon"}, &syncBuffer{}, nil)
	if err == nil || !strings.Contains(err.Error(), "--drain-timeout") {
		t.Fatalf("a bad --drain-timeout: %v", err)
	}
}

// TestDrainDesktop: the user of a running VNC desktop is told of the drain
// by the portal's warning instruction, with the seconds left for the
// banner; at the timeout the desktop is closed with the reason, its end
// audited and its recording stored complete.
func TestDrainDesktop(t *testing.T) {
	t.Parallel()
	d, alice, _ := startDrainingPortal(t, "6s")
	x := targets.NewXvnc(t, targets.XvncOptions{Password: "pw123456", Width: 320, Height: 240})
	bg := context.Background()
	desk, err := d.Store.CreateResource(bg, store.Resource{Name: "desk", Protocol: "vnc", Host: x.Host, Port: x.Port},
		&store.Secrets{Password: x.Password})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := d.Store.UserByName(bg, "alice")
	d.Store.CreateGrant(bg, desk.ID, "user", u.ID)
	screen := alice.desktop(desk.ID)

	d.drain()
	// Read until the close, noting the notice on the way.
	var notice, closed string
	screen.SetReadDeadline(time.Now().Add(time.Minute))
	for closed == "" {
		_, msg, err := screen.ReadMessage()
		if err != nil {
			t.Fatalf("the desktop closed without saying why (notice %q): %v", notice, err)
		}
		m := string(msg)
		if i := strings.Index(m, "3.msg,5.19287,"); i >= 0 && notice == "" {
			notice = m[i:]
		}
		if i := strings.Index(m, "5.error,"); i >= 0 {
			closed = m[i:]
		}
	}
	if !strings.Contains(notice, "This portal is restarting: this session will be closed when the countdown ends.") ||
		!strings.Contains(notice, "It closes in") || !strings.Contains(notice, ",8.draining;") {
		t.Fatalf("the desktop was told %q", notice)
	}
	if !strings.Contains(closed, "This portal is restarting, so the session was closed.") {
		t.Fatalf("the desktop closed with %q", closed)
	}
	if err := d.wait(t, time.Minute); err != nil {
		t.Fatalf("serve returned %v", err)
	}
	st, err := openStore(bg, d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, _ := st.SearchAudit(bg, store.AuditFilter{Action: "session.end", Actor: "alice"})
	if len(evs) != 1 || evs[0].Details["end"] != "portal shutting down" {
		t.Fatalf("session end audited as %+v", evs)
	}
	recs, err := st.SearchRecordings(bg, store.RecordingFilter{Protocol: "vnc"})
	if err != nil || len(recs) != 1 || recs[0].Incomplete {
		t.Fatalf("desktop recordings: %+v %v", recs, err)
	}
}
