package httpui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// TestSignInFirstRun: before anyone exists, the sign-in page says where the
// setup link is instead of showing a form nobody can use.
func TestSignInFirstRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if body := readBody(f.do(f.client(""), "GET", "/signin", nil, nil)); strings.Contains(body, "setup_url") || !strings.Contains(body, `name="password"`) {
		t.Fatal("with users, the sign-in page is not the form")
	}
	for _, u := range f.users {
		if err := f.store.DeleteUser(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
	}
	resp := f.do(f.client(""), "GET", "/signin", nil, nil)
	body := readBody(resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "setup_url") || !strings.Contains(body, "no users yet") || strings.Contains(body, `name="password"`) {
		t.Fatalf("first run: %d\n%s", resp.StatusCode, body)
	}
}

// TestNewGatewayAsksForSegment: with only the default segment, New gateway
// asks for the gateway's segment and continues, instead of claiming there
// is no segment.
func TestNewGatewayAsksForSegment(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	admin := f.client("admin")
	resp := f.do(admin, "GET", "/admin/gateways/new", nil, nil)
	body := readBody(resp)
	if resp.StatusCode != http.StatusOK || strings.Contains(body, "Create a segment first") ||
		!strings.Contains(body, "holds only the portal's own embedded gateway") || !strings.Contains(body, `name="then" value="gateway"`) {
		t.Fatalf("new gateway with only the default segment: %d\n%s", resp.StatusCode, body)
	}
	// A bad name is shown on the same page.
	resp = f.do(admin, "POST", "/admin/segments", url.Values{"name": {""}, "then": {"gateway"}}, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "Create segment and continue") {
		t.Fatalf("invalid segment from the gateway page: %d", resp.StatusCode)
	}
	resp = f.do(admin, "POST", "/admin/segments", url.Values{"name": {"office"}, "then": {"gateway"}}, nil)
	readBody(resp)
	seg, err := f.store.SegmentByName(context.Background(), "office")
	if err != nil {
		t.Fatal(err)
	}
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != fmt.Sprintf("/admin/gateways/new?segment=%d", seg.ID) {
		t.Fatalf("after creating the segment: %d to %q", resp.StatusCode, loc)
	}
	body = readBody(f.do(admin, "GET", resp.Header.Get("Location"), nil, nil))
	if !strings.Contains(body, "Segment “office” was created") || !strings.Contains(body, fmt.Sprintf(`<option value="%d" selected>office</option>`, seg.ID)) {
		t.Fatalf("the gateway form does not follow:\n%s", body)
	}
}

// TestTunnelSwitchSavesOnChange: the switch's form submits on change, with
// a Save button only for browsers without script.
func TestTunnelSwitchSavesOnChange(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	body := readBody(f.do(f.client("admin"), "GET", "/admin/gateways", nil, nil))
	if !strings.Contains(body, `class="tunnel" data-autosubmit`) || !strings.Contains(body, `<noscript><button type="submit" class="secondary">Save</button></noscript>`) {
		t.Fatal("the tunnel switch needs its own Save")
	}
}

// TestGrantsEditAndFilter: a grant's mode changes in place (audited), and
// the list filters by resource and by user or group.
func TestGrantsEditAndFilter(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	admin := f.client("admin")
	vnc, _ := f.store.CreateResource(ctx, store.Resource{Name: "desk", Protocol: "vnc", Host: "h", Port: 5900}, nil)
	vg, _ := f.store.CreateGrant(ctx, vnc.ID, "group", f.group.ID)

	resp := f.do(admin, "POST", fmt.Sprintf("/admin/grants/%d", f.grant.ID), url.Values{"mode": {"both"}, "back": {"/admin/grants?resource=1"}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/grants?resource=1" {
		t.Fatalf("change mode: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if a, _ := f.store.AccessTo(ctx, f.users["user"].ID, f.resource.ID); a != (store.Access{Terminal: true, Files: true}) {
		t.Fatalf("access after the change: %+v", a)
	}
	evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionGrantUpdate})
	if len(evs) != 1 || evs[0].Target != "web" || evs[0].Details["mode"] != "both" || evs[0].Details["was"] != "terminal" {
		t.Fatalf("grant change audited as %+v", evs)
	}
	body := readBody(f.do(admin, "GET", "/admin/grants?resource=1", nil, nil))
	if !strings.Contains(body, "The grant of “web” to user “user1” now allows terminal and files.") {
		t.Error("no flash naming the grant")
	}
	// A desktop has no files: its grant cannot be changed to them.
	resp = f.do(admin, "POST", fmt.Sprintf("/admin/grants/%d", vg.ID), url.Values{"mode": {"files"}}, nil)
	readBody(resp)
	if g, _ := f.store.GrantByID(ctx, vg.ID); g.Mode != store.GrantTerminal || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a VNC grant became %s", g.Mode)
	}
	if body := readBody(f.do(admin, "GET", "/admin/grants", nil, nil)); !strings.Contains(body, "Only SSH resources have files") {
		t.Error("the refusal is not shown")
	}
	// Another site's address is never where the form returns.
	resp = f.do(admin, "POST", fmt.Sprintf("/admin/grants/%d", f.grant.ID), url.Values{"mode": {"terminal"}, "back": {"//evil.example/admin/grants"}}, nil)
	readBody(resp)
	if loc := resp.Header.Get("Location"); loc != "/admin/grants" {
		t.Errorf("redirect to %q", loc)
	}

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"desk group:ops", "web user:user1"}},
		{fmt.Sprintf("resource=%d", vnc.ID), []string{"desk group:ops"}},
		{fmt.Sprintf("subject=user:%d", f.users["user"].ID), []string{"web user:user1"}},
		{fmt.Sprintf("subject=group:%d&resource=%d", f.group.ID, f.resource.ID), nil},
	} {
		body := readBody(f.do(admin, "GET", "/admin/grants?"+tc.query, nil, nil))
		var got []string
		for _, part := range strings.Split(body, `data-grant="`)[1:] {
			got = append(got, part[:strings.Index(part, `"`)])
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("grants?%s lists %v, want %v", tc.query, got, tc.want)
		}
	}
	// The per-row mode select exists only where files are possible.
	body = readBody(f.do(admin, "GET", "/admin/grants", nil, nil))
	if n := strings.Count(body, `class="grant-mode" data-autosubmit`); n != 1 {
		t.Errorf("%d editable grant modes, want 1 (the SSH one)", n)
	}
}

