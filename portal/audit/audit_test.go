package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/portal/store/storetest"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

func newLog(t *testing.T, st *store.Store, key []byte) *Log {
	t.Helper()
	l, err := New(st, key, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestChainDetectsTampering(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		ctx := context.Background()
		st := storetest.OpenKind(t, kind)
		l := newLog(t, st, newKey(t))
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := l.Record(ctx, Event{Actor: "alice", Action: ActionConnect, Target: "web", Outcome: OutcomeSuccess,
					Details: map[string]string{"n": string(rune('0' + i))}}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if rep, err := l.Verify(ctx, nil); err != nil || rep.Events != 10 || rep.HMACFrom != 1 {
			t.Fatalf("verify: %+v, %v", rep, err)
		}
		evs, _ := l.Search(ctx, store.AuditFilter{Actor: "alice", Action: ActionConnect})
		if len(evs) != 10 {
			t.Fatalf("search found %d", len(evs))
		}
		if _, err := New(st, make([]byte, 8), slog.New(slog.DiscardHandler), time.Now); err == nil {
			t.Error("a short key was taken")
		}
	})
}

// tamper runs SQL as an attacker with write access to the database file
// would, after dropping the append-only triggers.
func tamper(t *testing.T, st *store.Store, stmts ...string) {
	t.Helper()
	drop := []string{`DROP TRIGGER IF EXISTS audit_no_update`, `DROP TRIGGER IF EXISTS audit_no_delete`}
	if st.Postgres() {
		drop = []string{`DROP TRIGGER IF EXISTS audit_no_update ON audit_events`, `DROP TRIGGER IF EXISTS audit_no_delete ON audit_events`}
	}
	for _, q := range append(drop, stmts...) {
		if _, err := st.DB().Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// rechainPlain recomputes the plain SHA-256 chain of events from to to
// (0: the last), as an attacker without the key can.
func rechainPlain(t *testing.T, st *store.Store, from, to int64) {
	t.Helper()
	ctx := context.Background()
	var evs []store.AuditEvent
	if err := st.AuditChain(ctx, func(e store.AuditEvent) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	prev := genesis
	for _, e := range evs {
		if e.ID >= from && (to == 0 || e.ID <= to) {
			e.PrevHash = prev
			e.Hash = Hash(e)
			tamper(t, st, fmt.Sprintf(`UPDATE audit_events SET prev_hash = '%s', hash = '%s' WHERE id = %d`, e.PrevHash, e.Hash, e.ID))
		}
		prev = e.Hash
	}
}

// TestVerifyDetectsTampering checks each way someone with the database
// but without the key could change the log.
func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		for _, tc := range []struct {
			name string
			// after ten events and a checkpoint of them
			change func(t *testing.T, st *store.Store, l *Log)
			want   string
		}{
			{"rewrite a row", func(t *testing.T, st *store.Store, _ *Log) {
				tamper(t, st, `UPDATE audit_events SET actor = 'someone-else' WHERE id = 4`)
			}, "audit event 4 was altered"},
			{"delete the newest rows", func(t *testing.T, st *store.Store, _ *Log) {
				tamper(t, st, `DELETE FROM audit_events WHERE id > 8`)
			}, "audit events 9 to 10 are missing"},
			{"delete the newest rows and write new ones", func(t *testing.T, st *store.Store, l *Log) {
				tamper(t, st, `DELETE FROM audit_events WHERE id > 8`)
				for range 3 {
					l.Record(context.Background(), Event{Actor: "mallory", Action: ActionSignIn, Outcome: OutcomeSuccess})
				}
			}, "audit event 10 differs from the checkpoint"},
			{"rewrite a row and recompute plain hashes after it", func(t *testing.T, st *store.Store, _ *Log) {
				tamper(t, st, `UPDATE audit_events SET actor = 'someone-else' WHERE id = 4`)
				rechainPlain(t, st, 4, 0)
			}, "audit event 4 has a plain hash although the HMAC chain started at event 1"},
			{"rewrite a row and recompute every hash without the key", func(t *testing.T, st *store.Store, _ *Log) {
				tamper(t, st, `UPDATE audit_events SET actor = 'someone-else' WHERE id = 4`)
				rechainPlain(t, st, 1, 0)
			}, "differs from the checkpoint"},
			{"recompute with another key", func(t *testing.T, st *store.Store, _ *Log) {
				other := newLog(t, st, newKey(t))
				tamper(t, st, `DELETE FROM audit_events`)
				for range 10 {
					other.Record(context.Background(), Event{Actor: "mallory", Action: ActionSignIn, Outcome: OutcomeSuccess})
				}
			}, "audit event 1 was altered"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				st := storetest.OpenKind(t, kind)
				l := newLog(t, st, newKey(t))
				for i := range 10 {
					if err := l.Record(ctx, Event{Actor: "alice", Action: ActionConnect, Target: fmt.Sprint("host-", i), Outcome: OutcomeSuccess}); err != nil {
						t.Fatal(err)
					}
				}
				path := filepath.Join(t.TempDir(), "audit-checkpoints")
				if _, err := l.WriteCheckpoint(ctx, path); err != nil {
					t.Fatal(err)
				}
				tc.change(t, st, l)
				b, _ := os.ReadFile(path)
				cps, err := l.ReadCheckpoints(bytes.NewReader(b))
				if err != nil || len(cps) != 1 {
					t.Fatalf("read checkpoints: %d, %v", len(cps), err)
				}
				if _, err := l.Verify(ctx, cps); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("verify: %v, want %q", err, tc.want)
				}
			})
		}
	})
}

