package httpui

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/recordings/storage"
)

// addRecording stores a recording of the fixture's resource by user1
// whose output says text, as an upload would.
func (f *fixture) addRecording(session, text string) store.Recording {
	f.t.Helper()
	data := castOf(f.t, session, text)
	m := recMeta(session, data)
	rel := storage.Path(session, m.Start, ".cast")
	f.storeRecording(session, rel, data)
	rec, err := f.store.AddRecording(context.Background(), store.Recording{SessionID: session, User: "user1", Resource: "web", Protocol: "ssh",
		GatewayID: 1, Gateway: "gw-a", ClientAddr: "192.0.2.7", Format: "asciicast", Start: m.Start, End: m.End,
		Size: m.Size, SHA256: m.SHA256, Path: rel}, "$ echo "+text+"\n"+text+"\n")
	if err != nil {
		f.t.Fatal(err)
	}
	return rec
}

// storeRecording puts data in the fixture's recording store at rel, as
// an upload does.
func (f *fixture) storeRecording(session, rel string, data []byte) {
	f.t.Helper()
	ctx := context.Background()
	unlock, err := f.recordings.Lock(session)
	if err != nil {
		f.t.Fatal(err)
	}
	defer unlock()
	if _, err := f.recordings.Append(ctx, session, rel, 0, bytes.NewReader(data), int64(len(data))); err != nil {
		f.t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if _, err := f.recordings.Commit(ctx, session, rel, int64(len(data)), hex.EncodeToString(sum[:])); err != nil {
		f.t.Fatal(err)
	}
}

func TestRecordingsPages(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	auditor := f.client("auditor")
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp := f.do(auditor, "GET", path, nil, nil)
		return resp, readBody(resp)
	}

	// Empty state says what to do.
	if resp, body := get("/recordings"); resp.StatusCode != 200 || !strings.Contains(body, "No recordings yet") {
		t.Fatalf("empty recordings page: %d\n%.500s", resp.StatusCode, body)
	}
	var recs []store.Recording
	for i := range recordingsPageSize + 5 {
		recs = append(recs, f.addRecording(fmt.Sprintf("P%d", i), fmt.Sprintf("kw-word-%d", i)))
	}
	resp, body := get("/recordings")
	if resp.StatusCode != 200 || strings.Count(body, "data-recording=") != recordingsPageSize || !strings.Contains(body, "Older recordings") {
		t.Fatalf("first page: %d, %d rows", resp.StatusCode, strings.Count(body, "data-recording="))
	}
	if !strings.Contains(body, `href="/recordings"`) || !strings.Contains(body, "aria-current=\"page\"") {
		t.Error("the navigation does not mark Recordings")
	}
	// Text search finds one session by a word of its output.
	_, body = get("/recordings?q=kw-word-7")
	if strings.Count(body, "data-recording=") != 1 || !strings.Contains(body, fmt.Sprintf(`data-recording="%d"`, recs[7].ID)) {
		t.Fatalf("search by text:\n%.2000s", body)
	}
	_, body = get("/recordings?q=no-such-words")
	if !strings.Contains(body, "No recordings match these filters") {
		t.Fatal("no empty state for a search without results")
	}
	// A time range in the browser's zone: 05:06 UTC is 06:06 in Paris.
	if _, body = get("/recordings?tz=Europe/Paris&since=2026-03-04T06:06&until=2026-03-04T06:07"); strings.Count(body, "data-recording=") != recordingsPageSize {
		t.Fatal("time range in the viewer's zone found nothing")
	}
	if _, body = get("/recordings?tz=Europe/Paris&since=2026-03-04T06:07"); strings.Count(body, "data-recording=") != 0 {
		t.Fatal("time range after every recording found some")
	}
	if resp, _ := get("/recordings?since=soon"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad time: %d", resp.StatusCode)
	}

	// The player page names the file and allows WebAssembly, nothing more.
	resp, body = get(fmt.Sprintf("/recordings/%d", recs[3].ID))
	if resp.StatusCode != 200 || !strings.Contains(body, fmt.Sprintf(`data-src="/recordings/%d/file"`, recs[3].ID)) ||
		!strings.Contains(body, "/static/player.js") || !strings.Contains(body, recs[3].SHA256) {
		t.Fatalf("player page: %d\n%.1000s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self' 'wasm-unsafe-eval';") {
		t.Fatalf("player CSP: %s", csp)
	}
	if csp := f.do(auditor, "GET", "/recordings", nil, nil).Header.Get("Content-Security-Policy"); strings.Contains(csp, "wasm") {
		t.Fatalf("other pages allow WebAssembly: %s", csp)
	}
	if evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionRecordingView}); len(evs) != 0 {
		t.Fatal("showing the metadata was audited as viewing")
	}

	// The file: inline for the player, attachment to download; both audited.
	resp, body = get(fmt.Sprintf("/recordings/%d/file", recs[3].ID))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != castType || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "inline;") ||
		!strings.Contains(body, "kw-word-3") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("file for the player: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = get(fmt.Sprintf("/recordings/%d/file?download=1", recs[3].ID))
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, `filename=keyway-web-user1-20260304T050607Z.cast`) {
		t.Fatalf("download disposition: %q", cd)
	}
	for _, action := range []string{audit.ActionRecordingView, audit.ActionRecordingDownload} {
		evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: action, Actor: "auditor1"})
		if len(evs) != 1 || evs[0].Details["session"] != "P3" || evs[0].Target != "web" {
			t.Errorf("%s events: %+v", action, evs)
		}
	}

	// Paging by the Older link walks every recording once.
	seen := map[string]bool{}
	next := "/recordings"
	for next != "" {
		_, body := get(next)
		for _, part := range strings.Split(body, `data-recording="`)[1:] {
			id := part[:strings.IndexByte(part, '"')]
			if seen[id] {
				t.Fatalf("recording %s on two pages", id)
			}
			seen[id] = true
		}
		next = ""
		if i := strings.Index(body, `href="/recordings?`); i >= 0 && strings.Contains(body, "Older recordings") {
			rest := body[i+len(`href="`):]
			link := rest[:strings.IndexByte(rest, '"')]
			if strings.Contains(link, "after=") {
				next = strings.ReplaceAll(link, "&amp;", "&")
			}
		}
	}
	if len(seen) != len(recs) {
		t.Fatalf("paging saw %d recordings, want %d", len(seen), len(recs))
	}
}

