package httpui

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// ldapForm is the directory form for the test slapd.
func ldapForm(s *targets.Slapd) url.Values {
	return url.Values{"name": {"corp"}, "display_name": {"Corp directory"}, "enabled": {"on"},
		"url": {s.URL}, "start_tls": {"on"}, "ca_pem": {string(s.CAPEM)},
		"bind_dn": {targets.SlapdServiceDN}, "bind_password": {s.ServicePassword},
		"user_base": {targets.SlapdPeople}, "user_filter": {"(uid={username})"}, "username_attr": {"uid"},
		"display_name_attr": {"displayName"}, "mail_attr": {"mail"},
		"group_base": {targets.SlapdGroups}, "group_filter": {"(objectClass=groupOfNames)"}, "group_member_attr": {"member"},
		"group_name_attr": {"cn"}, "nested_groups": {"search"}}
}

func (f *fixture) auditEvents(action string) []store.AuditEvent {
	f.t.Helper()
	evs, err := f.audit.Search(context.Background(), store.AuditFilter{Action: action})
	if err != nil {
		f.t.Fatal(err)
	}
	return evs
}

// TestLDAPDirectory: an admin adds a directory with the form, tests a
// user (entry and nested groups shown), and a directory user signs in
// with the password form: created, groups mapped, sign-in audited as
// ldap:corp. With the directory down the message says so, the audit has
// the cause, and the local admin still signs in.
func TestLDAPDirectory(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	s := targets.NewSlapd(t)
	admin := f.client("admin")

	// Form errors are shown by field, nothing saved.
	bad := ldapForm(s)
	bad.Set("start_tls", "")
	bad.Set("user_filter", "(uid=alice)")
	resp := f.do(admin, "POST", "/admin/identity/ldap", bad, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "Use ldaps:// or turn StartTLS on") {
		t.Fatalf("form without StartTLS: %d\n%s", resp.StatusCode, body)
	}
	resp = f.do(admin, "POST", "/admin/identity/ldap", ldapForm(s), nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasSuffix(resp.Header.Get("Location"), "/provisioning") {
		t.Fatalf("add directory: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	p, err := f.store.IdentityProviderByName(ctx, store.KindLDAP, "corp")
	if err != nil || !p.Enabled || !strings.Contains(string(p.Config), s.ServicePassword) {
		t.Fatalf("stored directory: %+v, %v", p, err)
	}
	// The edit page never shows the bind password; saving it blank keeps it.
	resp = f.do(admin, "GET", "/admin/identity/ldap/"+strconv.FormatInt(p.ID, 10), nil, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusOK || strings.Contains(body, s.ServicePassword) || !strings.Contains(body, html.EscapeString(targets.SlapdServiceDN)) {
		t.Fatalf("edit page: %d, password shown or DN missing", resp.StatusCode)
	}
	keep := ldapForm(s)
	keep.Set("bind_password", "")
	resp = f.do(admin, "POST", "/admin/identity/ldap/"+strconv.FormatInt(p.ID, 10), keep, nil)
	readBody(resp)
	if p2, _ := f.store.IdentityProviderByID(ctx, p.ID); resp.StatusCode != http.StatusSeeOther || !strings.Contains(string(p2.Config), s.ServicePassword) {
		t.Fatalf("save with a blank password: %d, password kept: %v", resp.StatusCode, strings.Contains(string(p2.Config), s.ServicePassword))
	}
	// Adding and saving are audited as every kind's are (providerSaved).
	for _, a := range []string{audit.ActionIdPCreate, audit.ActionIdPUpdate} {
		if evs := f.auditEvents(a); len(evs) != 1 || evs[0].Target != "ldap:corp" || evs[0].Actor != "admin1" || evs[0].Details["url"] != s.URL {
			t.Errorf("%s events = %+v", a, evs)
		}
	}
	if loc := resp.Header.Get("Location"); loc != "/admin/identity/ldap/"+strconv.FormatInt(p.ID, 10) {
		t.Errorf("after saving: to %q, want the directory's page", loc)
	}

	// Test: a lookup with the service account lists alice's groups,
	// nested included; a wrong password names the failing step.
	resp = f.do(admin, "POST", "/admin/identity/ldap/"+strconv.FormatInt(p.ID, 10)+"/test", url.Values{"username": {"alice"}}, nil)
	body := readBody(resp)
	for _, want := range []string{html.EscapeString(targets.SlapdAlice.DN()), html.EscapeString(targets.SlapdGroupDN("staff")), "Alice Liddell", "StartTLS", "was found"} {
		if !strings.Contains(body, want) {
			t.Errorf("test of alice lacks %q", want)
		}
	}
	resp = f.do(admin, "POST", "/admin/identity/ldap/"+strconv.FormatInt(p.ID, 10)+"/test", url.Values{"username": {"alice"}, "password": {"wrong-password"}}, nil)
	if body := readBody(resp); !strings.Contains(body, "refused that password") || !strings.Contains(body, "user bind") {
		t.Errorf("test with a wrong password:\n%s", body)
	}
	if evs := f.auditEvents(audit.ActionIdPTest); len(evs) != 2 || evs[0].Outcome != audit.OutcomeFailure {
		t.Errorf("test audit events: %+v", evs)
	}

	// Provisioning (the core's page): create users, map staff.
	if _, err := f.store.CreateGroup(ctx, store.Group{Name: "staffers"}); err != nil {
		t.Fatal(err)
	}
	p.JITCreate = true
	if err := f.store.UpdateIdentityProvider(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := f.store.SetGroupMappings(ctx, p.ID, []store.GroupMapping{{ClaimValue: "staff", Group: "staffers"}}); err != nil {
		t.Fatal(err)
	}
	c := f.clientFrom("127.0.0.2")
	if code, _ := f.signIn(c, "alice", targets.SlapdAlice.Password); code != http.StatusSeeOther {
		t.Fatalf("alice's sign-in: %d", code)
	}
	resp = f.do(c, "GET", "/account", nil, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, "alice") {
		t.Fatalf("alice's account page: %d", resp.StatusCode)
	}
	u, err := f.store.UserByName(ctx, "alice")
	if err != nil || u.Source != "ldap:corp" || !slices.Contains(u.Groups, "staffers") {
		t.Fatalf("alice: %+v, %v", u, err)
	}
	signins := f.auditEvents(audit.ActionSignIn)
	if ev := signins[0]; ev.Actor != "alice" || ev.Outcome != audit.OutcomeSuccess || ev.Details["method"] != "ldap" || ev.Details["provider"] != "corp" {
		t.Errorf("alice's sign-in event: %+v", ev)
	}
	if evs := f.auditEvents(audit.ActionUserProvision); len(evs) != 1 || evs[0].Details["created"] != "true" || evs[0].Details["added"] != "staffers" {
		t.Errorf("provision events: %+v", evs)
	}
	if code, _ := f.signIn(f.clientFrom("127.0.0.3"), "alice", "wrong-password"); code != http.StatusUnauthorized {
		t.Errorf("alice with a wrong password: %d", code)
	}

	// The directory goes down.
	s.Stop()
	resp = f.do(f.clientFrom("127.0.0.4"), "POST", "/signin", url.Values{"username": {"alice"}, "password": {targets.SlapdAlice.Password}}, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "The directory corp is not answering; try again or ask an administrator.") {
		t.Fatalf("alice with the directory down: %d\n%s", resp.StatusCode, body)
	}
	if ev := f.auditEvents(audit.ActionSignIn)[0]; ev.Outcome != audit.OutcomeFailure || !strings.Contains(ev.Reason, "not answering") || !strings.Contains(ev.Reason, "connect") {
		t.Errorf("sign-in event with the directory down: %+v", ev)
	}
	if code, _ := f.signIn(f.clientFrom("127.0.0.4"), "admin1", testPassword); code != http.StatusSeeOther {
		t.Errorf("local admin with the directory down: %d", code)
	}
}
