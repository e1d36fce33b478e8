package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/portal/store/storetest"
)

func TestConnectionLog(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		ctx := context.Background()
		st := storetest.OpenKind(t, kind)
		start := time.Date(2026, 3, 4, 5, 6, 7, 8_000_000, time.UTC)
		in := store.Connection{SessionID: "S1", Start: start, User: "alice", ClientAddr: "2001:db8::7", Resource: "web", Protocol: "ssh",
			Gateway: "gw-a", Segment: "default", Result: store.ConnectionConnected, Message: "", Posture: []string{"disk-encrypted", "av-ok"}}
		id, err := st.AddConnection(ctx, in)
		if err != nil || id <= 0 {
			t.Fatalf("add: %d %v", id, err)
		}
		got, err := st.ConnectionByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		in.ID = id
		if !got.Running() || got.Duration() != 0 || !got.End.IsZero() {
			t.Errorf("a new connected row is not running: %+v", got)
		}
		if got.Start != start || !slices.Equal(got.Posture, in.Posture) || got.User != "alice" || got.ClientAddr != in.ClientAddr ||
			got.Segment != "default" || got.Gateway != "gw-a" || got.Protocol != "ssh" || got.SessionID != "S1" {
			t.Errorf("read back %+v, want %+v", got, in)
		}

		end := start.Add(90 * time.Second)
		if err := st.FinishConnection(ctx, id, end, 1234, 567890); err != nil {
			t.Fatal(err)
		}
		got, _ = st.ConnectionByID(ctx, id)
		if got.Running() || got.End != end || got.Duration() != 90*time.Second || got.BytesIn != 1234 || got.BytesOut != 567890 {
			t.Errorf("finished: %+v", got)
		}
		// A second end, an unknown id, bad counts.
		if err := st.FinishConnection(ctx, id, end.Add(time.Hour), 1, 1); !errors.Is(err, store.ErrConnectionNotRunning) {
			t.Errorf("finishing twice: %v", err)
		}
		if got, _ := st.ConnectionByID(ctx, id); got.End != end || got.BytesIn != 1234 {
			t.Errorf("finishing twice changed the row: %+v", got)
		}
		if err := st.FinishConnection(ctx, 999999, end, 1, 1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("finishing an unknown connection: %v", err)
		}
		if _, err := st.ConnectionByID(ctx, 999999); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("reading an unknown connection: %v", err)
		}

		// A refusal never runs, and cannot be finished.
		refused, err := st.AddConnection(ctx, store.Connection{User: "bob", Resource: "db", Protocol: "rdp", Result: store.ConnectionRefused,
			Reason: "client-connect-failed", Message: "Not from this laptop."})
		if err != nil {
			t.Fatal(err)
		}
		got, _ = st.ConnectionByID(ctx, refused)
		if got.Running() || got.Start.IsZero() || got.Posture == nil || len(got.Posture) != 0 {
			t.Errorf("refused row: %+v (a zero start is now; no posture is an empty list)", got)
		}
		if err := st.FinishConnection(ctx, refused, end, 1, 1); !errors.Is(err, store.ErrConnectionNotRunning) {
			t.Errorf("finishing a refusal: %v", err)
		}

		// The clock went back: the end is the start, never a negative duration.
		back, _ := st.AddConnection(ctx, store.Connection{Start: start, User: "c", Result: store.ConnectionConnected})
		if err := st.FinishConnection(ctx, back, start.Add(-time.Minute), 0, 0); err != nil {
			t.Fatal(err)
		}
		if got, _ := st.ConnectionByID(ctx, back); got.End != start || got.Running() {
			t.Errorf("end before start: %+v", got)
		}

		for _, bad := range []struct {
			name string
			err  func() error
		}{
			{"unknown result", func() error {
				_, err := st.AddConnection(ctx, store.Connection{User: "x", Result: "maybe"})
				return err
			}},
			{"empty result", func() error { _, err := st.AddConnection(ctx, store.Connection{User: "x"}); return err }},
			{"negative bytes", func() error { return st.FinishConnection(ctx, back, end, -1, 0) }},
			{"zero end", func() error { return st.FinishConnection(ctx, back, time.Time{}, 0, 0) }},
		} {
			if err := bad.err(); err == nil {
				t.Errorf("%s: no error", bad.name)
			}
		}
	})
}

