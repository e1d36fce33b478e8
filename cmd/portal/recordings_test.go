package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/control"
	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/gateway/spool"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/certs"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/recordings/asciicast"
	"github.com/keyway-dev/keyway/recordings/guacrec"
)

// recordingWith waits until the portal stores a recording whose output
// holds text, and returns it.
func recordingWith(t *testing.T, p *portal, text string, explain func() string) store.Recording {
	t.Helper()
	var found []store.Recording
	waitFor(t, "a stored recording with "+text, func() bool {
		found, _ = p.Store.SearchRecordings(context.Background(), store.RecordingFilter{Text: text})
		return len(found) > 0
	}, explain)
	return found[0]
}

// replay reads a stored recording back and returns its output.
func replay(t *testing.T, dir string, rec store.Recording) (asciicast.Header, string) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "recordings", rec.Path))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := asciicast.NewReader(f, asciicast.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rd.Header(), out.String()
		}
		if err != nil {
			t.Fatalf("recording %s does not play: %v", rec.Path, err)
		}
		if ev.Kind == asciicast.Output {
			out.WriteString(ev.Data)
		}
	}
}

// typeLine sends a line to a terminal WebSocket.
func typeLine(t *testing.T, ws *websocket.Conn, line string) {
	t.Helper()
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte(line+"\n")); err != nil {
		t.Fatal(err)
	}
}

// spoolHolds reports whether a recording in the gateway's spool holds text
// on disk.
func spoolHolds(stateDir, text string) bool {
	files, _ := filepath.Glob(filepath.Join(stateDir, "spool", "*.cast"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), text) {
			return true
		}
	}
	return false
}

