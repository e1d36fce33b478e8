package httpui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/store"
)

// lastAudit returns the newest event with action.
func (f *fixture) lastAudit(action string) (store.AuditEvent, bool) {
	f.t.Helper()
	evs, err := f.audit.Search(context.Background(), store.AuditFilter{Action: action})
	if err != nil {
		f.t.Fatal(err)
	}
	if len(evs) == 0 {
		return store.AuditEvent{}, false
	}
	return evs[0], true
}

func TestIdentityOverview(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.client("admin")
	resp := f.do(admin, "GET", "/admin/identity", nil, nil)
	body := readBody(resp)
	for _, want := range []string{"No identity providers yet", "/admin/identity/oidc/new", "/admin/identity/saml/new", "/admin/identity/ldap/new",
		"Add OpenID Connect provider", "Add SAML provider", "Add LDAP directory", "/admin/identity/mfa", `value="admin1"`} {
		if !strings.Contains(body, want) {
			t.Errorf("empty overview lacks %q", want)
		}
	}
	p, err := f.store.CreateIdentityProvider(ctx, store.IdentityProvider{Kind: store.KindLDAP, Name: "ad", DisplayName: "Head office <AD>", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	f.store.CreateUser(ctx, store.User{Name: "dir1", Role: store.RoleUser, Source: p.Source()}, "")
	f.store.CreateUser(ctx, store.User{Name: "dir2", Role: store.RoleAdmin, Source: p.Source()}, "")
	body = readBody(f.do(admin, "GET", "/admin/identity", nil, nil))
	for _, want := range []string{"Head office &lt;AD&gt;", "LDAP", fmt.Sprintf("/admin/identity/ldap/%d", p.ID),
		fmt.Sprintf("/admin/identity/providers/%d/provisioning", p.ID), "<td>2</td>", "enabled"} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if strings.Contains(body, "No identity providers yet") || strings.Contains(body, `value="dir2"`) {
		t.Error("overview shows the empty state, or a provider's admin as a break-glass choice")
	}
}

func TestLocalPasswordsForm(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.client("admin")
	// Signed in before local passwords go off.
	f.store.CreateUser(ctx, store.User{Name: "admin2", Role: store.RoleAdmin}, mustHash(t))
	admin2 := f.signedInAs("admin2")
	for _, tc := range []struct {
		form url.Values
		want string
	}{
		{url.Values{}, "Choose a break-glass admin"},
		{url.Values{"break_glass": {"nobody"}}, "There is no user named nobody"},
		{url.Values{"break_glass": {"user1"}}, "is not an admin"},
	} {
		resp := f.do(admin, "POST", "/admin/identity/local", tc.form, nil)
		body := readBody(resp)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, tc.want) {
			t.Errorf("%v: %d, want 422 with %q", tc.form, resp.StatusCode, tc.want)
		}
	}
	if lp, _ := f.store.LocalPasswordSettings(ctx); !lp.Enabled {
		t.Fatal("a refused form turned local passwords off")
	}
	resp := f.do(admin, "POST", "/admin/identity/local", url.Values{"break_glass": {"admin1"}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("turn off: %d", resp.StatusCode)
	}
	if lp, _ := f.store.LocalPasswordSettings(ctx); lp.Enabled || lp.BreakGlassUser != "admin1" {
		t.Fatalf("saved %+v", lp)
	}
	ev, ok := f.lastAudit(audit.ActionSettingsLocalPasswords)
	if !ok || ev.Details["enabled"] != "false" || ev.Details["break_glass"] != "admin1" {
		t.Fatalf("audit %+v", ev)
	}

	// Another local user is refused with a message about the setting,
	// the same for an account that does not exist.
	anon := f.client("")
	for _, name := range []string{"user1", "nobody"} {
		resp := f.do(anon, "POST", "/signin", url.Values{"username": {name}, "password": {testPassword}}, nil)
		body := readBody(resp)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Passwords kept by Keyway are turned off") {
			t.Fatalf("%s with local passwords off: %d", name, resp.StatusCode)
		}
	}
	f.client("admin") // the break-glass admin still signs in (fatal if not)

	// The break-glass admin cannot be demoted or deleted meanwhile.
	a1 := f.users["admin"].ID
	resp = f.do(admin2, "POST", fmt.Sprintf("/admin/users/%d", a1), url.Values{"name": {"admin1"}, "role": {"user"}}, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "break-glass admin while local passwords are off") {
		t.Fatalf("demote the break-glass admin: %d", resp.StatusCode)
	}
	resp = f.do(admin2, "POST", fmt.Sprintf("/admin/users/%d/delete", a1), url.Values{}, nil)
	readBody(resp)
	if _, err := f.store.UserByID(ctx, a1); err != nil {
		t.Fatalf("the break-glass admin was deleted: %v", err)
	}

	resp = f.do(admin, "POST", "/admin/identity/local", url.Values{"enabled": {"on"}, "break_glass": {"admin1"}}, nil)
	readBody(resp)
	if lp, _ := f.store.LocalPasswordSettings(ctx); !lp.Enabled || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("turn on: %d %+v", resp.StatusCode, lp)
	}
	f.client("user")
}

