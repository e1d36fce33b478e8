package store

import (
	"context"
	"errors"
	"github.com/keyway-dev/keyway/portal/store/dbtest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBackupWhileWriting copies a database of several backup steps while
// another connection writes between the steps: the writes go through at
// once (the copy blocks no writer), the copy does not restart, and it is
// the snapshot of when it began, intact and at this binary's schema.
func TestBackupWhileWriting(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, path := openTest(t, dbtest.SQLite)
	// About 12 MiB: three steps of backupPagesPerStep 4 KiB pages at least.
	big := strings.Repeat("x", 64<<10)
	for i := range 200 {
		if _, err := st.AppendAudit(ctx, func(prev string, id int64) (AuditEvent, error) {
			return AuditEvent{ID: id, Time: time.Now(), Actor: "filler", Action: "test", Details: map[string]string{"pad": big, "i": string(rune('a' + i%26))}, PrevHash: prev, Hash: "h"}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	before, err := st.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy.db")
	writes := 0
	stats, err := Backup(ctx, path, dst, func(copied, total int) {
		// A write between steps, from the portal's own pool: it must
		// not wait for the copy.
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := st.AppendAudit(wctx, func(prev string, id int64) (AuditEvent, error) {
			return AuditEvent{ID: id, Time: time.Now(), Actor: "during", Action: "test", PrevHash: prev, Hash: "h"}, nil
		}); err != nil {
			t.Errorf("write during the backup (after %d of %d pages): %v", copied, total, err)
		}
		writes++
	})
	if err != nil {
		t.Fatal(err)
	}
	if writes < 2 || stats.Steps != writes+1 || stats.Pages < 3*backupPagesPerStep {
		t.Fatalf("%d writes during %d steps of %d pages: want a copy of at least 3 steps, written between each", writes, stats.Steps, stats.Pages)
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("copy: %v %v", fi, err)
	}
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if _, err := os.Stat(dst + suffix); err == nil {
			t.Errorf("the copy left %s: it should be one file", dst+suffix)
		}
	}
	cp, err := OpenReadOnly(ctx, dst, st.sealer)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	schema, err := cp.Check(ctx)
	if err != nil || schema != SchemaVersion() || schema == 0 {
		t.Fatalf("check the copy: schema %d (want %d), %v", schema, SchemaVersion(), err)
	}
	got, err := cp.Count(ctx)
	if err != nil || got != before {
		t.Fatalf("the copy holds %+v, want the snapshot %+v: %v", got, before, err)
	}
	now, _ := st.Count(ctx)
	if now.AuditEvents != before.AuditEvents+int64(writes) {
		t.Fatalf("the source has %d events, want %d", now.AuditEvents, before.AuditEvents+int64(writes))
	}
}

// TestBackupRefusesOverwrite: the copy never replaces an existing file,
// and a missing source is an error naming it.
func TestBackupRefusesOverwrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, path := openTest(t, dbtest.SQLite)
	dst := filepath.Join(t.TempDir(), "copy.db")
	os.WriteFile(dst, []byte("keep"), 0o600)
	if _, err := Backup(ctx, path, dst, nil); err == nil {
		t.Fatal("overwrote an existing file")
	}
	if b, _ := os.ReadFile(dst); string(b) != "keep" {
		t.Fatalf("existing file changed: %q", b)
	}
	if _, err := Backup(ctx, filepath.Join(t.TempDir(), "none.db"), dst+"2", nil); err == nil || !strings.Contains(err.Error(), "none.db") {
		t.Fatalf("missing source: %v", err)
	}
}

// TestCheckDamaged: a database with a page overwritten fails Check with
// SQLite's findings; a file that is no database says so.
func TestCheckDamaged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, path := openTest(t, dbtest.SQLite)
	for i := range 50 {
		st.AppendAudit(ctx, func(prev string, id int64) (AuditEvent, error) {
			return AuditEvent{ID: id, Time: time.Now(), Actor: strings.Repeat("a", 500), Action: "test", Details: map[string]string{"i": string(rune('a' + i%26))}, PrevHash: prev, Hash: "h"}, nil
		})
	}
	dst := filepath.Join(t.TempDir(), "copy.db")
	if _, err := Backup(ctx, path, dst, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(dst)
	// Garbage over the middle of the file: index and table pages.
	for i := len(b) / 2; i < len(b)/2+8192 && i < len(b); i++ {
		b[i] = 0x5a
	}
	os.WriteFile(dst, b, 0o600)
	cp, err := OpenReadOnly(ctx, dst, st.sealer)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if _, err := cp.Check(ctx); err == nil || !strings.Contains(err.Error(), "the database is damaged") {
		t.Fatalf("a damaged database: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.db")
	os.WriteFile(junk, []byte(strings.Repeat("not a database ", 400)), 0o600)
	j, err := OpenReadOnly(ctx, junk, st.sealer)
	if err == nil {
		_, err = j.Check(ctx)
		j.Close()
	}
	if !errors.Is(err, ErrNotDatabase) {
		t.Fatalf("junk: %v", err)
	}
}
