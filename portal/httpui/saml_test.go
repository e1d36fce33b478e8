package httpui

import (
	"bytes"
	"context"
	"fmt"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/identity/saml"
	"github.com/keyway-dev/keyway/portal/identity/saml/samltest"
	"github.com/keyway-dev/keyway/portal/store"
)

// samlRig is a portal with a SAML provider "corp" registered with a real
// (crewjam) IdP on loopback.
type samlRig struct {
	*fixture
	idp      *samltest.IdP
	provider store.IdentityProvider
}

func newSAMLRig(t *testing.T) *samlRig {
	t.Helper()
	f := newFixture(t)
	idp, err := samltest.New("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	admin := f.client("admin")
	resp := f.postMultipart(admin, "/admin/identity/saml", map[string]string{
		"name": "corp", "display_name": "Corp SSO", "enabled": "on", "metadata_url": idp.MetadataURL,
		"username_attribute": "uid", "display_name_attribute": "cn", "email_attribute": "mail",
		"groups_attribute": "eduPersonAffiliation",
	}, nil)
	body := readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasSuffix(resp.Header.Get("Location"), "/provisioning") {
		t.Fatalf("create provider: %d %s\n%.500s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	p, err := f.store.IdentityProviderByName(context.Background(), store.KindSAML, "corp")
	if err != nil {
		t.Fatal(err)
	}
	// Provisioning is the core's page; set it in the store.
	p.JITCreate, p.JITRole = true, store.RoleUser
	if err := f.store.UpdateIdentityProvider(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if err := f.store.SetGroupMappings(context.Background(), p.ID, []store.GroupMapping{{ClaimValue: "ops-team", Group: "ops"}}); err != nil {
		t.Fatal(err)
	}
	// The IdP gets the SP metadata the portal serves.
	resp = f.do(f.client(""), "GET", "/saml/corp/metadata", nil, nil)
	md := readBody(resp)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/samlmetadata+xml" {
		t.Fatalf("SP metadata: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if err := idp.RegisterSP([]byte(md)); err != nil {
		t.Fatal(err)
	}
	idp.SetUser(samltest.User{Name: "alice", Email: "alice@example.com", DisplayName: "Alice Liddell", Groups: []string{"ops-team", "other"}})
	idp.SignInAs("alice")
	return &samlRig{fixture: f, idp: idp, provider: p}
}

func (f *fixture) postMultipart(c *http.Client, path string, fields map[string]string, file []byte) *http.Response {
	f.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	if file != nil {
		fw, _ := mw.CreateFormFile("metadata_file", "idp.xml")
		fw.Write(file)
	}
	mw.Close()
	req, _ := http.NewRequest("POST", f.srv.URL+path, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp
}

// start begins a SAML sign-in with c and returns the IdP's answer.
func (r *samlRig) start(c *http.Client, next string) samltest.Form {
	r.t.Helper()
	resp := r.do(c, "GET", "/signin/saml/corp?next="+url.QueryEscape(next), nil, nil)
	body := readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), r.idp.URL+"/sso?") {
		r.t.Fatalf("start: %d %s\n%.300s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	idpResp, err := http.Get(resp.Header.Get("Location"))
	if err != nil {
		r.t.Fatal(err)
	}
	readBody(idpResp)
	if idpResp.StatusCode != http.StatusOK {
		r.t.Fatalf("IdP: %s", idpResp.Status)
	}
	return r.idp.Last()
}

// post sends the IdP's answer to the ACS as a browser does: a cross-site
// form post.
func (r *samlRig) post(c *http.Client, form samltest.Form, samlResponse string) *http.Response {
	r.t.Helper()
	if !strings.HasPrefix(form.URL, r.srv.URL+"/saml/corp/acs") {
		r.t.Fatalf("the IdP posts to %q", form.URL)
	}
	return r.do(c, "POST", "/saml/corp/acs", url.Values{"SAMLResponse": {samlResponse}, "RelayState": {form.RelayState}},
		http.Header{"Origin": {r.idp.URL}, "Sec-Fetch-Site": {"cross-site"}})
}

func (r *samlRig) signIn(c *http.Client, next string) *http.Response {
	r.t.Helper()
	form := r.start(c, next)
	return r.post(c, form, form.SAMLResponse)
}

func (r *samlRig) groups(name string) []string {
	r.t.Helper()
	u, err := r.store.UserByName(context.Background(), name)
	if err != nil {
		r.t.Fatal(err)
	}
	slices.Sort(u.Groups)
	return u.Groups
}

func TestSAMLSignInJITAndGroups(t *testing.T) {
	t.Parallel()
	r := newSAMLRig(t)
	c := r.client("")
	resp := r.signIn(c, "/account")
	body := readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account" {
		t.Fatalf("ACS: %d %s\n%.500s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	// Signed in as the new user.
	resp = r.do(c, "GET", "/account", nil, nil)
	body = readBody(resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Alice Liddell") {
		t.Fatalf("account page: %d\n%.300s", resp.StatusCode, body)
	}
	u, err := r.store.UserByName(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if u.Source != "saml:corp" || u.Role != store.RoleUser {
		t.Errorf("user = %+v", u)
	}
	if g := r.groups("alice"); !slices.Equal(g, []string{"ops"}) {
		t.Errorf("groups = %v, want [ops]", g)
	}
	evs, _ := r.audit.Search(context.Background(), store.AuditFilter{Actor: "alice", Action: audit.ActionSignIn})
	if len(evs) != 1 || evs[0].Outcome != audit.OutcomeSuccess || evs[0].Details["method"] != "saml" || evs[0].Details["provider"] != "corp" {
		t.Errorf("sign-in events = %+v", evs)
	}
	evs, _ = r.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionUserProvision, Target: "alice"})
	if len(evs) != 1 || evs[0].Details["created"] != "true" || evs[0].Details["role"] != "user" || evs[0].Details["added"] != "ops" ||
		evs[0].Details["provider"] != "saml:corp" {
		t.Errorf("provision events = %+v", evs)
	}

	// The IdP drops the user from ops-team: the next sign-in drops the
	// Keyway group too.
	r.idp.SetUser(samltest.User{Name: "alice", Email: "alice@example.com", DisplayName: "Alice Liddell", Groups: []string{"other"}})
	c2 := r.client("")
	resp = r.signIn(c2, "/")
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("second sign-in: %d", resp.StatusCode)
	}
	if g := r.groups("alice"); len(g) != 0 {
		t.Errorf("groups after the IdP change = %v, want none", g)
	}
	evs, _ = r.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionUserProvision, Target: "alice"})
	if len(evs) != 2 || evs[0].Details["removed"] != "ops" {
		t.Errorf("provision events = %+v", evs)
	}
}

// TestSAMLRefused: every refused answer is a clear page and an audited
// sign-in failure with its reason, and signs nobody in.
func TestSAMLRefused(t *testing.T) {
	t.Parallel()
	r := newSAMLRig(t)
	for _, tc := range []struct {
		name   string
		mode   samltest.Mode
		reason string
		status int
		edit   func(form samltest.Form) string
	}{
		{name: "signed by another key", mode: samltest.WrongKey, reason: "bad signature", status: 403},
		{name: "wrong audience", mode: samltest.WrongAudience, reason: "wrong audience", status: 403},
		{name: "expired", mode: samltest.Expired, reason: "expired", status: 403},
		{name: "unsigned assertion", mode: samltest.UnsignedAssertion, reason: "unsigned assertion", status: 403},
		{name: "too large", reason: "malformed response", status: 400,
			edit: func(samltest.Form) string { return strings.Repeat("A", saml.MaxResponseField*2) }},
		{name: "not base64", reason: "malformed response", status: 403,
			edit: func(samltest.Form) string { return "<Response/>" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.idp.SetMode(tc.mode)
			defer r.idp.SetMode(samltest.Honest)
			c := r.client("")
			form := r.start(c, "/")
			sr := form.SAMLResponse
			if tc.edit != nil {
				sr = tc.edit(form)
			}
			r.wantRefused(c, r.post(c, form, sr), tc.status, tc.reason)
		})
	}
	t.Run("replayed", func(t *testing.T) {
		c := r.client("")
		form := r.start(c, "/")
		resp := r.post(c, form, form.SAMLResponse)
		readBody(resp)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("first post: %d", resp.StatusCode)
		}
		c2 := r.client("")
		r.wantRefused(c2, r.post(c2, form, form.SAMLResponse), 403, "unknown request")
	})
	t.Run("not provisioned", func(t *testing.T) {
		p := r.provider
		p.JITCreate = false
		if err := r.store.UpdateIdentityProvider(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		defer r.store.UpdateIdentityProvider(context.Background(), r.provider)
		r.idp.SetUser(samltest.User{Name: "bob", Email: "bob@example.com"})
		r.idp.SignInAs("bob")
		defer r.idp.SignInAs("alice")
		c := r.client("")
		r.wantRefused(c, r.signIn(c, "/"), 403, "user not provisioned")
	})
	t.Run("local account of that name", func(t *testing.T) {
		r.idp.SetUser(samltest.User{Name: "user1", Email: "user1@example.com"})
		r.idp.SignInAs("user1")
		defer r.idp.SignInAs("alice")
		c := r.client("")
		r.wantRefused(c, r.signIn(c, "/"), 403, "account signs in another way")
	})
}

// wantRefused checks resp is a refusal page with status, that c is not
// signed in, and that the refusal was audited with reason.
func (r *samlRig) wantRefused(c *http.Client, resp *http.Response, status int, reason string) {
	r.t.Helper()
	body := readBody(resp)
	if resp.StatusCode != status || !strings.Contains(body, "Sign-in refused") || !strings.Contains(body, `href="/signin"`) {
		r.t.Fatalf("status %d, want %d refusal page\n%.500s", resp.StatusCode, status, body)
	}
	resp = r.do(c, "GET", "/account", nil, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		r.t.Errorf("signed in after a refusal: %d", resp.StatusCode)
	}
	evs, _ := r.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionSignIn, Outcome: audit.OutcomeFailure, Limit: 1})
	if len(evs) != 1 || evs[0].Reason != reason || evs[0].Details["method"] != "saml" || evs[0].Details["provider"] != "corp" {
		r.t.Errorf("last failed sign-in = %+v, want reason %q", evs, reason)
	}
}

