package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	_ "github.com/mattn/go-sqlite3" // the audit test edits the database directly

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/store"
)

// startPortal runs serveWith as `portal serve` would, on loopback ports,
// and returns the running portal once it listens, and its log.
func startPortal(t *testing.T, dir string) (*portal, *syncBuffer) {
	t.Helper()
	p, log, _ := startPortalAt(t, dir, "127.0.0.1:0")
	return p, log
}

// startPortalAt is startPortal on a given listen address; stop shuts the
// portal down before the test ends (it is also called at cleanup).
func startPortalAt(t *testing.T, dir, listen string) (p *portal, log *syncBuffer, stop func()) {
	t.Helper()
	return startPortalWith(t, serveConfig{DataDir: dir, Listen: listen})
}

// startPortalWith is startPortalAt with more of the configuration; the
// gateway listens on loopback ports chosen at random.
func startPortalWith(t *testing.T, cfg serveConfig) (p *portal, log *syncBuffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *portal, 1)
	done := make(chan error, 1)
	cfg.GatewayListen = "127.0.0.1:0"
	cfg.LogLevel = cmp.Or(cfg.LogLevel, "info")
	// Sessions a test leaves running close at once when it stops the
	// portal; drain tests set their own timeout.
	cfg.DrainTimeout = cmp.Or(cfg.DrainTimeout, "0")
	// Every test portal has metrics, for tests to check their counts.
	cfg.MetricsListen = cmp.Or(cfg.MetricsListen, "127.0.0.1:0")
	log = &syncBuffer{}
	go func() {
		done <- serveWith(ctx, cfg, log, func(_ context.Context, p *portal) error { ready <- p; return nil })
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case p := <-ready:
		return p, log, stop
	case err := <-done:
		done <- err // for stop, at cleanup
		t.Fatalf("portal did not start: %v\n%s", err, log.String())
	case <-time.After(30 * time.Second):
		t.Fatal("portal did not start within 30 s")
	}
	return nil, nil, nil
}

// browser is an HTTP and WebSocket client with its own cookies.
type browser struct {
	t      *testing.T
	base   string
	client *http.Client
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // self-signed, loopback
	return &browser{t: t, base: base, client: &http.Client{Jar: jar, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) post(path string, form url.Values) *http.Response {
	b.t.Helper()
	resp, err := b.client.PostForm(b.base+path, form)
	if err != nil {
		b.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func (b *browser) signIn(name, password string) {
	if resp := b.post("/signin", url.Values{"username": {name}, "password": {password}}); resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("sign in as %s: %d", name, resp.StatusCode)
	}
}

// terminal opens the resource's terminal and returns the first control
// message and the connection.
func (b *browser) terminal(id int64) (control map[string]any, ws *websocket.Conn) {
	b.t.Helper()
	u, _ := url.Parse(b.base)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, Jar: b.client.Jar}
	ws, _, err := d.Dial(fmt.Sprintf("wss://%s/connect/%d/ws?cols=100&rows=30", u.Host, id), http.Header{"Origin": {b.base}})
	if err != nil {
		b.t.Fatalf("open terminal: %v", err)
	}
	b.t.Cleanup(func() { ws.Close() })
	ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		mt, p, err := ws.ReadMessage()
		if err != nil {
			b.t.Fatalf("read terminal: %v", err)
		}
		if mt == websocket.TextMessage {
			json.Unmarshal(p, &control)
			return control, ws
		}
	}
}

// readUntil reads the terminal until its output holds want, returning the
// control messages (text frames) that came meanwhile.
func readUntil(t *testing.T, ws *websocket.Conn, want string) (controls [][]byte) {
	t.Helper()
	var out bytes.Buffer
	for !strings.Contains(out.String(), want) {
		mt, p, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %q: %v; output:\n%s", want, err, out.String())
		}
		if mt == websocket.BinaryMessage {
			out.Write(p)
		} else {
			controls = append(controls, p)
		}
	}
	return controls
}

// TestServeTerminalHostKeyLifecycle runs terminals and host-key pinning
// through the portal against each kind of SSH server.
func TestServeTerminalHostKeyLifecycle(t *testing.T) {
	for _, server := range targets.SSHServers() {
		t.Run(server.Name, func(t *testing.T) {
			testServeTerminalHostKeyLifecycle(t, server.Start(t))
		})
	}
}

