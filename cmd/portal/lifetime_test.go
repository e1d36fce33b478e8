package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/store"
)

// TestSessionsEndWhenAccessEnds: a running terminal ends within seconds,
// saying why, when its user loses access in any way, signs out, changes
// the password elsewhere, or leaves it idle or running past its length;
// the end is audited with that reason.
func TestSessionsEndWhenAccessEnds(t *testing.T) {
	ctx := context.Background()
	sshd := targets.NewSSHD(t)
	p, _ := startPortal(t, t.TempDir())
	st := p.Store

	type setup struct {
		user    store.User
		res     store.Resource
		grant   store.Grant
		browser *browser
	}
	for _, tc := range []struct {
		name    string
		options store.Options
		// end makes the session end; nil waits for a time limit.
		end func(t *testing.T, s setup)
		// code and message are what the terminal is told; warn, when set,
		// is a warning it must get first.
		code, message, warn string
	}{
		{name: "user disabled", code: "access_revoked", message: "Your account was disabled",
			end: func(t *testing.T, s setup) {
				s.user.Disabled = true
				if err := st.UpdateUser(ctx, s.user); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "user deleted", code: "access_revoked", message: "Your account was deleted",
			end: func(t *testing.T, s setup) {
				if err := st.DeleteUser(ctx, s.user.ID); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "grant removed", code: "access_revoked", message: "Your access to",
			end: func(t *testing.T, s setup) {
				if err := st.DeleteGrant(ctx, s.grant.ID); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "resource deleted", code: "access_revoked", message: "was deleted",
			end: func(t *testing.T, s setup) {
				if err := st.DeleteResource(ctx, s.res.ID); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "signed out", code: "signed_out", message: "You signed out",
			end: func(t *testing.T, s setup) {
				if resp := s.browser.post("/signout", nil); resp.StatusCode != http.StatusSeeOther {
					t.Fatalf("sign out: %d", resp.StatusCode)
				}
			}},
		{name: "password changed elsewhere", code: "signed_out", message: "Your password was changed",
			end: func(t *testing.T, s setup) {
				other := newBrowser(t, p.URL)
				other.signIn(s.user.Name, "user-password-9")
				resp := other.post("/account/password", url.Values{"current_password": {"user-password-9"},
					"new_password": {"user-password-10"}, "new_password2": {"user-password-10"}})
				if resp.StatusCode != http.StatusSeeOther {
					t.Fatalf("change password: %d", resp.StatusCode)
				}
				// The browser that changed it stays signed in; the other is
				// signed out.
				if code, _ := other.get("/account"); code != http.StatusOK {
					t.Errorf("the browser that changed the password: /account %d", code)
				}
				if code, _ := s.browser.get("/account"); code != http.StatusSeeOther {
					t.Errorf("the other browser: /account %d, want a redirect to sign in", code)
				}
			}},
		{name: "idle", options: store.Options{IdleTimeoutSeconds: 3}, code: "idle_timeout",
			message: "The session was idle for 3s", warn: "idle"},
		{name: "maximum length", options: store.Options{MaxSessionSeconds: 3}, code: "max_duration",
			message: "maximum length of 3s", warn: "maximum length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := strings.ReplaceAll(tc.name, " ", "-")
			u, err := st.CreateUser(ctx, store.User{Name: name, Role: store.RoleUser}, mustHash(t, "user-password-9"))
			if err != nil {
				t.Fatal(err)
			}
			res, err := st.CreateResource(ctx, store.Resource{Name: "box-" + name, Protocol: "ssh", Host: sshd.Host, Port: sshd.Port,
				Login: sshd.User, Options: tc.options}, &store.Secrets{Password: sshd.Password})
			if err != nil {
				t.Fatal(err)
			}
			g, err := st.CreateGrant(ctx, res.ID, "user", u.ID)
			if err != nil {
				t.Fatal(err)
			}
			b := newBrowser(t, p.URL)
			b.signIn(name, "user-password-9")
			c, ws := b.terminal(res.ID)
			if c["type"] != "connected" {
				t.Fatalf("connect: %v", c)
			}
			ws.WriteMessage(websocket.BinaryMessage, []byte("echo alive-$((6*7))\n"))
			// On a loaded machine a short limit's warning can come while
			// the shell is still answering: it counts too.
			early := readUntil(t, ws, "alive-42")
			start := time.Now()
			if tc.end != nil {
				tc.end(t, setup{user: u, res: res, grant: g, browser: b})
			}
			// The guard checks every 2 s; 15 s leaves room for a loaded
			// machine while still failing when nothing ends the session.
			ws.SetReadDeadline(time.Now().Add(15 * time.Second))
			warned := false
			for _, msg := range early {
				var ctl struct{ Type, Message string }
				json.Unmarshal(msg, &ctl)
				warned = warned || ctl.Type == "warning" && strings.Contains(ctl.Message, tc.warn)
			}
			for {
				mt, msg, err := ws.ReadMessage()
				if err != nil {
					t.Fatalf("the terminal closed without saying why: %v", err)
				}
				if mt != websocket.TextMessage {
					continue
				}
				var ctl struct{ Type, Code, Message string }
				json.Unmarshal(msg, &ctl)
				if ctl.Type == "warning" {
					warned = warned || strings.Contains(ctl.Message, tc.warn)
					continue
				}
				if ctl.Type != "error" || ctl.Code != tc.code || !strings.Contains(ctl.Message, tc.message) {
					t.Fatalf("the terminal was told %s, want code %s and %q", msg, tc.code, tc.message)
				}
				break
			}
			if tc.warn != "" && !warned {
				t.Errorf("no warning mentioning %q before the end", tc.warn)
			}
			if tc.options.IdleTimeoutSeconds > 0 || tc.options.MaxSessionSeconds > 0 {
				if d := time.Since(start); d < 2*time.Second {
					t.Errorf("ended after %s, before its limit", d)
				}
			}
			// The end is audited with its reason.
			waitFor(t, "the session's end in the audit log", func() bool {
				evs, _ := st.SearchAudit(ctx, store.AuditFilter{Action: "session.end", Actor: name})
				return len(evs) == 1 && strings.Contains(evs[0].Reason, tc.message) &&
					evs[0].Details["end"] == strings.ReplaceAll(tc.code, "_", " ")
			}, func() string {
				evs, _ := st.SearchAudit(ctx, store.AuditFilter{Action: "session.end", Actor: name})
				return fmt.Sprintf("%+v", evs)
			})
		})
	}
}

// TestIdleTimeoutCountsInput: typing keeps a session with an idle timeout
// open past the timeout.
func TestIdleTimeoutCountsInput(t *testing.T) {
	ctx := context.Background()
	sshd := targets.NewSSHD(t)
	p, _ := startPortal(t, t.TempDir())
	st := p.Store
	u, _ := st.CreateUser(ctx, store.User{Name: "typist", Role: store.RoleUser}, mustHash(t, "user-password-9"))
	res, _ := st.CreateResource(ctx, store.Resource{Name: "busy", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port,
		Login: sshd.User, Options: store.Options{IdleTimeoutSeconds: 4}}, &store.Secrets{Password: sshd.Password})
	st.CreateGrant(ctx, res.ID, "user", u.ID)
	b := newBrowser(t, p.URL)
	b.signIn("typist", "user-password-9")
	c, ws := b.terminal(res.ID)
	if c["type"] != "connected" {
		t.Fatalf("connect: %v", c)
	}
	// Type every second for three idle periods; each echo must come back.
	for i := range 12 {
		ws.WriteMessage(websocket.BinaryMessage, fmt.Appendf(nil, "echo tick-%d-$((%d+1))\n", i, i))
		readUntil(t, ws, fmt.Sprintf("tick-%d-%d", i, i+1))
		time.Sleep(time.Second) // the typist's pace: time passing is the test
	}
}

// TestDesktopEndReasons: a desktop whose browser leaves is audited as
// "browser disconnected", as a terminal is (it was "gateway connection
// lost": the gateway's side raced the browser's to say how it ended).
func TestDesktopEndReasons(t *testing.T) {
	ctx := context.Background()
	x := targets.NewXvnc(t, targets.XvncOptions{Password: "pw123456", Width: 320, Height: 240})
	p, _ := startPortal(t, t.TempDir())
	st := p.Store
	u, _ := st.CreateUser(ctx, store.User{Name: "viewer", Role: store.RoleUser}, mustHash(t, "user-password-9"))
	res, err := st.CreateResource(ctx, store.Resource{Name: "desk", Protocol: "vnc", Host: x.Host, Port: x.Port,
		Options: store.Options{Recording: store.RecordingOff}}, &store.Secrets{Password: x.Password})
	if err != nil {
		t.Fatal(err)
	}
	st.CreateGrant(ctx, res.ID, "user", u.ID)
	b := newBrowser(t, p.URL)
	b.signIn("viewer", "user-password-9")
	pu, _ := url.Parse(p.URL)
	const rounds = 5
	for i := range rounds {
		d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, Jar: b.client.Jar, Subprotocols: []string{"guacamole"}}
		ws, _, err := d.Dial(fmt.Sprintf("wss://%s/connect/%d/guac?width=320&height=240", pu.Host, res.ID), http.Header{"Origin": {b.base}})
		if err != nil {
			t.Fatalf("round %d: open desktop: %v", i, err)
		}
		ws.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("round %d: read desktop: %v", i, err)
			}
			if strings.Contains(string(msg), "4.sync,") {
				break // the first frame is drawn: the session runs
			}
		}
		// The tab closes: guacamole-common-js says disconnect first, and
		// the gateway may end the session before the socket closes
		// (rounds alternate).
		ws.WriteMessage(websocket.TextMessage, []byte("10.disconnect;"))
		if i%2 == 0 {
			ws.Close()
		}
		waitFor(t, "the desktop's end in the audit log", func() bool {
			evs, _ := st.SearchAudit(ctx, store.AuditFilter{Action: "session.end", Actor: "viewer"})
			return len(evs) == i+1
		}, nil)
		ws.Close()
	}
	evs, _ := st.SearchAudit(ctx, store.AuditFilter{Action: "session.end", Actor: "viewer"})
	for _, ev := range evs {
		if ev.Details["end"] != "browser disconnected" {
			t.Errorf("a closed desktop tab was audited as ended by %q", ev.Details["end"])
		}
	}
}

