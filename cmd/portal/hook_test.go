package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/e2e/hookexample/examplehook"
	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/metrics/metricstest"
	"github.com/keyway-dev/keyway/portal/store"
)

// TestHookThroughThePortal: with the example hook set through the API,
// a user it does not list is refused a terminal, a desktop and the file
// browser with its words and its reason in the audit log; a listed user
// connects through the real gateway, with the hook's posture status on
// the session; and that running session goes on when the hook is changed
// to refuse everyone, while the next connection is refused.
func TestHookThroughThePortal(t *testing.T) {
	ctx := context.Background()
	f := newFilesFixture(t)
	st := f.p.Store
	x := targets.NewXvnc(t, targets.XvncOptions{Password: "pw123456", Width: 320, Height: 240})
	desk, err := st.CreateResource(ctx, store.Resource{Name: "desk", Protocol: "vnc", Host: x.Host, Port: x.Port,
		Options: store.Options{Recording: store.RecordingOff}}, &store.Secrets{Password: x.Password})
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := st.UserByName(ctx, "bob")
	st.CreateGrant(ctx, desk.ID, "user", bob.ID)
	boss, _ := st.CreateUser(ctx, store.User{Name: "boss", Role: store.RoleAdmin}, mustHash(t, "admin-password-3"))
	token, _, err := st.CreateToken(ctx, boss.ID, "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	const secret = "hook-secret-0123456789"
	var calls atomic.Int64
	var allowed atomic.Pointer[[]string]
	allowed.Store(&[]string{"alice"})
	hookSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		examplehook.New(examplehook.Config{Secret: secret, Users: *allowed.Load(), Posture: "managed-device",
			Log: slog.New(slog.DiscardHandler)}).ServeHTTP(w, r)
	}))
	t.Cleanup(hookSrv.Close)
	setHook := func(body map[string]any) {
		t.Helper()
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest("PUT", f.p.URL+"/api/v1/settings/hook", strings.NewReader(string(raw)))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := f.alice.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT /api/v1/settings/hook: %d", resp.StatusCode)
		}
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hookSrv.Certificate().Raw})
	setHook(map[string]any{"enabled": true, "url": hookSrv.URL, "ca_bundle": string(ca), "secret": secret})

	// bob is not on the hook's list: refused everywhere, in the hook's words.
	const refusal = "User bob may not connect through Keyway."
	c, _ := f.bob.terminal(f.res.ID)
	if c["type"] != "error" || c["code"] != "hook" || c["message"] != refusal {
		t.Fatalf("bob's terminal: %v", c)
	}
	screen := openDesktopRaw(t, f.bob, desk.ID)
	if !strings.Contains(screen, refusal) {
		t.Fatalf("bob's desktop was told %q", screen)
	}
	code, page := f.bob.get("/files/" + strconv.FormatInt(f.res.ID, 10))
	if code != http.StatusForbidden || !strings.Contains(page, refusal) {
		t.Fatalf("bob's file browser: %d", code)
	}
	evs, _ := st.SearchAudit(ctx, store.AuditFilter{Action: "connect", Actor: "bob"})
	if len(evs) != 3 {
		t.Fatalf("%d refusals of bob audited, want 3: %+v", len(evs), evs)
	}
	for _, ev := range evs {
		if ev.Outcome != "denied" || ev.Reason != "client-connect-failed" {
			t.Errorf("bob's refusal audited as %s: %s", ev.Outcome, ev.Reason)
		}
	}

	// alice is: her terminal opens, with the posture status.
	c, ws := f.alice.terminal(f.res.ID)
	if c["type"] != "connected" {
		t.Fatalf("alice's terminal: %v", c)
	}
	admin := newBrowser(t, f.p.URL)
	admin.signIn("boss", "admin-password-3")
	if _, page := admin.get("/sessions?partial=1"); !strings.Contains(page, "managed-device") {
		t.Fatalf("the Sessions page does not show the posture status:\n%s", page)
	}

	// The hook now refuses everyone, then is disabled and enabled again:
	// alice's running terminal goes on; her next connection is refused.
	allowed.Store(&[]string{"nobody"})
	setHook(map[string]any{"enabled": false})
	setHook(map[string]any{"enabled": true})
	ws.WriteMessage(websocket.BinaryMessage, []byte("echo still-$((6*7))\n"))
	readUntil(t, ws, "still-42")
	if c, _ := f.alice.terminal(f.res.ID); c["code"] != "hook" {
		t.Fatalf("alice's next terminal after the change: %v", c)
	}
	if calls.Load() < 5 {
		t.Fatalf("the hook was called %d times", calls.Load())
	}
	// Each call is on /metrics: bob's three refusals and alice's last
	// one, her terminal allowed; and the refusals by protocol.
	fams := metricstest.Scrape(t, nil, f.p.MetricsURL)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"keyway_portal_hook_calls_total", []string{"outcome", "deny"}, 4},
		{"keyway_portal_hook_calls_total", []string{"outcome", "allow"}, 1},
		{"keyway_portal_hook_seconds", nil, 5},
		{"keyway_portal_sessions_started_total", []string{"protocol", "ssh", "outcome", "hook"}, 2},
		{"keyway_portal_sessions_started_total", []string{"protocol", "vnc", "outcome", "hook"}, 1},
		{"keyway_portal_sessions_started_total", []string{"protocol", "sftp", "outcome", "hook"}, 1},
		{"keyway_portal_sessions_live", []string{"protocol", "ssh"}, 1},
	} {
		if got := fams.Value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// openDesktopRaw opens a desktop and returns what it says before it
// closes or draws its first frame.
func openDesktopRaw(t *testing.T, b *browser, id int64) string {
	t.Helper()
	ws := dialDesktop(t, b, id)
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	var all strings.Builder
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return all.String()
		}
		all.Write(msg)
		if strings.Contains(string(msg), "5.error,") || strings.Contains(string(msg), "4.sync,") {
			return all.String()
		}
	}
}
