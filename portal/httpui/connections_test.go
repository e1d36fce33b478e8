package httpui

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// connT0 is when the test connections start: 05:06 UTC is 06:06 in Paris.
var connT0 = time.Date(2026, 3, 4, 5, 6, 0, 0, time.UTC)

// addConnection logs an attempt as portal/sessions would, finishing it
// when end is set.
func (f *fixture) addConnection(c store.Connection, end time.Time, in, out int64) int64 {
	f.t.Helper()
	ctx := context.Background()
	id, err := f.store.AddConnection(ctx, c)
	if err != nil {
		f.t.Fatal(err)
	}
	if !end.IsZero() {
		if err := f.store.FinishConnection(ctx, id, end, in, out); err != nil {
			f.t.Fatal(err)
		}
	}
	return id
}

// addHistory logs the three kinds of attempt: a finished session, a
// running one and a refusal by the hook with posture statuses.
func (f *fixture) addHistory() (finished, running, refused int64) {
	finished = f.addConnection(store.Connection{SessionID: "S-FIN", Start: connT0, User: "user1", ClientAddr: "192.0.2.7", Resource: "web",
		Protocol: "ssh", Gateway: "gw-a", Segment: "dmz", Result: store.ConnectionConnected, Posture: []string{"disk-encrypted"}},
		connT0.Add(62*time.Second), 2048, 3*1024*1024)
	running = f.addConnection(store.Connection{SessionID: "S-RUN", Start: connT0.Add(time.Minute), User: "admin1", ClientAddr: "2001:db8::1",
		Resource: "desk", Protocol: "rdp", Gateway: "gw-b", Result: store.ConnectionConnected}, time.Time{}, 0, 0)
	refused = f.addConnection(store.Connection{Start: connT0.Add(2 * time.Minute), User: "mallory", ClientAddr: "198.51.100.9", Resource: "db",
		Protocol: "sftp", Gateway: "gw-a", Result: store.ConnectionRefused, Reason: "client-connect-failed",
		Message: "Your laptop is not managed.", Posture: []string{"no-mdm", "av-stale"}}, time.Time{}, 0, 0)
	return finished, running, refused
}

