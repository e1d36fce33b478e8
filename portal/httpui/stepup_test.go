package httpui

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
)

// setMFAAt writes mfa_at into the web session of client c, as the MFA
// check does (zero removes it).
func (f *fixture) setMFAAt(c *http.Client, at time.Time) {
	f.t.Helper()
	u, _ := url.Parse(f.srv.URL)
	var token string
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == f.ui.Sessions.Cookie.Name {
			token = ck.Value
		}
	}
	if token == "" {
		f.t.Fatal("the client has no web session")
	}
	ctx, err := f.ui.Sessions.Load(context.Background(), token)
	if err != nil {
		f.t.Fatal(err)
	}
	if at.IsZero() {
		f.ui.Sessions.Remove(ctx, sessionMFAAtKey)
	} else {
		f.ui.Sessions.Put(ctx, sessionMFAAtKey, at.UnixMilli())
	}
	if _, _, err := f.ui.Sessions.Commit(ctx); err != nil {
		f.t.Fatal(err)
	}
}

// setStepUp sets a resource's step-up minutes.
func (f *fixture) setStepUp(res store.Resource, minutes int) store.Resource {
	f.t.Helper()
	res, err := f.store.ResourceByID(context.Background(), res.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	res.Options.StepUpMinutes = minutes
	if err := f.store.UpdateResource(context.Background(), res, nil); err != nil {
		f.t.Fatal(err)
	}
	return res
}

// TestStepUpBrowserPaths: on a resource asking for an MFA check within 10
// minutes, the terminal, desktop and files pages send a stale session
// through /mfa/verify and back, and the terminal and desktop sockets and
// the file operations refuse it with step_up; a fresh check lets each
// through (to the fixture's missing gateway).
func TestStepUpBrowserPaths(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	vnc, err := f.store.CreateResource(ctx, store.Resource{Name: "desk", Protocol: "vnc", Host: "127.0.0.1", Port: 1}, &store.Secrets{Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.CreateGrant(ctx, vnc.ID, "user", f.users["user"].ID); err != nil {
		t.Fatal(err)
	}
	if err := f.store.DeleteGrant(ctx, f.grant.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.CreateGrantMode(ctx, f.resource.ID, "user", f.users["user"].ID, store.GrantBoth); err != nil {
		t.Fatal(err)
	}
	f.setStepUp(f.resource, 10)
	f.setStepUp(vnc, 10)
	user := f.client("user")
	host, _ := url.Parse(f.srv.URL)
	dialer := websocket.Dialer{TLSClientConfig: f.srv.Client().Transport.(*http.Transport).TLSClientConfig, Jar: user.Jar,
		Subprotocols: []string{"guacamole"}}

	terminal := func() control {
		t.Helper()
		ws, _, err := dialer.Dial(fmt.Sprintf("wss://%s/connect/%d/ws", host.Host, f.resource.ID), http.Header{"Origin": {f.srv.URL}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		var c control
		if err := ws.ReadJSON(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	desktop := func() string {
		t.Helper()
		ws, _, err := dialer.Dial(fmt.Sprintf("wss://%s/connect/%d/guac", host.Host, vnc.ID), http.Header{"Origin": {f.srv.URL}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		var all strings.Builder
		for !strings.Contains(all.String(), "5.error") {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("after %q: %v", all.String(), err)
			}
			all.Write(msg)
		}
		return all.String()
	}
	pages := []string{fmt.Sprintf("/connect/%d", f.resource.ID), fmt.Sprintf("/connect/%d", vnc.ID), fmt.Sprintf("/files/%d?path=/tmp", f.resource.ID)}
	ops := []struct{ method, path string }{
		{"GET", fmt.Sprintf("/files/%d/download?path=/etc/hostname", f.resource.ID)},
		{"POST", fmt.Sprintf("/files/%d/upload?path=/tmp&name=x", f.resource.ID)},
	}

	for _, tc := range []struct {
		name  string
		mfaAt time.Time
	}{{"never checked", time.Time{}}, {"stale", time.Now().Add(-11 * time.Minute)}} {
		f.setMFAAt(user, tc.mfaAt)
		for _, p := range pages {
			resp := f.do(user, "GET", p, nil, nil)
			readBody(resp)
			if want := "/mfa/verify?next=" + url.QueryEscape(p); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
				t.Errorf("%s, GET %s: %d to %q, want 303 to %q", tc.name, p, resp.StatusCode, resp.Header.Get("Location"), want)
			}
		}
		if c := terminal(); c.Type != "error" || c.Code != sessions.CodeStepUp || !strings.HasPrefix(c.Message, sessions.MsgStepUp) {
			t.Errorf("%s, terminal socket: %+v", tc.name, c)
		}
		if got := desktop(); !strings.Contains(got, sessions.MsgStepUp) {
			t.Errorf("%s, desktop socket: %q", tc.name, got)
		}
		for _, op := range ops {
			resp := f.do(user, op.method, op.path, url.Values{}, nil)
			if body := readBody(resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, sessions.MsgStepUp) {
				t.Errorf("%s, %s %s: %d", tc.name, op.method, op.path, resp.StatusCode)
			}
		}
	}
	evs, err := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionConnect, Outcome: audit.OutcomeDenied})
	if err != nil {
		t.Fatal(err)
	}
	var refused int
	for _, ev := range evs {
		if ev.Details["code"] == sessions.CodeStepUp {
			refused++
		}
	}
	// Each round: the files page's admission, two sockets, two file
	// operations.
	if refused != 2*5 {
		t.Errorf("%d step-up refusals audited, want 10", refused)
	}

	// A fresh check: the pages render, the sockets and operations go on
	// to the gateway (the fixture has none).
	f.setMFAAt(user, time.Now().Add(-9*time.Minute))
	for _, p := range pages[:2] {
		if resp := f.do(user, "GET", p, nil, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("fresh, GET %s: %d", p, resp.StatusCode)
		}
	}
	if resp := f.do(user, "GET", pages[2], nil, nil); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("fresh, GET %s: %d, want 502 (no gateway)", pages[2], resp.StatusCode)
	}
	if c := terminal(); c.Code != "no_gateway" {
		t.Errorf("fresh, terminal socket: %+v", c)
	}
	if got := desktop(); strings.Contains(got, sessions.MsgStepUp) || !strings.Contains(got, "gateway") {
		t.Errorf("fresh, desktop socket: %q", got)
	}
	for _, op := range ops {
		resp := f.do(user, op.method, op.path, url.Values{}, nil)
		if body := readBody(resp); resp.StatusCode == http.StatusForbidden || strings.Contains(body, sessions.MsgStepUp) {
			t.Errorf("fresh, %s %s: %d %s", op.method, op.path, resp.StatusCode, body)
		}
	}

	// Without step-up, no check is asked for.
	f.setMFAAt(user, time.Time{})
	f.setStepUp(f.resource, 0)
	if resp := f.do(user, "GET", pages[0], nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("no step-up, GET %s: %d", pages[0], resp.StatusCode)
	}
	// A policy asking for it is honoured like the resource's.
	if _, err := f.store.CreatePolicy(ctx, store.Policy{Name: "mfa", ScopeKind: store.ScopeEveryone, TimeZone: "UTC",
		Allow: store.AllowAll, StepUpMinutes: 5, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	f.setMFAAt(user, time.Now().Add(-6*time.Minute))
	if resp := f.do(user, "GET", pages[0], nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("policy step-up, stale, GET %s: %d", pages[0], resp.StatusCode)
	}
	if c := terminal(); c.Code != sessions.CodeStepUp {
		t.Errorf("policy step-up, stale, terminal socket: %+v", c)
	}
}

// TestStepUpForms: the resource form (every protocol, native ones too)
// and the API keep a resource's step-up minutes and refuse one out of
// range; the policy API keeps a policy's.
func TestStepUpForms(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	admin := f.client("admin")
	find := func(name string) store.Resource {
		t.Helper()
		res, err := f.store.ResourceByName(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, form := range []url.Values{
		{"name": {"box"}, "protocol": {"ssh"}, "host": {"10.0.0.9"}, "port": {"22"}, "login": {"u"}, "password": {"pw"}, "step_up": {"15"}},
		{"name": {"pg"}, "protocol": {"tcp"}, "host": {"10.0.0.9"}, "port": {"5432"}, "step_up": {"15"}},
		{"name": {"lan"}, "protocol": {"network"}, "networks": {"10.0.0.0/8 tcp/22"}, "step_up": {"15"}},
	} {
		resp := f.do(admin, "POST", "/admin/resources", form, nil)
		if body := readBody(resp); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("create %s: %d %s", form.Get("name"), resp.StatusCode, errorsIn(body))
		}
		if got := find(form.Get("name")).Options.StepUpMinutes; got != 15 {
			t.Errorf("%s: step-up %d, want 15", form.Get("name"), got)
		}
		page := readBody(f.do(admin, "GET", fmt.Sprintf("/admin/resources/%d", find(form.Get("name")).ID), nil, nil))
		if !strings.Contains(page, `name="step_up"`) || !strings.Contains(page, `value="15"`) {
			t.Errorf("%s: the edit form does not show the step-up minutes", form.Get("name"))
		}
		for _, bad := range []string{"1441", "-5", "soon"} {
			form := maps.Clone(form)
			form.Set("name", form.Get("name")+"2")
			form.Set("step_up", bad)
			resp := f.do(admin, "POST", "/admin/resources", form, nil)
			if body := readBody(resp); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "Enter whole minutes from 1 to 1440") {
				t.Errorf("%s with step-up %q: %d %s", form.Get("name"), bad, resp.StatusCode, errorsIn(body))
			}
		}
	}

	tok, _, _ := f.store.CreateToken(ctx, f.users["admin"].ID, "t", time.Hour)
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readBody(resp)
	}
	if status, body := call("GET", fmt.Sprintf("/api/v1/resources/%d", find("box").ID), ""); status != 200 || !strings.Contains(body, `"step_up_minutes":15`) {
		t.Errorf("API resource: %d %s", status, body)
	}
	if status, body := call("POST", "/api/v1/resources", `{"name":"api-pg","protocol":"tcp","host":"10.0.0.9","port":5432,"step_up_minutes":20}`); status != http.StatusCreated ||
		!strings.Contains(body, `"step_up_minutes":20`) || find("api-pg").Options.StepUpMinutes != 20 {
		t.Errorf("API create resource: %d %s", status, body)
	}
	if status, body := call("POST", "/api/v1/resources", `{"name":"api-pg2","protocol":"tcp","host":"10.0.0.9","port":5432,"step_up_minutes":1441}`); status != http.StatusUnprocessableEntity ||
		!strings.Contains(body, "step_up") {
		t.Errorf("API resource out of range: %d %s", status, body)
	}
	status, body := call("POST", "/api/v1/policies", `{"name":"mfa","scope_kind":"everyone","step_up_minutes":5,"enabled":true}`)
	if status != http.StatusCreated || !strings.Contains(body, `"step_up_minutes":5`) {
		t.Fatalf("API policy: %d %s", status, body)
	}
	if status, body := call("POST", "/api/v1/policies", `{"name":"mfa2","scope_kind":"everyone","step_up_minutes":2000}`); status != http.StatusUnprocessableEntity ||
		!strings.Contains(body, "step_up_minutes") {
		t.Errorf("API policy out of range: %d %s", status, body)
	}
}

// TestHomeStepUpBadge: home marks the resources that ask for an MFA
// check, by their own setting or by a policy for one resource, for the
// user's group or for everyone.
func TestHomeStepUpBadge(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	user := f.client("user")
	desk, _ := f.store.CreateResource(ctx, store.Resource{Name: "desk", Protocol: "vnc", Host: "127.0.0.1", Port: 1}, &store.Secrets{Password: "p"})
	if _, err := f.store.CreateGrant(ctx, desk.ID, "user", f.users["user"].ID); err != nil {
		t.Fatal(err)
	}
	badged := func() []string {
		t.Helper()
		body := readBody(f.do(user, "GET", "/", nil, nil))
		var out []string
		for _, name := range []string{"web", "desk"} {
			i := strings.Index(body, `<article data-resource="`+name+`"`)
			if i < 0 {
				t.Fatalf("no card for %s", name)
			}
			if head, _, _ := strings.Cut(body[i:], "</header>"); strings.Contains(head, ">MFA check</span>") {
				out = append(out, name)
			}
		}
		return out
	}
	if got := badged(); len(got) != 0 {
		t.Fatalf("badges without step-up: %v", got)
	}
	f.setStepUp(f.resource, 10)
	if got := badged(); len(got) != 1 || got[0] != "web" {
		t.Fatalf("badges with step-up on web: %v", got)
	}
	f.setStepUp(f.resource, 0)
	p, err := f.store.CreatePolicy(ctx, store.Policy{Name: "desk mfa", ScopeKind: store.ScopeResource, ScopeID: desk.ID, TimeZone: "UTC",
		Allow: store.AllowAll, StepUpMinutes: 5, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := badged(); len(got) != 1 || got[0] != "desk" {
		t.Fatalf("badges with a policy on desk: %v", got)
	}
	p.Enabled = false
	f.store.UpdatePolicy(ctx, p)
	member := f.users["user"]
	member.Groups = []string{f.group.Name}
	if err := f.store.UpdateUser(ctx, member); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.CreatePolicy(ctx, store.Policy{Name: "ops mfa", ScopeKind: store.ScopeGroup, ScopeID: f.group.ID, TimeZone: "UTC",
		Allow: store.AllowAll, StepUpMinutes: 5, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if got := badged(); len(got) != 2 {
		t.Fatalf("badges with a policy for the user's group: %v", got)
	}
}

// TestStepUpNativeClients: a tunnel to a resource asking for step-up
// refuses a device without a recent MFA check (403 step_up with the
// device's step-up page) and an API token (no page: it cannot pass one);
// the page, from a browser session that passed a check, stamps the device
// (audited), and the tunnel then lets it through (to the fixture's
// missing gateway). Approving a device copies the session's check.
func TestStepUpNativeClients(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	uid := f.users["user"].ID
	pg, err := f.store.CreateResource(ctx, store.Resource{Name: "pg", Protocol: store.ProtocolTCP, Host: "127.0.0.1", Port: 5432,
		Options: store.Options{StepUpMinutes: 10}}, &store.Secrets{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.CreateGrant(ctx, pg.ID, "user", uid); err != nil {
		t.Fatal(err)
	}
	dev := f.addDevice(uid, "laptop")
	tok, _, _ := f.store.CreateToken(ctx, uid, "script", time.Hour)
	connect := func(bearer string, d *testDevice) (int, map[string]string) {
		t.Helper()
		req, _ := http.NewRequest("CONNECT", f.srv.URL, nil)
		req.Header.Set(headerTarget, "resource/pg")
		req.Header.Set("Authorization", "Bearer "+bearer)
		if d != nil {
			req.Header.Set(headerProof, d.proof(time.Now(), "CONNECT", "resource/pg"))
		}
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	wantPage := f.srv.URL + fmt.Sprintf("/device/%d/stepup?within=10", dev.ID)
	status, out := connect(dev.cred, &dev)
	if status != http.StatusForbidden || out["error"] != sessions.CodeStepUp || out["url"] != wantPage || !strings.HasPrefix(out["message"], sessions.MsgStepUp) {
		t.Fatalf("device without an MFA check: %d %v", status, out)
	}
	status, out = connect(tok, nil)
	if status != http.StatusForbidden || out["error"] != sessions.CodeStepUp || out["url"] != "" || !strings.Contains(out["message"], "An API token cannot pass one") {
		t.Fatalf("API token: %d %v", status, out)
	}

	// The page: a browser whose check is stale is sent through the MFA
	// check first, for the GET and the POST alike.
	user := f.client("user")
	page := strings.TrimPrefix(wantPage, f.srv.URL)
	f.setMFAAt(user, time.Now().Add(-11*time.Minute))
	for _, method := range []string{"GET", "POST"} {
		resp := f.do(user, method, page, url.Values{"within": {"10"}}, nil)
		readBody(resp)
		if want := "/mfa/verify?next=" + url.QueryEscape(page); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Fatalf("%s with a stale check: %d to %q, want %q", method, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	if d, _ := f.store.DeviceByID(ctx, dev.ID); !d.MFAAt.IsZero() {
		t.Fatalf("a stale check stamped the device: %v", d.MFAAt)
	}
	// Another user's device is no device.
	admin := f.client("admin")
	f.setMFAAt(admin, time.Now())
	if resp := f.do(admin, "POST", page, url.Values{"within": {"10"}}, nil); readBody(resp) == "" || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("another user's device: %d", resp.StatusCode)
	}

	checked := time.Now().Add(-2 * time.Minute).Truncate(time.Millisecond)
	f.setMFAAt(user, checked)
	resp := f.do(user, "GET", page, nil, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, "laptop") ||
		!strings.Contains(body, fmt.Sprintf(`action="/device/%d/stepup"`, dev.ID)) {
		t.Fatalf("step-up page: %d", resp.StatusCode)
	}
	resp = f.do(user, "POST", fmt.Sprintf("/device/%d/stepup", dev.ID), url.Values{"within": {"10"}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account#devices" {
		t.Fatalf("step-up: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if d, _ := f.store.DeviceByID(ctx, dev.ID); !d.MFAAt.Equal(checked) {
		t.Fatalf("device MFAAt %v, want the session's %v", d.MFAAt, checked)
	}
	evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionDeviceStepUp})
	if len(evs) != 1 || evs[0].Actor != "user1" || evs[0].Outcome != audit.OutcomeSuccess || !strings.Contains(evs[0].Target, "laptop") {
		t.Fatalf("device.stepup audited as %+v", evs)
	}
	if status, out := connect(dev.cred, &dev); status != http.StatusBadGateway || out["error"] != "no_gateway" {
		t.Fatalf("device after step-up: %d %v", status, out)
	}
	if status, out := connect(tok, nil); out["error"] != sessions.CodeStepUp {
		t.Fatalf("API token after the device's step-up: %d %v", status, out)
	}

	// Approving a device from a browser session that passed a check
	// gives the device that check.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	_, dr, err := f.store.CreateDeviceRequest(ctx, store.DeviceRequest{PublicKey: pub, Name: "desktop", OS: "linux", Arch: "amd64", ClientAddr: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	resp = f.do(user, "POST", "/device/approve", url.Values{"code": {dr.UserCode}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve: %d", resp.StatusCode)
	}
	ds, _ := f.store.ListDevices(ctx, uid)
	if len(ds) == 0 || ds[0].Name != "desktop" || !ds[0].MFAAt.Equal(checked) {
		t.Fatalf("approved device: %+v, want MFAAt %v", ds, checked)
	}
}

// TestStepUpVerifyThenStale is the browser's whole path on the portal's
// clock: Connect on a step-up resource goes to /mfa/verify, a TOTP code
// brings the user back to the terminal page and the socket opens (to the
// fixture's missing gateway); once the clock passes the window, the page
// asks again and the socket is refused.
func TestStepUpVerifyThenStale(t *testing.T) {
	t.Parallel()
	f, clock := newMFAFixture(t)
	user := f.client("user") // signed in before the factor exists: no sign-in gate
	secret := f.addTOTP(f.users["user"])
	f.setStepUp(f.resource, 10)
	page := fmt.Sprintf("/connect/%d", f.resource.ID)
	host, _ := url.Parse(f.srv.URL)
	dialer := websocket.Dialer{TLSClientConfig: f.srv.Client().Transport.(*http.Transport).TLSClientConfig, Jar: user.Jar}
	socket := func() control {
		t.Helper()
		ws, _, err := dialer.Dial(fmt.Sprintf("wss://%s%s/ws", host.Host, page), http.Header{"Origin": {f.srv.URL}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		var c control
		if err := ws.ReadJSON(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}

	resp := f.do(user, "GET", page, nil, nil)
	readBody(resp)
	verify := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || verify != "/mfa/verify?next="+url.QueryEscape(page) {
		t.Fatalf("Connect without a check: %d to %q", resp.StatusCode, verify)
	}
	if body := readBody(f.do(user, "GET", verify, nil, nil)); !strings.Contains(body, `name="code"`) {
		t.Fatalf("the verify page has no code field")
	}
	resp = f.do(user, "POST", verify, url.Values{"code": {code(t, secret, clock.now())}, "next": {page}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != page {
		t.Fatalf("verify: %d to %q, want back to %s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	if resp := f.do(user, "GET", page, nil, nil); readBody(resp) == "" || resp.StatusCode != http.StatusOK {
		t.Fatalf("Connect after the check: %d", resp.StatusCode)
	}
	if c := socket(); c.Code != "no_gateway" {
		t.Fatalf("socket after the check: %+v", c)
	}

	clock.add(10*time.Minute - time.Second)
	if c := socket(); c.Code != "no_gateway" {
		t.Fatalf("socket at the window's end: %+v", c)
	}
	clock.add(2 * time.Second)
	resp = f.do(user, "GET", page, nil, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != verify {
		t.Fatalf("Connect after the window: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if c := socket(); c.Code != sessions.CodeStepUp {
		t.Fatalf("socket after the window: %+v", c)
	}
}