func testServeTerminalHostKeyLifecycle(t *testing.T, sshd *targets.SSHD) {
	ctx := context.Background()
	dir := t.TempDir()

	// The first admin from the command line, as a script would do it.
	var out bytes.Buffer
	err := run(ctx, []string{"users", "add", "root-admin", "--role", "admin", "--password-stdin", "--data", dir},
		strings.NewReader("admin-password-1\n"), &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), "created admin user root-admin") {
		t.Fatalf("users add: %v %q", err, out.String())
	}
	p, _ := startPortal(t, dir)
	st := p.Store
	hash := mustHash(t, "user-password-1")
	u, err := st.CreateUser(ctx, store.User{Name: "alice", Role: store.RoleUser}, hash)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := st.CreateResource(ctx, store.Resource{Name: "box", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User},
		&store.Secrets{Password: sshd.Password})
	st.CreateGrant(ctx, res.ID, "user", u.ID)

	alice := newBrowser(t, p.URL)
	alice.signIn("alice", "user-password-1")

	// First use pins the host key.
	c, ws := alice.terminal(res.ID)
	if c["type"] != "connected" {
		t.Fatalf("first connection: %v", c)
	}
	ws.WriteMessage(websocket.BinaryMessage, []byte("echo pinned-$((2+3))\n"))
	readUntil(t, ws, "pinned-5")
	ws.Close()
	got, _ := st.ResourceByID(ctx, res.ID)
	if got.HostKey != sshd.HostKey {
		t.Fatalf("pinned %q, want %q", got.HostKey, sshd.HostKey)
	}

	// A new host key is refused with both fingerprints.
	if err := sshd.RegenerateHostKey(ctx); err != nil {
		t.Fatal(err)
	}
	c, _ = alice.terminal(res.ID)
	if c["type"] != "error" || c["code"] != "host_key_mismatch" || !strings.Contains(c["message"].(string), "expected SHA256:") {
		t.Fatalf("changed host key: %v", c)
	}

	// The admin accepts the offered key; the next connection works.
	admin := newBrowser(t, p.URL)
	admin.signIn("root-admin", "admin-password-1")
	if resp := admin.post(fmt.Sprintf("/admin/resources/%d/hostkey", res.ID), url.Values{"action": {"accept"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("accept host key: %d", resp.StatusCode)
	}
	got, _ = st.ResourceByID(ctx, res.ID)
	if got.HostKey != sshd.HostKey {
		t.Fatal("accepted key not pinned")
	}
	if c, _ = alice.terminal(res.ID); c["type"] != "connected" {
		t.Fatalf("after accepting the key: %v", c)
	}

	// The embedded gateway keeps to the default segment's allowed networks.
	def, _ := st.SegmentByName(ctx, store.DefaultSegment)
	admin.post(fmt.Sprintf("/admin/segments/%d", def.ID), url.Values{"allowed_networks": {"10.0.0.0/8"}})
	if c, _ = alice.terminal(res.ID); c["type"] != "error" || c["code"] != "target_forbidden" {
		t.Fatalf("target outside the default segment's networks: %v", c)
	}
	admin.post(fmt.Sprintf("/admin/segments/%d", def.ID), url.Values{"allowed_networks": {""}})

	// A dead target is reported in words.
	sshd.Stop()
	c, _ = alice.terminal(res.ID)
	if c["type"] != "error" || c["code"] != "target_refused" {
		t.Fatalf("stopped target: %v", c)
	}
}

func mustHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := auth.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestUsersAddRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"users", "add", "bob", "--data", dir}, "pw-long-enough\n", "--password-stdin"},
		{[]string{"users", "add", "bob", "--role", "wizard", "--password-stdin", "--data", dir}, "pw-long-enough\n", "role"},
		{[]string{"users", "add", "bob", "--password-stdin", "--data", dir}, "short\n", "at least 10"},
		{[]string{"users", "add", "--password-stdin", "--data", dir}, "pw-long-enough\n", "name the user"},
	} {
		err := run(context.Background(), tc.args, strings.NewReader(tc.stdin), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want error containing %q", tc.args, err, tc.want)
		}
	}
}

