package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/store"
)

// TestServeEndsConnectionsLeftRunning checks that a session an earlier
// run of the portal left running in the connection log (it was killed)
// is marked interrupted when the portal starts again, and said in its log.
func TestServeEndsConnectionsLeftRunning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if err := run(ctx, []string{"users", "add", "carol", "--role", "user", "--password-stdin", "--data", dir},
		strings.NewReader("a-long-password-1\n"), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	st, err := openStore(ctx, serveConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Hour)
	id, err := st.AddConnection(ctx, store.Connection{Start: start, User: "carol", Resource: "web", Protocol: "ssh", Result: store.ConnectionConnected})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	before := time.Now()
	p, log := startPortal(t, dir)
	c, err := p.Store.ConnectionByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Running() || c.Reason != store.ReasonInterrupted || c.End.Before(before.Truncate(time.Millisecond)) {
		t.Errorf("after a restart the session is %+v, want ended at the start, interrupted", c)
	}
	if !strings.Contains(log.String(), "left running are marked interrupted") || !strings.Contains(log.String(), "sessions=1") {
		t.Errorf("not logged:\n%s", log.String())
	}
}