// TestSAMLIdPDown: a provider whose IdP cannot be reached says so, and
// the local admin still signs in.
func TestSAMLIdPDown(t *testing.T) {
	t.Parallel()
	r := newSAMLRig(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/metadata"
	ln.Close()
	admin := r.client("admin")
	resp := r.postMultipart(admin, "/admin/identity/saml", map[string]string{"name": "down", "enabled": "on", "metadata_url": down}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	c := r.client("")
	resp = r.do(c, "GET", "/signin/saml/down", nil, nil)
	body := readBody(resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "cannot be reached") {
		t.Fatalf("start: %d\n%.400s", resp.StatusCode, body)
	}
	evs, _ := r.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionSignIn, Outcome: audit.OutcomeFailure, Limit: 1})
	if len(evs) != 1 || evs[0].Reason != "provider unreachable" || evs[0].Details["provider"] != "down" {
		t.Errorf("audit = %+v", evs)
	}
	// The sign-in page lists both buttons, and the password form works.
	resp = r.do(c, "GET", "/signin", nil, nil)
	body = readBody(resp)
	if !strings.Contains(body, `href="/signin/saml/corp"`) || !strings.Contains(body, "Corp SSO") {
		t.Errorf("sign-in page without the SAML button:\n%.2000s", body)
	}
	r.client("admin") // fails the test if the password sign-in does
}

