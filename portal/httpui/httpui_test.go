package httpui

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/authz"
	"github.com/keyway-dev/keyway/portal/exports"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/objstore"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/portal/store/storetest"
	"github.com/keyway-dev/keyway/recordings/storage"
	"github.com/keyway-dev/keyway/recordings/video"
	"github.com/keyway-dev/keyway/web/assets"
)

// fixture is a portal on an httptest TLS server with one user of each role,
// a group, a resource granted to the user, and ids to address them.
type fixture struct {
	t        *testing.T
	srv      *httptest.Server
	store    *store.Store
	audit    *audit.Log
	resource store.Resource
	other    store.Resource // granted to nobody
	group    store.Group
	users    map[string]store.User
	grant    store.Grant
	// recordings is the portal's recording store.
	recordings storage.Store
	// exportsDir holds the video exports.
	exportsDir string
	// portalID is the portal's gateway key; pool its gateway pool.
	portalID *wire.Identity
	pool     *gateways.Pool
	// ui is the portal's handler.
	ui *Server
}

const testPassword = "test-password-1"

// fakeVideo stands in for ffmpeg where a test does not look at videos.
func fakeVideo(_ context.Context, _ video.Source, dst string, progress func(float64)) error {
	progress(1)
	return os.WriteFile(dst, []byte("not really a video"), 0o600)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, fakeVideo)
}

// newFixtureWith makes videos with export; nil is a portal without
// ffmpeg.
// opts change the Server's dependencies before it is made.
func newFixtureWith(t *testing.T, export exports.ExportFunc, opts ...func(*Deps)) *fixture {
	t.Helper()
	return newFixtureOn(t, dirRecordings, export, opts...)
}

// recordingBackend opens a recording store for a fixture whose files are
// in dir.
type recordingBackend func(t *testing.T, dir string) storage.Store

