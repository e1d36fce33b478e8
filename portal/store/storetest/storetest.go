// Package storetest opens real stores for tests, on SQLite or on
// PostgreSQL (see dbtest: a package opening PostgreSQL stores calls Main
// from its TestMain).
package storetest

import (
	"context"
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
// started, if any: call it from TestMain.
func Main(m *testing.M) { dbtest.Main(m) }

// Each runs fn as one parallel subtest per kind of database.
func Each(t *testing.T, fn func(t *testing.T, kind Kind)) { dbtest.Each(t, fn) }

// Open opens a new SQLite store with its own secrets key in a temporary
// directory and closes it when the test ends.
func Open(t testing.TB) *store.Store { return OpenKind(t, SQLite) }

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
