package sshgw

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// failingRecorder records until fail is set, then refuses, as a recording
// whose disk filled up does.
type failingRecorder struct {
	mu   sync.Mutex
	out  strings.Builder
	fail bool
}

var errDiskFull = errors.New("no space left on device")

func (r *failingRecorder) Output(p []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errDiskFull
	}
	r.out.Write(p)
	return nil
}

func (r *failingRecorder) Input(p []byte) error { return nil }

func (r *failingRecorder) Resize(cols, rows int) error { return nil }

// TestRelayEndsWhenRecordingFails checks that a recorder's error (only a
// required recording returns one) ends the session with that reason, and
// that output not recorded is not sent either.
func TestRelayEndsWhenRecordingFails(t *testing.T) {
	sshd := targets.NewSSHD(t)
	e := New(slog.New(slog.NewTextHandler(io.Discard, nil)), 5*time.Second)
	term, resp := e.OpenTerminal(context.Background(), &wire.Request{
		Target:      wire.Target{Host: sshd.Host, Port: sshd.Port},
		Credentials: wire.Credentials{Username: sshd.User, Password: wire.Secret(sshd.Password)},
		Terminal:    &wire.Terminal{Cols: 80, Rows: 24},
	})
	if !resp.OK {
		t.Fatalf("open terminal: %+v", resp)
	}
	portal, gw := net.Pipe()
	defer portal.Close()
	rec := &failingRecorder{}
	done := make(chan wire.Exit, 1)
	go func() { done <- term.Relay(gw, rec) }()

	fr := wire.NewFrameReader(portal)
	var seen strings.Builder
	wire.WriteFrame(portal, wire.FrameData, []byte("echo kw-$((6*7))-ok\n"))
	for !strings.Contains(seen.String(), "kw-42-ok") {
		_, p, err := fr.Next()
		if err != nil {
			t.Fatal(err)
		}
		seen.Write(p)
	}
	rec.mu.Lock()
	rec.fail = true
	rec.mu.Unlock()
	wire.WriteFrame(portal, wire.FrameData, []byte("echo after-$((6*7))\n"))
	var ex wire.Exit
	for {
		ft, p, err := fr.Next()
		if err != nil {
			t.Fatalf("the session ended without an exit frame: %v", err)
		}
		if ft == wire.FrameData {
			seen.Write(p)
			continue
		}
		ex, _ = wire.ParseExit(p)
		break
	}
	if ex.Status != -1 || !strings.Contains(ex.Message, "could not be recorded") || !strings.Contains(ex.Message, errDiskFull.Error()) {
		t.Fatalf("exit %+v", ex)
	}
	if strings.Contains(seen.String(), "after-42") {
		t.Fatal("output that could not be recorded was sent")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Relay did not return")
	}
	if !strings.Contains(rec.out.String(), "kw-42-ok") {
		t.Fatal("the recorder did not see the output before the failure")
	}
}
