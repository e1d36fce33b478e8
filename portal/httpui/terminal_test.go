package httpui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/sessions"
)

// bridgeRig is one terminal session's bridge between a WebSocket client
// (the browser) and the far end of a pipe (the gateway).
type bridgeRig struct {
	t       *testing.T
	browser *websocket.Conn
	gw      *wire.FrameReader
	gwConn  net.Conn
	ended   chan string
}

// newBridge starts termSession.bridge for a 80×24 terminal behind a real
// WebSocket on loopback.
func newBridge(t *testing.T) *bridgeRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	// A clock that stands still: refusals are spaced by time.
	now := time.Now()
	s := &Server{Deps: Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return now }},
		ctx: ctx, cancel: cancel}
	portalEnd, gwEnd := net.Pipe()
	ended := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			ended <- err.Error()
			return
		}
		defer ws.Close()
		ts := &termSession{srv: s, ws: ws, cols: 80, rows: 24, log: s.Logger, sess: unguarded{}, watchers: &sessions.Watchers{}}
		end, _ := ts.bridge(ctx, portalEnd)
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
	// Nothing here may wait forever on a bridge that broke.
	deadline := time.Now().Add(20 * time.Second)
	ws.SetReadDeadline(deadline)
	gwEnd.SetDeadline(deadline)
	return &bridgeRig{t: t, browser: ws, gw: wire.NewFrameReader(gwEnd), gwConn: gwEnd, ended: ended}
}

func (b *bridgeRig) send(mt int, p []byte) {
	b.t.Helper()
	if err := b.browser.WriteMessage(mt, p); err != nil {
		b.t.Fatalf("browser write: %v", err)
	}
}