func TestResourceFormRecordingSettings(t *testing.T) {
	f := newFixture(t)
	admin := f.client("admin")
	form := url.Values{"name": {"rec-box"}, "protocol": {"ssh"}, "host": {"10.0.0.9"}, "port": {"22"}, "login": {"root"},
		"password": {"pw"}, "recording": {"required"}, "record_input": {"on"}}
	if resp := f.do(admin, "POST", "/admin/resources", form, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create: %d %s", resp.StatusCode, readBody(resp))
	}
	rs, _ := f.store.ListResources(context.Background())
	var res store.Resource
	for _, r := range rs {
		if r.Name == "rec-box" {
			res = r
		}
	}
	if res.Options.RecordingMode() != store.RecordingRequired || !res.Options.RecordInput {
		t.Fatalf("stored options %+v", res.Options)
	}
	body := readBody(f.do(admin, "GET", fmt.Sprintf("/admin/resources/%d", res.ID), nil, nil))
	if !strings.Contains(body, `<option value="required" selected>`) || !strings.Contains(body, `name="record_input" value="on" checked`) ||
		!strings.Contains(body, "typed input contains secrets") {
		t.Fatalf("edit form does not show the settings:\n%.3000s", body[strings.Index(body, "Session recording"):])
	}
	evs, _ := f.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionResourceCreate})
	if len(evs) == 0 || evs[0].Details["recording"] != "required, with input" {
		t.Fatalf("audit details: %+v", evs)
	}
}
