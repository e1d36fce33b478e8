package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// TestAuditVerifyWithCheckpoints runs a portal (which writes checkpoints at
// start and at shutdown), then tampers with the database as someone
// without the secrets key could, and runs `portal audit verify`.
func TestAuditVerifyWithCheckpoints(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		sql  func(db *sql.DB) error
		want string
	}{
		{"rewrite a row", func(db *sql.DB) error {
			_, err := db.Exec(`UPDATE audit_events SET actor = 'someone-else' WHERE id = 2`)
			return err
		}, "audit event 2 was altered"},
		{"delete the newest rows", func(db *sql.DB) error {
			_, err := db.Exec(`DELETE FROM audit_events WHERE id >= (SELECT MAX(id) - 1 FROM audit_events)`)
			return err
		}, "are missing: the checkpoint of"},
		{"rewrite a row and recompute plain hashes", func(db *sql.DB) error {
			return rechainPlain(db, `UPDATE audit_events SET actor = 'someone-else' WHERE id = 2`)
		}, "differs from the checkpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dir := t.TempDir()
			for _, name := range []string{"audit-a", "audit-b"} {
				if err := run(ctx, []string{"users", "add", name, "--role", "user", "--password-stdin", "--data", dir},
					strings.NewReader("a-long-password-1\n"), io.Discard, io.Discard); err != nil {
					t.Fatal(err)
				}
			}
			p, log, stop := startPortalAt(t, dir, "127.0.0.1:0")
			b := newBrowser(t, p.URL)
			for range 3 { // three failed sign-ins, audited
				b.client.PostForm(p.URL+"/signin", map[string][]string{"username": {"audit-a"}, "password": {"wrong-password-1"}})
			}
			stop()
			if !strings.Contains(log.String(), "audit checkpoint") {
				t.Fatalf("no checkpoint in the log:\n%s", log.String())
			}
			var out bytes.Buffer
			if err := run(ctx, []string{"audit", "verify", "--data", dir}, nil, &out, io.Discard); err != nil ||
				!strings.Contains(out.String(), "chain intact") || !strings.Contains(out.String(), "every event is chained with HMAC-SHA256") ||
				!strings.Contains(out.String(), "latest checkpoint: event ") || !strings.Contains(out.String(), "; 0 events after it") {
				t.Fatalf("intact log: %v %q", err, out.String())
			}
			if fi, err := os.Stat(filepath.Join(dir, "audit-checkpoints")); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("checkpoint file: %v %v", fi, err)
			}
			// A copy shipped elsewhere is checked the same way.
			shipped := filepath.Join(t.TempDir(), "shipped")
			cps, _ := os.ReadFile(filepath.Join(dir, "audit-checkpoints"))
			os.WriteFile(shipped, cps, 0o600)
			os.Remove(filepath.Join(dir, "audit-checkpoints"))

			db, err := sql.Open("sqlite3", filepath.Join(dir, "keyway.db"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(`DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete`); err != nil {
				t.Fatal(err)
			}
			if err := tc.sql(db); err != nil {
				t.Fatal(err)
			}
			db.Close()
			err = run(ctx, []string{"audit", "verify", "--data", dir, "--checkpoints", shipped}, nil, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("verify: %v, want %q", err, tc.want)
			}
		})
	}
}

// rechainPlain runs change, then recomputes every row's plain SHA-256
// chain, as whoever has the database but not the key can.
func rechainPlain(db *sql.DB, change string) error {
	if _, err := db.Exec(change); err != nil {
		return err
	}
	rows, err := db.Query(`SELECT id, time, actor, action, target, client_addr, outcome, reason, details FROM audit_events ORDER BY id`)
	if err != nil {
		return err
	}
	var evs []store.AuditEvent
	for rows.Next() {
		var e store.AuditEvent
		var ns int64
		var details string
		if err := rows.Scan(&e.ID, &ns, &e.Actor, &e.Action, &e.Target, &e.ClientAddr, &e.Outcome, &e.Reason, &details); err != nil {
			return err
		}
		e.Time = time.Unix(0, ns).UTC()
		if err := json.Unmarshal([]byte(details), &e.Details); err != nil {
			return err
		}
		evs = append(evs, e)
	}
	rows.Close()
	prev := strings.Repeat("0", 64)
	for _, e := range evs {
		e.PrevHash = prev
		e.Hash = audit.Hash(e)
		if _, err := db.Exec(`UPDATE audit_events SET prev_hash = ?, hash = ? WHERE id = ?`, e.PrevHash, e.Hash, e.ID); err != nil {
			return err
		}
		prev = e.Hash
	}
	return nil
}

