package httpui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/web/ui"
)

func TestContentDisposition(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"report.pdf", `attachment; filename="report.pdf"; filename*=UTF-8''report.pdf`},
		{"with space.txt", `attachment; filename="with space.txt"; filename*=UTF-8''with%20space.txt`},
		{"ünï.txt", `attachment; filename="_n_.txt"; filename*=UTF-8''%C3%BCn%C3%AF.txt`},
		{"a\r\nSet-Cookie: x=y", `attachment; filename="a__Set-Cookie: x=y"; filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x%3Dy`},
		{`q"uote\;%.txt`, `attachment; filename="q_uote___.txt"; filename*=UTF-8''q%22uote%5C%3B%25.txt`},
	} {
		got := contentDisposition(tc.name)
		if got != tc.want {
			t.Errorf("contentDisposition(%q) = %s, want %s", tc.name, got, tc.want)
		}
		if strings.ContainsAny(got, "\r\n") {
			t.Errorf("contentDisposition(%q) breaks the header", tc.name)
		}
	}
}

func TestSortRows(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	rows := []ui.FileRow{
		{Name: "b.txt", Size: 1, Modified: t0.Add(2 * time.Hour)},
		{Name: "dir", IsDir: true},
		{Name: "a.txt", Size: 30, Modified: t0},
		{Name: "c.txt", Size: 20, Modified: t0.Add(time.Hour)},
	}
	names := func() string {
		var n []string
		for _, r := range rows {
			n = append(n, r.Name)
		}
		return strings.Join(n, " ")
	}
	for _, tc := range []struct {
		key  string
		desc bool
		want string
	}{
		{"", false, "dir a.txt b.txt c.txt"},
		{"name", true, "dir c.txt b.txt a.txt"},
		{"size", false, "dir b.txt c.txt a.txt"},
		{"modified", true, "dir b.txt c.txt a.txt"},
	} {
		sortRows(rows, tc.key, tc.desc)
		if got := names(); got != tc.want {
			t.Errorf("sort by %q desc=%v: %s, want %s", tc.key, tc.desc, got, tc.want)
		}
	}
}

// TestFilesRoutesNeedFilesGrant checks every file route against a user
// whose grant allows sessions only, one with no grant, and the grant form
// and API that set the mode.
func TestFilesRoutesNeedFilesGrant(t *testing.T) {
	f := newFixture(t)
	user := f.client("user") // a terminal grant on f.resource
	routes := []struct{ method, path string }{
		{"GET", "/files/%d"}, {"GET", "/files/%d/download?path=/etc/hostname"}, {"POST", "/files/%d/upload?path=/tmp&name=x"},
		{"POST", "/files/%d/mkdir"}, {"POST", "/files/%d/rename"}, {"POST", "/files/%d/delete"}, {"POST", "/files/%d/chmod"},
	}
	for _, id := range []int64{f.resource.ID, f.other.ID} {
		for _, r := range routes {
			resp := f.do(user, r.method, fmt.Sprintf(r.path, id), url.Values{"path": {"/tmp"}, "name": {"x"}}, nil)
			readBody(resp)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s without a files grant: %d, want 404", r.method, fmt.Sprintf(r.path, id), resp.StatusCode)
			}
		}
	}
	// The home page offers what the grant allows.
	if body := readBody(f.do(user, "GET", "/", nil, nil)); !strings.Contains(body, fmt.Sprintf(`href="/connect/%d"`, f.resource.ID)) || strings.Contains(body, "/files/") {
		t.Error("home page of a terminal-only grant")
	}

	// An admin grants files only: the terminal closes, the file browser opens.
	admin := f.client("admin")
	f.store.DeleteGrant(context.Background(), f.grant.ID)
	resp := f.do(admin, "POST", "/admin/grants", url.Values{"resource_id": {fmt.Sprint(f.resource.ID)}, "subject": {fmt.Sprintf("user:%d", f.users["user"].ID)}, "mode": {"files"}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("grant files: %d", resp.StatusCode)
	}
	body := readBody(f.do(user, "GET", "/", nil, nil))
	if strings.Contains(body, fmt.Sprintf(`href="/connect/%d"`, f.resource.ID)) || !strings.Contains(body, fmt.Sprintf(`href="/files/%d"`, f.resource.ID)) {
		t.Error("home page of a files-only grant")
	}
	if resp := f.do(user, "GET", fmt.Sprintf("/connect/%d", f.resource.ID), nil, nil); readBody(resp) != "" && resp.StatusCode != http.StatusNotFound {
		t.Errorf("terminal with a files-only grant: %d", resp.StatusCode)
	}
	// The fixture's target does not listen: the browser says so in words.
	resp = f.do(user, "GET", fmt.Sprintf("/files/%d", f.resource.ID), nil, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "gateway") {
		t.Errorf("files with no gateway: %d", resp.StatusCode)
	}
	gs, _ := f.store.GrantsForResource(context.Background(), f.resource.ID)
	if len(gs) != 1 || gs[0].Mode != store.GrantFiles {
		t.Errorf("grants: %+v", gs)
	}
	// Files on a desktop resource cannot be granted.
	vnc, _ := f.store.CreateResource(context.Background(), store.Resource{Name: "desk", Protocol: "vnc", Host: "127.0.0.1", Port: 5900}, &store.Secrets{Password: "p"})
	resp = f.do(admin, "POST", "/admin/grants", url.Values{"resource_id": {fmt.Sprint(vnc.ID)}, "subject": {fmt.Sprintf("user:%d", f.users["user"].ID)}, "mode": {"both"}}, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "Only SSH resources have files") {
		t.Errorf("files grant on a VNC resource: %d", resp.StatusCode)
	}
}

func TestResourceFormFileOptions(t *testing.T) {
	f := newFixture(t)
	admin := f.client("admin")
	form := url.Values{"name": {"files-box"}, "protocol": {"ssh"}, "host": {"10.0.0.9"}, "port": {"22"}, "login": {"u"},
		"password": {"pw"}, "max_upload": {"1.5"}, "no_download": {"on"}}
	resp := f.do(admin, "POST", "/admin/resources", form, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	rs, _ := f.store.ListResources(context.Background())
	var got store.Options
	for _, r := range rs {
		if r.Name == "files-box" {
			got = r.Options
		}
	}
	if got.MaxUploadBytes != 3<<19 || !got.NoDownload || got.NoUpload {
		t.Errorf("options = %+v", got)
	}
	form.Set("name", "files-box2")
	form.Set("max_upload", "-3")
	if resp := f.do(admin, "POST", "/admin/resources", form, nil); readBody(resp) == "" || resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("negative upload limit: %d", resp.StatusCode)
	}
}
