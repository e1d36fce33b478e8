// Package storetest opens real stores for tests, on SQLite or on
// PostgreSQL (see dbtest: a package opening PostgreSQL stores calls Main
// from its TestMain).
package storetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/portal/store/dbtest"
)

// Kind is a database the store runs on.
type Kind = dbtest.Kind

// The kinds of database.
const (
	SQLite   = dbtest.SQLite
	Postgres = dbtest.Postgres
)

// Main runs a package's tests and stops the PostgreSQL server they
// started, if any: call it from TestMain. Their PostgreSQL databases are
// copies of one migrated once.
func Main(m *testing.M) { dbtest.MainWithTemplate(m, migrate) }

// migrate brings the database at url to the current schema.
func migrate(ctx context.Context, url string) error {
	sealer, err := store.NewSealer(make([]byte, 32))
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, url, sealer)
	if err != nil {
		return err
	}
	return st.Close()
}

// Each runs fn as one parallel subtest per kind of database.
func Each(t *testing.T, fn func(t *testing.T, kind Kind)) { dbtest.Each(t, fn) }

// DatabaseEnv names the environment variable that picks the database
// Open gives: sqlite (the default) or postgres, to run a whole package's
// tests on PostgreSQL: KEYWAY_TEST_DATABASE=postgres go test ./portal/...
const DatabaseEnv = "KEYWAY_TEST_DATABASE"

// Open opens a new store with its own secrets key and closes it when the
// test ends: SQLite in a temporary directory, or PostgreSQL when
// DatabaseEnv says so.
func Open(t testing.TB) *store.Store {
	t.Helper()
	switch kind := Kind(os.Getenv(DatabaseEnv)); kind {
	case "", SQLite:
		return OpenKind(t, SQLite)
	case Postgres:
		return OpenKind(t, Postgres)
	default:
		t.Fatalf("%s=%s: want sqlite or postgres", DatabaseEnv, kind)
		return nil
	}
}

// OpenKind opens a new, empty store of that kind with its own secrets key
// and closes it when the test ends.
func OpenKind(t testing.TB, kind Kind) *store.Store {
	t.Helper()
	loc := dbtest.NewDatabase(t, kind)
	st, err := store.Open(context.Background(), loc, NewSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// NewSealer returns a sealer with a new secrets key in a temporary
// directory.
func NewSealer(t testing.TB) *store.Sealer {
	t.Helper()
	key, err := store.LoadOrCreateKey(filepath.Join(t.TempDir(), "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return sealer
}