// TestMigratedChain checks a log begun by a portal that chained with plain
// SHA-256: old events keep their hash, new ones are HMAC-chained from the
// next id, and the old ones can no longer be rewritten either.
func TestMigratedChain(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		ctx := context.Background()
		st := storetest.OpenKind(t, kind)
		for i := range 5 { // as the old portal wrote them
			if _, err := st.AppendAudit(ctx, func(prev string, id int64) (store.AuditEvent, error) {
				if prev == "" {
					prev = genesis
				}
				e := store.AuditEvent{ID: id, Time: time.Now().UTC().Truncate(time.Microsecond), Actor: "old", Action: ActionSignIn,
					Outcome: OutcomeSuccess, Details: map[string]string{"n": fmt.Sprint(i)}, PrevHash: prev}
				e.Hash = Hash(e)
				return e, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		l := newLog(t, st, newKey(t))
		rep, err := l.Verify(ctx, nil)
		if err != nil || rep.Events != 5 || rep.HMACFrom != 0 {
			t.Fatalf("old log: %+v, %v", rep, err)
		}
		for range 3 {
			l.Record(ctx, Event{Actor: "new", Action: ActionSignIn, Outcome: OutcomeSuccess})
		}
		c, err := l.Checkpoint(ctx)
		if err != nil || c.HMACFrom != 6 || c.Event != 8 {
			t.Fatalf("checkpoint %+v, %v", c, err)
		}
		if rep, err = l.Verify(ctx, []Checkpoint{c}); err != nil || rep.Events != 8 || rep.HMACFrom != 6 {
			t.Fatalf("migrated log: %+v, %v", rep, err)
		}
		// An old row rewritten with its plain chain recomputed no longer
		// matches the first HMAC-chained event.
		tamper(t, st, `UPDATE audit_events SET actor = 'someone-else' WHERE id = 2`)
		rechainPlain(t, st, 2, 5)
		if _, err := l.Verify(ctx, []Checkpoint{c}); err == nil || !strings.Contains(err.Error(), "audit event 6 does not follow event 5") {
			t.Fatalf("a rewritten pre-HMAC event: %v", err)
		}
	})
}

// TestCheckpointFile checks the file StartCheckpoints keeps: created 0600,
// one checkpoint at start and one at shutdown, and a changed line refused.
func TestCheckpointFile(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		ctx := context.Background()
		st := storetest.OpenKind(t, kind)
		l := newLog(t, st, newKey(t))
		l.Record(ctx, Event{Actor: "a", Action: ActionSignIn, Outcome: OutcomeSuccess})
		path := filepath.Join(t.TempDir(), "audit-checkpoints")
		stop, err := l.StartCheckpoints(ctx, path, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); bytes.Count(b, []byte("\n")) != 1 {
			t.Fatalf("checkpoints at start: %q", b)
		}
		l.Record(ctx, Event{Actor: "b", Action: ActionSignOut, Outcome: OutcomeSuccess})
		stop()
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("checkpoint file: %v, %v", fi, err)
		}
		b, _ := os.ReadFile(path)
		cps, err := l.ReadCheckpoints(bytes.NewReader(b))
		if err != nil || len(cps) != 2 || cps[0].Event != 1 || cps[1].Event != 2 {
			t.Fatalf("checkpoints %+v, %v", cps, err)
		}
		forged := bytes.Replace(b, []byte(`"event":2`), []byte(`"event":1`), 1)
		if _, err := l.ReadCheckpoints(bytes.NewReader(forged)); err == nil || !strings.Contains(err.Error(), "line 2 does not verify") {
			t.Fatalf("forged checkpoint: %v", err)
		}
		if _, err := newLog(t, st, newKey(t)).ReadCheckpoints(bytes.NewReader(b)); err == nil {
			t.Fatal("checkpoints verified under another key")
		}
		if _, err := l.ReadCheckpoints(strings.NewReader(strings.Repeat("x", 2*maxCheckpointLine))); err == nil {
			t.Fatal("an overlong line was read")
		}
	})
}
