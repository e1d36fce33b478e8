package httpui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/gateway/guac"
	"github.com/keyway-dev/keyway/portal/store"
)

// TestDesktopSocketCompresses checks that the desktop socket takes the
// browser's offer of compression and that what it sends reads back: the
// tunnel's id, then the reason the session cannot start.
func TestDesktopSocketCompresses(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	vnc, err := f.store.CreateResource(ctx, store.Resource{Name: "desk", Protocol: "vnc", Host: "127.0.0.1", Port: 1}, &store.Secrets{Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.CreateGrant(ctx, vnc.ID, "user", f.users["user"].ID); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(f.srv.URL)
	dialer := websocket.Dialer{TLSClientConfig: f.srv.Client().Transport.(*http.Transport).TLSClientConfig,
		Jar: f.client("user").Jar, EnableCompression: true, Subprotocols: []string{"guacamole"}}
	ws, resp, err := dialer.Dial(fmt.Sprintf("wss://%s/connect/%d/guac", u.Host, vnc.ID), http.Header{"Origin": {f.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
		t.Fatalf("extensions %q: compression not taken", ext)
	}
	var got []guac.Instruction
	for len(got) < 2 {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		rd := guac.NewReader(bytes.NewReader(msg), guac.BrowserLimits)
		for {
			in, err := rd.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("message %q: %v", msg, err)
			}
			got = append(got, in)
		}
	}
	if got[0].Opcode != "" || got[1].Opcode != "error" || !strings.Contains(got[1].Args[0], "gateway") {
		t.Fatalf("got %v", got)
	}
}

// TestReadMessageBoundsDecompressed sends a compressed message of a few
// kilobytes that decompresses past the limit: readMessage refuses it
// without holding all of it, and reads a message within the limit.
func TestReadMessageBoundsDecompressed(t *testing.T) {
	got := make(chan error, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{EnableCompression: true}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			got <- err
			return
		}
		defer ws.Close()
		ws.SetReadLimit(maxBrowserMessage())
		for range 2 {
			_, msg, err := readMessage(ws, maxBrowserMessage())
			if err == nil && len(msg) != 5 {
				err = fmt.Errorf("read %d bytes, want 5", len(msg))
			}
			got <- err
		}
	}))
	defer srv.Close()
	d := websocket.Dialer{EnableCompression: true}
	ws, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.EnableWriteCompression(true)
	if err := ws.WriteMessage(websocket.TextMessage, []byte("4.nop")); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("a message within the limit: %v", err)
	}
	// 26 MB of one letter, 25 kB compressed: under the read limit as it
	// arrives. The server stops reading early and closes, so the write
	// itself may fail.
	bomb := bytes.Repeat([]byte("A"), int(100*maxBrowserMessage()))
	ws.WriteMessage(websocket.TextMessage, bomb)
	if err := <-got; !errors.Is(err, errMessageTooLarge) {
		t.Fatalf("a message decompressing to %d bytes: %v", len(bomb), err)
	}
}
