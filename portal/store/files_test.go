package store

import (
	"context"
	"github.com/keyway-dev/keyway/portal/store/dbtest"
	"os"
	"path/filepath"
	"testing"
)

// TestDatabaseFileModes checks that the database and its WAL and
// shared-memory files are readable by their owner only, whatever the
// umask (the tests run with the usual 022), and that an older portal's
// world-readable database is restricted on open.
func TestDatabaseFileModes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	check := func(t *testing.T, path string) {
		t.Helper()
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatalf("%s: %v", filepath.Base(p), err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want -rw-------", filepath.Base(p), fi.Mode().Perm())
			}
		}
	}
	t.Run("new database", func(t *testing.T) {
		t.Parallel()
		st, path := openTest(t, dbtest.SQLite)
		if _, err := st.CreateGroup(ctx, Group{Name: "g"}); err != nil { // writes the WAL
			t.Fatal(err)
		}
		check(t, path)
	})
	t.Run("database an older portal left readable", func(t *testing.T) {
		t.Parallel()
		st, path := openTest(t, dbtest.SQLite)
		st.CreateGroup(ctx, Group{Name: "g"})
		st.Close()
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			os.Chmod(p, 0o644)
		}
		key, _ := LoadOrCreateKey(filepath.Join(filepath.Dir(path), "secrets.key"))
		sealer, _ := NewSealer(key)
		st, err := Open(ctx, path, sealer)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		st.CreateGroup(ctx, Group{Name: "h"})
		check(t, path)
	})
}

// TestDeleteUnhashedSessions checks that sessions stored by token (as an
// older portal did) are dropped and hashed ones kept.
func TestDeleteUnhashedSessions(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		hashed := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
		for _, tok := range []string{"plain-token-of-43-characters-xxxxxxxxxxxxxx", hashed, "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"} {
			// scs's layouts: expiry a Julian day number in SQLite, a
			// timestamp in PostgreSQL.
			q := `INSERT INTO sessions (token, data, expiry) VALUES (?, x'00', 9e12)`
			if kind == dbtest.Postgres {
				q = `INSERT INTO sessions (token, data, expiry) VALUES (?, '\x00', now())`
			}
			if _, err := st.DB().Exec(q, tok); err != nil {
				t.Fatal(err)
			}
		}
		n, err := st.DeleteUnhashedSessions(ctx)
		if err != nil || n != 2 {
			t.Fatalf("deleted %d, %v; want 2", n, err)
		}
		var left string
		if err := st.DB().QueryRow(`SELECT token FROM sessions`).Scan(&left); err != nil || left != hashed {
			t.Fatalf("left %q, %v", left, err)
		}
	})
}