// TestExpiredSignInKeepsSession: a sign-in that expires (nothing touches it
// while the user works in the terminal's socket) does not end the terminal;
// only signing out does.
func TestExpiredSignInKeepsSession(t *testing.T) {
	ctx := context.Background()
	sshd := targets.NewSSHD(t)
	p, _ := startPortal(t, t.TempDir())
	st := p.Store
	u, _ := st.CreateUser(ctx, store.User{Name: "worker", Role: store.RoleUser}, mustHash(t, "user-password-9"))
	res, _ := st.CreateResource(ctx, store.Resource{Name: "long", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port,
		Login: sshd.User}, &store.Secrets{Password: sshd.Password})
	st.CreateGrant(ctx, res.ID, "user", u.ID)
	b := newBrowser(t, p.URL)
	b.signIn("worker", "user-password-9")
	c, ws := b.terminal(res.ID)
	if c["type"] != "connected" {
		t.Fatalf("connect: %v", c)
	}
	// The sign-in expires: scs's store no longer has it.
	if _, err := st.DB().ExecContext(ctx, `DELETE FROM sessions`); err != nil {
		t.Fatal(err)
	}
	// Two and a half guard checks (every 2 s) go by with nothing to await:
	// the point is that nothing happens.
	time.Sleep(5 * time.Second)
	ws.WriteMessage(websocket.BinaryMessage, []byte("echo still-$((5*5))\n"))
	readUntil(t, ws, "still-25")
}