// TestServeKeepsDataPrivate checks what a running portal leaves on disk:
// a data directory only its owner can enter, database files only its
// owner can read, and no web session token in the database; sessions an
// older portal stored by token are dropped at start.
func TestServeKeepsDataPrivate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if err := run(ctx, []string{"users", "add", "carol", "--role", "user", "--password-stdin", "--data", dir},
		strings.NewReader("a-long-password-1\n"), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	// A session row as an older portal wrote it: keyed by the token.
	db, err := sql.Open("sqlite3", filepath.Join(dir, "keyway.db"))
	if err != nil {
		t.Fatal(err)
	}
	const oldToken = "old-plain-token-xxxxxxxxxxxxxxxxxxxxxxxxxxx"
	if _, err := db.Exec(`INSERT INTO sessions (token, data, expiry) VALUES (?, x'00', 9e12)`, oldToken); err != nil {
		t.Fatal(err)
	}
	db.Close()

	p, log := startPortal(t, dir)
	if !strings.Contains(log.String(), "signed out web sessions stored before session tokens were hashed") {
		t.Errorf("the dropped sessions were not logged:\n%s", log.String())
	}
	b := newBrowser(t, p.URL)
	b.signIn("carol", "a-long-password-1")
	u, _ := url.Parse(p.URL)
	var cookie string
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == "keyway_session" {
			cookie = c.Value
		}
	}
	if cookie == "" {
		t.Fatal("no session cookie after signing in")
	}
	var n, leaked int
	if err := p.Store.DB().QueryRow(`SELECT COUNT(*), COALESCE(SUM(token = ? OR token = ? OR instr(data, ?) > 0), 0) FROM sessions`, cookie, oldToken, cookie).Scan(&n, &leaked); err != nil {
		t.Fatal(err)
	}
	if n != 1 || leaked != 0 {
		t.Fatalf("sessions table: %d rows, %d holding a token; want 1 and 0", n, leaked)
	}
	for name, want := range map[string]os.FileMode{".": 0o700, "keyway.db": 0o600, "keyway.db-wal": 0o600, "keyway.db-shm": 0o600,
		"secrets.key": 0o600, "audit-checkpoints": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
}

// TestAuditVerifyMigratedLog checks `portal audit verify` on a log an older
// portal began with plain SHA-256 hashes: it passes and says from which
// event the HMAC chain starts.
func TestAuditVerifyMigratedLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := openStore(ctx, serveConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // as the older portal wrote them
		if _, err := st.AppendAudit(ctx, func(prev string, id int64) (store.AuditEvent, error) {
			if prev == "" {
				prev = strings.Repeat("0", 64)
			}
			e := store.AuditEvent{ID: id, Time: time.Now().UTC().Truncate(time.Microsecond), Actor: "old", Action: audit.ActionSignIn,
				Outcome: audit.OutcomeSuccess, Details: map[string]string{"n": strconv.Itoa(i)}, PrevHash: prev}
			e.Hash = audit.Hash(e)
			return e, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	if err := run(ctx, []string{"users", "add", "dave", "--role", "user", "--password-stdin", "--data", dir},
		strings.NewReader("a-long-password-1\n"), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"audit", "verify", "--data", dir}, nil, &out, io.Discard); err != nil ||
		!strings.Contains(out.String(), "4 events, chain intact") ||
		!strings.Contains(out.String(), "events 1 to 3 were written before keyed chaining") ||
		!strings.Contains(out.String(), "the HMAC chain starts at event 4") {
		t.Fatalf("migrated log: %v %q", err, out.String())
	}
}