func TestConnectionHistoryPage(t *testing.T) {
	f := newFixture(t)
	auditor := f.client("auditor")
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp := f.do(auditor, "GET", path, nil, nil)
		return resp, readBody(resp)
	}
	rows := func(body string) int { return strings.Count(body, "data-connection=") }

	// Empty state, and the tabs between the two views.
	resp, body := get("/sessions/history")
	if resp.StatusCode != 200 || !strings.Contains(body, "No connection attempts yet") {
		t.Fatalf("empty history: %d\n%.500s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `<a href="/sessions/history" aria-current="page">History</a>`) || !strings.Contains(body, `<a href="/sessions" aria-current="false">Live</a>`) {
		t.Errorf("the History tab is not marked:\n%.3000s", body)
	}
	if _, live := get("/sessions"); !strings.Contains(live, `<a href="/sessions" aria-current="page">Live</a>`) || !strings.Contains(live, `href="/sessions/history"`) {
		t.Error("the Live view has no tabs")
	}

	finished, running, refused := f.addHistory()
	_, body = get("/sessions/history")
	if rows(body) != 3 {
		t.Fatalf("%d rows, want 3", rows(body))
	}
	row := func(id int64) string {
		t.Helper()
		_, after, ok := strings.Cut(body, fmt.Sprintf(`data-connection="%d"`, id))
		if !ok {
			t.Fatalf("row %d missing", id)
		}
		r, _, _ := strings.Cut(after, "</tr>")
		return r
	}
	for _, tc := range []struct {
		id   int64
		want []string
	}{
		// Time as a <time> the browser shows in its zone; human sizes
		// each way; the duration.
		{finished, []string{`datetime="2026-03-04T05:06:00Z"`, "user1", "192.0.2.7", "web", "ssh", "gw-a", "dmz", `badge ok">connected`,
			`<span class="tag">disk-encrypted</span>`, "1m02s", "2.0 KiB", "3.0 MiB"}},
		{running, []string{"admin1", "2001:db8::1", "rdp", `badge ok">running`, ">none<"}},
		{refused, []string{"mallory", `badge warn">refused`, "Your laptop is not managed.", "client-connect-failed",
			`<span class="tag">no-mdm</span>`, `<span class="tag">av-stale</span>`}},
	} {
		r := row(tc.id)
		for _, w := range tc.want {
			if !strings.Contains(r, w) {
				t.Errorf("row %d lacks %q:\n%s", tc.id, w, r)
			}
		}
	}
	// A session the portal stopped during: no made-up traffic.
	lost := f.addConnection(store.Connection{Start: connT0.Add(-time.Hour), User: "carol", Resource: "web", Protocol: "ssh",
		Result: store.ConnectionConnected}, time.Time{}, 0, 0)
	if _, err := f.store.EndRunningConnections(context.Background(), connT0); err != nil {
		t.Fatal(err)
	}
	_, body = get("/sessions/history")
	if r := row(lost); !strings.Contains(r, `badge warn">interrupted`) || !strings.Contains(r, "its end and traffic are not known") || strings.Contains(r, " B ") {
		t.Errorf("interrupted session's row:\n%s", r)
	}
	// Neither a running nor a refused attempt has sizes or a duration yet.
	if strings.Contains(row(refused), " B<") || strings.Contains(row(running), " B<") {
		t.Error("byte counts shown for an attempt that has not ended")
	}

	// Filters, alone and together; times in the viewer's zone.
	for _, tc := range []struct {
		query string
		want  []int64
	}{
		{"user=USER1", []int64{finished}},
		{"result=refused", []int64{refused}},
		{"protocol=rdp", []int64{running}},
		{"gateway=gw-a&result=connected", []int64{finished}},
		{"resource=db", []int64{refused}},
		{"q=not+managed", []int64{refused}},
		{"q=connect-failed", []int64{refused}},
		{"tz=Europe/Paris&since=2026-03-04T06:07&until=2026-03-04T06:08", []int64{running}},
		{"since=2026-03-04T05:07:00Z", []int64{refused, running}},
	} {
		_, body := get("/sessions/history?" + tc.query)
		if rows(body) != len(tc.want) {
			t.Errorf("%s: %d rows, want %d", tc.query, rows(body), len(tc.want))
			continue
		}
		for _, id := range tc.want {
			if !strings.Contains(body, fmt.Sprintf(`data-connection="%d"`, id)) {
				t.Errorf("%s: row %d missing", tc.query, id)
			}
		}
	}
	if _, body := get("/sessions/history?user=nobody"); !strings.Contains(body, "No connection attempts match these filters") {
		t.Error("no empty state for filters without results")
	}
	// Bad filters are said in words, the form kept.
	for _, tc := range []struct{ query, field, words string }{
		{"result=maybe", "result", "Choose one of connected, refused, failed."},
		{"protocol=gopher", "protocol", "Choose one of ssh, sftp, rdp, vnc, tcp."},
		{"since=soon", "since", "Use a date and time such as 2026-01-31T14:00."},
		{"tz=Mars/Olympus&since=2026-03-04T06:07", "since", "Unknown time zone Mars/Olympus."},
		{"after=garbage", "after", "The page position in this address is not valid."},
	} {
		resp, body := get("/sessions/history?" + tc.query)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.words) ||
			strings.Contains(body, "Please correct") == (tc.field == "after") {
			t.Errorf("%s: %d, want 400 saying %q\n%.300s", tc.query, resp.StatusCode, tc.words, body)
		}
	}
	// A too long filter value is cut, not refused.
	if resp, _ := get("/sessions/history?user=" + strings.Repeat("x", 10000)); resp.StatusCode != 200 {
		t.Errorf("a long filter: %d", resp.StatusCode)
	}
}

