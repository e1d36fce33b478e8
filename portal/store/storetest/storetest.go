// Package storetest opens real SQLite stores for tests.
package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keyway-dev/keyway/portal/store"
)

// Open opens a new store with its own secrets key in a temporary directory
// and closes it when the test ends.
func Open(t testing.TB) *store.Store {
	t.Helper()
	dir := t.TempDir()
	key, err := store.LoadOrCreateKey(filepath.Join(dir, "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "keyway.db"), sealer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
