package httpui

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/idp/oidcop/opserver"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// oidcEnv is a portal fixture with a real OpenID provider on loopback,
// registered as provider "corp".
type oidcEnv struct {
	*fixture
	op       *opserver.Server
	opHS     *httptest.Server
	users    string
	provider store.IdentityProvider
	// rewrite, when set, tampers with the ID tokens the provider issues.
	rewrite func(claims map[string]any) *rsa.PrivateKey
}

func newOIDCEnv(t *testing.T) *oidcEnv {
	t.Helper()
	e := &oidcEnv{fixture: newFixture(t), users: filepath.Join(t.TempDir(), "users.json")}
	e.setUsers([]opserver.User{{ID: "sub-alice", Username: "alice", Password: "pw", Name: "Alice", Email: "alice@example.com", Groups: []string{"idp-ops"}}})
	e.opHS = httptest.NewUnstartedServer(nil)
	op, err := opserver.New(opserver.Config{Issuer: "http://" + e.opHS.Listener.Addr().String(), UsersFile: e.users,
		ClientID: "keyway", ClientSecret: "s3cret", RedirectURIs: []string{e.srv.URL + "/signin/oidc/corp/callback"},
		PostLogoutRedirects: []string{e.srv.URL + "/signin"}})
	if err != nil {
		t.Fatal(err)
	}
	e.op = op
	e.opHS.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.rewrite != nil {
			op.RewriteIDTokens(e.rewrite).ServeHTTP(w, r)
			return
		}
		op.ServeHTTP(w, r)
	})
	e.opHS.Start()
	t.Cleanup(e.opHS.Close)

	// The admin adds the provider through the form.
	admin := e.client("admin")
	resp := e.do(admin, "POST", "/admin/identity/oidc", url.Values{"name": {"corp"}, "display_name": {"Corp SSO"}, "enabled": {"1"},
		"issuer_url": {e.opHS.URL}, "client_id": {"keyway"}, "client_secret": {"s3cret"}, "scopes": {"profile email groups"}}, nil)
	body := readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasSuffix(resp.Header.Get("Location"), "/provisioning") {
		t.Fatalf("add provider: %d %s\n%.500s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	e.provider, err = e.store.IdentityProviderByName(context.Background(), store.KindOIDC, "corp")
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *oidcEnv) setUsers(us []opserver.User) {
	e.t.Helper()
	b, _ := json.Marshal(us)
	if err := os.WriteFile(e.users, b, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// provisioning turns JIT creation on and maps provider groups.
func (e *oidcEnv) provisioning(jit bool, m ...store.GroupMapping) {
	e.t.Helper()
	ctx := context.Background()
	p, err := e.store.IdentityProviderByID(ctx, e.provider.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	p.JITCreate, p.JITRole = jit, store.RoleUser
	if err := e.store.UpdateIdentityProvider(ctx, p); err != nil {
		e.t.Fatal(err)
	}
	if err := e.store.SetGroupMappings(ctx, p.ID, m); err != nil {
		e.t.Fatal(err)
	}
}

// startSignIn follows the sign-in button with c and signs in at the
// provider; it returns the callback URL the provider sends the browser to.
func (e *oidcEnv) startSignIn(c *http.Client, path, user, pw string) string {
	e.t.Helper()
	resp := e.do(c, "GET", path, nil, nil)
	body := readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), e.opHS.URL) {
		e.t.Fatalf("GET %s: %d %s\n%.500s", path, resp.StatusCode, resp.Header.Get("Location"), body)
	}
	auth := resp.Header.Get("Location")
	if u, _ := url.Parse(auth); u.Query().Get("code_challenge_method") != "S256" || u.Query().Get("nonce") == "" || u.Query().Get("state") == "" {
		e.t.Fatalf("authorization request without PKCE, nonce or state: %s", auth)
	}
	back, err := opserver.Login(&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, auth, user, pw)
	if err != nil {
		e.t.Fatalf("sign in at the provider: %v", err)
	}
	if !strings.HasPrefix(back.String(), e.srv.URL+"/signin/oidc/corp/callback?") {
		e.t.Fatalf("provider sent the browser to %s", back)
	}
	return back.String()
}

// callback brings the browser back to the portal.
func (e *oidcEnv) callback(c *http.Client, cb string) (*http.Response, string) {
	e.t.Helper()
	resp, err := c.Get(cb)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, readBody(resp)
}

func (e *oidcEnv) user(name string) store.User {
	e.t.Helper()
	u, err := e.store.UserByName(context.Background(), name)
	if err != nil {
		e.t.Fatalf("user %s: %v", name, err)
	}
	return u
}

// lastSignIn is the newest signin event.
func (e *oidcEnv) lastSignIn() store.AuditEvent {
	e.t.Helper()
	evs, err := e.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionSignIn, Limit: 1})
	if err != nil || len(evs) == 0 {
		e.t.Fatalf("no signin event: %v", err)
	}
	return evs[0]
}