func TestConnectionHistoryPaging(t *testing.T) {
	f := newFixture(t)
	auditor := f.client("auditor")
	const n = connectionsPageSize + 5
	// Pairs share a start, so a page boundary falls between equal times.
	for i := range n {
		f.addConnection(store.Connection{Start: connT0.Add(time.Duration(i/2) * time.Second), User: fmt.Sprintf("u%d", i),
			Resource: "web", Protocol: "ssh", Result: store.ConnectionFailed, Reason: "dial"}, time.Time{}, 0, 0)
	}
	seen := map[string]bool{}
	path, pages := "/sessions/history?result=failed", 0
	for path != "" {
		resp := f.do(auditor, "GET", path, nil, nil)
		body := readBody(resp)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		pages++
		for _, part := range strings.Split(body, "data-connection=")[1:] {
			id, _, _ := strings.Cut(part, ">")
			if seen[id] {
				t.Fatalf("row %s on two pages", id)
			}
			seen[id] = true
		}
		if pages == 2 && !strings.Contains(linkTo(body, "Newest attempts"), "result=failed") {
			t.Error("the second page has no way back to the newest, keeping the filter")
		}
		path = linkTo(body, "Older attempts")
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != n || pages != 2 {
		t.Fatalf("saw %d rows on %d pages, want %d on 2", len(seen), pages, n)
	}
}

// linkTo returns the href of the link whose text is text, "" if none.
func linkTo(body, text string) string {
	before, _, ok := strings.Cut(body, ">"+text+"</a>")
	if !ok {
		return ""
	}
	i := strings.LastIndex(before, `href="`)
	if i < 0 {
		return ""
	}
	href, _, _ := strings.Cut(before[i+len(`href="`):], `"`)
	return html.UnescapeString(href)
}

func TestConnectionHistoryCSV(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	auditor := f.client("auditor")
	finished, _, refused := f.addHistory()
	// Values a user or a hook chose, each a formula if a spreadsheet
	// believed it.
	hostile := f.addConnection(store.Connection{Start: connT0.Add(3 * time.Minute), User: "=cmd|' /C calc'!A0", ClientAddr: "192.0.2.66",
		Resource: "+web", Protocol: "ssh", Gateway: "@gw", Segment: "-seg", Result: store.ConnectionRefused, Reason: "policy",
		Message: "=HYPERLINK(\"http://evil\")", Posture: []string{"@SUM(1)", "ok"}}, time.Time{}, 0, 0)
	// More than one export batch.
	for i := range connectionsExportBatch {
		f.addConnection(store.Connection{Start: connT0.Add(-time.Duration(i+1) * time.Second), User: "bulk", Resource: "web",
			Protocol: "ssh", Result: store.ConnectionFailed, Reason: "dial"}, time.Time{}, 0, 0)
	}

	resp := f.do(auditor, "GET", "/sessions/history.csv", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), `attachment; filename="keyway-connections-`) {
		t.Fatalf("export: %d %v", resp.StatusCode, resp.Header)
	}
	recs, err := csv.NewReader(strings.NewReader(readBody(resp))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1+4+connectionsExportBatch {
		t.Fatalf("%d lines, want a header and %d rows", len(recs), 4+connectionsExportBatch)
	}
	head := strings.Join(recs[0], ",")
	if head != "id,start_utc,end_utc,duration_seconds,user,client_address,resource,protocol,gateway,segment,result,reason,message,posture,bytes_in,bytes_out,session_id" {
		t.Fatalf("header %s", head)
	}
	byID := map[string][]string{}
	for _, r := range recs[1:] {
		if byID[r[0]] != nil {
			t.Fatalf("row %s twice", r[0])
		}
		byID[r[0]] = r
	}
	h := byID[fmt.Sprint(hostile)]
	for i, want := range map[int]string{4: "'=cmd|' /C calc'!A0", 6: "'+web", 8: "'@gw", 9: "'-seg", 12: "'=HYPERLINK(\"http://evil\")", 13: "'@SUM(1); ok"} {
		if h[i] != want {
			t.Errorf("column %s: %q, want %q", recs[0][i], h[i], want)
		}
	}
	fin := byID[fmt.Sprint(finished)]
	if fin[1] != "2026-03-04T05:06:00Z" || fin[2] != "2026-03-04T05:07:02Z" || fin[3] != "62" || fin[14] != "2048" || fin[15] != "3145728" ||
		fin[13] != "disk-encrypted" || fin[16] != "S-FIN" {
		t.Errorf("finished row: %q", fin)
	}
	if r := byID[fmt.Sprint(refused)]; r[2] != "" || r[3] != "" || r[11] != "client-connect-failed" {
		t.Errorf("refused row: %q", r)
	}

	// The filters apply; the page position does not.
	resp = f.do(auditor, "GET", "/sessions/history.csv?result=refused&after=1_1", nil, nil)
	recs, _ = csv.NewReader(strings.NewReader(readBody(resp))).ReadAll()
	if len(recs) != 3 {
		t.Errorf("refused only: %d lines, want 3", len(recs))
	}
	if resp := f.do(auditor, "GET", "/sessions/history.csv?result=maybe", nil, nil); resp.StatusCode != http.StatusBadRequest ||
		!strings.Contains(readBody(resp), "Choose one of") {
		t.Errorf("bad filter: %d", resp.StatusCode)
	}
	// Each export is audited with its filters.
	evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionConnectionExport})
	if len(evs) != 2 || evs[0].Actor != "auditor1" || evs[0].Details["filters"] != "result=refused&after=1_1" {
		t.Fatalf("exports audited: %+v", evs)
	}
}