// TestFlashQuotesNames: names in flash messages are quoted, so that a
// name like "was" still reads as a name.
func TestFlashQuotesNames(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	admin := f.client("admin")
	for _, tc := range []struct {
		path string
		form url.Values
		want string
	}{
		{"/admin/groups", url.Values{"name": {"was"}}, "Group “was” was created."},
		{"/admin/users", url.Values{"name": {"bob"}, "role": {"user"}, "password": {"bob-password-1"}}, "User “bob” was created."},
		{"/admin/segments", url.Values{"name": {"lab"}}, "Segment “lab” was created."},
		{fmt.Sprintf("/admin/resources/%d/delete", f.other.ID), url.Values{}, "Resource “db” was deleted."},
		{fmt.Sprintf("/admin/grants/%d/delete", f.grant.ID), url.Values{}, "The grant of “web” to user “user1” was removed."},
	} {
		resp := f.do(admin, "POST", tc.path, tc.form, nil)
		readBody(resp)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST %s: %d", tc.path, resp.StatusCode)
		}
		if body := readBody(f.do(admin, "GET", resp.Header.Get("Location"), nil, nil)); !strings.Contains(body, tc.want) {
			t.Errorf("POST %s: flash lacks %q", tc.path, tc.want)
		}
	}
}

// TestLayoutPolish: a skip link, the icon on every page and at
// /favicon.ico, the admin pages under one Manage menu.
func TestLayoutPolish(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	resp := f.do(f.client(""), "GET", "/favicon.ico", nil, nil)
	body := readBody(resp)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/svg+xml" || !strings.HasPrefix(body, "<svg") {
		t.Fatalf("favicon: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp = f.do(f.client(""), "GET", "/static/favicon.svg", nil, nil)
	if readBody(resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("/static/favicon.svg: %d", resp.StatusCode)
	}
	for _, path := range []string{"/", "/admin/users", "/signin", fmt.Sprintf("/connect/%d", f.resource.ID)} {
		role := map[string]string{"/admin/users": "admin", "/signin": ""}[path]
		if path == "/" || strings.HasPrefix(path, "/connect/") {
			role = "user"
		}
		body := readBody(f.do(f.client(role), "GET", path, nil, nil))
		if !strings.Contains(body, `<link rel="icon" href="/static/favicon.svg"`) {
			t.Errorf("%s links no icon", path)
		}
		if path != fmt.Sprintf("/connect/%d", f.resource.ID) && !strings.Contains(body, `<a href="#main" class="skip-link">Skip to content</a>`) {
			t.Errorf("%s has no skip link", path)
		}
	}
	body = readBody(f.do(f.client("admin"), "GET", "/admin/users", nil, nil))
	if strings.Contains(body, "Resource admin") || !strings.Contains(body, `<summary class="current">Manage</summary>`) ||
		!strings.Contains(body, `<details class="nav-toggle">`) {
		t.Error("the admin header is not the Manage menu with a Menu toggle")
	}
	// Stale words: desktop sessions are recorded.
	body = readBody(f.do(f.client("admin"), "GET", "/admin/resources/new", nil, nil))
	if strings.Contains(body, "not recorded yet") || !strings.Contains(body, "desktop sessions (the screen as the browser got it)") {
		t.Error("the resource form says desktop sessions are not recorded")
	}
}