// dirRecordings keeps recordings in dir/recordings, as a portal by
// default.
func dirRecordings(t *testing.T, dir string) storage.Store {
	d, err := storage.Open(filepath.Join(dir, "recordings"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// s3Recordings keeps recordings in a bucket of a new S3-compatible server
// (versitygw); counted, if set, counts the bytes fetched from it.
func s3Recordings(counted *targets.ByteCounter) recordingBackend {
	return func(t *testing.T, _ string) storage.Store {
		srv := targets.NewS3(t)
		cfg := objstore.Config{Bucket: srv.Bucket, Prefix: "recordings", Endpoint: srv.Endpoint, Region: srv.Region,
			PathStyle: true, Credentials: srv.Credentials()}
		if counted != nil {
			cfg.HTTPClient = counted.Client()
		}
		b, err := objstore.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// recordingBackends are the stores recording tests run on.
var recordingBackends = []struct {
	name string
	open recordingBackend
}{{"dir", dirRecordings}, {"s3", s3Recordings(nil)}}

// newFixtureOn is newFixtureWith with recordings in the store recs opens.
func newFixtureOn(t *testing.T, recs recordingBackend, export exports.ExportFunc, opts ...func(*Deps)) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st := storetest.Open(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	sessions, stop := auth.NewSessions(st)
	t.Cleanup(stop)
	id, _ := wire.LoadOrCreateIdentity(filepath.Join(dir, "id.pem"))
	pool := gateways.New(id, logger, 5*time.Second)
	al, err := audit.New(st, make([]byte, 32), logger, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	recDir := recs(t, dir)
	exportsDir := filepath.Join(dir, "exports")
	// One native client build, for the download routes.
	clientsDir := filepath.Join(dir, "clients")
	os.MkdirAll(clientsDir, 0o700)
	os.WriteFile(filepath.Join(clientsDir, "keyway-linux-amd64"), []byte("#!/bin/false\n"), 0o755)
	var videos *exports.Runner
	if export != nil {
		cfg := exports.Config{Dir: exportsDir, Recordings: recDir, Export: export, Logger: logger}
		if shared, ok := recDir.(exports.Shared); ok {
			cfg.Shared = shared
		}
		if videos, err = exports.New(cfg); err != nil {
			t.Fatal(err)
		}
	}
	deps := Deps{Store: st, Sessions: sessions, Auth: auth.New(st, auth.NewLimiter(time.Now), logger), Audit: al,
		Authz: authz.New(st), Gateways: pool, Assets: assets.Handler(), Logger: logger, Recordings: recDir, Exports: videos,
		PortalIdentity: id, PortalKey: id.PublicKeyString(), PortalTLSKeySHA256: strings.Repeat("ab", 32),
		PortalTLSNextKeys: []string{strings.Repeat("cd", 32)}, ClientsDir: clientsDir}
	for _, o := range opts {
		o(&deps)
	}
	s := New(deps)
	srv := httptest.NewTLSServer(s)
	t.Cleanup(func() { srv.Close(); s.Close() })

	f := &fixture{t: t, srv: srv, store: st, audit: al, users: map[string]store.User{}, recordings: recDir, exportsDir: exportsDir,
		portalID: id, pool: pool, ui: s}
	hash, _ := auth.HashPassword(testPassword)
	f.group, _ = st.CreateGroup(ctx, store.Group{Name: "ops"})
	for _, r := range []store.Role{store.RoleAdmin, store.RoleAuditor, store.RoleUser} {
		u, err := st.CreateUser(ctx, store.User{Name: string(r) + "1", Role: r}, hash)
		if err != nil {
			t.Fatal(err)
		}
		f.users[string(r)] = u
	}
	f.resource, _ = st.CreateResource(ctx, store.Resource{Name: "web", Protocol: "ssh", Host: "127.0.0.1", Port: 1, Login: "x"}, &store.Secrets{Password: "target-secret"})
	f.other, _ = st.CreateResource(ctx, store.Resource{Name: "db", Protocol: "ssh", Host: "127.0.0.1", Port: 1, Login: "x"}, &store.Secrets{Password: "p"})
	f.grant, err = st.CreateGrant(ctx, f.resource.ID, "user", f.users["user"].ID)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// client returns an HTTP client signed in as role ("" for anonymous) that
// does not follow redirects.
func (f *fixture) client(role string) *http.Client {
	f.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := *f.srv.Client() // a copy: the server's client is shared
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if role != "" {
		resp, err := c.PostForm(f.srv.URL+"/signin", url.Values{"username": {role + "1"}, "password": {testPassword}})
		if err != nil {
			f.t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			f.t.Fatalf("sign in as %s: status %d", role, resp.StatusCode)
		}
	}
	return &c
}

func (f *fixture) do(c *http.Client, method, path string, form url.Values, hdr http.Header) *http.Response {
	f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp
}

func readBody(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(b)
}

// TestAuthorizationMatrix calls every route as anonymous, user, auditor and
// admin and checks who is let in.
func TestAuthorizationMatrix(t *testing.T) {
	// A portal URL with a host name, so that passkeys can be used.
	f := newFixtureWith(t, fakeVideo, func(d *Deps) { d.PortalURL = "https://localhost" })
	clients := map[string]*http.Client{"anon": f.client("")}
	for _, r := range []string{"user", "auditor", "admin"} {
		clients[r] = f.client(r)
	}
	res, other, u, g, gr := f.resource.ID, f.other.ID, f.users["user"].ID, f.group.ID, f.grant.ID
	rec := f.addRecording("MATRIX1", "kw-matrix").ID
	desktop := f.addDesktopRecording("MATRIX2", desktopRecording())
	// Its video exists, so that downloading it is allowed.
	os.MkdirAll(f.exportsDir, 0o700)
	os.WriteFile(filepath.Join(f.exportsDir, desktop.SHA256+".mp4"), []byte("video"), 0o600)
	dev := f.addDevice(f.users["user"].ID, "matrix-laptop")
	devGone := f.addDevice(f.users["user"].ID, "matrix-old")
	devStepUp := f.addDevice(f.users["user"].ID, "matrix-stepup")
	pol, err := f.store.CreatePolicy(context.Background(), store.Policy{Name: "matrix", ScopeKind: store.ScopeEveryone, TimeZone: "UTC",
		Allow: store.AllowAll, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	// Issue 20 (identity core): providers for the provisioning routes.
	idp, err := f.store.CreateIdentityProvider(context.Background(), store.IdentityProvider{Kind: store.KindOIDC, Name: "matrix-core", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	idpGone, err := f.store.CreateIdentityProvider(context.Background(), store.IdentityProvider{Kind: store.KindSAML, Name: "matrix-gone"})
	if err != nil {
		t.Fatal(err)
	}

	// An OpenID provider on loopback, so that its routes work.
	oidcProvider := matrixOIDCProvider(t, f)
	matrixGW := f.enrolGateway("matrix-gw")
	ldapDir, err := f.store.CreateIdentityProvider(context.Background(), store.IdentityProvider{Kind: store.KindLDAP, Name: "matrix-ldap",
		Config: []byte(`{"url":"ldaps://127.0.0.1:1","bind_dn":"cn=a","bind_password":"p","user_base":"dc=x"}`)})

	// who: the roles allowed; everyone else gets a sign-in redirect (anon)
	// or 403/404. "public": everyone, signed in or not, reaches the route
	// (it may still refuse the request itself, e.g. a sign-in callback
	// without state).
	type route struct {
		method, path string
		who          string
	}
	routes := []route{
		{"GET", "/", "user auditor admin"},
		{"GET", "/account", "user auditor admin"},
		{"POST", "/account/password", "user auditor admin"},
		{"POST", "/account/tokens", "user auditor admin"},
		{"GET", "/device", "user auditor admin"},
		{"POST", "/device/approve", "user auditor admin"},
		{"POST", "/device/deny", "user auditor admin"},
		{"GET", "/downloads/keyway-linux-amd64", "user auditor admin"},
		{"GET", "/downloads/keyway-darwin-arm64", ""}, // known name, not built
		{"GET", "/downloads/portal", ""},
		{"POST", fmt.Sprintf("/account/devices/%d/revoke", dev.ID), "user"},
		{"GET", fmt.Sprintf("/device/%d/stepup?within=5", devStepUp.ID), "user"}, // own device only
		{"POST", fmt.Sprintf("/device/%d/stepup", devStepUp.ID), "user"},
		{"GET", "/device/999999/stepup", ""},
		{"POST", "/device/x/stepup", ""},
		{"POST", fmt.Sprintf("/admin/users/%d/devices/%d/revoke", u, devGone.ID), "admin"},
		{"POST", "/admin/settings/clients", "admin"},
		{"GET", "/favicon.ico", "anon user auditor admin"},
		{"GET", "/?q=web&protocol=ssh&tag=x&view=list", "user auditor admin"},
		{"POST", fmt.Sprintf("/favourites/%d", res), "user"},
		{"POST", fmt.Sprintf("/favourites/%d", other), ""},
		{"POST", "/favourites/999999", ""},
		{"GET", fmt.Sprintf("/connect/%d", res), "user"},
		{"GET", fmt.Sprintf("/connect/%d", other), ""},
		{"GET", "/connect/999999", ""},
		{"GET", fmt.Sprintf("/connect/%d/guac", other), ""},
		{"GET", fmt.Sprintf("/connect/%d/ws", other), ""},
		{"GET", "/admin/users", "admin"},
		{"GET", "/admin/users/new", "admin"},
		{"POST", "/admin/users", "admin"},
		{"GET", fmt.Sprintf("/admin/users/%d", u), "admin"},
		{"POST", fmt.Sprintf("/admin/users/%d", u), "admin"},
		{"POST", fmt.Sprintf("/admin/users/%d/unlock", u), "admin"},
		{"GET", "/admin/groups", "admin"},
		{"POST", "/admin/groups", "admin"},
		{"GET", "/admin/resources", "admin"},
		{"GET", "/admin/resources/new", "admin"},
		{"POST", "/admin/resources", "admin"},
		{"GET", fmt.Sprintf("/admin/resources/%d", res), "admin"},
		{"POST", fmt.Sprintf("/admin/resources/%d", res), "admin"},
		{"POST", fmt.Sprintf("/admin/resources/%d/hostkey", res), "admin"},
		{"GET", "/admin/grants", "admin"},
		{"POST", "/admin/grants", "admin"},
		{"GET", fmt.Sprintf("/admin/grants?resource=%d&subject=user:%d", res, u), "admin"},
		{"POST", fmt.Sprintf("/admin/grants/%d", gr), "admin"},
		{"GET", "/admin/policies", "admin"},
		{"GET", "/admin/policies/new", "admin"},
		{"POST", "/admin/policies", "admin"},
		{"GET", fmt.Sprintf("/admin/policies/%d", pol.ID), "admin"},
		{"POST", fmt.Sprintf("/admin/policies/%d", pol.ID), "admin"},
		{"GET", "/admin/policies/999999", ""},
		{"GET", "/audit", "auditor admin"},
		{"GET", "/audit.csv", "auditor admin"},
		{"GET", "/sessions", "auditor admin"},
		{"GET", "/sessions/history", "auditor admin"},
		{"GET", "/sessions/history?result=refused&user=user1&since=2026-01-01T00:00", "auditor admin"},
		{"GET", "/sessions/history.csv", "auditor admin"},
		{"POST", "/sessions/NOSUCHSESSION/terminate", "admin"},
		{"GET", "/sessions/NOSUCHSESSION/watch", ""},
		{"GET", "/sessions/NOSUCHSESSION/watch/ws", ""},
		{"GET", "/recordings", "auditor admin"},
		{"GET", "/recordings?q=kw-matrix&user=user1&since=2026-01-01T00:00", "auditor admin"},
		{"GET", fmt.Sprintf("/recordings/%d", rec), "auditor admin"},
		{"GET", fmt.Sprintf("/recordings/%d/file", rec), "auditor admin"},
		{"GET", fmt.Sprintf("/recordings/%d/file?download=1", rec), "auditor admin"},
		{"GET", "/recordings/999999", ""},
		{"GET", fmt.Sprintf("/recordings/%d", desktop.ID), "auditor admin"},
		{"GET", fmt.Sprintf("/recordings/%d/keyframes", desktop.ID), "auditor admin"},
		{"POST", fmt.Sprintf("/recordings/%d/export", desktop.ID), "auditor admin"},
		{"GET", fmt.Sprintf("/recordings/%d/export", desktop.ID), "auditor admin"},
		{"GET", fmt.Sprintf("/recordings/%d/video", desktop.ID), "auditor admin"},
		{"POST", "/recordings/999999/export", ""},
		{"GET", "/recordings/999999/video", ""},
		{"GET", "/admin/gateways", "admin"},
		{"GET", "/admin/gateways/new", "admin"},
		{"POST", "/admin/gateways", "admin"},
		{"POST", "/admin/gateways/tunnel", "admin"},
		{"POST", "/admin/segments", "admin"},
		{"POST", "/admin/segments/1", "admin"},
		{"GET", "/admin/gateways/999", ""},
		// Issue 21: gateway keys and access tokens.
		{"GET", fmt.Sprintf("/admin/gateways/%d", matrixGW.gw.ID), "admin"},
		{"POST", fmt.Sprintf("/admin/gateways/%d/keys/secondary/regenerate", matrixGW.gw.ID), "admin"},
		{"POST", fmt.Sprintf("/admin/gateways/%d/token-slot", matrixGW.gw.ID), "admin"},
		{"POST", "/admin/gateways/999/keys/primary/regenerate", ""},
		{"POST", "/admin/gateways/999/token-slot", ""},
		{"POST", fmt.Sprintf("/admin/resources/%d/test", res), "admin"},
		{"GET", "/admin/settings", "admin"},
		{"POST", "/admin/settings/hook", "admin"},
		{"POST", "/admin/settings/hook/test", "admin"},
		{"POST", "/admin/settings/proxies", "admin"},
		{"GET", "/account/mfa", "user auditor admin"},
		{"GET", "/account/mfa?next=/account", "user auditor admin"},
		{"GET", "/account/mfa/totp", "user auditor admin"},
		{"POST", "/account/mfa/totp", "user auditor admin"},
		{"POST", "/account/mfa/webauthn/begin", "user auditor admin"},
		{"POST", "/account/mfa/webauthn/finish", "user auditor admin"},
		{"POST", "/account/mfa/recovery", "user auditor admin"},
		{"GET", "/mfa/verify?next=/account", "user auditor admin"},
		{"POST", "/mfa/verify", "user auditor admin"},
		{"POST", "/mfa/verify/webauthn/begin", "user auditor admin"},
		{"POST", "/mfa/verify/webauthn/finish", "user auditor admin"},
		{"GET", "/admin/identity/mfa", "admin"},
		{"POST", "/admin/identity/mfa", "admin"},
		{"POST", fmt.Sprintf("/admin/users/%d/mfa/reset", f.users["auditor"].ID), "admin"},
		// Issue 20, identity core.
		{"GET", "/admin/identity", "admin"},
		{"POST", "/admin/identity/local", "admin"},
		{"GET", fmt.Sprintf("/admin/identity/providers/%d/provisioning", idp.ID), "admin"},
		{"POST", fmt.Sprintf("/admin/identity/providers/%d/provisioning", idp.ID), "admin"},
		{"GET", "/admin/identity/providers/999999/provisioning", ""},
		{"POST", "/admin/identity/providers/999999/provisioning", ""},
		{"GET", "/admin/identity/oidc/new", "admin"},
		{"POST", "/admin/identity/oidc", "admin"},
		{"GET", fmt.Sprintf("/admin/identity/oidc/%d", oidcProvider), "admin"},
		{"POST", fmt.Sprintf("/admin/identity/oidc/%d", oidcProvider), "admin"},
		{"POST", fmt.Sprintf("/admin/identity/oidc/%d/test", oidcProvider), "admin"},
		{"GET", fmt.Sprintf("/admin/identity/oidc/%d/test/signin", oidcProvider), "admin"},
		{"GET", "/admin/identity/oidc/999999", ""},
		{"GET", "/signin/oidc/matrix", "public"},
		// Probes (issue 21): public, for load balancers and kubelets.
		{"GET", "/livez", "public"},
		{"GET", "/readyz", "probe"}, // 503 here: the fixture has no gateway
		{"GET", "/signin/oidc/matrix/callback?state=x&code=y", "public"},
		{"GET", "/admin/identity/ldap/new", "admin"},
		{"POST", "/admin/identity/ldap", "admin"},
		{"GET", fmt.Sprintf("/admin/identity/ldap/%d", ldapDir.ID), "admin"},
		{"POST", fmt.Sprintf("/admin/identity/ldap/%d", ldapDir.ID), "admin"},
		{"POST", fmt.Sprintf("/admin/identity/ldap/%d/test", ldapDir.ID), "admin"},
		{"GET", "/admin/identity/ldap/999999", ""},
		// Destructive routes last, so earlier rows still find their targets.
		{"POST", fmt.Sprintf("/admin/grants/%d/delete", gr), "admin"},
		{"POST", fmt.Sprintf("/admin/policies/%d/delete", pol.ID), "admin"},
		{"POST", fmt.Sprintf("/admin/groups/%d/delete", g), "admin"},
		{"POST", fmt.Sprintf("/admin/resources/%d/delete", other), "admin"},
		{"POST", fmt.Sprintf("/admin/users/%d/delete", u), "admin"},
		{"POST", fmt.Sprintf("/admin/identity/providers/%d/delete", idpGone.ID), "admin"},
	}
	for _, rt := range samlMatrixRoutes(t, f) {
		routes = append(routes, route(rt))
	}
	for _, rt := range routes {
		for _, role := range []string{"anon", "user", "auditor", "admin"} {
			if rt.method == "POST" && strings.HasSuffix(rt.path, "/delete") && role == "admin" {
				continue // checked below, after the others tried
			}
			resp := f.do(clients[role], rt.method, rt.path, url.Values{}, nil)
			body := readBody(resp)
			allowed := strings.Contains(" "+rt.who+" ", " "+role+" ")
			if rt.who == "probe" {
				// A readiness probe answers everyone the same: 200, or
				// 503 saying which check failed.
				if (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable) || !strings.Contains(body, `"checks"`) {
					t.Errorf("%s %s as %s: %d, want 200 or 503 with the checks\n%.300s", rt.method, rt.path, role, resp.StatusCode, body)
				}
				continue
			}
			if rt.who == "public" {
				if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || resp.StatusCode >= 500 ||
					strings.HasPrefix(resp.Header.Get("Location"), "/signin?") {
					t.Errorf("%s %s as %s: %d %s, want the public page\n%.300s", rt.method, rt.path, role, resp.StatusCode, resp.Header.Get("Location"), body)
				}
				continue
			}
			switch {
			case allowed && role == "anon": // public
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s %s as anon: %d, want 200", rt.method, rt.path, resp.StatusCode)
				}
			case role == "anon" && rt.method == "GET":
				if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
					t.Errorf("%s %s as anon: %d, want redirect to sign-in", rt.method, rt.path, resp.StatusCode)
				}
			case role == "anon":
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s %s as anon: %d, want 401", rt.method, rt.path, resp.StatusCode)
				}
			case allowed:
				if resp.StatusCode >= 400 && resp.StatusCode != http.StatusUnprocessableEntity {
					t.Errorf("%s %s as %s: %d, want success\n%.300s", rt.method, rt.path, role, resp.StatusCode, body)
				}
			default:
				if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusNotFound {
					t.Errorf("%s %s as %s: %d, want 403 or 404", rt.method, rt.path, role, resp.StatusCode)
				}
			}
		}
	}
	checkSAMLPublicRoutes(t, f, clients)
	// The gateway API answers signed requests of gateways only: a browser
	// session, of any role, is no gateway.
	for _, rt := range []route{{"POST", wire.TokenPath, ""}, {"GET", "/gateway-api/v1/config", ""}, {"GET", wire.RecordingsPath + "X1", ""}} {
		for role, c := range clients {
			resp := f.do(c, rt.method, rt.path, nil, nil)
			if body := readBody(resp); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not an enrolled gateway") {
				t.Errorf("%s %s as %s: %d %s, want 401", rt.method, rt.path, role, resp.StatusCode, body)
			}
		}
	}
	// The file browser's routes, one file or a selection: only a files
	// grant opens them, and nobody here has one (the user's grant on res
	// is for the terminal). Allowed requests need a target, so they are
	// tested with a real sshd in cmd/portal (TestFilesBulk and others).
	bulk := url.Values{"bulk": {"1"}, "dir": {"/tmp"}, "path": {"/tmp/a", "/tmp/b"}}
	for _, id := range []int64{res, other} {
		for _, rt := range []struct {
			method, path string
			form         url.Values
		}{
			{"GET", fmt.Sprintf("/files/%d", id), nil},
			{"GET", fmt.Sprintf("/files/%d/download?path=/tmp/a", id), nil},
			{"GET", fmt.Sprintf("/files/%d/download?%s", id, bulk.Encode()), nil},
			{"POST", fmt.Sprintf("/files/%d/upload?path=/tmp&name=a", id), url.Values{}},
			{"POST", fmt.Sprintf("/files/%d/mkdir", id), url.Values{"path": {"/tmp"}, "name": {"a"}}},
			{"POST", fmt.Sprintf("/files/%d/rename", id), url.Values{"path": {"/tmp/a"}, "name": {"b"}}},
			{"POST", fmt.Sprintf("/files/%d/chmod", id), url.Values{"path": {"/tmp/a"}, "mode": {"644"}}},
			{"POST", fmt.Sprintf("/files/%d/delete", id), url.Values{"path": {"/tmp/a"}}},
			{"POST", fmt.Sprintf("/files/%d/delete", id), bulk},
		} {
			for _, role := range []string{"anon", "user", "auditor", "admin"} {
				resp := f.do(clients[role], rt.method, rt.path, rt.form, nil)
				readBody(resp)
				switch {
				case role == "anon" && rt.method == "GET":
					if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
						t.Errorf("%s %s as anon: %d, want redirect to sign-in", rt.method, rt.path, resp.StatusCode)
					}
				case role == "anon":
					if resp.StatusCode != http.StatusUnauthorized {
						t.Errorf("%s %s %v as anon: %d, want 401", rt.method, rt.path, rt.form, resp.StatusCode)
					}
				case resp.StatusCode != http.StatusNotFound:
					t.Errorf("%s %s %v as %s: %d, want 404", rt.method, rt.path, rt.form, role, resp.StatusCode)
				}
			}
		}
	}
	// Native client routes authenticate with a bearer credential, never a
	// cookie: a signed-in browser without one is refused like anonymous.
	// A CONNECT stream is let in only where the user's grant is (on web,
	// an SSH resource without tunnels: 403 no_tunnel).
	for _, rt := range []struct {
		method, target string
		status         map[string]int // by role, with a token
	}{
		{"GET", "", map[string]int{"user": 200, "auditor": 200, "admin": 200}},
		{"CONNECT", "resource/web", map[string]int{"user": 403, "auditor": 404, "admin": 404}},
		{"CONNECT", "resource/db", map[string]int{"user": 404, "auditor": 404, "admin": 404}},
		{"CONNECT", "terminal/db", map[string]int{"user": 404, "auditor": 404, "admin": 404}},
		{"CONNECT", "net/10.0.0.1:22", map[string]int{"user": 403, "auditor": 403, "admin": 403}},
	} {
		for _, role := range []string{"anon", "user", "auditor", "admin"} {
			for _, withToken := range []bool{false, true} {
				if role == "anon" && withToken {
					continue
				}
				var req *http.Request
				if rt.method == "CONNECT" {
					req, _ = http.NewRequest("CONNECT", f.srv.URL, nil)
					req.Header.Set("Keyway-Target", rt.target)
				} else {
					req, _ = http.NewRequest("GET", f.srv.URL+"/api/v1/client/status", nil)
				}
				want := http.StatusUnauthorized
				if withToken {
					tok, _, _ := f.store.CreateToken(context.Background(), f.users[role].ID, "matrix", time.Hour)
					req.Header.Set("Authorization", "Bearer "+tok)
					want = rt.status[role]
				}
				resp, err := clients[role].Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body := readBody(resp)
				if resp.StatusCode != want {
					t.Errorf("%s %s as %s (token %v): %d, want %d\n%.300s", rt.method, rt.target, role, withToken, resp.StatusCode, want, body)
				}
			}
		}
	}
	// MFA routes with their own answers. The routes of a sign-in waiting
	// for its second factor need that state: nobody here has it, signed
	// in or not. A factor is removed only by its owner.
	factor, err := f.store.AddMFAFactor(context.Background(), store.MFAFactor{UserID: u, Kind: store.FactorTOTP, Name: "phone",
		Secret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"})
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range []struct {
		method, path string
		status       map[string]int // by role
	}{
		{"GET", "/signin/mfa", map[string]int{"anon": 303, "user": 303, "auditor": 303, "admin": 303}},
		{"GET", "/signin/enrol", map[string]int{"anon": 303, "user": 303, "auditor": 303, "admin": 303}},
		{"POST", "/signin/mfa", map[string]int{"anon": 401, "user": 401, "auditor": 401, "admin": 401}},
		{"POST", "/signin/mfa/webauthn/begin", map[string]int{"anon": 401, "user": 401, "auditor": 401, "admin": 401}},
		{"POST", "/signin/mfa/webauthn/finish", map[string]int{"anon": 401, "user": 401, "auditor": 401, "admin": 401}},
		{"POST", "/signin/enrol/totp", map[string]int{"anon": 401, "user": 401, "auditor": 401, "admin": 401}},
		{"POST", "/signin/enrol/webauthn/begin", map[string]int{"anon": 401, "user": 401, "auditor": 401, "admin": 401}},
		{"POST", "/signin/enrol/webauthn/finish", map[string]int{"anon": 401, "user": 401, "auditor": 401, "admin": 401}},
		{"POST", "/signin/mfa/cancel", map[string]int{"anon": 303, "user": 303, "auditor": 303, "admin": 303}},
		{"POST", fmt.Sprintf("/account/mfa/%d/delete", factor.ID), map[string]int{"anon": 401, "user": 422, "auditor": 404, "admin": 404}},
	} {
		for _, role := range []string{"anon", "user", "auditor", "admin"} {
			resp := f.do(clients[role], rt.method, rt.path, url.Values{}, nil)
			body := readBody(resp)
			if resp.StatusCode != rt.status[role] {
				t.Errorf("%s %s as %s: %d, want %d\n%.300s", rt.method, rt.path, role, resp.StatusCode, rt.status[role], body)
			}
			if resp.StatusCode == 303 && rt.method == "GET" && resp.Header.Get("Location") != "/signin" {
				t.Errorf("%s %s as %s: redirect to %q, want /signin", rt.method, rt.path, role, resp.Header.Get("Location"))
			}
		}
	}
	for _, rt := range routes {
		if strings.HasSuffix(rt.path, "/delete") {
			resp := f.do(clients["admin"], rt.method, rt.path, url.Values{}, nil)
			readBody(resp)
			if resp.StatusCode != http.StatusSeeOther {
				t.Errorf("%s %s as admin: %d, want 303", rt.method, rt.path, resp.StatusCode)
			}
		}
	}
	// Denials are audited.
	evs, _ := f.audit.Search(context.Background(), store.AuditFilter{Actor: "user1", Action: audit.ActionAuthzDenied})
	if len(evs) == 0 {
		t.Error("no authz.denied events for the user's attempts")
	}
}

func TestCrossOriginRefused(t *testing.T) {
	f := newFixture(t)
	admin := f.client("admin")
	for _, hdr := range []http.Header{
		{"Sec-Fetch-Site": {"cross-site"}},
		{"Origin": {"https://evil.example"}},
	} {
		resp := f.do(admin, "POST", "/admin/groups", url.Values{"name": {"evil"}}, hdr)
		readBody(resp)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin POST with %v: %d, want 403", hdr, resp.StatusCode)
		}
	}
	if _, err := f.store.ListGroups(context.Background()); err != nil {
		t.Fatal(err)
	}
	gs, _ := f.store.ListGroups(context.Background())
	for _, g := range gs {
		if g.Name == "evil" {
			t.Fatal("a cross-origin POST created a group")
		}
	}
}

func TestTerminalSocketChecksOriginAndGrant(t *testing.T) {
	f := newFixture(t)
	user := f.client("user")
	u, _ := url.Parse(f.srv.URL)
	dialer := websocket.Dialer{TLSClientConfig: f.srv.Client().Transport.(*http.Transport).TLSClientConfig, Jar: user.Jar}
	wsURL := func(id int64) string { return fmt.Sprintf("wss://%s/connect/%d/ws", u.Host, id) }

	if _, resp, err := dialer.Dial(wsURL(f.resource.ID), http.Header{"Origin": {"https://evil.example"}}); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin WebSocket: %v", err)
	}
	// Ungranted, or no such resource: the socket opens (a browser cannot
	// read an HTTP error on a WebSocket) and says no more than that, and
	// the refusal is audited.
	for _, id := range []int64{f.other.ID, 987654} {
		ws, _, err := dialer.Dial(wsURL(id), http.Header{"Origin": {f.srv.URL}})
		if err != nil {
			t.Fatalf("WebSocket to resource %d: %v", id, err)
		}
		var c control
		if err := ws.ReadJSON(&c); err != nil {
			t.Fatal(err)
		}
		ws.Close()
		if c.Type != "error" || c.Code != "no_grant" || c.Message != "There is no such resource, or you have no access to it." {
			t.Fatalf("WebSocket to resource %d: got %+v", id, c)
		}
	}
	if evs, _ := f.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionConnect, Outcome: audit.OutcomeDenied}); len(evs) != 2 {
		t.Fatalf("refusals audited: %+v", evs)
	}
	// Granted, same origin: the socket opens and reports that no gateway is
	// available (the fixture has none), and the attempt is audited.
	ws, _, err := dialer.Dial(wsURL(f.resource.ID), http.Header{"Origin": {f.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var c control
	if err := ws.ReadJSON(&c); err != nil {
		t.Fatal(err)
	}
	if c.Type != "error" || c.Code != "no_gateway" || !strings.Contains(c.Message, "No gateway available") {
		t.Fatalf("got %+v", c)
	}
	evs, _ := f.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionConnect, Outcome: audit.OutcomeFailure})
	if len(evs) != 1 || evs[0].Target != "web" || evs[0].ClientAddr == "" {
		t.Fatalf("connect failure not audited: %+v", evs)
	}
}

func TestSignInFailuresAndRateLimit(t *testing.T) {
	f := newFixture(t)
	c := f.client("")
	for i := range 5 {
		resp := f.do(c, "POST", "/signin", url.Values{"username": {"user1"}, "password": {"wrong"}}, nil)
		body := readBody(resp)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong username or password") {
			t.Fatalf("attempt %d: %d", i, resp.StatusCode)
		}
	}
	resp := f.do(c, "POST", "/signin", url.Values{"username": {"user1"}, "password": {testPassword}}, nil)
	body := readBody(resp)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed sign-ins") {
		t.Fatalf("after 5 failures: %d", resp.StatusCode)
	}
	evs, _ := f.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionSignIn, Outcome: audit.OutcomeFailure})
	if len(evs) != 6 {
		t.Fatalf("%d failed sign-ins audited, want 6", len(evs))
	}
}

func TestSessionCookieAndHeaders(t *testing.T) {
	f := newFixture(t)
	c := f.client("")
	resp := f.do(c, "GET", "/signin", nil, nil)
	readBody(resp)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Error("framing allowed")
	}
	resp = f.do(c, "POST", "/signin", url.Values{"username": {"user1"}, "password": {testPassword}, "next": {"//evil.example/x"}}, nil)
	readBody(resp)
	if loc := resp.Header.Get("Location"); loc != "/" {
		t.Errorf("open redirect to %q", loc)
	}
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "keyway_session" {
			cookie = ck
		}
	}
	if cookie == nil || !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie %+v", cookie)
	}
}