// TestSAMLCrossSiteOnlyACS: the ACS takes the IdP's cross-site post; other
// routes still refuse cross-site posts.
func TestSAMLCrossSiteOnlyACS(t *testing.T) {
	t.Parallel()
	r := newSAMLRig(t)
	admin := r.client("admin")
	resp := r.do(admin, "POST", fmt.Sprintf("/admin/identity/saml/%d/test", r.provider.ID), url.Values{},
		http.Header{"Origin": {r.idp.URL}, "Sec-Fetch-Site": {"cross-site"}})
	readBody(resp)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site post to an admin route: %d, want 403", resp.StatusCode)
	}
	resp = r.signIn(r.client(""), "/")
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("cross-site post to the ACS: %d, want 303", resp.StatusCode)
	}
}

func TestSAMLAdminPages(t *testing.T) {
	t.Parallel()
	r := newSAMLRig(t)
	admin := r.client("admin")
	id := r.provider.ID
	// The edit page shows what to give the IdP.
	resp := r.do(admin, "GET", fmt.Sprintf("/admin/identity/saml/%d", id), nil, nil)
	body := readBody(resp)
	for _, want := range []string{r.srv.URL + "/saml/corp/metadata", r.srv.URL + "/saml/corp/acs", "BEGIN CERTIFICATE"} {
		if !strings.Contains(body, want) {
			t.Errorf("edit page without %q", want)
		}
	}
	// Test shows the IdP's metadata.
	resp = r.do(admin, "POST", fmt.Sprintf("/admin/identity/saml/%d/test", id), url.Values{}, nil)
	body = readBody(resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, r.idp.MetadataURL) || !strings.Contains(body, r.idp.URL+"/sso") {
		t.Errorf("test: %d\n%.1000s", resp.StatusCode, body)
	}
	// Bad input is shown on the form, and loses nothing.
	resp = r.postMultipart(admin, fmt.Sprintf("/admin/identity/saml/%d", id), map[string]string{
		"name": "corp", "display_name": "Corp SSO", "metadata_url": "ftp://nope", "groups_attribute": "memberOf",
		"allowed_domains": "example.com, not a domain"}, nil)
	body = readBody(resp)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "http or https") || !strings.Contains(body, `value="memberOf"`) {
		t.Errorf("bad form: %d\n%.1500s", resp.StatusCode, body)
	}
	// Upload metadata instead of a URL; the key stays.
	before, _ := r.store.IdentityProviderByID(context.Background(), id)
	mdResp, err := http.Get(r.idp.MetadataURL)
	if err != nil {
		t.Fatal(err)
	}
	md := readBody(mdResp)
	resp = r.postMultipart(admin, fmt.Sprintf("/admin/identity/saml/%d", id), map[string]string{
		"name": "corp", "display_name": "Corp SSO", "enabled": "on", "username_attribute": "uid", "groups_attribute": "eduPersonAffiliation"}, []byte(md))
	body = readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("upload: %d\n%.1000s", resp.StatusCode, body)
	}
	after, _ := r.store.IdentityProviderByID(context.Background(), id)
	cb, _ := saml.ParseConfig(before.Config)
	ca, err := saml.ParseConfig(after.Config)
	if err != nil || ca.MetadataURL != "" || ca.MetadataXML == "" || ca.SPKey != cb.SPKey {
		t.Fatalf("after upload: %v url=%q xml=%d same key=%v", err, ca.MetadataURL, len(ca.MetadataXML), ca.SPKey == cb.SPKey)
	}
	// Signing in works with the uploaded metadata.
	resp = r.signIn(r.client(""), "/")
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-in with uploaded metadata: %d", resp.StatusCode)
	}
	// A bad file is refused with a reason.
	resp = r.postMultipart(admin, fmt.Sprintf("/admin/identity/saml/%d", id), map[string]string{"name": "corp"}, []byte("<not-metadata/>"))
	body = readBody(resp)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "not usable") {
		t.Errorf("bad file: %d\n%.1000s", resp.StatusCode, body)
	}
	// A duplicate name is a field error.
	resp = r.postMultipart(admin, "/admin/identity/saml", map[string]string{"name": "corp", "metadata_url": r.idp.MetadataURL}, nil)
	body = readBody(resp)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "already exists") {
		t.Errorf("duplicate: %d\n%.1000s", resp.StatusCode, body)
	}
	// Unknown provider and other kinds are 404.
	for _, p := range []string{"/admin/identity/saml/999999", "/saml/nope/metadata", "/signin/saml/nope", "/saml/BAD!/metadata"} {
		resp = r.do(admin, "GET", p, nil, nil)
		readBody(resp)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
}