func TestOIDCSignInJITAndGroups(t *testing.T) {
	t.Parallel()
	e := newOIDCEnv(t)
	ctx := context.Background()
	if _, err := e.store.CreateGroup(ctx, store.Group{Name: "audit"}); err != nil {
		t.Fatal(err)
	}
	e.provisioning(true, store.GroupMapping{ClaimValue: "idp-ops", Group: "ops"}, store.GroupMapping{ClaimValue: "idp-audit", Group: "audit"})

	// The sign-in page shows the button.
	anon := e.client("")
	if body := readBody(e.do(anon, "GET", "/signin", nil, nil)); !strings.Contains(body, `href="/signin/oidc/corp"`) || !strings.Contains(body, "Corp SSO") {
		t.Fatalf("no provider button on the sign-in page:\n%.2000s", body)
	}
	cb := e.startSignIn(anon, "/signin/oidc/corp?next=/account", "alice", "pw")
	resp, body := e.callback(anon, cb)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account" {
		t.Fatalf("callback: %d %s\n%.500s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if body := readBody(e.do(anon, "GET", "/account", nil, nil)); !strings.Contains(body, "alice") {
		t.Fatalf("not signed in as alice:\n%.500s", body)
	}
	u := e.user("alice")
	if u.Source != "oidc:corp" || u.Role != store.RoleUser || !slices.Equal(u.Groups, []string{"ops"}) {
		t.Errorf("created user = source %q role %q groups %q", u.Source, u.Role, u.Groups)
	}
	if ev := e.lastSignIn(); ev.Outcome != audit.OutcomeSuccess || ev.Actor != "alice" || ev.Details["method"] != "oidc" || ev.Details["provider"] != "corp" {
		t.Errorf("signin event = %+v", ev)
	}
	if evs, _ := e.audit.Search(ctx, store.AuditFilter{Action: audit.ActionUserProvision, Actor: "alice"}); len(evs) == 0 || evs[0].Details["created"] != "true" {
		t.Errorf("no user.provision event for the new user: %+v", evs)
	}

	// The state works once: the same callback again is refused.
	resp, body = e.callback(anon, cb)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Start again") {
		t.Errorf("replayed callback: %d\n%.500s", resp.StatusCode, body)
	}
	if ev := e.lastSignIn(); ev.Outcome != audit.OutcomeFailure || ev.Reason != "replayed or unknown state" {
		t.Errorf("replay event = %+v", ev)
	}

	// The provider moves alice from idp-ops to idp-audit: the next
	// sign-in re-applies the mappings.
	e.setUsers([]opserver.User{{ID: "sub-alice", Username: "alice", Password: "pw", Email: "alice@example.com", Groups: []string{"idp-audit", "unmapped"}}})
	other := e.client("")
	resp, body = e.callback(other, e.startSignIn(other, "/signin/oidc/corp", "alice", "pw"))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("second sign-in: %d\n%.500s", resp.StatusCode, body)
	}
	if u := e.user("alice"); !slices.Equal(u.Groups, []string{"audit"}) {
		t.Errorf("groups after the change at the provider = %q, want [audit]", u.Groups)
	}
}

