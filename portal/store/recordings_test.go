package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/portal/store/storetest"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// seedRecordings inserts n recordings in one statement, a minute apart:
// users u0..u49, resources r0..r99, gateways gw0..gw4; every 1000th holds
// the word "needle". Recording i has id i+1.
func seedRecordings(tb testing.TB, st *store.Store, kind storetest.Kind, n int) {
	tb.Helper()
	ctx := context.Background()
	_, err := st.DB().ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < ?)
		INSERT INTO recordings (session_id, username, resource, protocol, gateway_id, gateway, client_addr, format,
			start_ms, end_ms, size, sha256, incomplete, input, path, stored_ms)
		SELECT 'S' || i, 'u' || (i % 50), 'r' || (i % 100), 'ssh', 1, 'gw' || (i % 5), '127.0.0.1', 'asciicast',
			CAST(? AS BIGINT) + i * 60000, CAST(? AS BIGINT) + i * 60000 + 60000, 100, 'x', 0, 0, 'p', 0 FROM seq`, n, t0.UnixMilli(), t0.UnixMilli())
	if err != nil {
		tb.Fatal(err)
	}
	// The text as the store would keep it; on PostgreSQL with its words
	// as the store splits them.
	text := "'$ ls -l /var/log\nsyslog auth.log session' || (id - 1) || CASE WHEN (id - 1) % 1000 = 0 THEN ' needle' ELSE '' END"
	q := `INSERT INTO recordings_text (docid, text) SELECT id, ` + text + ` FROM recordings`
	if kind == storetest.Postgres {
		words := "'ls l var log syslog auth log session' || (id - 1) || CASE WHEN (id - 1) % 1000 = 0 THEN ' needle' ELSE '' END"
		q = `INSERT INTO recordings_text (docid, text, words) SELECT id, ` + text + `, to_tsvector('simple', ` + words + `) FROM recordings`
	}
	if _, err := st.DB().ExecContext(ctx, q); err != nil {
		tb.Fatal(err)
	}
}

func TestAddAndFindRecording(t *testing.T) {
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		ctx := context.Background()
		st := storetest.OpenKind(t, kind)
		r := store.Recording{SessionID: "S1", User: "alice", Resource: "web-1", Protocol: "ssh", GatewayID: 3, Gateway: "gw-a",
			ClientAddr: "192.0.2.7", Format: "asciicast", Start: t0, End: t0.Add(90 * time.Second), Size: 1234, SHA256: "ab", Path: "2026/01/01/S1.cast"}
		got, err := st.AddRecording(ctx, r, "Last login\n$ echo déjà-vu kw-42-ok\nkw-42-ok\n")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.AddRecording(ctx, r, ""); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("a second recording of the session: %v", err)
		}
		back, err := st.RecordingBySession(ctx, "S1")
		if err != nil || back.ID != got.ID || back.Duration() != 90*time.Second || back.Gateway != "gw-a" || back.Start != t0 {
			t.Fatalf("read back %+v, %v", back, err)
		}
		for _, tc := range []struct {
			f    store.RecordingFilter
			want int
		}{
			{store.RecordingFilter{Text: "kw-42-ok"}, 1},
			{store.RecordingFilter{Text: "KW-42"}, 1},
			{store.RecordingFilter{Text: "déjà"}, 1},
			{store.RecordingFilter{Text: "DEJA"}, 1}, // diacritics and case folded on both
			{store.RecordingFilter{Text: "echo kw*"}, 1},
			{store.RecordingFilter{Text: "kw-43-ok"}, 0},
			// Quotes and operators are words, never query syntax.
			{store.RecordingFilter{Text: `"login" (echo)`}, 1},
			{store.RecordingFilter{Text: "login OR absent"}, 0},
			{store.RecordingFilter{Text: `" * "`}, 1}, // nothing searchable: no text filter
			{store.RecordingFilter{User: "ALICE", Resource: "web-1", Gateway: "gw-a", Protocol: "ssh"}, 1},
			{store.RecordingFilter{User: "bob"}, 0},
			{store.RecordingFilter{Since: t0, Until: t0.Add(time.Minute)}, 1},
			{store.RecordingFilter{Since: t0.Add(time.Second)}, 0},
		} {
			rs, err := st.SearchRecordings(ctx, tc.f)
			if err != nil || len(rs) != tc.want {
				t.Errorf("search %+v: %d results, %v; want %d", tc.f, len(rs), err, tc.want)
			}
		}
	})
}

// TestRecordingSearchScales seeds 100,000 recordings and checks that every
// kind of listing is served by an index in (start, id) order, so a page
// reads a page of rows, and that keyset paging walks a filter's results
// without gaps or repeats.
func TestRecordingSearchScales(t *testing.T) {
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		if testing.Short() {
			t.Skip("seeds 100,000 rows")
		}
		ctx := context.Background()
		st := storetest.OpenKind(t, kind)
		n := 100_000
		if kind == storetest.Postgres {
			// Index use is checked on SQLite (EXPLAIN); here results,
			// paging and time, on fewer rows to keep the run short.
			n = 20_000
		}
		seedRecordings(t, st, kind, n)

		for _, f := range []store.RecordingFilter{
			{},
			{User: "u7"},
			{Resource: "r42"},
			{Gateway: "gw3"},
			{Protocol: "ssh"},
			{Since: t0.Add(1000 * time.Hour), Until: t0.Add(1100 * time.Hour)},
			{User: "u7", Since: t0.Add(1000 * time.Hour)},
			{After: store.RecordingCursor{StartMS: t0.Add(50000 * time.Minute).UnixMilli(), ID: 50001}},
			{User: "u7", After: store.RecordingCursor{StartMS: t0.Add(50000 * time.Minute).UnixMilli(), ID: 50001}},
			{Text: "needle"},
			{Text: "needle", User: "u0"},
		} {
			f.Limit = 50
			plan, err := st.ExplainRecordingSearch(ctx, f)
			if errors.Is(err, store.ErrSQLiteOnly) {
				err = nil // PostgreSQL: results and time only
			}
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(plan, "; ")
			for _, step := range plan {
				if strings.HasPrefix(step, "SCAN r") && !strings.Contains(step, "INDEX") {
					t.Errorf("filter %+v scans the whole table: %s", f, text)
				}
			}
			if f.Text == "" && strings.Contains(text, "TEMP B-TREE") {
				t.Errorf("filter %+v sorts instead of reading an index in order: %s", f, text)
			}
			start := time.Now()
			if _, err := st.SearchRecordings(ctx, f); err != nil {
				t.Fatal(err)
			}
			// Generous for a loaded 2-core machine under -race; an unindexed
			// query over 100,000 rows with a sort takes far longer.
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("filter %+v took %v", f, d)
			}
		}

		// Paging: user u7 has n/50 recordings; walk them 300 at a time.
		seen := map[int64]bool{}
		var after store.RecordingCursor
		last := time.Now()
		for {
			page, err := st.SearchRecordings(ctx, store.RecordingFilter{User: "u7", After: after, Limit: 300})
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			for _, r := range page {
				if seen[r.ID] || r.User != "u7" || !r.Start.Before(last) {
					t.Fatalf("page out of order or repeated: %+v", r)
				}
				seen[r.ID], last = true, r.Start
			}
			after = store.CursorOf(page[len(page)-1])
		}
		if len(seen) != n/50 {
			t.Fatalf("paging found %d recordings of u7, want %d", len(seen), n/50)
		}
		hits, err := st.SearchRecordings(ctx, store.RecordingFilter{Text: "needle"})
		if err != nil || len(hits) != n/1000 {
			t.Fatalf("text search: %d hits, %v; want %d", len(hits), err, n/1000)
		}
	})
}

// BenchmarkSearchRecordings measures one page of listings over 100,000
// recordings: unfiltered, by user, by text, and deep in the list.
func BenchmarkSearchRecordings(b *testing.B) {
	ctx := context.Background()
	st := storetest.Open(b)
	seedRecordings(b, st, storetest.SQLite, 100_000)
	deep := store.RecordingCursor{StartMS: t0.Add(1000 * time.Minute).UnixMilli(), ID: 1001}
	for _, bc := range []struct {
		name string
		f    store.RecordingFilter
	}{
		{"newest", store.RecordingFilter{}},
		{"user", store.RecordingFilter{User: "u7"}},
		{"text", store.RecordingFilter{Text: "needle"}},
		{"text-common", store.RecordingFilter{Text: "syslog"}},
		{"deep-page", store.RecordingFilter{After: deep}},
	} {
		bc.f.Limit = 50
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := st.SearchRecordings(ctx, bc.f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
