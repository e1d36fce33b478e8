package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/store"
)

// desktop opens the resource's desktop and reads until its first frame is
// drawn.
func (b *browser) desktop(id int64) *websocket.Conn {
	b.t.Helper()
	ws := dialDesktop(b.t, b, id)
	b.t.Cleanup(func() { ws.Close() })
	ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			b.t.Fatalf("read desktop: %v", err)
		}
		if strings.Contains(string(msg), "4.sync,") {
			return ws
		}
	}
}

// dialDesktop opens the WebSocket of the resource's desktop, 320×240.
func dialDesktop(t *testing.T, b *browser, id int64) *websocket.Conn {
	t.Helper()
	pu, _ := url.Parse(b.base)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, Jar: b.client.Jar, Subprotocols: []string{"guacamole"}}
	ws, _, err := d.Dial(fmt.Sprintf("wss://%s/connect/%d/guac?width=320&height=240", pu.Host, id), http.Header{"Origin": {b.base}})
	if err != nil {
		t.Fatalf("open desktop: %v", err)
	}
	return ws
}

// TestTerminateEveryKind: an administrator ends every running session of
// a user at once — a terminal, a desktop and a download in progress, each
// through the real gateway — and then, through the API, the sessions on a
// resource; each user is told an administrator ended it, and each end is
// audited.
func TestTerminateEveryKind(t *testing.T) {
	ctx := context.Background()
	f := newFilesFixture(t)
	st := f.p.Store
	x := targets.NewXvnc(t, targets.XvncOptions{Password: "pw123456", Width: 320, Height: 240})
	desk, err := st.CreateResource(ctx, store.Resource{Name: "desk", Protocol: "vnc", Host: x.Host, Port: x.Port,
		Options: store.Options{Recording: store.RecordingOff}}, &store.Secrets{Password: x.Password})
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := st.UserByName(ctx, "alice")
	st.CreateGrant(ctx, desk.ID, "user", alice.ID)
	boss, _ := st.CreateUser(ctx, store.User{Name: "boss", Role: store.RoleAdmin}, mustHash(t, "admin-password-3"))
	admin := newBrowser(t, f.p.URL)
	admin.signIn("boss", "admin-password-3")

	c, term := f.alice.terminal(f.res.ID)
	if c["type"] != "connected" {
		t.Fatalf("connect: %v", c)
	}
	screen := f.alice.desktop(desk.ID)
	// A download large enough to still be streaming while it is ended:
	// the test reads a little and then stops reading.
	big := filepath.Join(f.dir, "big.bin")
	if err := os.WriteFile(big, make([]byte, 256<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	download := f.download(t, big)
	if download.StatusCode != http.StatusOK {
		t.Fatalf("download: %d", download.StatusCode)
	}
	if _, err := io.CopyN(io.Discard, download.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three sessions of alice on the Sessions page", func() bool {
		_, page := admin.get("/sessions?partial=1")
		return strings.Count(page, "<td>alice</td>") == 3
	}, func() string { _, page := admin.get("/sessions?partial=1"); return page })

	if resp := admin.post("/sessions/terminate", url.Values{"user": {"alice"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("terminate alice's sessions: %d", resp.StatusCode)
	}
	const told = "An administrator (boss) ended this session."
	terminalTold(t, term, "terminated", told)
	screen.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		_, msg, err := screen.ReadMessage()
		if err != nil {
			t.Fatalf("the desktop closed without saying why: %v", err)
		}
		if strings.Contains(string(msg), "5.error,") {
			if !strings.Contains(string(msg), told) {
				t.Fatalf("the desktop was told %s", msg)
			}
			break
		}
	}
	if n, err := io.Copy(io.Discard, download.Body); err == nil || n >= 255<<20 {
		t.Fatalf("the download went on after it was ended: %d more bytes, %v", n, err)
	}
	waitFor(t, "alice's sessions gone from the Sessions page", func() bool {
		_, page := admin.get("/sessions?partial=1")
		return !strings.Contains(page, "<td>alice</td>")
	}, nil)
	evs, _ := st.SearchAudit(ctx, store.AuditFilter{Action: "session.terminate", Actor: "boss"})
	if len(evs) != 3 {
		t.Fatalf("%d terminations audited, want 3: %+v", len(evs), evs)
	}

	// Through the API: every session on the resource "box", whoever runs
	// it; the desktop on "desk" goes on.
	token, _, err := st.CreateToken(ctx, boss.ID, "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, term = f.alice.terminal(f.res.ID)
	if c["type"] != "connected" {
		t.Fatalf("connect again: %v", c)
	}
	screen = f.alice.desktop(desk.ID)
	api := func(method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, f.p.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := admin.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if code, out := api("GET", "/api/v1/sessions", ""); code != http.StatusOK || len(out["sessions"].([]any)) != 2 {
		t.Fatalf("GET /api/v1/sessions: %d %v", code, out)
	}
	if code, out := api("POST", "/api/v1/sessions/terminate", `{}`); code != http.StatusUnprocessableEntity {
		t.Fatalf("terminate with no filter: %d %v", code, out)
	}
	code, out := api("POST", "/api/v1/sessions/terminate", `{"resource":"box"}`)
	if code != http.StatusOK || len(out["terminated"].([]any)) != 1 {
		t.Fatalf("terminate on box: %d %v", code, out)
	}
	terminalTold(t, term, "terminated", told)
	if code, out := api("GET", "/api/v1/sessions", ""); code != http.StatusOK || len(out["sessions"].([]any)) != 1 {
		waitFor(t, "one session left", func() bool {
			_, out := api("GET", "/api/v1/sessions", "")
			return len(out["sessions"].([]any)) == 1
		}, nil)
	}
	screen.WriteMessage(websocket.TextMessage, []byte("4.sync,1.0;"))
	if code, out := api("POST", "/api/v1/sessions/NOSUCHSESSION/terminate", ""); code != http.StatusNotFound {
		t.Fatalf("terminate a session that is not running: %d %v", code, out)
	}
}

// terminalTold reads a terminal's socket until its first control message,
// which must be an error with code and message.
func terminalTold(t *testing.T, ws *websocket.Conn, code, message string) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		mt, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("the terminal closed without saying why: %v", err)
		}
		if mt == websocket.TextMessage {
			var c struct{ Type, Code, Message string }
			json.Unmarshal(msg, &c)
			if c.Type != "error" || c.Code != code || !strings.Contains(c.Message, message) {
				t.Fatalf("the terminal was told %s, want code %s and %q", msg, code, message)
			}
			return
		}
	}
}