func TestFormsValidateAndEscape(t *testing.T) {
	f := newFixture(t)
	admin := f.client("admin")
	resp := f.do(admin, "POST", "/admin/resources", url.Values{"name": {"<script>alert(1)</script>"}, "host": {"h"}, "port": {"99999"}, "login": {"x"}}, nil)
	body := readBody(resp)
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("invalid resource: %d", resp.StatusCode)
	}
	if strings.Contains(body, "<script>alert(1)</script>") || !strings.Contains(body, "&lt;script&gt;") {
		t.Fatal("user input not escaped in the re-rendered form")
	}
	for _, want := range []string{"Enter a port from 1 to 65535.", "Give a password or a private key"} {
		if !strings.Contains(body, want) {
			t.Errorf("form lacks %q", want)
		}
	}
	// Stored credentials never come back to the browser.
	resp = f.do(admin, "GET", fmt.Sprintf("/admin/resources/%d", f.resource.ID), nil, nil)
	if body := readBody(resp); strings.Contains(body, "target-secret") {
		t.Fatal("the edit form shows the stored password")
	}
}

func TestAPI(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	adminTok, _, _ := f.store.CreateToken(ctx, f.users["admin"].ID, "t", time.Hour)
	userTok, _, _ := f.store.CreateToken(ctx, f.users["user"].ID, "t", time.Hour)
	auditorTok, _, _ := f.store.CreateToken(ctx, f.users["auditor"].ID, "t", time.Hour)
	rec := f.addRecording("API1", "kw-api")
	c := f.srv.Client()
	call := func(tok, method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
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
		tok, method, path, body string
		status                  int
		contains                string
	}{
		{"", "GET", "/api/v1/users", "", 401, "missing bearer token"},
		{"kw_forged", "GET", "/api/v1/users", "", 401, "unknown, expired or revoked"},
		{userTok, "GET", "/api/v1/users", "", 403, "role"},
		{userTok, "GET", "/api/v1/me/resources", "", 200, `"name":"web"`},
		{adminTok, "GET", "/api/v1/users", "", 200, `"name":"user1"`},
		{adminTok, "POST", "/api/v1/resources", `{"name":"api-box","host":"10.0.0.5","port":22,"login":"root","password":"pw-secret","tags":["a"]}`, 201, `"has_password":true`},
		{adminTok, "POST", "/api/v1/resources", `{"name":"api-box","host":"10.0.0.5","port":22,"login":"root","password":"x"}`, 422, "already exists"},
		{adminTok, "POST", "/api/v1/resources", `{"name":`, 400, "malformed JSON"},
		{adminTok, "POST", "/api/v1/resources", `{"name":"desk","protocol":"vnc","host":"10.0.0.6","password":"pw-secret","color_depth":16,"clipboard":"from-remote"}`, 201, `"clipboard":"from-remote","color_depth":16`},
		{adminTok, "POST", "/api/v1/resources", `{"name":"desk2","protocol":"vnc","host":"10.0.0.6"}`, 201, `"port":5900`},
		{adminTok, "POST", "/api/v1/resources", `{"name":"desk3","protocol":"vnc","host":"10.0.0.6","color_depth":12}`, 422, "colour depth"},
		{adminTok, "POST", "/api/v1/resources", `{"name":"win","protocol":"rdp","host":"10.0.0.7","login":"alice","password":"pw-secret","domain":"CORP"}`, 201,
			`"port":3389,"login":"alice","tags":[],"has_password":true,"has_private_key":false,"clipboard":"both","color_depth":32,"recording":"on","record_input":false,"domain":"CORP","security":"any","keyboard_layout":"en-us"`},
		{adminTok, "POST", "/api/v1/resources", `{"name":"win2","protocol":"rdp","host":"10.0.0.7","security":"nla","ignore_cert":true,"width":1280,"height":720,"keyboard_layout":"de-de","color_depth":16}`, 201,
			`"color_depth":16,"recording":"on","record_input":false,"security":"nla","ignore_cert":true,"width":1280,"height":720,"keyboard_layout":"de-de"`},
		{adminTok, "POST", "/api/v1/resources", `{"name":"win3","protocol":"rdp","host":"10.0.0.7","color_depth":8}`, 422, "colour depth"},
		{adminTok, "POST", "/api/v1/resources", `{"name":"win3","protocol":"rdp","host":"10.0.0.7","security":"kerberos"}`, 422, `"security"`},
		{adminTok, "POST", "/api/v1/resources", `{"name":"win3","protocol":"rdp","host":"10.0.0.7","width":100,"height":100}`, 422, `"resolution"`},
		{adminTok, "POST", "/api/v1/resources", `{"name":"win3","protocol":"rdp","host":"10.0.0.7","keyboard_layout":"klingon"}`, 422, `"keyboard_layout"`},
		{adminTok, "POST", "/api/v1/resources", `{"name":"win3","protocol":"rdp","host":"10.0.0.7","private_key":"x"}`, 422, "RDP servers take a password"},
		{adminTok, "POST", "/api/v1/resources", `{"nam":"x"}`, 400, "unknown field"},
		{adminTok, "POST", "/api/v1/resources", `{"name":"rec-req","host":"10.0.0.7","login":"root","password":"pw-secret","recording":"required","record_input":true}`, 201, `"recording":"required","record_input":true`},
		{adminTok, "POST", "/api/v1/resources", `{"name":"rec-off","host":"10.0.0.7","login":"root","password":"pw-secret","recording":"off","record_input":true}`, 201, `"recording":"off","record_input":false`},
		{adminTok, "POST", "/api/v1/resources", `{"name":"rec-bad","host":"10.0.0.7","login":"root","password":"pw-secret","recording":"sometimes"}`, 422, `"recording"`},
		{adminTok, "GET", fmt.Sprintf("/api/v1/resources/%d", f.resource.ID), "", 200, `"recording":"on","record_input":false`},
		{adminTok, "POST", "/api/v1/users", `{"name":"dave","role":"wizard","password":"short"}`, 422, `"role"`},
		{adminTok, "GET", "/api/v1/resources/999999", "", 404, "not found"},
		{adminTok, "GET", "/api/v1/audit?actor=admin1", "", 200, `"resource.create"`},
		{adminTok, "GET", "/api/v1/audit?since=yesterday", "", 422, "since"},
		{adminTok, "GET", "/api/v1/nope", "", 404, "no such API endpoint"},
		{adminTok, "POST", "/api/v1/segments", `{"name":"gateway-aws","allowed_networks":["10.0.0.0/8","192.168.1.7"]}`, 201, `"allowed_networks":["10.0.0.0/8","192.168.1.7/32"]`},
		{adminTok, "POST", "/api/v1/segments", `{"name":"bad","allowed_networks":["10.0.0.0/33"]}`, 422, "allowed_networks"},
		{adminTok, "POST", "/api/v1/segments", `{"name":"vault","serves_untagged":false}`, 201, `"serves_untagged":false`},
		{adminTok, "GET", "/api/v1/segments", "", 200, `"name":"gateway-aws","description":"","allowed_networks":["10.0.0.0/8","192.168.1.7/32"],"serves_untagged":true`},
		{adminTok, "PUT", "/api/v1/segments/3", `{"description":"kept off"}`, 200, `"description":"kept off","allowed_networks":[],"serves_untagged":false`},
		{adminTok, "PUT", "/api/v1/segments/3", `{"serves_untagged":true}`, 200, `"serves_untagged":true`},
		{adminTok, "POST", "/api/v1/gateways", `{"name":"aws-1","segment_id":2,"host":"10.1.2.3"}`, 201, `"state":"pending"`},
		{adminTok, "POST", "/api/v1/gateways", `{"name":"x","segment_id":1,"host":"10.1.2.3"}`, 422, "segment_id"},
		{adminTok, "PUT", "/api/v1/gateways/1/key", `{"public_key":"ssh-ed25519 AAAA"}`, 422, "not a gateway key"},
		{adminTok, "PUT", "/api/v1/gateways/1/key", `{"public_key":"ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}`, 200, `"key_fingerprint":"SHA256:`},
		{adminTok, "DELETE", "/api/v1/gateways/1/key", "", 200, `"state":"pending"`},
		{adminTok, "PUT", "/api/v1/settings/tunnel", `{"tunnel":false}`, 200, `"tunnel":false`},
		{userTok, "GET", "/api/v1/settings/hook", "", 403, "role"},
		{userTok, "GET", "/api/v1/settings/clients", "", 403, "role"},
		{auditorTok, "PUT", "/api/v1/settings/clients", `{}`, 403, "role"},
		{"", "GET", "/api/v1/settings/clients", "", 401, "missing bearer token"},
		{adminTok, "GET", "/api/v1/settings/clients", "", 200, `{"credential_hours":12,"streams_per_device":256,"streams_per_user":512}`},
		{adminTok, "PUT", "/api/v1/settings/clients", `{"credential_hours":24}`, 200, `{"credential_hours":24,"streams_per_device":256,"streams_per_user":512}`},
		{adminTok, "PUT", "/api/v1/settings/clients", `{"streams_per_user":0}`, 422, `"streams_per_user"`},
		{adminTok, "PUT", "/api/v1/settings/clients", `{"credential_hours":721}`, 422, `"credential_hours"`},
		{"", "POST", "/api/v1/client/login", `{"public_key":"AAAA","name":"x"}`, 400, `"invalid_request"`},
		{"", "POST", "/api/v1/client/login", `{`, 400, `"invalid_request"`},
		{"", "POST", "/api/v1/client/token", `{"device_code":"x","signature":"AAAA"}`, 400, `"invalid_request"`},
		{"", "POST", "/api/v1/client/logout", "", 401, `"invalid_credential"`},
		{userTok, "POST", "/api/v1/client/logout", "", 401, `"invalid_credential"`},
		{auditorTok, "PUT", "/api/v1/settings/hook", `{}`, 403, "role"},
		{userTok, "POST", "/api/v1/settings/hook/test", "", 403, "role"},
		{auditorTok, "GET", "/api/v1/settings/trusted-proxies", "", 403, "role"},
		{userTok, "PUT", "/api/v1/settings/trusted-proxies", `{"networks":[]}`, 403, "role"},
		{"", "GET", "/api/v1/settings/hook", "", 401, "missing bearer token"},
		{adminTok, "GET", "/api/v1/settings/hook", "", 200, `"secret_set":false`},
		{adminTok, "PUT", "/api/v1/settings/hook", `{"max_in_flight":20}`, 200, `"max_in_flight":20`},
		{adminTok, "POST", "/api/v1/settings/hook/test", "", 200, `"allowed":false`},
		{adminTok, "GET", "/api/v1/settings/trusted-proxies", "", 200, `"networks":[]`},
		{adminTok, "PUT", "/api/v1/settings/trusted-proxies", `{"networks":["192.0.2.0/24"]}`, 200, `"networks":["192.0.2.0/24"]`},
		{userTok, "GET", "/api/v1/gateways", "", 403, "role"},
		{"", "GET", "/api/v1/recordings", "", 401, "missing bearer token"},
		{userTok, "GET", "/api/v1/recordings", "", 403, "role"},
		{userTok, "GET", fmt.Sprintf("/api/v1/recordings/%d", rec.ID), "", 403, "role"},
		{userTok, "GET", fmt.Sprintf("/api/v1/recordings/%d/file", rec.ID), "", 403, "role"},
		{auditorTok, "GET", "/api/v1/recordings?q=kw-api", "", 200, `"session_id":"API1"`},
		{auditorTok, "GET", "/api/v1/recordings?q=absent-word", "", 200, `"recordings":[]`},
		{auditorTok, "GET", "/api/v1/recordings?user=user1&resource=web&protocol=ssh&gateway=gw-a&since=2026-03-04T00:00:00Z&until=2026-03-05T00:00:00Z", "", 200, `"duration_seconds":60`},
		{auditorTok, "GET", "/api/v1/recordings?since=nonsense", "", 422, "since"},
		{auditorTok, "GET", "/api/v1/recordings?limit=0", "", 422, "limit"},
		{auditorTok, "GET", "/api/v1/recordings?after=x", "", 422, "after"},
		{auditorTok, "GET", fmt.Sprintf("/api/v1/recordings/%d", rec.ID), "", 200, `"file_url":"/api/v1/recordings/`},
		{auditorTok, "GET", "/api/v1/recordings/999999", "", 404, "not found"},
		{auditorTok, "GET", fmt.Sprintf("/api/v1/recordings/%d/file", rec.ID), "", 200, "kw-api"},
		{adminTok, "GET", "/api/v1/recordings", "", 200, `"sha256":`},
	} {
		status, body := call(tc.tok, tc.method, tc.path, tc.body)
		if status != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("%s %s: %d %s; want %d containing %q", tc.method, tc.path, status, body, tc.status, tc.contains)
		}
		if strings.Contains(body, "pw-secret") || strings.Contains(body, "target-secret") {
			t.Errorf("%s %s returned a stored secret", tc.method, tc.path)
		}
	}
	// Grants through the API, then the user sees the resource.
	_, body := call(adminTok, "GET", "/api/v1/resources", "")
	var rs []apiResource
	json.Unmarshal([]byte(body), &rs)
	var boxID int64
	for _, r := range rs {
		if r.Name == "api-box" {
			boxID = r.ID
		}
	}
	status, body := call(adminTok, "POST", "/api/v1/grants", fmt.Sprintf(`{"resource_id":%d,"subject_kind":"user","subject_id":%d}`, boxID, f.users["user"].ID))
	if status != 201 {
		t.Fatalf("create grant: %d %s", status, body)
	}
	if _, body := call(userTok, "GET", "/api/v1/me/resources", ""); !strings.Contains(body, "api-box") {
		t.Fatalf("user does not see the granted resource: %s", body)
	}
}