// TestSessionEndDoesNotWaitForBrowser ends a terminal from the target's
// side with a browser that stops reading (and so never answers the close
// frame): the portal ends the session at once, not at its read deadline.
func TestSessionEndDoesNotWaitForBrowser(t *testing.T) {
	ctx := context.Background()
	sshd := targets.NewSSHD(t)
	p, _ := startPortal(t, t.TempDir())
	st := p.Store
	u, err := st.CreateUser(ctx, store.User{Name: "bob", Role: store.RoleUser}, mustHash(t, "user-password-2"))
	if err != nil {
		t.Fatal(err)
	}
	res, _ := st.CreateResource(ctx, store.Resource{Name: "box2", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User},
		&store.Secrets{Password: sshd.Password})
	st.CreateGrant(ctx, res.ID, "user", u.ID)
	bob := newBrowser(t, p.URL)
	bob.signIn("bob", "user-password-2")
	if c, ws := bob.terminal(res.ID); c["type"] != "connected" {
		t.Fatalf("connect: %v", c)
	} else {
		ws.WriteMessage(websocket.BinaryMessage, []byte("exit 0\n"))
	}
	// The read deadline is 75 s; the end must come long before.
	deadline := time.Now().Add(15 * time.Second)
	for {
		evs, err := st.SearchAudit(ctx, store.AuditFilter{Action: "session.end", Actor: "bob"})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the session did not end within 15 s of the shell's exit while the browser was not reading")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAuditVerify runs `portal audit verify` on an intact log and on one
// whose row was changed behind the portal's back.
func TestAuditVerify(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, name := range []string{"audit-a", "audit-b"} {
		if err := run(ctx, []string{"users", "add", name, "--role", "user", "--password-stdin", "--data", dir},
			strings.NewReader("a-long-password-1\n"), io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"audit", "verify", "--data", dir}, nil, &out, io.Discard); err != nil || !strings.Contains(out.String(), "chain intact") {
		t.Fatalf("intact log: %v %q", err, out.String())
	}
	db, err := sql.Open("sqlite3", filepath.Join(dir, "keyway.db"))
	if err != nil {
		t.Fatal(err)
	}
	// Someone with the database file drops the append-only trigger first.
	if _, err := db.Exec(`DROP TRIGGER audit_no_update; UPDATE audit_events SET actor = 'someone-else' WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	err = run(ctx, []string{"audit", "verify", "--data", dir}, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "audit event 1 was altered") {
		t.Fatalf("altered log: %v", err)
	}
}

func TestParseRetention(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, true}, {"0", 0, true}, {"90d", 90 * 24 * time.Hour, true}, {"2160h", 2160 * time.Hour, true},
		{"1d", 24 * time.Hour, true}, {"-3d", 0, false}, {"0d", 0, false}, {"30m", 0, false}, {"ninety", 0, false}, {"99999d", 0, false},
	} {
		got, err := parseRetention(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%q: %v %v, want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseExportsMax(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"", 0, true}, {"0", 0, true}, {"5120", 5120, true}, {"-1", 0, false}, {"5GB", 0, false}, {"99999999999", 0, false},
	} {
		got, err := parseExportsMax(tc.in)
		if (err == nil) != tc.ok || got != tc.want || (err != nil && !strings.Contains(err.Error(), "give a number of MiB")) {
			t.Errorf("%q: %v %v, want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestAdminTerminatesSession: an admin sees a running terminal on the
// Sessions page and ends it; the user is told why.
func TestAdminTerminatesSession(t *testing.T) {
	ctx := context.Background()
	sshd := targets.NewSSHD(t)
	dir := t.TempDir()
	if err := run(ctx, []string{"users", "add", "boss", "--role", "admin", "--password-stdin", "--data", dir},
		strings.NewReader("admin-password-3\n"), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	p, _ := startPortal(t, dir)
	st := p.Store
	c, ws := carolOpensTerminal(t, st, p.URL, sshd)
	if c["type"] != "connected" {
		t.Fatalf("connect: %v", c)
	}

	admin := newBrowser(t, p.URL)
	admin.signIn("boss", "admin-password-3")
	resp, err := admin.client.Get(p.URL + "/sessions")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`data-session="([A-Z2-7]+)"`).FindSubmatch(page)
	if m == nil || !bytes.Contains(page, []byte("carol")) || !bytes.Contains(page, []byte("box3")) {
		t.Fatalf("the Sessions page does not list carol's session:\n%s", page)
	}
	// The page refreshes its table alone: no layout, the session with its
	// running time, idle time and a Watch button.
	code, part := admin.get("/sessions?partial=1")
	if code != http.StatusOK || strings.Contains(part, "<html") || !strings.Contains(part, string(m[1])) ||
		!regexp.MustCompile(`<td class="nowrap">\d+s</td>`).MatchString(part) || !strings.Contains(part, ">Watch</a>") {
		t.Fatalf("the refreshed sessions table: %d\n%s", code, part)
	}
	// The admin watches, read-only, what carol types from now on.
	watchThenTerminate(t, st, admin, p.URL, string(m[1]), ws, nil)
}

// carolOpensTerminal adds user carol with a grant to resource box3 (sshd)
// in st, signs her in on the portal at base and opens her terminal: the
// session that TestAdminTerminatesSession and TestReplicasWatchAndTerminate
// watch and end. It returns the first message and the terminal.
func carolOpensTerminal(t *testing.T, st *store.Store, base string, sshd *targets.SSHD) (map[string]any, *websocket.Conn) {
	t.Helper()
	ctx := context.Background()
	u, _ := st.CreateUser(ctx, store.User{Name: "carol", Role: store.RoleUser}, mustHash(t, "user-password-3"))
	res, _ := st.CreateResource(ctx, store.Resource{Name: "box3", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User},
		&store.Secrets{Password: sshd.Password})
	st.CreateGrant(ctx, res.ID, "user", u.ID)
	carol := newBrowser(t, base)
	carol.signIn("carol", "user-password-3")
	return carol.terminal(res.ID)
}

// watchThenTerminate has admin, signed in on the portal at base, watch
// session id read-only, checks that what is typed on the user's terminal ws
// reaches the watcher, ends the session and checks that the user is told
// why and that the termination is audited in st as boss's. logs, if not
// nil, is the portal's log, shown when the watch cannot be opened.
func watchThenTerminate(t *testing.T, st *store.Store, admin *browser, base, id string, ws *websocket.Conn, logs fmt.Stringer) {
	t.Helper()
	bu, _ := url.Parse(base)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, Jar: admin.client.Jar}
	watch, _, err := d.Dial("wss://"+bu.Host+"/sessions/"+id+"/watch/ws", http.Header{"Origin": {admin.base}})
	if err != nil {
		var log string
		if logs != nil {
			log = logs.String()
		}
		t.Fatalf("watch through %s: %v\n%s", base, err, log)
	}
	defer watch.Close()
	watch.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, hello, err := watch.ReadMessage(); err != nil || !bytes.Contains(hello, []byte("read-only")) {
		t.Fatalf("watch hello: %s %v", hello, err)
	}
	ws.WriteMessage(websocket.BinaryMessage, []byte("echo watched-$((3*4))\n"))
	readUntil(t, watch, "watched-12")

	if resp := admin.post("/sessions/"+id+"/terminate", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("terminate through %s: %d", base, resp.StatusCode)
	}
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		mt, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("carol's terminal closed without saying why: %v", err)
		}
		if mt == websocket.TextMessage {
			if !bytes.Contains(msg, []byte(`"terminated"`)) || !bytes.Contains(msg, []byte("An administrator (boss) ended this session.")) {
				t.Fatalf("message: %s", msg)
			}
			break
		}
	}
	evs, _ := st.SearchAudit(context.Background(), store.AuditFilter{Action: "session.terminate"})
	if len(evs) != 1 || evs[0].Actor != "boss" {
		t.Fatalf("termination audited as %v", evs)
	}
}

func TestClientsDir(t *testing.T) {
	t.Parallel()
	if got := clientsDir("/srv/keyway/clients"); got != "/srv/keyway/clients" {
		t.Errorf("explicit --clients: %q", got)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	if got, want := clientsDir(""), filepath.Join(filepath.Dir(exe), "clients"); got != want {
		t.Errorf("default --clients: %q, want %q", got, want)
	}
}
