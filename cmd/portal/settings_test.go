package main

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/portal/audit"
)

// TestServeLoadsSettings: the trusted proxies saved on the Settings page
// apply from the start, and settings that do not load stop the start.
func TestServeLoadsSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if err := run(ctx, []string{"users", "add", "carol", "--role", "user", "--password-stdin", "--data", dir},
		strings.NewReader("a-long-password-1\n"), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	setSetting := func(key, value string) {
		t.Helper()
		db, err := sql.Open("sqlite3", filepath.Join(dir, "keyway.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(`INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
			t.Fatal(err)
		}
	}

	setSetting("trusted_proxies", "not-a-network")
	cfg := serveConfig{DataDir: dir, Listen: "127.0.0.1:0", GatewayListen: "127.0.0.1:0", LogLevel: "error"}
	// Should it start all the same, it stops at once (and the test fails).
	started := func(context.Context, *portal) error { return errors.New("started with settings that do not load") }
	if err := serveWith(ctx, cfg, io.Discard, started); err == nil || !strings.Contains(err.Error(), "trusted proxies") {
		t.Fatalf("serve with unreadable trusted proxies: %v", err)
	}

	setSetting("trusted_proxies", "127.0.0.0/8")
	p, _ := startPortal(t, dir)
	b := newBrowser(t, p.URL)
	req, _ := http.NewRequest("POST", p.URL+"/signin", strings.NewReader(url.Values{"username": {"carol"}, "password": {"wrong"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-For", "198.51.100.23")
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var addr string
	if err := p.Store.DB().QueryRow(`SELECT client_addr FROM audit_events WHERE action = ? ORDER BY id DESC LIMIT 1`, audit.ActionSignIn).Scan(&addr); err != nil {
		t.Fatal(err)
	}
	if addr != "198.51.100.23" {
		t.Fatalf("sign-in audited from %q, want the address the trusted proxy forwarded", addr)
	}
}