func TestGatewayConfigPullNeedsSignature(t *testing.T) {
	f := newFixture(t)
	for _, hdr := range []http.Header{
		nil,
		{"X-Keyway-Gateway": {"1"}},
		{"X-Keyway-Gateway": {"1"}, "X-Keyway-Time": {"1"}, "X-Keyway-Signature": {"AAAA"}},
	} {
		resp := f.do(f.client(""), "GET", "/gateway-api/v1/config", nil, hdr)
		body := readBody(resp)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not an enrolled gateway") {
			t.Errorf("headers %v: %d %s", hdr, resp.StatusCode, body)
		}
	}
}

// TestAuditCSV exports the audit log: every matching event, past one
// page, with names a visitor typed kept from acting as formulas.
func TestAuditCSV(t *testing.T) {
	f := newFixture(t)
	anon := f.client("")
	f.do(anon, "POST", "/signin", url.Values{"username": {"=HYPERLINK(\"x\")"}, "password": {"wrong"}}, nil).Body.Close()
	for i := range auditPageSize + 5 {
		f.audit.Record(context.Background(), audit.Event{Actor: "bulk", Action: audit.ActionConnect, Target: fmt.Sprintf("t%d", i), Outcome: audit.OutcomeSuccess})
	}
	resp := f.do(f.client("auditor"), "GET", "/audit.csv?actor=bulk", nil, nil)
	body := readBody(resp)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("export: %d %v", resp.StatusCode, resp.Header)
	}
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != auditPageSize+5+1 || rows[0][0] != "id" || rows[1][4] != fmt.Sprintf("t%d", auditPageSize+4) {
		t.Fatalf("%d rows, first %v, second %v", len(rows), rows[0], rows[1])
	}
	resp = f.do(f.client("auditor"), "GET", "/audit.csv?action=signin", nil, nil)
	if body := readBody(resp); !strings.Contains(body, `'=HYPERLINK(""x"")`) {
		t.Fatalf("formula not neutralised:\n%s", body)
	}
	if evs, _ := f.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionAuditExport}); len(evs) != 2 {
		t.Fatalf("%d exports audited, want 2", len(evs))
	}
}

