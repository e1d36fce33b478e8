package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/store"
)

// TestServeClusterMode: `portal serve --database postgres://…` joins the
// cluster with its internal listener's address, leads (it is alone), and
// leaves when it stops.
func TestServeClusterMode(t *testing.T) {
	pg := targets.NewPostgres(t)
	dsn := pg.DSN()
	_, log, stop := startPortalWith(t, serveConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Database: dsn, ClusterListen: "127.0.0.1:0"})
	ctx := context.Background()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var id, addr string
	if err := db.QueryRow(ctx, `SELECT id, address FROM cluster_replicas`).Scan(&id, &addr); err != nil {
		t.Fatalf("no replica registered: %v\n%s", err, log.String())
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") || !strings.Contains(log.String(), "cluster: internal listener") {
		t.Fatalf("replica %s at %q\n%s", id, addr, log.String())
	}
	stop()
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM cluster_replicas`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d replicas after stop (%v)", n, err)
	}
}

// TestReplicasWatchAndTerminate: two `portal serve` replicas in cluster
// mode on one PostgreSQL, each with its own data directory holding the
// keys replicas share (as the Helm chart copies them). Carol's terminal to a real sshd runs on
// replica A; an admin signed in on replica B finds it on B's Sessions
// page, watches what carol types (B forwards the watch to A's internal
// listener) and ends it (B tells A): carol is told an administrator ended
// it, and the end is audited once.
func TestReplicasWatchAndTerminate(t *testing.T) {
	ctx := context.Background()
	pg := targets.NewPostgres(t)
	sshd := targets.NewSSHD(t)
	dsn := pg.DSN()
	dir := t.TempDir()
	if err := run(ctx, []string{"users", "add", "boss", "--role", "admin", "--password-stdin", "--data", dir, "--database", dsn},
		strings.NewReader("admin-password-3\n"), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	a, aLog, _ := startPortalWith(t, serveConfig{DataDir: dir, Listen: "127.0.0.1:0", Database: dsn, ClusterListen: "127.0.0.1:0"})
	dirB := t.TempDir()
	for _, f := range []string{"secrets.key", "portal-identity.pem", filepath.Join("gateway", "identity.pem")} {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(filepath.Join(dirB, f)), 0o700)
		if err := os.WriteFile(filepath.Join(dirB, f), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, bLog, _ := startPortalWith(t, serveConfig{DataDir: dirB, Listen: "127.0.0.1:0", Database: dsn, ClusterListen: "127.0.0.1:0"})
	// Both replicas wrote their own embedded gateway's ports into the one
	// row (replicas in production have the same ports); wait until A has
	// taken up B's and checked them, so that carol's connection finds it.
	embedded := func(p *portal) (addr string, ok bool) {
		for _, g := range p.Pool.Statuses() {
			if g.Embedded {
				return g.SSHAddr, g.State == gateways.StateAvailable
			}
		}
		return "", false
	}
	deadline := time.Now().Add(60 * time.Second)
	for tick := time.NewTicker(50 * time.Millisecond); ; <-tick.C {
		aAddr, aOK := embedded(a)
		bAddr, bOK := embedded(b)
		if aOK && bOK && aAddr == bAddr {
			tick.Stop()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replicas do not agree on an available embedded gateway: %s %v, %s %v", aAddr, aOK, bAddr, bOK)
		}
	}
	st := a.Store
	u, _ := st.CreateUser(ctx, store.User{Name: "carol", Role: store.RoleUser}, mustHash(t, "user-password-3"))
	res, _ := st.CreateResource(ctx, store.Resource{Name: "box3", Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User},
		&store.Secrets{Password: sshd.Password})
	st.CreateGrant(ctx, res.ID, "user", u.ID)
	carol := newBrowser(t, a.URL)
	carol.signIn("carol", "user-password-3")
	c, ws := carol.terminal(res.ID)
	if c["type"] != "connected" {
		t.Fatalf("connect on a: %v\n%s", c, aLog.String())
	}

	admin := newBrowser(t, b.URL)
	admin.signIn("boss", "admin-password-3")
	code, part := admin.get("/sessions?partial=1")
	m := regexp.MustCompile(`data-session="([A-Z2-7]+)"`).FindStringSubmatch(part)
	if code != http.StatusOK || m == nil || !strings.Contains(part, "carol") || !strings.Contains(part, ">Watch</a>") {
		t.Fatalf("replica b's Sessions page (%d) does not list carol's session on a:\n%s", code, part)
	}
	id := m[1]

	bu, _ := url.Parse(b.URL)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, Jar: admin.client.Jar}
	watch, _, err := d.Dial("wss://"+bu.Host+"/sessions/"+id+"/watch/ws", http.Header{"Origin": {admin.base}})
	if err != nil {
		t.Fatalf("watch on b: %v\n%s", err, bLog.String())
	}
	defer watch.Close()
	watch.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, hello, err := watch.ReadMessage(); err != nil || !bytes.Contains(hello, []byte("read-only")) {
		t.Fatalf("watch hello through b: %s %v", hello, err)
	}
	ws.WriteMessage(websocket.BinaryMessage, []byte("echo watched-$((3*4))\n"))
	readUntil(t, watch, "watched-12")

	if resp := admin.post("/sessions/"+id+"/terminate", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("terminate on b: %d", resp.StatusCode)
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
	evs, _ := st.SearchAudit(ctx, store.AuditFilter{Action: "session.terminate"})
	if len(evs) != 1 || evs[0].Actor != "boss" {
		t.Fatalf("termination audited as %v", evs)
	}
}
