package gateway

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/gateway/spool"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/recordings/asciicast"
	"github.com/keyway-dev/keyway/recordings/guacrec"
	"github.com/keyway-dev/keyway/recordings/guacrender"
)

// startRecordingGateway is a gateway recording into a spool in a temporary
// directory, which it returns too; minFree is the free space the spool
// requires.
func startRecordingGateway(t *testing.T, minFree uint64) (*testGateway, *spool.Spool, string) {
	return startRecordingGatewayWith(t, minFree, 0)
}

// startRecordingGatewayWith is startRecordingGateway with key frames of
// desktop recordings at most every keyFrames.
func startRecordingGatewayWith(t *testing.T, minFree uint64, keyFrames time.Duration) (*testGateway, *spool.Spool, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	sp, err := spool.Open(spool.Config{Dir: dir, MinFree: minFree})
	if err != nil {
		t.Fatal(err)
	}
	gwID, portal := identity(t), identity(t)
	g, err := New(Config{
		SSHAddr: "127.0.0.1:0", Identity: gwID,
		TrustedPortal: func(k ed25519.PublicKey) bool { return k.Equal(portal.PublicKey()) },
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		DialTimeout:   5 * time.Second, Spool: sp, Name: "gw-test", KeyFrameInterval: keyFrames,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(); sp.Close() })
	return &testGateway{Gateway: g, portal: portal, key: gwID.PublicKey()}, sp, dir
}

// finishedRecording waits until the spool holds a finished recording of
// session id and returns its metadata.
func finishedRecording(t *testing.T, sp *spool.Spool, id string) spool.Meta {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		metas, err := sp.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metas {
			if m.SessionID == id && m.Finished() {
				return m
			}
		}
		select {
		case <-sp.Finished():
		case <-deadline:
			t.Fatalf("no finished recording of %s in the spool: %+v", id, metas)
		}
	}
}

func readCast(t *testing.T, dir, id string) (asciicast.Header, []asciicast.Event) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, id+".cast"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := asciicast.NewReader(f, asciicast.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	var evs []asciicast.Event
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rd.Header(), evs
		}
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
}

// TestTerminalRecording records a real sshd session through the gateway
// and checks that replaying the recording gives exactly what the portal
// received, with the resizes, and the input only when asked for.
func TestTerminalRecording(t *testing.T) {
	t.Parallel()
	sshd := targets.NewSSHD(t)
	g, sp, dir := startRecordingGateway(t, 1)

	for _, input := range []bool{true, false} {
		id := "rec-input"
		if !input {
			id = "rec-noinput"
		}
		req := sshRequest(sshd)
		req.SessionID, req.Resource, req.ClientAddr = id, "web-1", "192.0.2.7"
		req.Recording = &wire.Recording{Input: input}
		s, resp := g.open(t, req)
		if !resp.OK {
			t.Fatalf("refused: %+v", resp)
		}
		s.send("printf 'kw-%s-ok\\n' \"$((6*7))\" 'déjà vu ✓'\n")
		s.waitFor("kw-42-ok")
		wire.WriteFrame(s.conn, wire.FrameResize, wire.ResizePayload(100, 30))
		s.send("stty size\n")
		s.waitFor("30 100")
		s.send("exit 3\n")
		if ex := s.drain(); ex.Status != 3 {
			t.Fatalf("exit %+v", ex)
		}
		m := finishedRecording(t, sp, id)
		if !m.Complete || m.User != "tester" || m.Resource != "web-1" || m.ClientAddr != "192.0.2.7" || m.Gateway != "gw-test" || m.Protocol != "ssh" {
			t.Fatalf("metadata %+v", m)
		}
		h, evs := readCast(t, dir, id)
		if h.Width != 80 || h.Height != 24 || h.Keyway == nil || h.Keyway.SessionID != id || h.Keyway.Input != input {
			t.Fatalf("header %+v %+v", h, h.Keyway)
		}
		var out, in strings.Builder
		var resizes []string
		for _, ev := range evs {
			switch ev.Kind {
			case asciicast.Output:
				out.WriteString(ev.Data)
			case asciicast.Input:
				in.WriteString(ev.Data)
			case asciicast.Resize:
				resizes = append(resizes, ev.Data)
			}
		}
		if out.String() != s.out.String() {
			t.Errorf("replayed output differs from what the portal saw:\nreplay: %q\nseen:   %q", out.String(), s.out.String())
		}
		if !strings.Contains(out.String(), "kw-42-ok") || !strings.Contains(out.String(), "déjà vu ✓") {
			t.Errorf("output lacks the command's result: %q", out.String())
		}
		if len(resizes) != 1 || resizes[0] != "100x30" {
			t.Errorf("resize events %v, want [100x30]", resizes)
		}
		wantIn := ""
		if input {
			wantIn = "stty size\n"
		}
		if !strings.Contains(in.String(), wantIn) || (!input && in.Len() > 0) {
			t.Errorf("input events %q (input capture %v)", in.String(), input)
		}
	}
}