// TestCreateTokenAsksForPassword: a token outlives the web session, so the
// account page asks for the password before making one.
func TestCreateTokenAsksForPassword(t *testing.T) {
	f := newFixture(t)
	c := f.client("user")
	for _, tc := range []struct {
		password string
		status   int
		want     string
	}{
		{"", http.StatusUnprocessableEntity, "This is not your password."},
		{"wrong-password-1", http.StatusUnprocessableEntity, "This is not your password."},
		{testPassword, http.StatusOK, "kw_"},
	} {
		resp := f.do(c, "POST", "/account/tokens", url.Values{"name": {"script"}, "expires_days": {"7"}, "password": {tc.password}}, nil)
		body := readBody(resp)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("password %q: %d, want %d with %q", tc.password, resp.StatusCode, tc.status, tc.want)
		}
	}
	toks, err := f.store.ListTokens(context.Background(), f.users["user"].ID)
	if err != nil || len(toks) != 1 {
		t.Fatalf("tokens made: %v %v, want one", toks, err)
	}
}

// TestSessionLimitsValidate: the resource form takes session limits in
// whole minutes within bounds, and keeps them.
func TestSessionLimitsValidate(t *testing.T) {
	f := newFixture(t)
	c := f.client("admin")
	path := fmt.Sprintf("/admin/resources/%d", f.resource.ID)
	base := url.Values{"name": {"web"}, "protocol": {"ssh"}, "host": {"127.0.0.1"}, "port": {"1"}, "login": {"x"}, "recording": {"on"}}
	for _, tc := range []struct {
		idle, max string
		status    int
		idleS     int
		maxS      int
	}{
		{"1", "", http.StatusUnprocessableEntity, 0, 0},
		{"", "99999", http.StatusUnprocessableEntity, 0, 0},
		{"x", "", http.StatusUnprocessableEntity, 0, 0},
		{"15", "480", http.StatusSeeOther, 900, 28800},
		{"", "", http.StatusSeeOther, 0, 0},
	} {
		form := url.Values{}
		for k, v := range base {
			form[k] = v
		}
		form.Set("idle_timeout", tc.idle)
		form.Set("max_session", tc.max)
		resp := f.do(c, "POST", path, form, nil)
		body := readBody(resp)
		if resp.StatusCode != tc.status {
			t.Fatalf("idle %q max %q: %d, want %d\n%s", tc.idle, tc.max, resp.StatusCode, tc.status, body)
		}
		if tc.status != http.StatusSeeOther {
			if !strings.Contains(body, "whole minutes from 2 to 10080") {
				t.Errorf("idle %q max %q: no field error", tc.idle, tc.max)
			}
			continue
		}
		res, _ := f.store.ResourceByID(context.Background(), f.resource.ID)
		if res.Options.IdleTimeoutSeconds != tc.idleS || res.Options.MaxSessionSeconds != tc.maxS {
			t.Errorf("idle %q max %q: stored %+v", tc.idle, tc.max, res.Options)
		}
	}
}

