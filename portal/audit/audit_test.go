package audit

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/portal/store/storetest"
)

func TestChainDetectsTampering(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t)
	l := New(st, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
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
	if n, err := l.Verify(ctx); err != nil || n != 10 {
		t.Fatalf("verify: %d, %v", n, err)
	}
	evs, _ := l.Search(ctx, store.AuditFilter{Actor: "alice", Action: ActionConnect})
	if len(evs) != 10 {
		t.Fatalf("search found %d", len(evs))
	}

	// Tamper as an attacker with write access to the file would: drop the
	// trigger, then edit a row.
	db := st.DB()
	if _, err := db.Exec(`DROP TRIGGER audit_no_update`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit_events SET target = 'other' WHERE id = 4`); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Verify(ctx); err == nil || !strings.Contains(err.Error(), "event 4") {
		t.Fatalf("tampering not detected: %v", err)
	}
}