// TestRecordingOnlyAfterLogin checks that failed attempts leave no
// recording, and that a session that must be recorded is refused when the
// spool cannot take it, while an optional one runs unrecorded.
func TestRecordingOnlyAfterLogin(t *testing.T) {
	t.Parallel()
	sshd := targets.NewSSHD(t)

	g, sp, _ := startRecordingGateway(t, 1)
	req := sshRequest(sshd)
	req.SessionID, req.Recording = "failed-login", &wire.Recording{Required: true}
	req.Credentials.Password = "wrong-password"
	if _, resp := g.open(t, req); resp.OK || resp.Code != wire.CodeAuthFailed {
		t.Fatalf("wrong password: %+v", resp)
	}
	req = sshRequest(sshd)
	req.SessionID, req.Recording = "refused-port", &wire.Recording{}
	req.Target.Port = closedPort(t)
	if _, resp := g.open(t, req); resp.OK {
		t.Fatalf("closed port: %+v", resp)
	}
	if metas, _ := sp.List(); len(metas) != 0 {
		t.Fatalf("failed attempts left recordings: %+v", metas)
	}

	full, fullSpool, _ := startRecordingGateway(t, 1<<62) // never that much free
	req = sshRequest(sshd)
	req.SessionID, req.Resource, req.Recording = "must-record", "db-1", &wire.Recording{Required: true}
	_, resp := full.open(t, req)
	if resp.OK || resp.Code != wire.CodeRecordingUnavailable || !strings.Contains(resp.Message, "must be recorded") ||
		!strings.Contains(resp.Message, "nearly full") || strings.Contains(resp.Message, "spool/") {
		t.Fatalf("required recording on a full spool: %+v", resp)
	}
	req.SessionID, req.Recording = "may-record", &wire.Recording{}
	s, resp := full.open(t, req)
	if !resp.OK {
		t.Fatalf("optional recording on a full spool refused the session: %+v", resp)
	}
	s.send("exit\n")
	s.waitExit()
	if metas, _ := fullSpool.List(); len(metas) != 0 {
		t.Fatalf("a full spool took recordings: %+v", metas)
	}

	// A gateway without a spool refuses sessions that must be recorded.
	plain := startGateway(t)
	req.SessionID, req.Recording = "no-spool", &wire.Recording{Required: true}
	if _, resp := plain.open(t, req); resp.Code != wire.CodeRecordingUnavailable {
		t.Fatalf("required recording without a spool: %+v", resp)
	}
}

// drain reads the output up to the exit frame.
func (s *session) drain() wire.Exit {
	s.t.Helper()
	for {
		ft, p, err := s.fr.Next()
		if err != nil {
			s.t.Fatalf("waiting for exit: %v", err)
		}
		switch ft {
		case wire.FrameData:
			s.out.Write(p)
		case wire.FrameExit:
			ex, _ := wire.ParseExit(p)
			return ex
		}
	}
}