func mustHash(t *testing.T) string {
	t.Helper()
	h, err := auth.HashPassword(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// signedInAs returns a client signed in as the user name.
func (f *fixture) signedInAs(name string) *http.Client {
	f.t.Helper()
	c := f.client("")
	resp := f.do(c, "POST", "/signin", url.Values{"username": {name}, "password": {testPassword}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		f.t.Fatalf("sign in as %s: %d", name, resp.StatusCode)
	}
	return c
}

func TestProvisioningForm(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.client("admin")
	f.store.CreateGroup(ctx, store.Group{Name: "dev"})
	p, err := f.store.CreateIdentityProvider(ctx, store.IdentityProvider{Kind: store.KindOIDC, Name: "corp", DisplayName: "Corp", Enabled: true,
		Mappings: []store.GroupMapping{{ClaimValue: "old", Group: "ops"}}})
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/admin/identity/providers/%d/provisioning", p.ID)
	body := readBody(f.do(admin, "GET", path, nil, nil))
	for _, want := range []string{`name="m0_claim"`, `value="old"`, `name="m3_claim"`, `name="rows" value="4"`, "Group claim value", "Delete provider"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	for _, tc := range []struct {
		what string
		form url.Values
		want string
	}{
		{"value without group", url.Values{"rows": {"1"}, "m0_claim": {"admins"}, "jit_role": {"user"}}, "choose the Keyway group"},
		{"group without value", url.Values{"rows": {"1"}, "m0_group": {"ops"}, "jit_role": {"user"}}, "enter the provider&#39;s value"},
		{"unknown group", url.Values{"rows": {"1"}, "m0_claim": {"x"}, "m0_group": {"gone"}, "jit_role": {"user"}}, "no group named"},
		{"bad role", url.Values{"rows": {"0"}, "jit_role": {"root"}}, "Choose user, auditor or admin"},
	} {
		resp := f.do(admin, "POST", path, tc.form, nil)
		body := readBody(resp)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d, want 422 with %q", tc.what, resp.StatusCode, tc.want)
		}
	}
	if got, _ := f.store.IdentityProviderByID(ctx, p.ID); len(got.Mappings) != 1 || got.JITCreate {
		t.Fatalf("a refused form changed %+v", got)
	}

	// "Add more rows" keeps what was typed and saves nothing.
	resp := f.do(admin, "POST", path, url.Values{"action": {"more"}, "rows": {"1"}, "m0_claim": {"typed"}, "jit_role": {"user"}}, nil)
	body = readBody(resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `value="typed"`) || !strings.Contains(body, `name="m5_claim"`) {
		t.Fatalf("more rows: %d", resp.StatusCode)
	}

	// Save: JIT on as auditor; remove "old", add two mappings (one twice).
	resp = f.do(admin, "POST", path, url.Values{"action": {"save"}, "jit_create": {"on"}, "jit_role": {"auditor"}, "rows": {"5"},
		"m0_claim": {"old"}, "m0_group": {"ops"}, "m0_remove": {"on"},
		"m1_claim": {"admins"}, "m1_group": {"ops"},
		"m2_claim": {"developers"}, "m2_group": {"dev"},
		"m3_claim": {"admins"}, "m3_group": {"ops"}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save: %d", resp.StatusCode)
	}
	got, _ := f.store.IdentityProviderByID(ctx, p.ID)
	want := []store.GroupMapping{{ClaimValue: "admins", Group: "ops"}, {ClaimValue: "developers", Group: "dev"}}
	if !got.JITCreate || got.JITRole != store.RoleAuditor || !slices.Equal(got.Mappings, want) {
		t.Fatalf("saved %+v", got)
	}
	ev, ok := f.lastAudit(audit.ActionIdPProvisioning)
	if !ok || ev.Target != "oidc:corp" || ev.Details["jit_role"] != "auditor" || !strings.Contains(ev.Details["mappings"], "developers=>dev") {
		t.Fatalf("audit %+v", ev)
	}
	// The mappings apply at the next sign-in through the provider.
	u, _, err := f.store.Provision(ctx, got, store.ExternalLogin{Subject: "s1", Username: "pat", Groups: []string{"developers"}})
	if err != nil || u.Role != store.RoleAuditor || !slices.Equal(u.Groups, []string{"dev"}) {
		t.Fatalf("provisioned %+v, %v", u, err)
	}

	// Delete: the provider goes, its user stays, shown as unable to sign in.
	resp = f.do(admin, "POST", fmt.Sprintf("/admin/identity/providers/%d/delete", p.ID), url.Values{}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if _, err := f.store.IdentityProviderByID(ctx, p.ID); err == nil {
		t.Fatal("provider not deleted")
	}
	if u, err := f.store.UserByName(ctx, "pat"); err != nil || u.Source != "oidc:corp" {
		t.Fatalf("user after delete: %+v, %v", u, err)
	}
	ev, ok = f.lastAudit(audit.ActionIdPDelete)
	if !ok || ev.Target != "oidc:corp" || ev.Details["users"] != "1" {
		t.Fatalf("delete audit %+v", ev)
	}
	body = readBody(f.do(admin, "GET", "/admin/users", nil, nil))
	if !strings.Contains(body, "oidc:corp (provider deleted: cannot sign in)") {
		t.Fatal("users page does not show the deleted provider's user as unable to sign in")
	}
	if resp := f.do(admin, "GET", path, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("deleted provider's page: %d", resp.StatusCode)
	}
}

func TestUsersSourceAndMFA(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.client("admin")
	p, err := f.store.CreateIdentityProvider(ctx, store.IdentityProvider{Kind: store.KindSAML, Name: "okta", DisplayName: "Okta", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.AddMFAFactor(ctx, store.MFAFactor{UserID: f.users["user"].ID, Kind: store.FactorTOTP, Name: "phone", Secret: "JBSWY3DPEHPK3PXP"}); err != nil {
		t.Fatal(err)
	}
	body := readBody(f.do(admin, "GET", "/admin/users/new", nil, nil))
	if !strings.Contains(body, `value="saml:okta"`) || !strings.Contains(body, "Okta (SAML)") || !strings.Contains(body, "Local password") {
		t.Fatal("user form lacks the Signs in with choices")
	}

	for _, tc := range []struct {
		what string
		form url.Values
		want string
	}{
		{"local without password", url.Values{"name": {"l1"}, "role": {"user"}, "source": {"local"}}, "password"},
		{"provider with a password", url.Values{"name": {"s1"}, "role": {"user"}, "source": {"saml:okta"}, "password": {"long-enough-pw"}}, "no password here"},
		{"unknown provider", url.Values{"name": {"s1"}, "role": {"user"}, "source": {"oidc:nope"}}, "There is no identity provider"},
	} {
		resp := f.do(admin, "POST", "/admin/users", tc.form, nil)
		body := readBody(resp)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d, want 422 with %q", tc.what, resp.StatusCode, tc.want)
		}
	}
	resp := f.do(admin, "POST", "/admin/users", url.Values{"name": {"sam"}, "role": {"user"}, "source": {"saml:okta"}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create SSO user: %d", resp.StatusCode)
	}
	sam, err := f.store.UserByName(ctx, "sam")
	if err != nil || sam.Source != "saml:okta" {
		t.Fatalf("sam %+v, %v", sam, err)
	}
	if h, _ := f.store.PasswordHash(ctx, sam.ID); h != "" {
		t.Fatal("SSO user got a password hash")
	}
	// Provisioning matches the admin-made user by name (no JIT).
	if u, _, err := f.store.Provision(ctx, p, store.ExternalLogin{Subject: "00u1", Username: "sam"}); err != nil || u.ID != sam.ID {
		t.Fatalf("provision sam: %+v, %v", u, err)
	}

	body = readBody(f.do(admin, "GET", "/admin/users", nil, nil))
	for _, want := range []string{"Okta (SAML)", "Local password", "authenticator app"} {
		if !strings.Contains(body, want) {
			t.Errorf("users page lacks %q", want)
		}
	}

	// Back to local: needs a password.
	edit := fmt.Sprintf("/admin/users/%d", sam.ID)
	resp = f.do(admin, "POST", edit, url.Values{"name": {"sam"}, "role": {"user"}, "source": {"local"}}, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "Set a password") {
		t.Fatalf("to local without password: %d", resp.StatusCode)
	}
	resp = f.do(admin, "POST", edit, url.Values{"name": {"sam"}, "role": {"user"}, "source": {"local"}, "password": {testPassword}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("to local: %d", resp.StatusCode)
	}
	f.signedInAs("sam")
	// And to the provider again: the password goes with it.
	resp = f.do(admin, "POST", edit, url.Values{"name": {"sam"}, "role": {"user"}, "source": {"saml:okta"}}, nil)
	readBody(resp)
	if h, _ := f.store.PasswordHash(ctx, sam.ID); resp.StatusCode != http.StatusSeeOther || h != "" {
		t.Fatalf("to provider: %d, hash %q", resp.StatusCode, h)
	}
	c := f.client("")
	resp = f.do(c, "POST", "/signin", url.Values{"username": {"sam"}, "password": {testPassword}}, nil)
	if readBody(resp); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("SSO user with the old password: %d", resp.StatusCode)
	}
	// An admin cannot change how they themselves sign in.
	resp = f.do(admin, "POST", fmt.Sprintf("/admin/users/%d", f.users["admin"].ID), url.Values{"name": {"admin1"}, "role": {"admin"}, "source": {"saml:okta"}}, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "cannot change how you sign in") {
		t.Fatalf("own source: %d", resp.StatusCode)
	}
	// An edit without the field (the API) keeps the source.
	u := f.users["user"]
	resp = f.do(admin, "POST", fmt.Sprintf("/admin/users/%d", u.ID), url.Values{"name": {"user1"}, "role": {"user"}, "display_name": {"U"}}, nil)
	readBody(resp)
	if got, _ := f.store.UserByID(ctx, u.ID); got.Source != store.SourceLocal || got.DisplayName != "U" {
		t.Fatalf("edit without source: %+v", got)
	}
}

// TestProvisionUserAudits: a sign-in through a provider that creates a
// user or changes their mapped groups is audited, one that changes
// nothing is not; refusals read in words.
func TestProvisionUserAudits(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p, err := f.store.CreateIdentityProvider(ctx, store.IdentityProvider{Kind: store.KindOIDC, Name: "corp", Enabled: true, JITCreate: true,
		Mappings: []store.GroupMapping{{ClaimValue: "admins", Group: "ops"}}})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/signin/oidc/corp/callback", nil)
	count := func() int {
		evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionUserProvision})
		return len(evs)
	}
	u, err := f.ui.provisionUser(r, p, store.ExternalLogin{Subject: "1", Username: "kim", Groups: []string{"admins"}})
	if err != nil || u.Name != "kim" {
		t.Fatalf("%+v, %v", u, err)
	}
	ev, _ := f.lastAudit(audit.ActionUserProvision)
	if ev.Details["created"] != "true" || ev.Details["added"] != "ops" || ev.Details["provider"] != "oidc:corp" || count() != 1 {
		t.Fatalf("created: %+v", ev)
	}
	f.ui.provisionUser(r, p, store.ExternalLogin{Subject: "1", Username: "kim", Groups: []string{"admins"}})
	if count() != 1 {
		t.Fatal("a sign-in that changed nothing was audited")
	}
	f.ui.provisionUser(r, p, store.ExternalLogin{Subject: "1", Username: "kim"})
	if ev, _ := f.lastAudit(audit.ActionUserProvision); ev.Details["removed"] != "ops" || count() != 2 {
		t.Fatalf("removed: %+v", ev)
	}
	_, err = f.ui.provisionUser(r, p, store.ExternalLogin{Subject: "2", Username: "user1"})
	if !strings.Contains(provisionRefusal(err), "signs in another way") {
		t.Fatalf("local user's name: %v", err)
	}
	kim, _ := f.store.UserByName(ctx, "kim")
	kim.Disabled = true
	f.store.UpdateUser(ctx, kim)
	if _, err := f.ui.provisionUser(r, p, store.ExternalLogin{Subject: "1", Username: "kim"}); !errors.Is(err, auth.ErrDisabled) || provisionRefusal(err) == "" {
		t.Fatalf("disabled: %v", err)
	}
}

// TestUserNameMayBeAnEmailAddress: providers name users by e-mail
// address, so the user form takes one too; other names stay refused.
func TestUserNameMayBeAnEmailAddress(t *testing.T) {
	f := newFixture(t)
	admin := f.client("admin")
	for name, ok := range map[string]bool{"mo@example.com": true, "two words": false, "@x": false, "x/y": false} {
		resp := f.do(admin, "POST", "/admin/users", url.Values{"name": {name}, "role": {"user"}, "password": {testPassword}}, nil)
		readBody(resp)
		if (resp.StatusCode == http.StatusSeeOther) != ok {
			t.Errorf("%q: %d, want ok %v", name, resp.StatusCode, ok)
		}
	}
}