func TestConnectionsAPI(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	adminTok, _, _ := f.store.CreateToken(ctx, f.users["admin"].ID, "t", time.Hour)
	userTok, _, _ := f.store.CreateToken(ctx, f.users["user"].ID, "t", time.Hour)
	auditorTok, _, _ := f.store.CreateToken(ctx, f.users["auditor"].ID, "t", time.Hour)
	finished, running, refused := f.addHistory()
	c := f.srv.Client()
	call := func(tok, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", f.srv.URL+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readBody(resp)
	}
	for _, tc := range []struct {
		tok, path string
		status    int
		contains  string
	}{
		{"", "/api/v1/connections", 401, "missing bearer token"},
		{userTok, "/api/v1/connections", 403, "role"},
		{adminTok, "/api/v1/connections", 200, `"user":"mallory"`},
		{auditorTok, "/api/v1/connections?result=refused", 200, `"reason":"client-connect-failed","message":"Your laptop is not managed.","posture":["no-mdm","av-stale"],"running":false`},
		{auditorTok, "/api/v1/connections?user=admin1", 200, `"end":null,"duration_seconds":null`},
		{auditorTok, "/api/v1/connections?user=user1", 200, `"end":"2026-03-04T05:07:02Z","duration_seconds":62`},
		{auditorTok, "/api/v1/connections?user=nobody", 200, `{"connections":[]}`},
		{auditorTok, "/api/v1/connections?protocol=gopher", 422, `"protocol"`},
		{auditorTok, "/api/v1/connections?result=maybe", 422, `"result"`},
		{auditorTok, "/api/v1/connections?since=nonsense", 422, `"since"`},
		{auditorTok, "/api/v1/connections?after=x", 422, `"after"`},
		{auditorTok, "/api/v1/connections?limit=0", 422, `"limit"`},
		{auditorTok, "/api/v1/connections?limit=1001", 422, `"limit"`},
	} {
		status, body := call(tc.tok, tc.path)
		if status != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("GET %s: %d %s; want %d containing %s", tc.path, status, body, tc.status, tc.contains)
		}
	}
	// Paging one at a time walks every attempt, newest first, keeping the
	// filters.
	var ids []int64
	path := "/api/v1/connections?limit=1&since=2026-03-04T00:00:00Z"
	for path != "" {
		status, body := call(auditorTok, path)
		var page struct {
			Connections []apiConnection `json:"connections"`
			Next        string          `json:"next"`
		}
		if status != 200 || json.Unmarshal([]byte(body), &page) != nil || len(page.Connections) != 1 {
			t.Fatalf("GET %s: %d %s", path, status, body)
		}
		ids = append(ids, page.Connections[0].ID)
		if page.Next != "" && !strings.Contains(page.Next, "since=") {
			t.Fatalf("next page %s lost the filter", page.Next)
		}
		path = page.Next
		if len(ids) > 3 {
			t.Fatal("paging does not end")
		}
	}
	if fmt.Sprint(ids) != fmt.Sprint([]int64{refused, running, finished}) {
		t.Errorf("pages %v, want %v", ids, []int64{refused, running, finished})
	}
}
