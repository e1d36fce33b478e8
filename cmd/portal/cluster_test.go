package main

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keyway-dev/keyway/e2e/targets"
)

// TestServeClusterMode: `portal serve --cluster-database postgres://…`
// joins the cluster with its internal listener's address, leads (it is
// alone), and leaves when it stops; a URL that is not PostgreSQL is
// refused in words.
func TestServeClusterMode(t *testing.T) {
	pg := targets.NewPostgres(t)
	dsn := (&url.URL{Scheme: "postgres", User: url.UserPassword(pg.User, pg.Password), Host: pg.Addr(), Path: "/" + pg.Database, RawQuery: "sslmode=disable"}).String()
	_, log, stop := startPortalWith(t, serveConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0", ClusterDatabase: dsn, ClusterListen: "127.0.0.1:0"})
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

	err = serveWith(ctx, serveConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0", GatewayListen: "127.0.0.1:0", LogLevel: "info", ClusterDatabase: "mysql://x"}, &syncBuffer{}, nil)
	if err == nil || !strings.Contains(err.Error(), "needs a PostgreSQL database") {
		t.Fatalf("a MySQL URL: %v", err)
	}
}