// TestRecordingsThroughRemoteGateway runs a real gateway process: its
// sessions are recorded, uploaded and stored; when it is killed mid-session
// and restarts while the portal is down, the partial recording is
// recovered, waits in the spool, and is uploaded as incomplete once the
// portal is back, and still plays.
func TestRecordingsThroughRemoteGateway(t *testing.T) {
	ctx := context.Background()
	bin := buildGateway(t)
	sshd := targets.NewSSHD(t)
	dir := t.TempDir()
	run(ctx, []string{"users", "add", "root-admin", "--role", "admin", "--password-stdin", "--data", dir},
		strings.NewReader("admin-password-1\n"), io.Discard, io.Discard)
	p, _, stopPortal := startPortalAt(t, dir, "127.0.0.1:0")
	// The portal comes back at the same address, where the gateway
	// expects it.
	u, err := url.Parse(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	listen := "127.0.0.1:" + u.Port()
	admin := newBrowser(t, p.URL)
	admin.signIn("root-admin", "admin-password-1")
	admin.post("/admin/segments", url.Values{"name": {"gateway-rec"}})
	seg, _ := p.Store.SegmentByName(ctx, "gateway-rec")
	g := enrol(t, admin, bin, strconv.FormatInt(seg.ID, 10), "rec1", dir)
	waitFor(t, "rec1 to become available", func() bool { return stateOf(p, "rec1") == gateways.StateAvailable }, nil)

	alice0, _ := p.Store.CreateUser(ctx, store.User{Name: "alice", Role: store.RoleUser}, mustHash(t, "user-password-1"))
	res, err := p.Store.CreateResource(ctx, store.Resource{Name: "box", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User,
		Tags: []string{"gateway-rec"}}, &store.Secrets{Password: sshd.Password})
	if err != nil {
		t.Fatal(err)
	}
	p.Store.CreateGrant(ctx, res.ID, "user", alice0.ID)
	alice := newBrowser(t, p.URL)
	alice.signIn("alice", "user-password-1")

	// A whole session: recorded by rec1, uploaded when it ends.
	c, ws := alice.terminal(res.ID)
	if c["type"] != "connected" {
		t.Fatalf("connect: %v", c)
	}
	typeLine(t, ws, "echo kw-first-$((6*7))")
	readUntil(t, ws, "kw-first-42")
	typeLine(t, ws, "exit")
	readUntil(t, ws, "logout")
	ws.Close() // the browser leaves, as the terminal page does
	rec := recordingWith(t, p, "kw-first-42", g.log.String)
	if rec.Gateway != "rec1" || rec.User != "alice" || rec.Resource != "box" || rec.Incomplete || rec.Protocol != "ssh" {
		t.Fatalf("stored recording %+v", rec)
	}
	if _, out := replay(t, dir, rec); !strings.Contains(out, "kw-first-42") {
		t.Fatalf("replay lacks the output: %q", out)
	}

	// Killed mid-session, once the output is in its spool on disk.
	c, ws = alice.terminal(res.ID)
	if c["type"] != "connected" {
		t.Fatalf("connect: %v", c)
	}
	typeLine(t, ws, "echo kw-crash-$((6*7))")
	readUntil(t, ws, "kw-crash-42")
	stateDir := filepath.Join(dir, "rec1")
	waitFor(t, "the spool to flush the session", func() bool { return spoolHolds(stateDir, "kw-crash-42") }, nil)
	g.stop()
	ws.Close()

	// The portal goes down too; the gateway restarts, recovers the
	// recording and keeps it while uploads fail.
	stopPortal()
	g.start()
	waitFor(t, "the upload to fail while the portal is down", func() bool {
		return strings.Contains(g.log.String(), "upload failed, will retry")
	}, g.log.String)
	if !spoolHolds(stateDir, "kw-crash-42") {
		t.Fatal("the recovered recording left the spool without being confirmed")
	}
	metas, _ := filepath.Glob(filepath.Join(stateDir, "spool", "*.json"))
	if len(metas) != 1 {
		t.Fatalf("spool metadata files: %v", metas)
	}
	if b, _ := os.ReadFile(metas[0]); !strings.Contains(string(b), `"complete": false`) || !strings.Contains(string(b), `"end"`) {
		t.Fatalf("recovered metadata: %s", b)
	}

	// The portal returns; the upload goes through on a retry.
	p, _, _ = startPortalAt(t, dir, listen)
	rec = recordingWith(t, p, "kw-crash-42", g.log.String)
	if !rec.Incomplete || rec.Gateway != "rec1" {
		t.Fatalf("recovered recording %+v", rec)
	}
	h, out := replay(t, dir, rec)
	if !strings.Contains(out, "kw-crash-42") || h.Keyway == nil || h.Keyway.SessionID != rec.SessionID {
		t.Fatalf("recovered recording plays %q (header %+v)", out, h.Keyway)
	}
	waitFor(t, "the spool to be emptied once the portal confirmed", func() bool {
		files, _ := filepath.Glob(filepath.Join(stateDir, "spool", "*"))
		return len(files) == 0
	}, g.log.String)

	// Recording required, and the gateway's spool below its free-space
	// floor: the session does not start, the user is told why, and the
	// attempt is audited; no recording is made.
	g.stop()
	var cfg wire.GatewayFile
	raw, _ := os.ReadFile(g.config)
	json.Unmarshal(raw, &cfg)
	cfg.SpoolMinFreeMB = 1 << 40 // no disk has that much free
	raw, _ = json.Marshal(cfg)
	os.WriteFile(g.config, raw, 0o600)
	g.start()
	p.Pool.CheckAll(ctx, gateways.HealthConfig{Attempts: 5, Backoff: 100 * time.Millisecond, Timeout: time.Second, Parallel: 4})
	res.Options.Recording = store.RecordingRequired
	if err := p.Store.UpdateResource(ctx, res, nil); err != nil {
		t.Fatal(err)
	}
	alice = newBrowser(t, p.URL)
	alice.signIn("alice", "user-password-1")
	c, _ = alice.terminal(res.ID)
	if c["type"] != "error" || c["code"] != "recording_unavailable" || !strings.Contains(c["message"].(string), "must be recorded") {
		t.Fatalf("required recording on a full spool: %v", c)
	}
	evs, _ := p.Store.SearchAudit(ctx, store.AuditFilter{Action: audit.ActionConnect, Outcome: audit.OutcomeFailure, Target: "box"})
	if len(evs) == 0 || evs[0].Details["code"] != "recording_unavailable" {
		t.Fatalf("the refused session is not audited: %+v", evs)
	}
	if files, _ := filepath.Glob(filepath.Join(stateDir, "spool", "*")); len(files) != 0 {
		t.Fatalf("a refused session left files in the spool: %v", files)
	}
}

// TestChecksumMismatchKeptInSpool uploads, through the real gateway-side
// sink to a real portal, a recording whose bytes no longer match the
// checksum the spool computed: the portal refuses it (and audits that),
// stores nothing, and the spool keeps the recording for another try.
// embeddedUploads returns a Sink that uploads to p as its embedded
// gateway (enrolled, so its signature is accepted); dir is p's data
// directory.
func embeddedUploads(t *testing.T, p *portal, dir string) *control.Uploads {
	t.Helper()
	return embeddedUploadsVia(t, p, dir, p.URL)
}

// embeddedUploadsVia is embeddedUploads reaching the portal at portalURL
// (a proxy in front of it).
func embeddedUploadsVia(t *testing.T, p *portal, dir, portalURL string) *control.Uploads {
	t.Helper()
	id, err := wire.LoadOrCreateIdentity(filepath.Join(dir, "gateway", "identity.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var gwID int64
	gs, _ := p.Store.ListGateways(context.Background())
	for _, g := range gs {
		if g.Embedded {
			gwID = g.ID
		}
	}
	cert, _, err := certs.LoadOrCreateSelfSigned(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := control.Options{PortalURL: portalURL, GatewayID: strconv.FormatInt(gwID, 10), Identity: id,
		PortalCertSHA256: certs.Fingerprint(cert), TokenPath: filepath.Join(dir, "gateway", "access-token.json")}
	// The embedded gateway's access token, which it got at the start.
	o.Tokens = control.NewTokens(o)
	waitFor(t, "the embedded gateway's access token", func() bool { return o.Tokens.Load() == nil && o.Tokens.Has() }, nil)
	return control.NewUploads(o)
}

func TestChecksumMismatchKeptInSpool(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p, _ := startPortal(t, dir)
	uploads := embeddedUploads(t, p, dir)

	spoolDir := filepath.Join(t.TempDir(), "spool")
	sp, err := spool.Open(spool.Config{Dir: spoolDir, MinFree: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	rec, err := sp.Create(spool.Meta{SessionID: "MISMATCH1", User: "alice", Resource: "box", Protocol: "ssh", Gateway: "embedded", Format: spool.Asciicast})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := asciicast.NewWriter(rec, asciicast.Config{Header: asciicast.Header{Width: 80, Height: 24}})
	w.Output([]byte("kw-mismatch-output\r\n"))
	w.Close()
	if _, err := rec.Finish(); err != nil {
		t.Fatal(err)
	}
	// The disk flips a bit after the checksum was taken.
	cast := filepath.Join(spoolDir, "MISMATCH1.cast")
	b, _ := os.ReadFile(cast)
	b[len(b)-4] ^= 0x01
	os.WriteFile(cast, b, 0o600)

	uctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); spool.NewUploader(sp, uploads, spool.UploaderConfig{}).Run(uctx) }()
	waitFor(t, "the portal to refuse the upload", func() bool {
		evs, _ := p.Store.SearchAudit(ctx, store.AuditFilter{Action: audit.ActionRecordingUpload, Outcome: audit.OutcomeFailure})
		return len(evs) > 0
	}, nil)
	cancel()
	<-done
	if _, err := p.Store.RecordingBySession(ctx, "MISMATCH1"); err == nil {
		t.Fatal("the portal stored a recording whose checksum does not match")
	}
	metas, _ := sp.List()
	if len(metas) != 1 || metas[0].SessionID != "MISMATCH1" {
		t.Fatalf("the spool did not keep the refused recording: %+v", metas)
	}
	if _, err := os.Stat(cast); err != nil {
		t.Fatalf("the refused recording's file is gone: %v", err)
	}
}

// TestDesktopRecordingRecovered records a desktop session into a spool
// that is then abandoned mid-instruction, as a gateway killed while it
// wrote; the next start recovers it as incomplete and the uploader sends
// it, with its key-frame index, to the portal, which stores both.
func TestDesktopRecordingRecovered(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p, _ := startPortal(t, dir)
	uploads := embeddedUploads(t, p, dir)

	spoolDir := filepath.Join(t.TempDir(), "spool")
	sp, err := spool.Open(spool.Config{Dir: spoolDir, MinFree: 1})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := sp.Create(spool.Meta{SessionID: "DESK1", User: "alice", Resource: "desk", Protocol: "vnc", Gateway: "embedded", Format: spool.Guacamole})
	if err != nil {
		t.Fatal(err)
	}
	w, err := guacrec.NewWriter(rec, rec.Index())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UnixMilli()
	for i := range 9 {
		if i%3 == 0 && i > 0 {
			w.KeyFrame()
			w.Write(guac.New("size", "0", "64", "48").AppendTo(nil))
		}
		w.Write(guac.New("rect", "0", strconv.Itoa(i), "0", "1", "1").AppendTo(nil))
		w.Write(guac.New("sync", strconv.FormatInt(t0+int64(i)*1000, 10)).AppendTo(nil))
	}
	w.Write([]byte("4.rect,1.0,2.1")) // torn by the kill
	sp.Close()                        // not finished: the gateway died

	sp, err = spool.Open(spool.Config{Dir: spoolDir, MinFree: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if got, err := sp.Recover(); err != nil || len(got) != 1 || got[0].Complete {
		t.Fatalf("recovered %+v, %v", got, err)
	}
	uctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); spool.NewUploader(sp, uploads, spool.UploaderConfig{}).Run(uctx) }()
	defer func() { cancel(); <-done }()
	var stored store.Recording
	waitFor(t, "the portal to store the recovered recording", func() bool {
		stored, err = p.Store.RecordingBySession(ctx, "DESK1")
		return err == nil
	}, nil)
	if !stored.Incomplete || stored.Format != "guac" || !strings.HasSuffix(stored.Path, ".guac") {
		t.Fatalf("stored %+v", stored)
	}
	f, err := os.Open(filepath.Join(dir, "recordings", strings.TrimSuffix(stored.Path, ".guac")+".idx"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ix, err := guacrec.ReadIndex(f); err != nil || len(ix) != 2 {
		t.Fatalf("stored index %+v, %v", ix, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "recordings", stored.Path))
	if strings.HasSuffix(string(b), "2.1") || !strings.HasSuffix(string(b), ";") {
		t.Fatalf("the torn instruction was kept: ...%q", b[max(0, len(b)-20):])
	}
}