// TestConnectionBounds checks that hostile values are cut to their bounds,
// in whole characters, one line each, and the attempt still logged.
func TestConnectionBounds(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		ctx := context.Background()
		st := storetest.OpenKind(t, kind)
		long := strings.Repeat("é", 5000)
		var posture []string
		for i := range 50 {
			posture = append(posture, fmt.Sprintf("%d-%s", i, long))
		}
		id, err := st.AddConnection(ctx, store.Connection{SessionID: long, User: long, ClientAddr: long, Resource: long, Protocol: long,
			Gateway: long, Segment: long, Result: store.ConnectionRefused, Reason: long, Message: "line one\r\nline two\x00\xff" + long, Posture: posture})
		if err != nil {
			t.Fatal(err)
		}
		c, err := st.ConnectionByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct {
			name string
			v    string
			max  int
		}{
			{"session", c.SessionID, 128}, {"user", c.User, 255}, {"client", c.ClientAddr, 128}, {"resource", c.Resource, 255},
			{"protocol", c.Protocol, 16}, {"gateway", c.Gateway, 255}, {"segment", c.Segment, 255}, {"reason", c.Reason, 128},
			{"message", c.Message, 1024},
		} {
			if n := utf8.RuneCountInString(f.v); n != f.max || !utf8.ValidString(f.v) {
				t.Errorf("%s: %d characters (valid UTF-8 %v), want %d", f.name, n, utf8.ValidString(f.v), f.max)
			}
		}
		if !strings.HasPrefix(c.Message, "line one  line two \uFFFDé") {
			t.Errorf("control characters and bad bytes kept: %q", c.Message[:30])
		}
		if len(c.Posture) != 10 {
			t.Fatalf("%d posture statuses kept, want 10", len(c.Posture))
		}
		for i, p := range c.Posture {
			if n := utf8.RuneCountInString(p); n != 255 || !strings.HasPrefix(p, fmt.Sprintf("%d-é", i)) {
				t.Errorf("posture %d: %d characters %q…", i, n, p[:4])
			}
		}
	})
}

func TestConnectionFilters(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		ctx := context.Background()
		st := storetest.OpenKind(t, kind)
		rows := []store.Connection{
			{User: "Alice", Resource: "web", Protocol: "ssh", Gateway: "gw-a", Result: store.ConnectionConnected},
			{User: "alice", Resource: "db", Protocol: "rdp", Gateway: "gw-b", Result: store.ConnectionRefused, Reason: "policy",
				Message: `Policy "office hours" allows connections Mon–Fri 09:00–17:00 (Europe/Paris) only.`},
			{User: "bob", Resource: "web", Protocol: "sftp", Gateway: "gw-a", Result: store.ConnectionFailed, Reason: "dial",
				Message: "The target did not answer: 100% packet loss"},
			{User: "bob", Resource: "WEB", Protocol: "vnc", Gateway: "GW-A", Result: store.ConnectionRefused,
				Reason: "client-connect-handler-timed-out", Message: "Error establishing connection. Please contact your administrator."},
		}
		for i, c := range rows {
			c.Start = t0.Add(time.Duration(i) * time.Minute)
			if _, err := st.AddConnection(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			f    store.ConnectionFilter
			want []string // users of the results, newest first, with their minute
		}{
			{store.ConnectionFilter{}, []string{"bob3", "bob2", "alice1", "Alice0"}},
			{store.ConnectionFilter{User: "ALICE"}, []string{"alice1", "Alice0"}},
			{store.ConnectionFilter{Resource: "web"}, []string{"bob3", "bob2", "Alice0"}},
			{store.ConnectionFilter{Gateway: "gw-a", Protocol: "sftp"}, []string{"bob2"}},
			{store.ConnectionFilter{Result: store.ConnectionRefused}, []string{"bob3", "alice1"}},
			{store.ConnectionFilter{Result: store.ConnectionFailed, User: "alice"}, nil},
			{store.ConnectionFilter{Text: "office"}, []string{"alice1"}},
			{store.ConnectionFilter{Text: "TIMED-out"}, []string{"bob3"}},
			// LIKE's wildcards are plain characters.
			{store.ConnectionFilter{Text: "100%"}, []string{"bob2"}},
			{store.ConnectionFilter{Text: "1_0"}, nil},
			{store.ConnectionFilter{Text: "%"}, []string{"bob2"}},
			// Since is inside, Until outside.
			{store.ConnectionFilter{Since: t0.Add(time.Minute), Until: t0.Add(3 * time.Minute)}, []string{"bob2", "alice1"}},
			{store.ConnectionFilter{Since: t0.Add(time.Minute + time.Millisecond)}, []string{"bob3", "bob2"}},
			{store.ConnectionFilter{Until: t0.Add(time.Millisecond)}, []string{"Alice0"}},
			{store.ConnectionFilter{Limit: 1}, []string{"bob3"}},
		} {
			cs, err := st.Connections(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range cs {
				got = append(got, fmt.Sprintf("%s%d", c.User, c.Start.Sub(t0)/time.Minute))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("filter %+v: %v, want %v", tc.f, got, tc.want)
			}
		}
	})
}