// samlMatrixRoutes makes a SAML provider "samlmatrix" (its IdP down) and
// returns the admin routes of SAML for TestAuthorizationMatrix.
func samlMatrixRoutes(t *testing.T, f *fixture) []struct{ method, path, who string } {
	t.Helper()
	var c saml.Config
	c.MetadataURL = "http://127.0.0.1:1/metadata" // nothing listens on port 1
	if err := c.NewKeyPair("https://portal.test/saml/samlmatrix/metadata", time.Now()); err != nil {
		t.Fatal(err)
	}
	p, err := f.store.CreateIdentityProvider(context.Background(), store.IdentityProvider{Kind: store.KindSAML, Name: "samlmatrix",
		DisplayName: "Matrix", Enabled: true, Config: c.JSON()})
	if err != nil {
		t.Fatal(err)
	}
	return []struct{ method, path, who string }{
		{"GET", "/admin/identity/saml/new", "admin"},
		{"POST", "/admin/identity/saml", "admin"},
		{"GET", fmt.Sprintf("/admin/identity/saml/%d", p.ID), "admin"},
		{"POST", fmt.Sprintf("/admin/identity/saml/%d", p.ID), "admin"},
		{"POST", fmt.Sprintf("/admin/identity/saml/%d/test", p.ID), "admin"},
		{"GET", "/admin/identity/saml/999999", ""},
	}
}

// checkSAMLPublicRoutes: the SAML routes a browser reaches before it is
// signed in answer everyone alike (TestAuthorizationMatrix).
func checkSAMLPublicRoutes(t *testing.T, f *fixture, clients map[string]*http.Client) {
	t.Helper()
	for _, rt := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/saml/samlmatrix/metadata", http.StatusOK},
		{"GET", "/signin/saml/samlmatrix", http.StatusBadGateway}, // its IdP is down
		{"POST", "/saml/samlmatrix/acs", http.StatusForbidden},    // no SAMLResponse
		{"GET", "/saml/nope/metadata", http.StatusNotFound},
		{"GET", "/signin/saml/nope", http.StatusNotFound},
		{"POST", "/saml/nope/acs", http.StatusNotFound},
	} {
		for _, role := range []string{"anon", "user", "auditor", "admin"} {
			resp := f.do(clients[role], rt.method, rt.path, url.Values{}, nil)
			readBody(resp)
			if resp.StatusCode != rt.status {
				t.Errorf("%s %s as %s: %d, want %d", rt.method, rt.path, role, resp.StatusCode, rt.status)
			}
		}
	}
}