// TestDesktopRecording records a real Xvnc session through the gateway:
// a failed sign-in leaves no recording; the recording of the session that
// follows, played back onto an empty display from its start and from each
// of its key frames, ends with the screen the browser had.
func TestDesktopRecording(t *testing.T) {
	t.Parallel()
	x := targets.NewXvnc(t, targets.XvncOptions{Password: "vncpw123"})
	if err := x.Run("xsetroot", "-solid", "#336699"); err != nil {
		t.Fatal(err)
	}
	g, sp, dir := startRecordingGatewayWith(t, 1, 300*time.Millisecond)
	req := func(id, pw string) *wire.Request {
		return &wire.Request{Kind: wire.KindSession, Protocol: wire.ProtocolVNC, SessionID: id, User: "tester", Resource: "desk-1",
			Target: wire.Target{Host: x.Host, Port: x.Port}, Credentials: wire.Credentials{Password: wire.Secret(pw)},
			Desktop: &wire.Desktop{IndexedImages: true}, Recording: &wire.Recording{Required: true}}
	}
	if _, resp := g.open(t, req("bad-pw", "wrongpw1")); resp.OK || resp.Code != wire.CodeAuthFailed {
		t.Fatalf("wrong VNC password: %+v", resp)
	}
	if metas, _ := sp.List(); len(metas) != 0 {
		t.Fatalf("a failed sign-in left a recording: %+v", metas)
	}

	s, resp := g.open(t, req("desk", "vncpw123"))
	if !resp.OK {
		t.Fatalf("refused: %+v", resp)
	}
	live := guacrender.New(guacrender.DefaultLimits)
	ended := make(chan error, 1)
	var lastFrame atomic.Int64 // unix ms
	go func() {
		rd := guac.NewReader(s.conn, guac.Limits{MaxElement: 1 << 22, MaxElements: 16})
		for {
			in, err := rd.Read()
			if err != nil {
				ended <- err
				return
			}
			if err := live.Apply(in); err != nil {
				ended <- err
				return
			}
			if in.Opcode == "sync" {
				s.conn.Write(in.AppendTo(nil))
				lastFrame.Store(time.Now().UnixMilli())
			}
		}
	}()
	done := filepath.Join(t.TempDir(), "done")
	// A terminal that scrolls for a few seconds, so that the recording
	// has copies, images and several key frames.
	if _, err := x.Start("xterm", "-geometry", "80x20+10+10", "-e", "sh", "-c",
		"i=0; while [ $i -lt 60 ]; do echo line $i of the recorded session; i=$((i+1)); sleep 0.05; done; touch "+done+"; exec sleep 60"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the terminal's output", func() bool { _, err := os.Stat(done); return err == nil })
	// Once the screen is still, the server goes away: the gateway ends
	// the session, and the browser got all it sent.
	waitUntil(t, "a still screen", func() bool { return time.Now().UnixMilli()-lastFrame.Load() > 500 })
	x.Stop()
	select {
	case <-ended:
	case <-time.After(15 * time.Second):
		t.Fatal("the session did not end with the server")
	}

	m := finishedRecording(t, sp, "desk")
	if m.Format != spool.Guacamole || m.Protocol != "vnc" || m.Resource != "desk-1" || !m.Complete {
		t.Fatalf("metadata %+v", m)
	}
	rec, err := os.ReadFile(filepath.Join(dir, "desk.guac"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "desk.idx"))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := guacrec.ReadIndex(f)
	f.Close()
	if err != nil || len(ix) < 2 {
		t.Fatalf("index of %d bytes: %d key frames, %v", len(rec), len(ix), err)
	}
	want := live.Screen()
	if w, h := live.Size(); w != 1024 || h != 768 {
		t.Fatalf("screen %dx%d", w, h)
	}
	for _, kf := range append(guacrec.Index{{}}, ix...) {
		st, err := guacrec.Stream(bytes.NewReader(rec), int64(len(rec)), kf)
		if err != nil {
			t.Fatal(err)
		}
		b := guacrender.New(guacrender.DefaultLimits)
		rd := guacrec.NewReader(st, guacrec.RecordingLimits)
		for {
			in, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("play from %+v: %v", kf, err)
			}
			if err := b.Apply(in); err != nil {
				t.Fatalf("play from %+v: %v", kf, err)
			}
		}
		if !bytes.Equal(b.Screen().Pix, want.Pix) {
			t.Errorf("played from key frame %+v, the screen differs from the browser's", kf)
		}
	}
	if live.Count("copy") == 0 {
		t.Errorf("no copy in the session: %v", live.Counts())
	}
}