// TestAuditPages: the audit log shows 50 events a page, older pages link
// back to the newest, and long details stay whole (they wrap in CSS).
func TestAuditPages(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := range 120 {
		f.audit.Record(ctx, audit.Event{Actor: "pager", Action: audit.ActionSignIn, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"session": fmt.Sprintf("PAGE%03dXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", i)}})
	}
	c := f.client("auditor")
	seen := map[string]bool{}
	path := "/audit?actor=pager"
	for page := 1; path != ""; page++ {
		body := readBody(f.do(c, "GET", path, nil, nil))
		rows := regexp.MustCompile(`session=PAGE(\d{3})X{32}`).FindAllStringSubmatch(body, -1)
		want := map[int]int{1: 50, 2: 50, 3: 20}[page]
		if len(rows) != want {
			t.Fatalf("page %d shows %d events, want %d", page, len(rows), want)
		}
		for _, m := range rows {
			seen[m[1]] = true
		}
		if hasNewest := strings.Contains(body, "Newest events"); hasNewest != (page > 1) {
			t.Errorf("page %d: newest link %v", page, hasNewest)
		}
		path = ""
		if m := regexp.MustCompile(`href="(/audit\?[^"]*before=\d+[^"]*)"[^>]*>Older events`).FindStringSubmatch(body); m != nil {
			path = html.UnescapeString(m[1])
		}
	}
	if len(seen) != 120 {
		t.Errorf("the pages showed %d distinct events, want 120", len(seen))
	}
}