// seedConnections inserts n connection attempts, one a minute from t0 (in
// pairs with the same start, so paging must break ties by id), directly,
// in one transaction.
func seedConnections(tb testing.TB, st *store.Store, n int) {
	tb.Helper()
	ctx := context.Background()
	_, err := st.DB().ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < ?)
		INSERT INTO connections (session_id, start_ms, username, client_addr, resource, protocol, gateway, segment, result, reason, message)
		SELECT 'S' || i, CAST(? AS BIGINT) + (i / 2) * 60000, 'u' || (i % 50), '192.0.2.1', 'r' || (i % 100), CASE i % 3 WHEN 0 THEN 'ssh' WHEN 1 THEN 'rdp' ELSE 'vnc' END,
			'gw' || (i % 5), 'default', CASE WHEN i % 10 = 0 THEN 'refused' ELSE 'connected' END,
			CASE WHEN i % 1000 = 0 THEN 'needle' ELSE '' END, '' FROM seq`, n, t0.UnixMilli())
	if err != nil {
		tb.Fatal(err)
	}
}

// TestConnectionSearchScales checks that every listing is served by an
// index in (start, id) order, so a page reads a page of rows, and that
// keyset paging walks a filter's results without gaps or repeats.
func TestConnectionSearchScales(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		ctx := context.Background()
		st := storetest.OpenKind(t, kind)
		n := 100_000
		if kind == storetest.Postgres {
			// Index use is checked on SQLite (EXPLAIN); here results,
			// paging and time, on fewer rows to keep the run short.
			n = 20_000
		}
		seedConnections(t, st, n)
		for _, f := range []store.ConnectionFilter{
			{},
			{User: "u7"},
			{Resource: "r42"},
			{Gateway: "gw3"},
			{Protocol: "ssh"},
			{Result: store.ConnectionRefused},
			{Since: t0.Add(1000 * time.Hour), Until: t0.Add(1100 * time.Hour)},
			{User: "u7", Since: t0.Add(1000 * time.Minute)},
			{User: "u7", After: store.ConnectionCursor{StartMS: t0.Add(30000 * time.Minute).UnixMilli(), ID: 60001}},
		} {
			f.Limit = 50
			plan, err := st.ExplainConnectionSearch(ctx, f)
			if errors.Is(err, store.ErrSQLiteOnly) {
				err = nil // PostgreSQL: results and time only
			}
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(plan, "; ")
			for _, step := range plan {
				if strings.HasPrefix(step, "SCAN connections") && !strings.Contains(step, "INDEX") {
					t.Errorf("filter %+v scans the whole table: %s", f, text)
				}
			}
			if strings.Contains(text, "TEMP B-TREE") {
				t.Errorf("filter %+v sorts instead of reading an index in order: %s", f, text)
			}
		}

		// Paging: user u7 has n/50 attempts; walk them 300 at a time, then
		// every attempt 1000 at a time.
		for _, base := range []store.ConnectionFilter{{User: "u7", Limit: 300}, {Limit: 1000}} {
			seen := map[int64]bool{}
			f := base
			prev := store.ConnectionCursor{StartMS: 1 << 62}
			for {
				cs, err := st.Connections(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range cs {
					cur := c.CursorAfter()
					if seen[c.ID] || cur.StartMS > prev.StartMS || (cur.StartMS == prev.StartMS && cur.ID >= prev.ID) {
						t.Fatalf("paging %+v: %d repeated or out of order", base, c.ID)
					}
					seen[c.ID], prev = true, cur
				}
				if len(cs) < f.Limit {
					break
				}
				f.After = cs[len(cs)-1].CursorAfter()
			}
			want := n
			if base.User != "" {
				want = n / 50
			}
			if len(seen) != want {
				t.Errorf("paging %+v saw %d, want %d", base, len(seen), want)
			}
		}
		// Text search finds the needles.
		if cs, err := st.Connections(ctx, store.ConnectionFilter{Text: "needle"}); err != nil || len(cs) != n/1000 {
			t.Errorf("text search: %d, %v", len(cs), err)
		}
	})
}

func TestPruneConnections(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		ctx := context.Background()
		st := storetest.OpenKind(t, kind)
		// 12,000 attempts two a minute: more than one prune batch.
		const n = 12_000
		seedConnections(t, st, n)
		cutoff := t0.Add(4000 * time.Minute) // rows 8000 and 8001 start exactly here
		got, err := st.PruneConnections(ctx, cutoff)
		if err != nil || got != 8000 {
			t.Fatalf("pruned %d (%v), want 8000", got, err)
		}
		var left, oldest int64
		if err := st.DB().QueryRowContext(ctx, `SELECT COUNT(*), MIN(start_ms) FROM connections`).Scan(&left, &oldest); err != nil || left != n-8000 {
			t.Fatalf("%d left (%v), want %d", left, err, n-8000)
		}
		if oldest != cutoff.UnixMilli() {
			t.Errorf("oldest kept starts %v, want the cutoff %v (kept)", time.UnixMilli(oldest).UTC(), cutoff)
		}
		if got, err := st.PruneConnections(ctx, cutoff); got != 0 || err != nil {
			t.Errorf("second prune: %d %v", got, err)
		}
	})
}

func TestConnectionCursor(t *testing.T) {
	t.Parallel()
	c := store.ConnectionCursor{StartMS: 1767225600000, ID: 42}
	back, err := store.ParseConnectionCursor(c.String())
	if err != nil || back != c {
		t.Fatalf("round trip %v: %v %v", c, back, err)
	}
	if (store.ConnectionCursor{}).String() != "" {
		t.Error("the zero cursor is not empty")
	}
	for _, bad := range []string{"", "1", "1_", "_1", "1_0", "1_-3", "x_1", "1_2_3", "1_99999999999999999999"} {
		if _, err := store.ParseConnectionCursor(bad); err == nil {
			t.Errorf("cursor %q accepted", bad)
		}
	}
}

func FuzzParseConnectionCursor(f *testing.F) {
	for _, s := range []string{"1767225600000_42", "", "_", "-1_1", "1_2_3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := store.ParseConnectionCursor(s)
		if err != nil {
			return
		}
		if c.ID <= 0 {
			t.Fatalf("%q: id %d accepted", s, c.ID)
		}
		if back, err := store.ParseConnectionCursor(c.String()); err != nil || back != c {
			t.Fatalf("%q: round trip %v %v", s, back, err)
		}
	})
}

// addStartedAtT0 logs connection c as started at t0 and returns its id.
func addStartedAtT0(t *testing.T, st *store.Store, c store.Connection) int64 {
	t.Helper()
	c.Start = t0
	id, err := st.AddConnection(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestEndRunningConnections checks that what a stopped portal left running
// ends, marked interrupted, and nothing else changes.
func TestEndRunningConnections(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		ctx := context.Background()
		st := storetest.OpenKind(t, kind)
		add := func(c store.Connection) int64 { return addStartedAtT0(t, st, c) }
		left := add(store.Connection{User: "a", Result: store.ConnectionConnected})
		done := add(store.Connection{User: "b", Result: store.ConnectionConnected})
		if err := st.FinishConnection(ctx, done, t0.Add(time.Minute), 10, 20); err != nil {
			t.Fatal(err)
		}
		refused := add(store.Connection{User: "c", Result: store.ConnectionRefused, Reason: "policy"})
		restart := t0.Add(time.Hour)
		if n, err := st.EndRunningConnections(ctx, restart); n != 1 || err != nil {
			t.Fatalf("ended %d (%v), want 1", n, err)
		}
		if c, _ := st.ConnectionByID(ctx, left); c.Running() || c.End != restart || c.Reason != store.ReasonInterrupted {
			t.Errorf("left running: %+v", c)
		}
		if c, _ := st.ConnectionByID(ctx, done); c.End != t0.Add(time.Minute) || c.Reason != "" || c.BytesOut != 20 {
			t.Errorf("a finished session changed: %+v", c)
		}
		if c, _ := st.ConnectionByID(ctx, refused); !c.End.IsZero() || c.Reason != "policy" {
			t.Errorf("a refusal changed: %+v", c)
		}
		if err := st.FinishConnection(ctx, left, restart, 1, 1); !errors.Is(err, store.ErrConnectionNotRunning) {
			t.Errorf("finishing an interrupted session: %v", err)
		}
		if n, err := st.EndRunningConnections(ctx, restart); n != 0 || err != nil {
			t.Errorf("second call: %d %v", n, err)
		}
	})
}

// TestEndSessionConnections: the running connections of the sessions a
// crashed replica ran end, marked interrupted; the other replicas'
// running sessions, finished ones and refusals do not change; more
// sessions than one batch holds all end.
func TestEndSessionConnections(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		ctx := context.Background()
		st := storetest.OpenKind(t, kind)
		add := func(c store.Connection) int64 { return addStartedAtT0(t, st, c) }
		gone := add(store.Connection{SessionID: "GONE1", User: "a", Result: store.ConnectionConnected})
		other := add(store.Connection{SessionID: "LIVE1", User: "b", Result: store.ConnectionConnected})
		done := add(store.Connection{SessionID: "GONE2", User: "c", Result: store.ConnectionConnected})
		if err := st.FinishConnection(ctx, done, t0.Add(time.Minute), 10, 20); err != nil {
			t.Fatal(err)
		}
		refused := add(store.Connection{SessionID: "GONE3", User: "d", Result: store.ConnectionRefused, Reason: "policy"})
		at := t0.Add(time.Hour)
		ids := []string{"GONE1", "GONE2", "GONE3"}
		for i := range 1500 { // more than one batch
			ids = append(ids, fmt.Sprintf("NONE%d", i))
		}
		if n, err := st.EndSessionConnections(ctx, ids, at); n != 1 || err != nil {
			t.Fatalf("ended %d (%v), want 1", n, err)
		}
		if c, _ := st.ConnectionByID(ctx, gone); c.Running() || c.End != at || c.Reason != store.ReasonInterrupted {
			t.Errorf("the gone replica's session: %+v", c)
		}
		if c, _ := st.ConnectionByID(ctx, other); !c.Running() {
			t.Errorf("another replica's session ended: %+v", c)
		}
		if c, _ := st.ConnectionByID(ctx, done); c.End != t0.Add(time.Minute) || c.Reason != "" {
			t.Errorf("a finished session changed: %+v", c)
		}
		if c, _ := st.ConnectionByID(ctx, refused); !c.End.IsZero() || c.Reason != "policy" {
			t.Errorf("a refusal changed: %+v", c)
		}
		if n, err := st.EndSessionConnections(ctx, ids, at); n != 0 || err != nil {
			t.Errorf("second call: %d %v", n, err)
		}
		if n, err := st.EndSessionConnections(ctx, nil, at); n != 0 || err != nil {
			t.Errorf("no sessions: %d %v", n, err)
		}
	})
}
