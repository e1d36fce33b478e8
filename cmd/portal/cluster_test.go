package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/gateways"
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
	dirB := replicaDataDir(t, dir)
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
	var aAddr, bAddr string
	var aOK, bOK bool
	waitWithin(t, 60*time.Second, "the replicas to agree on an available embedded gateway", func() bool {
		aAddr, aOK = embedded(a)
		bAddr, bOK = embedded(b)
		return aOK && bOK && aAddr == bAddr
	}, func() string { return fmt.Sprintf("a: %s %v, b: %s %v", aAddr, aOK, bAddr, bOK) })
	st := a.Store
	c, ws := carolOpensTerminal(t, st, a.URL, sshd)
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
	watchThenTerminate(t, st, admin, b.URL, id, ws, bLog)
}
