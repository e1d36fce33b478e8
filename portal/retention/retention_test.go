package retention

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/objstore"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/portal/store/storetest"
	"github.com/keyway-dev/keyway/recordings/storage"
)

func TestSweepDeletesExpiredRecordings(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t)
	dir, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	log := newAudit(t, st, func() time.Time { return now })
	// Recordings 1 to 700 days old, one a day, each with its file; one
	// file is already gone.
	for age := 1; age <= 700; age++ {
		start := now.Add(-time.Duration(age) * 24 * time.Hour)
		rel := fmt.Sprintf("r/%d.cast", age)
		if age != 400 {
			os.MkdirAll(filepath.Join(dir.Root(), "r"), 0o700)
			if err := os.WriteFile(filepath.Join(dir.Root(), rel), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.AddRecording(ctx, store.Recording{SessionID: fmt.Sprintf("s%d", age), User: "u", Resource: "r", Protocol: "ssh",
			Gateway: "g", Format: "asciicast", Start: start, End: start.Add(time.Minute), Path: rel}, "text"); err != nil {
			t.Fatal(err)
		}
	}
	j := &Job{Store: st, Recordings: dir, Audit: log, Period: 90 * 24 * time.Hour, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }}
	n, err := j.Sweep(ctx)
	if err != nil || n != 700-90 {
		t.Fatalf("deleted %d (%v), want %d", n, err, 700-90)
	}
	left, _ := st.SearchRecordings(ctx, store.RecordingFilter{Limit: 1000})
	if len(left) != 90 {
		t.Fatalf("%d recordings left, want 90 (up to 90 days old)", len(left))
	}
	if _, err := os.Stat(filepath.Join(dir.Root(), "r/200.cast")); !os.IsNotExist(err) {
		t.Fatalf("file of a deleted recording: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir.Root(), "r/10.cast")); err != nil {
		t.Fatalf("file of a kept recording: %v", err)
	}
	evs, _ := log.Search(ctx, store.AuditFilter{Action: audit.ActionRecordingDelete, Limit: 1000})
	if len(evs) != 700-90 || evs[0].Actor != "retention" {
		t.Fatalf("%d deletions audited, want %d", len(evs), 700-90)
	}
	// Nothing more to do; a zero period keeps everything.
	if n, err := j.Sweep(ctx); n != 0 || err != nil {
		t.Fatalf("second sweep: %d %v", n, err)
	}
	j.Period = 0
	j.Now = func() time.Time { return now.Add(10 * 365 * 24 * time.Hour) }
	if n, _ := j.Sweep(ctx); n != 0 {
		t.Fatalf("a zero period deleted %d", n)
	}
}

// exportsSpy records which recordings' exports were deleted, failing
// while fail is set.
type exportsSpy struct {
	removed []string
	fail    error
}

func (e *exportsSpy) Remove(r store.Recording) error {
	if e.fail != nil {
		return e.fail
	}
	e.removed = append(e.removed, r.SessionID)
	return nil
}

// TestSweepDeletesExports checks that a recording's video export goes
// with it, and that a recording whose export cannot be deleted stays, to
// be tried again.
func TestSweepDeletesExports(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t)
	dir, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	start := now.Add(-100 * 24 * time.Hour)
	if _, err := st.AddRecording(ctx, store.Recording{SessionID: "old", User: "u", Resource: "r", Protocol: "vnc", Gateway: "g",
		Format: "guac", Start: start, End: start.Add(time.Minute), Path: "r/old.guac"}, ""); err != nil {
		t.Fatal(err)
	}
	spy := &exportsSpy{fail: fmt.Errorf("permission denied")}
	j := &Job{Store: st, Recordings: dir, Audit: newAudit(t, st, time.Now), Period: 90 * 24 * time.Hour,
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }, Exports: spy}
	if n, err := j.Sweep(ctx); n != 0 || err == nil {
		t.Fatalf("sweep with a failing export deletion: %d %v", n, err)
	}
	if left, _ := st.SearchRecordings(ctx, store.RecordingFilter{Limit: 10}); len(left) != 1 {
		t.Fatal("the recording went though its export stayed")
	}
	spy.fail = nil
	if n, err := j.Sweep(ctx); n != 1 || err != nil || len(spy.removed) != 1 || spy.removed[0] != "old" {
		t.Fatalf("sweep: %d %v, exports removed %v", n, err, spy.removed)
	}
}

