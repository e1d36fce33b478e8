package client

import (
	"bufio"
	"io"
	"net"
	"testing"

	"golang.org/x/net/http2"
)

// TestTransportStreamWindow checks that keyway offers the portal a
// per-stream window of streamWindow, not x/net's 4 MiB default, which let
// a bulk stream delay every other stream's replies by 8-10 ms.
func TestTransportStreamWindow(t *testing.T) {
	t.Parallel()
	local, remote := net.Pipe()
	defer local.Close()
	defer remote.Close()
	go newTransport().NewClientConn(local)

	br := bufio.NewReader(remote)
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(br, preface); err != nil || string(preface) != http2.ClientPreface {
		t.Fatalf("preface %q: %v", preface, err)
	}
	f, err := http2.NewFramer(io.Discard, br).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	settings, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame is %T, want SETTINGS", f)
	}
	got, ok := settings.Value(http2.SettingInitialWindowSize)
	if !ok || got != streamWindow {
		t.Fatalf("SETTINGS_INITIAL_WINDOW_SIZE = %d (sent: %v), want %d", got, ok, streamWindow)
	}
}
