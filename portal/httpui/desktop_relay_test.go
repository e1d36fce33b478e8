package httpui

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// relayRig is one desktop session's relay between a WebSocket client (the
// browser) and the far end of a pipe (the gateway).
type relayRig struct {
	t       *testing.T
	browser *websocket.Conn
	gw      net.Conn
	ended   chan string
}

func newRelay(t *testing.T) *relayRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Deps: Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}, ctx: ctx, cancel: cancel}
	portalEnd, gwEnd := net.Pipe()
	ended := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			ended <- err.Error()
			return
		}
		defer ws.Close()
		// As desktopSocket does.
		var mu sync.Mutex
		send := func(b []byte) error {
			mu.Lock()
			defer mu.Unlock()
			return ws.WriteMessage(websocket.TextMessage, b)
		}
		closeWith := func(msg string, status int) {
			send(guac.New("error", msg, strconv.Itoa(status)).AppendTo(nil))
			wsClose(ws, status)
		}
		end, _ := s.relayDesktop(ctx, ws, portalEnd, unguarded{}, send, closeWith)
		ended <- end
	}))
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ws.Close()
		gwEnd.Close()
		cancel()
		srv.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	ws.SetReadDeadline(deadline)
	gwEnd.SetDeadline(deadline)
	return &relayRig{t: t, browser: ws, gw: gwEnd, ended: ended}
}

// errorInstruction reads the browser's messages until an "error"
// instruction, which it returns.
func (r *relayRig) errorInstruction() guac.Instruction {
	r.t.Helper()
	for {
		_, msg, err := r.browser.ReadMessage()
		if err != nil {
			r.t.Fatalf("browser read: %v (closed without saying why)", err)
		}
		rd := guac.NewReader(bytes.NewReader(msg), guac.BrowserLimits)
		for {
			in, err := rd.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				r.t.Fatalf("message %q: %v", msg, err)
			}
			if in.Opcode == "error" {
				return in
			}
		}
	}
}

// TestDesktopRelayRefusesWithReason sends what the portal does not take
// from a browser: the browser is told why before the session closes, and
// the audit's end reason says it too.
func TestDesktopRelayRefusesWithReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		msg    []byte
		status int
		words  string
		end    string
	}{
		{"too large", guac.New("clipboard", "1", "text/plain", strings.Repeat("x", int(maxBrowserMessage()))).AppendTo(nil),
			guacClientOverrun, "more than 260 KiB", endRefused},
		{"not an instruction", []byte("hello;"), guacClientBadRequest, "could not read", endRefused},
		{"cut short", []byte("5.mouse,3.100"), guacClientBadRequest, "could not read", endRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRelay(t)
			go io.Copy(io.Discard, r.gw)
			go r.browser.WriteMessage(websocket.TextMessage, tc.msg)
			in := r.errorInstruction()
			if len(in.Args) != 2 || !strings.Contains(in.Args[0], tc.words) || in.Args[1] != strconv.Itoa(tc.status) {
				t.Fatalf("got %v, want an error saying %q with status %#x", in, tc.words, tc.status)
			}
			if end := <-r.ended; end != tc.end {
				t.Fatalf("session end %q, want %q", end, tc.end)
			}
		})
	}
}

// TestDesktopRelayPassesLargeClipboard sends a clipboard of the most the
// gateway takes, as guacamole-common-js does (a clipboard stream of blobs
// of 6048 bytes, a message each): it reaches the gateway whole.
func TestDesktopRelayPassesLargeClipboard(t *testing.T) {
	t.Parallel()
	r := newRelay(t)
	text := []byte(strings.Repeat("clipboard ü ", wire.MaxClipboard/len("clipboard ü ")))
	msgs := [][]byte{guac.New("clipboard", "7", "text/plain").AppendTo(nil)}
	for off := 0; off < len(text); off += 6048 {
		chunk := text[off:min(off+6048, len(text))]
		msgs = append(msgs, guac.New("blob", "7", base64.StdEncoding.EncodeToString(chunk)).AppendTo(nil))
	}
	msgs = append(msgs, guac.New("end", "7").AppendTo(nil))
	go func() {
		for _, m := range msgs {
			if r.browser.WriteMessage(websocket.TextMessage, m) != nil {
				return
			}
		}
	}()
	rd := guac.NewReader(r.gw, guac.Limits{MaxElement: 1 << 20, MaxElements: 8})
	var got []byte
	for {
		in, err := rd.Read()
		if err != nil {
			t.Fatalf("gateway read after %d bytes: %v", len(got), err)
		}
		if in.Opcode == "end" {
			break
		}
		if in.Opcode == "blob" {
			b, err := base64.StdEncoding.DecodeString(in.Args[1])
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b...)
		}
	}
	if !bytes.Equal(got, text) {
		t.Fatalf("the gateway got %d bytes of clipboard, want %d", len(got), len(text))
	}
}

// TestSessionEndWhenBrowserCloses closes the browser's side of terminal
// and desktop sessions: the end is the browser's, never a lost gateway
// (the relay once saw the gateway connection closed by the browser's
// goroutine before it knew the browser had gone).
func TestSessionEndWhenBrowserCloses(t *testing.T) {
	t.Parallel()
	for i := range 20 {
		b := newBridge(t)
		b.browser.Close()
		if end := <-b.ended; end != "browser disconnected" {
			t.Fatalf("terminal %d: session end %q", i, end)
		}
		r := newRelay(t)
		r.browser.Close()
		if end := <-r.ended; end != "browser disconnected" {
			t.Fatalf("desktop %d: session end %q", i, end)
		}
	}
}

// unguarded is a relayed session no guard watches and nothing cuts.
type unguarded struct{}

func (unguarded) Touch()              {}
func (unguarded) CloseCode() string   { return "" }
func (unguarded) CloseReason() string { return "" }