func TestOIDCRefusals(t *testing.T) {
	t.Parallel()
	e := newOIDCEnv(t)
	e.provisioning(true)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	opKey, _ := e.op.SigningKey()
	for _, tc := range []struct {
		name   string
		edit   func(c map[string]any) *rsa.PrivateKey
		reason string
	}{
		{"wrong signature", func(c map[string]any) *rsa.PrivateKey { return other }, "bad signature"},
		{"wrong audience", func(c map[string]any) *rsa.PrivateKey { c["aud"] = []string{"another-app"}; return opKey }, "wrong audience"},
		{"expired", func(c map[string]any) *rsa.PrivateKey {
			c["exp"], c["iat"] = time.Now().Add(-time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix()
			return opKey
		}, "expired"},
		{"nonce mismatch", func(c map[string]any) *rsa.PrivateKey { c["nonce"] = "replayed-nonce"; return opKey }, "nonce mismatch"},
	} {
		// One at a time: they share the provider's rewriting hook.
		e.rewrite = tc.edit
		c := e.client("")
		resp, body := e.callback(c, e.startSignIn(c, "/signin/oidc/corp", "alice", "pw"))
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "does not trust") {
			t.Errorf("%s: %d\n%.500s", tc.name, resp.StatusCode, body)
		}
		if ev := e.lastSignIn(); ev.Outcome != audit.OutcomeFailure || ev.Reason != tc.reason || ev.Details["provider"] != "corp" {
			t.Errorf("%s: event = %+v", tc.name, ev)
		}
		if resp := e.do(c, "GET", "/account", nil, nil); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("%s: signed in anyway (%d)", tc.name, resp.StatusCode)
		}
	}
	e.rewrite = nil
	if _, err := e.store.UserByName(context.Background(), "alice"); err == nil {
		t.Error("a refused sign-in created the user")
	}

	// A state from another browser is refused.
	a, b := e.client(""), e.client("")
	cb := e.startSignIn(a, "/signin/oidc/corp", "alice", "pw")
	if resp, body := e.callback(b, cb); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("callback in another browser: %d\n%.300s", resp.StatusCode, body)
	}

	// JIT off: an unknown user is refused; a local user's name is never
	// taken over.
	e.provisioning(false)
	c := e.client("")
	resp, body := e.callback(c, e.startSignIn(c, "/signin/oidc/corp", "alice", "pw"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "no Keyway account") {
		t.Errorf("unknown user: %d\n%.500s", resp.StatusCode, body)
	}
	if ev := e.lastSignIn(); ev.Outcome != audit.OutcomeFailure || ev.Actor != "alice" || ev.Reason != "unknown user" {
		t.Errorf("unknown user event = %+v", ev)
	}
	e.provisioning(true)
	e.setUsers([]opserver.User{{ID: "sub-x", Username: "user1", Password: "pw", Email: "x@example.com"}})
	c = e.client("")
	resp, body = e.callback(c, e.startSignIn(c, "/signin/oidc/corp", "user1", "pw"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "signs in another way") && !strings.Contains(body, "does not sign in with") {
		t.Errorf("local user's name: %d\n%.500s", resp.StatusCode, body)
	}
	if u := e.user("user1"); u.Source != store.SourceLocal {
		t.Errorf("local user taken over: source %q", u.Source)
	}

	// A user name no Keyway user may have is refused in words.
	e.setUsers([]opserver.User{{ID: "sub-y", Username: "two words", Password: "pw", Email: "y@example.com"}})
	c = e.client("")
	resp, body = e.callback(c, e.startSignIn(c, "/signin/oidc/corp", "two words", "pw"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "cannot be a Keyway user name") {
		t.Errorf("unusable user name: %d\n%.500s", resp.StatusCode, body)
	}
	if ev := e.lastSignIn(); ev.Outcome != audit.OutcomeFailure || ev.Reason != "unusable user name" {
		t.Errorf("unusable user name event = %+v", ev)
	}
}

func TestOIDCProviderDown(t *testing.T) {
	t.Parallel()
	e := newOIDCEnv(t)
	e.provisioning(true)
	// The provider moves to an address where nothing answers.
	p, err := e.store.IdentityProviderByID(context.Background(), e.provider.ID)
	if err != nil {
		t.Fatal(err)
	}
	p.Config, _ = json.Marshal(map[string]string{"issuer_url": "http://" + deadAddr(t), "client_id": "keyway", "client_secret": "s3cret"})
	if err := e.store.UpdateIdentityProvider(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	c := e.client("")
	resp := e.do(c, "GET", "/signin/oidc/corp", nil, nil)
	body := readBody(resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "not reachable") || !strings.Contains(body, "break-glass") {
		t.Errorf("provider down: %d\n%.800s", resp.StatusCode, body)
	}
	if ev := e.lastSignIn(); ev.Outcome != audit.OutcomeFailure || ev.Reason != "provider unreachable" {
		t.Errorf("event = %+v", ev)
	}
	// The password form still works for the local admin.
	e.client("admin")
}

func TestOIDCAdminTestAndSignOut(t *testing.T) {
	t.Parallel()
	e := newOIDCEnv(t)
	e.provisioning(true)
	admin := e.client("admin")
	path := fmt.Sprintf("/admin/identity/oidc/%d", e.provider.ID)

	body := readBody(e.do(admin, "GET", path, nil, nil))
	if !strings.Contains(body, e.srv.URL+"/signin/oidc/corp/callback") {
		t.Errorf("the edit page does not show the redirect URI:\n%.1000s", body)
	}
	resp := e.do(admin, "POST", path+"/test", url.Values{}, nil)
	body = readBody(resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, e.opHS.URL+"/oauth/token") || !strings.Contains(body, "Sign in to see a sample token") {
		t.Fatalf("test: %d\n%.1500s", resp.StatusCode, body)
	}
	// The sample token: claims shown, nobody signed in or created.
	resp, body = e.callback(admin, e.startSignIn(admin, path+"/test/signin", "alice", "pw"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "idp-ops") || !strings.Contains(body, "sub-alice") {
		t.Fatalf("sample token: %d\n%.1500s", resp.StatusCode, body)
	}
	if _, err := e.store.UserByName(context.Background(), "alice"); err == nil {
		t.Error("the test sign-in created the user")
	}
	if body := readBody(e.do(admin, "GET", "/account", nil, nil)); !strings.Contains(body, "admin1") {
		t.Error("the test sign-in changed who the admin is")
	}

	// Form errors are shown on the form.
	resp = e.do(admin, "POST", path, url.Values{"name": {"Bad Name"}, "display_name": {"x"}, "issuer_url": {"http://example.com"}, "client_id": {"k"}}, nil)
	body = readBody(resp)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "lower-case") || !strings.Contains(body, "https") {
		t.Errorf("bad form: %d\n%.1500s", resp.StatusCode, body)
	}

	// Sign-out goes through the provider's logout.
	c := e.client("")
	if resp, body := e.callback(c, e.startSignIn(c, "/signin/oidc/corp", "alice", "pw")); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d\n%.300s", resp.StatusCode, body)
	}
	resp = e.do(c, "POST", "/signout", url.Values{}, nil)
	body = readBody(resp)
	m := regexp.MustCompile(`id="provider-signout" href="([^"]+)"`).FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil || !strings.Contains(body, `http-equiv="refresh"`) {
		t.Fatalf("sign-out: %d\n%.1000s", resp.StatusCode, body)
	}
	logout := html.UnescapeString(m[1])
	if !strings.HasPrefix(logout, e.opHS.URL) || !strings.Contains(logout, "id_token_hint=") {
		t.Fatalf("logout URL = %s", logout)
	}
	opc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := opc.Get(logout)
	if err != nil {
		t.Fatal(err)
	}
	readBody(resp)
	if resp.StatusCode/100 != 3 || !strings.HasPrefix(resp.Header.Get("Location"), e.srv.URL+"/signin") || e.op.Logouts.Load() != 1 {
		t.Errorf("provider logout: %d %s, %d logouts", resp.StatusCode, resp.Header.Get("Location"), e.op.Logouts.Load())
	}
	if resp := e.do(c, "GET", "/account", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Error("still signed in after sign-out")
	}
	// A password sign-in after an OIDC one in the same browser signs
	// out locally only.
	c = e.client("")
	if resp, body := e.callback(c, e.startSignIn(c, "/signin/oidc/corp", "alice", "pw")); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d\n%.300s", resp.StatusCode, body)
	}
	readBody(e.do(c, "POST", "/signin", url.Values{"username": {"user1"}, "password": {testPassword}}, nil))
	resp = e.do(c, "POST", "/signout", url.Values{}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin" {
		t.Errorf("sign-out after a password sign-in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A local user's sign-out stays a plain redirect.
	resp = e.do(admin, "POST", "/signout", url.Values{}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin" {
		t.Errorf("local sign-out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// matrixOIDCProvider adds an OpenID provider called "matrix" (a real one
// on loopback) for TestAuthorizationMatrix and returns its id.
func matrixOIDCProvider(t *testing.T, f *fixture) int64 {
	t.Helper()
	users := filepath.Join(t.TempDir(), "users.json")
	os.WriteFile(users, []byte(`[]`), 0o600)
	hs := httptest.NewUnstartedServer(nil)
	op, err := opserver.New(opserver.Config{Issuer: "http://" + hs.Listener.Addr().String(), UsersFile: users,
		ClientID: "keyway", ClientSecret: "s", RedirectURIs: []string{f.srv.URL + "/signin/oidc/matrix/callback"}})
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = op
	hs.Start()
	t.Cleanup(hs.Close)
	cfg, _ := json.Marshal(map[string]string{"issuer_url": hs.URL, "client_id": "keyway", "client_secret": "s"})
	p, err := f.store.CreateIdentityProvider(context.Background(), store.IdentityProvider{Kind: store.KindOIDC, Name: "matrix",
		DisplayName: "Matrix", Enabled: true, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return p.ID
}

// deadAddr is a loopback address that refuses connections: a socket
// bound there but not listening, held until the test ends so that no
// other test's server gets the port meanwhile.
func deadAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
