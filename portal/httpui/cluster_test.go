package httpui

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/cluster"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
)

// clusterReplica is one portal replica of a cluster test.
type clusterReplica struct {
	ui       *Server
	f        fixture // the shared fixture with this replica's server
	internal string  // the internal listener's address
}

// newClusterReplica starts a replica named name on f's store and the
// cluster database pg, with the shared secrets key.
func newClusterReplica(t *testing.T, f *fixture, pg *targets.Postgres, name string, key []byte) *clusterReplica {
	t.Helper()
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(pg.User, pg.Password), Host: pg.Addr(), Path: "/" + pg.Database, RawQuery: "sslmode=disable"}
	// The store migrates the cluster's database, as `portal serve` opens
	// it before joining.
	sealer, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, u.String(), sealer)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	c, err := cluster.Open(ctx, cluster.Config{URL: u.String(), ID: name, Address: ln.Addr().String(), SecretsKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	reg, err := cluster.NewRegistry(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	d := f.ui.Deps
	d.Exports = nil
	d.Cluster = reg
	s := New(d)
	srv := httptestServer(t, s)
	in := cluster.ServeInternal(ln, c.Identity(), s.ForwardedWatch, nil)
	t.Cleanup(in.Close)
	r := &clusterReplica{ui: s, f: *f, internal: ln.Addr().String()}
	r.f.srv = srv
	return r
}

// TestWatchAndTerminateAcrossReplicas: a terminal runs on replica A; an
// admin signed in on replica B sees it on the Sessions page, watches it
// (B forwards the WebSocket to A's internal listener) and ends it (B
// tells A by NOTIFY). A's internal listener refuses clients without the
// replicas' key.
func TestWatchAndTerminateAcrossReplicas(t *testing.T) {
	f := newFixture(t)
	pg := targets.NewPostgres(t)
	key := make([]byte, 32)
	rand.Read(key)
	a := newClusterReplica(t, f, pg, "a", key)
	b := newClusterReplica(t, f, pg, "b", key)

	portalEnd, gwEnd := net.Pipe()
	t.Cleanup(func() { portalEnd.Close(); gwEnd.Close() })
	term := a.ui.live.AddForTest("W1", f.users["user"], f.resource, sessions.KindTerminal, portalEnd)
	t.Cleanup(func() { term.End("test over", "") })

	admin := b.f.client("admin")
	if code, body := b.f.get(admin, "/sessions?partial=1"); code != http.StatusOK || !strings.Contains(body, `data-session="W1"`) || !strings.Contains(body, "/sessions/W1/watch") {
		t.Fatalf("replica b's Sessions page (%d) lacks a's terminal or its Watch link:\n%s", code, body)
	}
	if code, _ := b.f.get(admin, "/sessions/W1/watch"); code != http.StatusOK {
		t.Fatalf("watch page on b: %d", code)
	}

	// Watch from B.
	bu, _ := url.Parse(b.f.srv.URL)
	dialer := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, Jar: admin.Jar} // the test server's own certificate
	ws, _, err := dialer.Dial("wss://"+bu.Host+"/sessions/W1/watch/ws", http.Header{"Origin": {b.f.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, p, err := ws.ReadMessage(); err != nil || !strings.Contains(string(p), "Watching user1 on web") {
		t.Fatalf("hello through b: %q %v", p, err)
	}
	term.Watchers.Send([]byte("output-on-a"))
	if _, p, err := ws.ReadMessage(); err != nil || string(p) != "output-on-a" {
		t.Fatalf("a's output through b: %q %v", p, err)
	}
	if ev, ok := f.lastAudit("session.watch"); !ok || ev.Actor != "admin1" {
		t.Fatalf("watch not audited: %+v", ev)
	}

	// Terminate from B: A cuts the terminal's connection.
	resp := b.f.do(admin, "POST", "/sessions/W1/terminate", url.Values{}, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("terminate on b: %d %s", resp.StatusCode, body)
	}
	gwEnd.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = gwEnd.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
		t.Fatalf("a's terminal still open after b's terminate: %v", err)
	}
	if ev, ok := f.lastAudit("session.terminate"); !ok || ev.Actor != "admin1" {
		t.Fatalf("terminate not audited: %+v", ev)
	}
	// A's relay ends the session; the viewer on B is told.
	term.End("terminated", "")
	if _, p, err := ws.ReadMessage(); err != nil || !strings.Contains(string(p), "exit") {
		t.Fatalf("viewer on b after the end: %q %v", p, err)
	}
	if _, body := b.f.get(admin, "/sessions?partial=1"); strings.Contains(body, "W1") {
		t.Fatal("an ended session is still listed on b")
	}

	// The internal listener takes only the replicas' key.
	other := make([]byte, 32)
	rand.Read(other)
	stranger, err := cluster.PeerIdentity(other)
	if err != nil {
		t.Fatal(err)
	}
	self, _ := cluster.PeerIdentity(key)
	for name, cfg := range map[string]*tls.Config{
		"no client key":    {InsecureSkipVerify: true},
		"another key":      wire.ClientTLSConfig(stranger, self.PublicKey()),
		"another key, any": func() *tls.Config { c := wire.ClientTLSConfig(stranger, nil); c.VerifyPeerCertificate = nil; return c }(),
	} {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		req, _ := http.NewRequest("GET", "https://"+a.internal+"/internal/sessions/W1/watch", nil)
		req.Header.Set("Keyway-Viewer", "1")
		req.Header.Set("Keyway-Client-Addr", "192.0.2.1")
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("%s: internal listener answered %d", name, resp.StatusCode)
		}
	}
}

// TestSyncSettings: trusted proxies an admin saved through another
// replica (here: straight into the shared store) are taken up by
// SyncSettings, and an unchanged store changes nothing.
func TestSyncSettings(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.ui.SyncSettings(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.ui.ClientInfo.Trusted(); len(got) != 0 {
		t.Fatalf("trusted at start: %v", got)
	}
	if err := f.store.SetSetting(ctx, proxiesSetting, "10.1.0.0/16"); err != nil {
		t.Fatal(err)
	}
	if err := f.ui.SyncSettings(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.ui.ClientInfo.Trusted(); len(got) != 1 || got[0].String() != "10.1.0.0/16" {
		t.Fatalf("trusted after another replica's save: %v", got)
	}
}