// sendAsync writes messages from another goroutine, for messages the
// portal takes only as fast as the gateway reads; wait waits until all
// are written (a WebSocket has one writer at a time).
func (b *bridgeRig) sendAsync(mt int, msgs ...[]byte) (wait func()) {
	done := make(chan error, 1)
	go func() {
		for _, p := range msgs {
			if err := b.browser.WriteMessage(mt, p); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return func() {
		b.t.Helper()
		if err := <-done; err != nil {
			b.t.Fatalf("browser write: %v", err)
		}
	}
}

// frame reads the next frame the gateway gets.
func (b *bridgeRig) frame() (wire.FrameType, []byte) {
	b.t.Helper()
	ft, p, err := b.gw.Next()
	if err != nil {
		select {
		case end := <-b.ended:
			b.t.Fatalf("the session ended (%s) where the gateway waited for a frame", end)
		default:
		}
		b.t.Fatalf("gateway read: %v", err)
	}
	return ft, p
}

// input reads data frames until n bytes arrived.
func (b *bridgeRig) input(n int) []byte {
	b.t.Helper()
	var got []byte
	for len(got) < n {
		ft, p := b.frame()
		if ft != wire.FrameData {
			b.t.Fatalf("frame type %d after %d of %d bytes of input", ft, len(got), n)
		}
		if len(p) > wire.MaxFramePayload {
			b.t.Fatalf("a data frame of %d bytes", len(p))
		}
		got = append(got, p...)
	}
	return got
}

// control reads the next control message the browser gets, skipping
// terminal output.
func (b *bridgeRig) control() control {
	b.t.Helper()
	for {
		mt, p, err := b.browser.ReadMessage()
		if err != nil {
			b.t.Fatalf("browser read: %v (the session was dropped)", err)
		}
		if mt != websocket.TextMessage {
			continue
		}
		var c control
		if err := json.Unmarshal(p, &c); err != nil {
			b.t.Fatalf("control %q: %v", p, err)
		}
		return c
	}
}

// alive checks the session still works both ways: input reaches the
// gateway, output reaches the browser.
func (b *bridgeRig) alive() {
	b.t.Helper()
	b.send(websocket.BinaryMessage, []byte("still here"))
	if got := b.input(len("still here")); string(got) != "still here" {
		b.t.Fatalf("input after: %q", got)
	}
	go wire.NewFrameWriter(b.gwConn).Write(wire.FrameData, []byte("output"))
	for {
		mt, p, err := b.browser.ReadMessage()
		if err != nil {
			b.t.Fatalf("browser read: %v (the session was dropped)", err)
		}
		if mt == websocket.BinaryMessage {
			if string(p) != "output" {
				b.t.Fatalf("output %q", p)
			}
			return
		}
	}
}

// TestTerminalInputOfAnySize sends pastes far over the 64 KiB a message
// was once limited to (which ended the session): each reaches the
// gateway whole, in order, in frames within the wire's limit.
func TestTerminalInputOfAnySize(t *testing.T) {
	t.Parallel()
	b := newBridge(t)
	var pastes [][]byte
	for _, n := range []int{1, inputChunk, inputChunk + 1, 64<<10 + 1, 3<<20 + 7} {
		paste := make([]byte, n)
		for i := range paste {
			paste[i] = byte('a' + (i+n)%26)
		}
		pastes = append(pastes, paste)
	}
	wait := b.sendAsync(websocket.BinaryMessage, pastes...)
	for _, paste := range pastes {
		if got := b.input(len(paste)); !bytes.Equal(got, paste) {
			t.Fatalf("a paste of %d bytes arrived as %d bytes, or changed", len(paste), len(got))
		}
	}
	wait()
	b.alive()
}

// TestTerminalRefusesBadControl sends control messages the portal cannot
// act on: each is answered with a "refused" notice that says why, the
// terminal keeps its size, and the session goes on.
func TestTerminalRefusesBadControl(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, code string
		msg        []byte
	}{
		{"over the limit", refusedTooLarge, []byte(`{"type":"resize","cols":100,"rows":30,"pad":"` + strings.Repeat("x", 1<<20) + `"}`)},
		{"not JSON", refusedMalformed, []byte("resize 100 30")},
		{"wrong field types", refusedMalformed, []byte(`{"type":"resize","cols":"100","rows":30}`)},
		{"unknown type", refusedUnknown, []byte(`{"type":"shutdown"}`)},
		{"no columns", refusedBadSize, []byte(`{"type":"resize","cols":0,"rows":30}`)},
		{"negative rows", refusedBadSize, []byte(`{"type":"resize","cols":100,"rows":-3}`)},
		{"too wide", refusedBadSize, []byte(`{"type":"resize","cols":100000,"rows":30}`)},
		{"wider than a frame can say", refusedBadSize, []byte(`{"type":"resize","cols":65616,"rows":30}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBridge(t)
			wait := b.sendAsync(websocket.TextMessage, tc.msg)
			c := b.control()
			if c.Type != "refused" || c.Code != tc.code || c.Message == "" {
				t.Fatalf("got %+v, want a refusal %s that says why", c, tc.code)
			}
			wait()
			// The next resize is the first the gateway sees.
			b.send(websocket.TextMessage, []byte(`{"type":"resize","cols":101,"rows":31}`))
			ft, p := b.frame()
			if ft != wire.FrameResize || !bytes.Equal(p, wire.ResizePayload(101, 31)) {
				t.Fatalf("gateway got frame %d %v, want the resize to 101×31", ft, p)
			}
			b.alive()
		})
	}
}

// TestTerminalResizeStorm sends a thousand resize messages, most of them
// to the size the terminal already has: the gateway gets one frame per
// change of size, and the session goes on.
func TestTerminalResizeStorm(t *testing.T) {
	t.Parallel()
	b := newBridge(t)
	var storm [][]byte
	for i := range 1000 {
		cols := 80 + i/250 // 80 (the size it has), 81, 82, 83
		storm = append(storm, fmt.Appendf(nil, `{"type":"resize","cols":%d,"rows":24}`, cols))
	}
	wait := b.sendAsync(websocket.TextMessage, storm...)
	wait()
	b.send(websocket.BinaryMessage, []byte("end"))
	var sizes []string
	for {
		ft, p := b.frame()
		if ft == wire.FrameData {
			if string(p) != "end" {
				t.Fatalf("data %q", p)
			}
			break
		}
		sizes = append(sizes, fmt.Sprint(p))
	}
	want := []string{fmt.Sprint(wire.ResizePayload(81, 24)), fmt.Sprint(wire.ResizePayload(82, 24)), fmt.Sprint(wire.ResizePayload(83, 24))}
	if fmt.Sprint(sizes) != fmt.Sprint(want) {
		t.Fatalf("gateway got %d resizes (%.60s…), want %v", len(sizes), fmt.Sprint(sizes), want)
	}
	b.alive()
}

// TestTerminalRefusalsAreSpaced sends a burst of bad messages: the browser
// is told once, not once per message.
func TestTerminalRefusalsAreSpaced(t *testing.T) {
	t.Parallel()
	b := newBridge(t)
	for range 50 {
		b.send(websocket.TextMessage, []byte("nonsense"))
	}
	b.send(websocket.BinaryMessage, []byte("end"))
	if got := b.input(3); string(got) != "end" {
		t.Fatalf("input %q", got)
	}
	// The refusal, then the output of alive(): no second refusal between.
	if c := b.control(); c.Code != refusedMalformed {
		t.Fatalf("got %+v", c)
	}
	go wire.NewFrameWriter(b.gwConn).Write(wire.FrameData, []byte("output"))
	mt, p, err := b.browser.ReadMessage()
	if err != nil || mt != websocket.BinaryMessage || string(p) != "output" {
		t.Fatalf("after the refusal: %d %q %v, want only the output", mt, p, err)
	}
}

// FuzzBrowserControl checks that no control message from a browser makes
// the portal panic or pass on a size outside the terminal's bounds, and
// that every refusal says why.
func FuzzBrowserControl(f *testing.F) {
	for _, s := range []string{`{"type":"resize","cols":100,"rows":30}`, `{"type":"resize","cols":1e9,"rows":1}`,
		`{"type":"x"}`, `null`, `[]`, `{"type":"resize","cols":-1}`, ``, `{"type":"` + strings.Repeat("é", 40) + `"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cols, rows, refused := browserControl(data)
		if refused != nil {
			if refused.Type != "refused" || refused.Code == "" || refused.Message == "" {
				t.Fatalf("refusal %+v", refused)
			}
			return
		}
		if cols < 1 || cols > maxTermSize || rows < 1 || rows > maxTermSize {
			t.Fatalf("%q gave %d×%d", data, cols, rows)
		}
	})
}
