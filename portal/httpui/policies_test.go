package httpui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/policy"
	"github.com/keyway-dev/keyway/portal/store"
)

// TestPolicyForms creates, refuses, edits and deletes a policy through the
// admin pages, and checks that what was saved is what the engine applies.
func TestPolicyForms(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	admin := f.client("admin")

	resp := f.do(admin, "GET", "/admin/policies", nil, nil)
	if body := readBody(resp); resp.StatusCode != 200 || !strings.Contains(body, "No policies yet") || !strings.Contains(body, `href="/admin/policies/new"`) {
		t.Fatalf("empty list: %d %.500s", resp.StatusCode, body)
	}
	resp = f.do(admin, "GET", "/admin/policies/new", nil, nil)
	body := readBody(resp)
	for _, want := range []string{`<label for="networks">`, `<label for="windows">`, `<label for="time_zone">`, `value="UTC"`,
		`name="allow_terminal" value="on" checked`, `name="enabled" value="on" checked`, fmt.Sprintf(`value="group:%d"`, f.group.ID),
		fmt.Sprintf(`value="resource:%d"`, f.resource.ID), `href="/admin/policies" aria-current="page"`} {
		if !strings.Contains(body, want) {
			t.Errorf("new policy form lacks %s", want)
		}
	}

	good := url.Values{"name": {"office hours"}, "scope": {fmt.Sprintf("group:%d", f.group.ID)}, "networks": {"10.0.0.0/8\n2001:db8::/32"},
		"windows": {"Mon-Fri 09:00-17:00\nSat 10:00-12:00"}, "time_zone": {"Europe/Paris"}, "max_session_minutes": {"90"},
		"max_sessions_per_user": {"2"}, "step_up_minutes": {"15"}, "allow_terminal": {"on"}, "allow_download": {"on"}, "enabled": {"on"}}
	with := func(k, v string) url.Values {
		form := url.Values{}
		for key, vals := range good {
			form[key] = vals
		}
		form.Set(k, v)
		return form
	}
	for _, tc := range []struct {
		field, value, msg string
	}{
		{"networks", "10.0.0.0/33", `&#34;10.0.0.0/33&#34; is not a network`},
		{"networks", "intranet", "is not a network such as 10.0.0.0/8"},
		{"windows", "Mon-Fri 9-17", `Line 1: &#34;9&#34; is not a time of day`},
		{"windows", "Mon 09:00-10:00\nWeekdays 09:00-17:00", "Line 2: &#34;weekdays&#34; is not a day of the week"},
		{"windows", "Mon 09:00-09:00", "is empty"},
		{"time_zone", "Mars/Olympus", "is not a time zone name such as Europe/Paris"},
		{"time_zone", "Local", "is not a time zone name"},
		{"name", "", "Use 1 to 64 letters"},
		{"name", "<script>", "Use 1 to 64 letters"},
		{"scope", "group:999999", "Choose everyone, a resource or a group."},
		{"scope", "planet:1", "Choose everyone, a resource or a group."},
		{"max_session_minutes", "1", "Give whole minutes from 2 to 10080"},
		{"max_session_minutes", "soon", "Give whole minutes from 2 to 10080"},
		{"max_sessions_per_user", "17", "Give a number from 1 to 16"},
		{"max_sessions_per_user", "-1", "Give a number from 1 to 16"},
		{"step_up_minutes", "1441", "Enter whole minutes from 1 to 1440 (a day)"},
		{"step_up_minutes", "now", "Enter whole minutes from 1 to 1440 (a day)"},
	} {
		resp := f.do(admin, "POST", "/admin/policies", with(tc.field, tc.value), nil)
		body := readBody(resp)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, tc.msg) {
			t.Errorf("%s=%q: %d, want 422 with %q\n%.300s", tc.field, tc.value, resp.StatusCode, tc.msg, errorsIn(body))
			continue
		}
		// The form comes back as typed, with the field marked.
		if !strings.Contains(body, `aria-errormessage="`+tc.field+`-error"`) || !strings.Contains(body, html.EscapeString("Mon-Fri")) {
			t.Errorf("%s=%q: field not marked or form not refilled", tc.field, tc.value)
		}
	}
	if ps, _ := f.store.ListPolicies(ctx); len(ps) != 0 {
		t.Fatalf("a refused form saved %d policies", len(ps))
	}

	resp = f.do(admin, "POST", "/admin/policies", good, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	ps, _ := f.store.ListPolicies(ctx)
	if len(ps) != 1 {
		t.Fatalf("%d policies", len(ps))
	}
	p := ps[0]
	if p.ScopeKind != store.ScopeGroup || p.ScopeName != "ops" || len(p.Networks) != 2 || len(p.Windows) != 2 || p.TimeZone != "Europe/Paris" ||
		p.MaxSession != 90*time.Minute || p.MaxSessionsPerUser != 2 || p.StepUpMinutes != 15 || !p.Enabled ||
		p.Allow != (store.PolicyAllow{Terminal: true, Download: true}) {
		t.Fatalf("saved %+v", p)
	}
	resp = f.do(admin, "POST", "/admin/policies", good, nil)
	if body := readBody(resp); resp.StatusCode != 422 || !strings.Contains(body, "A policy named office hours already exists.") {
		t.Errorf("duplicate name: %d %s", resp.StatusCode, errorsIn(body))
	}

	// The list shows it; the engine applies it to members of ops.
	resp = f.do(admin, "GET", "/admin/policies", nil, nil)
	body = readBody(resp)
	for _, want := range []string{"office hours", "Members of group “ops”", "10.0.0.0/8, 2001:db8::/32", "Mon–Fri 09:00–17:00",
		"Sat 10:00–12:00", "Europe/Paris", "90 min per session", "2 at a time", "no upload", "no clipboard-in", ">enabled<"} {
		if !strings.Contains(body, want) {
			t.Errorf("list lacks %q", want)
		}
	}
	u := f.users["user"]
	u.Groups = []string{"ops"}
	if err := f.store.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	monday := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	e := policy.New(f.store)
	in := policy.Input{User: u, Resource: f.resource, Kind: policy.KindTerminal, ClientAddr: netip.MustParseAddr("10.1.1.1"), Now: monday}
	if eff, err := e.Check(ctx, in); err != nil || eff.MaxSession != 90*time.Minute || eff.Upload || !eff.Download {
		t.Fatalf("check: %+v %v", eff, err)
	}
	in.ClientAddr = netip.MustParseAddr("192.0.2.1")
	var ref *policy.Refusal
	if _, err := e.Check(ctx, in); !errors.As(err, &ref) || ref.Policy != "office hours" || ref.Rule != policy.RuleNetwork {
		t.Fatalf("check from outside: %v", err)
	}

	// Edit: the form shows what was saved; a change is saved and audited.
	resp = f.do(admin, "GET", fmt.Sprintf("/admin/policies/%d", p.ID), nil, nil)
	body = readBody(resp)
	for _, want := range []string{"Mon–Fri 09:00–17:00\nSat 10:00–12:00", "10.0.0.0/8\n2001:db8::/32", `value="Europe/Paris"`, `value="90"`,
		fmt.Sprintf(`value="group:%d" selected`, f.group.ID), "Delete policy"} {
		if !strings.Contains(body, want) {
			t.Errorf("edit form lacks %q", want)
		}
	}
	edit := with("networks", "")
	edit.Set("name", "office hours 2")
	edit.Del("enabled")
	resp = f.do(admin, "POST", fmt.Sprintf("/admin/policies/%d", p.ID), edit, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("update: %d", resp.StatusCode)
	}
	if p, _ = f.store.PolicyByID(ctx, p.ID); p.Name != "office hours 2" || len(p.Networks) != 0 || p.Enabled {
		t.Fatalf("after update %+v", p)
	}
	resp = f.do(admin, "POST", fmt.Sprintf("/admin/policies/%d", p.ID), with("windows", "Mon 25:00-26:00"), nil)
	if body := readBody(resp); resp.StatusCode != 422 || !strings.Contains(body, "Edit policy") {
		t.Errorf("bad update: %d", resp.StatusCode)
	}
	if _, err := e.Check(ctx, in); err != nil {
		t.Fatalf("a disabled policy still applies: %v", err)
	}
	resp = f.do(admin, "POST", fmt.Sprintf("/admin/policies/%d/delete", p.ID), url.Values{}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if _, err := f.store.PolicyByID(ctx, p.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	resp = f.do(admin, "GET", "/admin/policies/999999", nil, nil)
	if readBody(resp); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing policy: %d", resp.StatusCode)
	}

	for _, action := range []string{audit.ActionPolicyCreate, audit.ActionPolicyUpdate, audit.ActionPolicyDelete} {
		evs, _ := f.audit.Search(ctx, store.AuditFilter{Actor: "admin1", Action: action})
		if len(evs) != 1 {
			t.Errorf("%d %s events, want 1", len(evs), action)
			continue
		}
		if evs[0].Details["scope"] != "group:ops" || evs[0].Details["windows"] != "Mon–Fri 09:00–17:00; Sat 10:00–12:00" {
			t.Errorf("%s details %v", action, evs[0].Details)
		}
	}
	if evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionPolicyUpdate}); len(evs) == 1 && evs[0].Details["was"] != "office hours" {
		t.Errorf("rename not audited: %v", evs[0].Details)
	}
}

