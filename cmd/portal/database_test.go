package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/e2e/targets"
)

// TestServePostgres runs the portal on PostgreSQL (--database): the first
// admin made from the command line signs in over HTTPS, the web session
// lives in PostgreSQL (a restarted portal still knows it) and nothing is
// written to a SQLite file; the log shows the URL without its password.
func TestServePostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg := targets.NewPostgres(t)
	dir := t.TempDir()

	var out bytes.Buffer
	err := run(ctx, []string{"users", "add", "root-admin", "--role", "admin", "--password-stdin", "--data", dir, "--database", pg.DSN()},
		strings.NewReader("admin-password-1\n"), &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), "created admin user root-admin") {
		t.Fatalf("users add: %v %q", err, out.String())
	}
	cfg := serveConfig{DataDir: dir, Listen: "127.0.0.1:0", Database: pg.DSN()}
	p, log, stop := startPortalWith(t, cfg)
	if !p.Store.Postgres() {
		t.Fatal("the portal opened SQLite")
	}
	admin := newBrowser(t, p.URL)
	admin.signIn("root-admin", "admin-password-1")
	if code := admin.status("/admin/users"); code != http.StatusOK {
		t.Fatalf("users page after sign-in: %d", code)
	}
	var sessions int
	if err := p.Store.DB().QueryRow(`SELECT COUNT(*) FROM sessions`).Scan(&sessions); err != nil || sessions != 1 {
		t.Fatalf("%d web sessions in PostgreSQL, %v; want 1", sessions, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keyway.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a SQLite file was made beside PostgreSQL: %v", err)
	}
	if strings.Contains(log.String(), pg.Password) || !strings.Contains(log.String(), "xxxxx@"+pg.Addr()) {
		t.Errorf("the log shows the password, or not the database:\n%s", log.String())
	}

	// Another portal process on the same database knows the session.
	stop()
	p2, _, _ := startPortalWith(t, cfg)
	admin.base = p2.URL
	if code := admin.status("/admin/users"); code != http.StatusOK {
		t.Fatalf("users page on a restarted portal: %d", code)
	}
}

func (b *browser) status(path string) int {
	b.t.Helper()
	resp, err := b.client.Get(b.base + path)
	if err != nil {
		b.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestDatabaseFlag: --database takes a PostgreSQL URL only, and the
// SQLite-only commands say what to use instead.
func TestDatabaseFlag(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"users", "add", "bob", "--password-stdin", "--data", dir, "--database", "/tmp/other.db"}, "give a postgres:// URL"},
		{[]string{"backup", "--to", filepath.Join(dir, "b.tar"), "--data", dir, "--database", "postgres://u:pw@127.0.0.1:1/k"}, "use pg_dump"},
		{[]string{"restore", "--from", filepath.Join(dir, "b.tar"), "--data", dir, "--database", "postgres://u:pw@127.0.0.1:1/k"}, "use pg_restore"},
		{[]string{"users", "add", "bob", "--password-stdin", "--data", dir, "--database", "postgres://u:s3cret@127.0.0.1:1/k?sslmode=disable"}, "cannot reach PostgreSQL at 127.0.0.1:1"},
	} {
		err := run(ctx, tc.args, strings.NewReader("pw-long-enough\n"), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