func newAudit(t *testing.T, st *store.Store, now func() time.Time) *audit.Log {
	t.Helper()
	l, err := audit.New(st, make([]byte, 32), slog.New(slog.DiscardHandler), now)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestSweepConnections checks that the connection log is kept for the
// recordings' period: older attempts go, in one audited sweep; the
// attempt exactly at the cutoff and newer ones stay; a zero period keeps
// everything.
func TestSweepConnections(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	log := newAudit(t, st, func() time.Time { return now })
	for age := 0; age <= 200; age++ {
		if _, err := st.AddConnection(ctx, store.Connection{Start: now.Add(-time.Duration(age) * 24 * time.Hour), User: "u", Resource: "r",
			Protocol: "ssh", Result: store.ConnectionConnected}); err != nil {
			t.Fatal(err)
		}
	}
	j := &Job{Store: st, Audit: log, Period: 90 * 24 * time.Hour, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }}
	n, err := j.SweepConnections(ctx)
	if err != nil || n != 200-90 {
		t.Fatalf("deleted %d (%v), want %d", n, err, 200-90)
	}
	left, _ := st.Connections(ctx, store.ConnectionFilter{})
	if len(left) != 91 || !left[len(left)-1].Start.Equal(now.Add(-90*24*time.Hour)) {
		t.Fatalf("%d attempts left, want 91 (up to exactly 90 days old)", len(left))
	}
	evs, _ := log.Search(ctx, store.AuditFilter{Action: audit.ActionConnectionPrune})
	if len(evs) != 1 || evs[0].Actor != "retention" || evs[0].Details["deleted"] != "110" {
		t.Fatalf("prune audited as %+v, want one event with deleted=110", evs)
	}
	// Nothing more to do: no second event.
	if n, err := j.SweepConnections(ctx); n != 0 || err != nil {
		t.Fatalf("second sweep: %d %v", n, err)
	}
	if evs, _ := log.Search(ctx, store.AuditFilter{Action: audit.ActionConnectionPrune}); len(evs) != 1 {
		t.Fatalf("an empty sweep was audited: %d events", len(evs))
	}
	j.Period = 0
	j.Now = func() time.Time { return now.Add(10 * 365 * 24 * time.Hour) }
	if n, _ := j.SweepConnections(ctx); n != 0 {
		t.Fatalf("a zero period deleted %d", n)
	}
}

// TestSweepDeletesObjects runs a sweep on recordings in an S3 bucket (a
// real versitygw on loopback): expired recordings' objects and their
// key-frame indexes are deleted, the others stay.
func TestSweepDeletesObjects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.Open(t)
	srv := targets.NewS3(t)
	b, err := objstore.New(ctx, objstore.Config{Bucket: srv.Bucket, Prefix: "recs", Endpoint: srv.Endpoint, Region: srv.Region,
		PathStyle: true, Credentials: srv.Credentials()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	index := "{\"format\":\"keyway-guac-index\",\"version\":1}\n{\"offset\":1,\"timestamp\":5}\n"
	for _, age := range []int{10, 89, 91, 200, 365} {
		id := fmt.Sprintf("s%d", age)
		start := now.Add(-time.Duration(age) * 24 * time.Hour)
		rel := storage.Path(id, start, ".guac")
		data := []byte("4.sync,1.5;4.sync,1.6;")
		sum := sha256.Sum256(data)
		if err := b.PutIndex(ctx, id, strings.NewReader(index)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Append(ctx, id, rel, 0, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Commit(ctx, id, rel, int64(len(data)), hex.EncodeToString(sum[:])); err != nil {
			t.Fatal(err)
		}
		if found, err := b.CommitIndex(ctx, id, rel, int64(len(data))); !found || err != nil {
			t.Fatalf("index: %v %v", found, err)
		}
		if _, err := st.AddRecording(ctx, store.Recording{SessionID: id, User: "u", Resource: "r", Protocol: "vnc",
			Gateway: "g", Format: "guac", Start: start, End: start.Add(time.Minute), Path: rel}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if keys, _ := srv.Keys(ctx, "recs/"); len(keys) != 10 {
		t.Fatalf("stored %v, want 5 recordings and 5 indexes", keys)
	}
	j := &Job{Store: st, Recordings: b, Audit: newAudit(t, st, func() time.Time { return now }), Period: 90 * 24 * time.Hour,
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }}
	if n, err := j.Sweep(ctx); n != 3 || err != nil {
		t.Fatalf("sweep: %d %v, want 3", n, err)
	}
	keys, err := srv.Keys(ctx, "recs/")
	slices.Sort(keys)
	if want := []string{"recs/2026/08/28/s89.guac", "recs/2026/08/28/s89.idx", "recs/2026/11/15/s10.guac", "recs/2026/11/15/s10.idx"}; err != nil || !slices.Equal(keys, want) {
		t.Fatalf("left in the bucket: %v, %v; want %v", keys, err, want)
	}
}