// errorsIn picks a page's field errors, for failure messages.
func errorsIn(body string) string {
	var out []string
	for _, part := range strings.Split(body, `class="field-error">`)[1:] {
		msg, _, _ := strings.Cut(part, "<")
		out = append(out, msg)
	}
	return strings.Join(out, " | ")
}

func TestPolicyAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	adminTok, _, _ := f.store.CreateToken(ctx, f.users["admin"].ID, "t", time.Hour)
	auditorTok, _, _ := f.store.CreateToken(ctx, f.users["auditor"].ID, "t", time.Hour)
	c := f.srv.Client()
	call := func(tok, method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readBody(resp)
	}
	status, body := call(adminTok, "POST", "/api/v1/policies", `{"name":"night","windows":[{"days":["fri"],"from":"22:00","to":"06:00"}],"time_zone":"Europe/Paris"}`)
	if status != 201 {
		t.Fatalf("create: %d %s", status, body)
	}
	var p apiPolicy
	json.Unmarshal([]byte(body), &p)
	if p.ID == 0 || p.ScopeKind != "everyone" || !p.Enabled || !p.Allow.Terminal || !p.Allow.ClipboardOut || len(p.Windows) != 1 ||
		p.Windows[0].From != "22:00" || p.Windows[0].To != "06:00" || p.Windows[0].Days[0] != "fri" || p.Networks == nil {
		t.Fatalf("created %s", body)
	}
	id := fmt.Sprint(p.ID)
	for _, tc := range []struct {
		tok, method, path, body string
		status                  int
		contains                string
	}{
		{auditorTok, "GET", "/api/v1/policies", "", 403, "role"},
		{auditorTok, "POST", "/api/v1/policies", `{"name":"x"}`, 403, "role"},
		{auditorTok, "DELETE", "/api/v1/policies/" + id, "", 403, "role"},
		{adminTok, "GET", "/api/v1/policies", "", 200, `"name":"night"`},
		{adminTok, "GET", "/api/v1/policies/" + id, "", 200, `"days":["fri"],"from":"22:00","to":"06:00"`},
		{adminTok, "GET", "/api/v1/policies/999999", "", 404, "not found"},
		{adminTok, "POST", "/api/v1/policies", `{"name":"night"}`, 422, "already exists"},
		{adminTok, "POST", "/api/v1/policies", `{"name":"n2","networks":["10.0.0.0/33"]}`, 422, `"networks"`},
		{adminTok, "POST", "/api/v1/policies", `{"name":"n2","windows":[{"days":[],"from":"09:00","to":"17:00"}]}`, 422, "Window 1: give the days"},
		{adminTok, "POST", "/api/v1/policies", `{"name":"n2","windows":[{"days":["mon"],"from":"9am","to":"17:00"}]}`, 422, `"windows"`},
		{adminTok, "POST", "/api/v1/policies", `{"name":"n2","time_zone":"Nowhere/City"}`, 422, `"time_zone"`},
		{adminTok, "POST", "/api/v1/policies", fmt.Sprintf(`{"name":"n2","scope_kind":"resource","scope_id":%d}`, f.other.ID+100), 422, `"scope"`},
		{adminTok, "POST", "/api/v1/policies", `{"name":"n2","max_session_minutes":1}`, 422, `"max_session_minutes"`},
		{adminTok, "POST", "/api/v1/policies", `{"name":"n2","allow":{"teleport":true}}`, 400, "unknown field"},
		{adminTok, "POST", "/api/v1/policies", `{"name":"n2","windows":"always"}`, 400, "malformed JSON"},
		{adminTok, "POST", "/api/v1/policies", fmt.Sprintf(`{"name":"web only","scope_kind":"resource","scope_id":%d,"networks":["::ffff:10.0.0.0/104"],"allow":{"upload":false}}`, f.resource.ID),
			201, `"scope_kind":"resource","scope_id":` + fmt.Sprint(f.resource.ID) + `,"networks":["10.0.0.0/8"]`},
		// PUT changes what it gives and keeps the rest.
		{adminTok, "PUT", "/api/v1/policies/" + id, `{"enabled":false,"allow":{"upload":false}}`, 200, `"windows":[{"days":["fri"],"from":"22:00","to":"06:00"}],"time_zone":"Europe/Paris"`},
		{adminTok, "GET", "/api/v1/policies/" + id, "", 200, `"allow":{"terminal":true,"upload":false,"download":true,"clipboard_in":true,"clipboard_out":true},"enabled":false`},
		{adminTok, "PUT", "/api/v1/policies/" + id, `{"windows":[]}`, 200, `"windows":[]`},
		{adminTok, "PUT", "/api/v1/policies/" + id, `{"networks":["192.0.2.0/24","198.51.100.7"]}`, 200, `"networks":["192.0.2.0/24","198.51.100.7/32"]`},
		{adminTok, "PUT", "/api/v1/policies/" + id, `{"networks":["192.0.2.0/24"]}`, 200, `"networks":["192.0.2.0/24"],`},
		{adminTok, "PUT", "/api/v1/policies/" + id, `{"name":""}`, 422, `"name"`},
		{adminTok, "PUT", "/api/v1/policies/999999", `{}`, 404, "not found"},
		{adminTok, "DELETE", "/api/v1/policies/" + id, "", 204, ""},
		{adminTok, "DELETE", "/api/v1/policies/" + id, "", 404, "not found"},
	} {
		status, body := call(tc.tok, tc.method, tc.path, tc.body)
		if status != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("%s %s %s: %d %s; want %d containing %q", tc.method, tc.path, tc.body, status, body, tc.status, tc.contains)
		}
	}
	for _, action := range []string{audit.ActionPolicyCreate, audit.ActionPolicyUpdate, audit.ActionPolicyDelete} {
		if evs, _ := f.audit.Search(ctx, store.AuditFilter{Actor: "admin1", Action: action}); len(evs) == 0 {
			t.Errorf("no %s event", action)
		}
	}
}
