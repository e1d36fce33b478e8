package httpui

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/hook"
	"github.com/keyway-dev/keyway/portal/store"
)

const testHookSecret = "0123456789abcdef-hook-secret"

// hookServer is a connection authorization hook on a loopback TLS
// listener that checks the portal's signature and answers with answer.
type hookServer struct {
	srv *httptest.Server
	// ca is the PEM of its certificate, for the CA bundle.
	ca string
	// requests are the bodies of the signed requests it got.
	requests chan hook.Request
	answer   atomic.Pointer[string]
	badSigs  atomic.Int64
}

func newHookServer(t *testing.T, secret string) *hookServer {
	t.Helper()
	h := &hookServer{requests: make(chan hook.Request, 16)}
	allow := `{"allow":true,"error-msg-on-denied-connection":"","posture-compliance-statuses":["disk-encrypted"],"schema-version":"v1"}`
	h.answer.Store(&allow)
	h.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(r.Header.Get(hook.HeaderTimestamp) + "." + string(body)))
		if !hmac.Equal([]byte(r.Header.Get(hook.HeaderSignature)), []byte("v1="+hex.EncodeToString(mac.Sum(nil)))) {
			h.badSigs.Add(1)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var req hook.Request
		json.Unmarshal(body, &req)
		select {
		case h.requests <- req:
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, *h.answer.Load())
	}))
	t.Cleanup(h.srv.Close)
	h.ca = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.Certificate().Raw}))
	return h
}

func TestSettingsPageAndHookForm(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	admin := f.client("admin")
	resp := f.do(admin, "GET", "/admin/settings", nil, nil)
	body := readBody(resp)
	if resp.StatusCode != 200 {
		t.Fatalf("settings page: %d", resp.StatusCode)
	}
	for _, want := range []string{"Connection authorization hook", "Trusted proxies", "not set", `name="max_in_flight"`, `value="50"`,
		"Send test request", `id="your-addr">127.0.0.1<`, `href="/admin/settings"`} {
		if !strings.Contains(body, want) {
			t.Errorf("settings page lacks %q", want)
		}
	}
	if got := resp.Header.Get("Accept-CH"); !strings.Contains(got, "Sec-CH-UA-Platform-Version") || !strings.Contains(got, "Sec-CH-UA-Full-Version-List") {
		t.Errorf("Accept-CH = %q", got)
	}

	// Refused: each field with its own words, nothing saved or applied.
	for _, tc := range []struct {
		form url.Values
		want []string
	}{
		{url.Values{"url": {"http://hook.example"}, "max_in_flight": {"0"}, "secret": {"short"}},
			[]string{"must start with https://", "whole number from 1 to 10000", "16 to 1024 characters"}},
		{url.Values{"enabled": {"on"}, "url": {""}}, []string{"Enter the hook&#39;s HTTPS URL to enable it.", "Set a shared secret to enable the hook"}},
		{url.Values{"url": {"https://user:pw@hook.example/"}, "ca_bundle": {"not pem"}}, []string{"must not hold a user name", "must be PEM certificates"}},
		{url.Values{"ca_bundle": {"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}}, []string{"give only CERTIFICATE blocks"}},
		{url.Values{"max_in_flight": {"10001"}}, []string{"whole number from 1 to 10000"}},
	} {
		resp := f.do(admin, "POST", "/admin/settings/hook", tc.form, nil)
		body := readBody(resp)
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("%v: %d, want 422", tc.form, resp.StatusCode)
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("%v: page lacks %q", tc.form, w)
			}
		}
		if strings.Contains(body, "short") && tc.form.Get("secret") == "short" && strings.Contains(body, `value="short"`) {
			t.Error("the refused secret was echoed")
		}
	}
	if v, _ := f.store.GetSetting(ctx, hookSetting); v != "" {
		t.Fatalf("refused forms saved %q", v)
	}

	// Saved: applied at once, stored without the secret in the clear.
	hs := newHookServer(t, testHookSecret)
	resp = f.do(admin, "POST", "/admin/settings/hook", url.Values{"enabled": {"on"}, "url": {hs.srv.URL}, "ca_bundle": {hs.ca},
		"secret": {testHookSecret}, "max_in_flight": {"7"}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save hook: %d", resp.StatusCode)
	}
	cfg := f.ui.Hook.Config()
	if !cfg.Enabled || cfg.URL != hs.srv.URL || cfg.Secret != testHookSecret || cfg.MaxInFlight != 7 || cfg.CABundle == "" {
		t.Fatalf("hook not applied: %+v", cfg)
	}
	raw, _ := f.store.GetSetting(ctx, hookSetting)
	if strings.Contains(raw, testHookSecret) || !strings.Contains(raw, `"secret_sealed"`) {
		t.Fatalf("stored hook: %s", raw)
	}
	resp = f.do(admin, "GET", "/admin/settings", nil, nil)
	body = readBody(resp)
	if strings.Contains(body, testHookSecret) || !strings.Contains(body, `class="badge ok">set<`) || !strings.Contains(body, "Hook settings saved") {
		t.Fatal("the page shows the secret, or not that it is set, or no confirmation")
	}

	// A blank secret keeps the stored one.
	resp = f.do(admin, "POST", "/admin/settings/hook", url.Values{"enabled": {"on"}, "url": {hs.srv.URL}, "ca_bundle": {hs.ca}, "max_in_flight": {""}}, nil)
	readBody(resp)
	if cfg := f.ui.Hook.Config(); resp.StatusCode != http.StatusSeeOther || cfg.Secret != testHookSecret || cfg.MaxInFlight != hook.DefaultMaxInFlight {
		t.Fatalf("blank secret: %d %+v", resp.StatusCode, cfg)
	}
	// Removing the secret of an enabled hook is refused.
	resp = f.do(admin, "POST", "/admin/settings/hook", url.Values{"enabled": {"on"}, "url": {hs.srv.URL}, "clear_secret": {"on"}}, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "Set a shared secret") {
		t.Fatalf("clear secret of an enabled hook: %d", resp.StatusCode)
	}

	// Generate: shown once on the answer, never after.
	resp = f.do(admin, "POST", "/admin/settings/hook", url.Values{"enabled": {"on"}, "url": {hs.srv.URL}, "ca_bundle": {hs.ca}, "generate_secret": {"on"}}, nil)
	body = readBody(resp)
	generated := f.ui.Hook.Config().Secret
	if resp.StatusCode != 200 || generated == testHookSecret || len(generated) < 50 || !strings.Contains(body, generated) {
		t.Fatalf("generate: %d, secret %q shown: %v", resp.StatusCode, generated, strings.Contains(body, generated))
	}
	if body := readBody(f.do(admin, "GET", "/admin/settings", nil, nil)); strings.Contains(body, generated) {
		t.Fatal("the generated secret is shown again")
	}

	// Every change audited, never with the secret.
	evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionSettingsHook})
	if len(evs) != 3 {
		t.Fatalf("%d hook changes audited, want 3", len(evs))
	}
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		if strings.Contains(string(b), testHookSecret) || strings.Contains(string(b), generated) {
			t.Fatalf("audit event holds the secret: %s", b)
		}
	}
	if d := evs[0].Details; d["secret"] != "generated" || d["enabled"] != "true" || d["url"] != hs.srv.URL {
		t.Errorf("newest event details %v", d)
	}
}

// TestHookTestButton sends test requests to a real hook on a loopback
// TLS server, trusted through the CA bundle, which checks the signature.
func TestHookTestButton(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	admin := f.client("admin")
	hs := newHookServer(t, testHookSecret)
	// Saved disabled: the test button still sends.
	resp := f.do(admin, "POST", "/admin/settings/hook", url.Values{"url": {hs.srv.URL}, "ca_bundle": {hs.ca}, "secret": {testHookSecret}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save: %d", resp.StatusCode)
	}
	chrome := http.Header{"Sec-Ch-Ua-Platform": {`"Linux"`}, "Sec-Ch-Ua": {`"Chromium";v="120", "Not_A Brand";v="8"`}}
	resp = f.do(admin, "POST", "/admin/settings/hook/test", url.Values{}, chrome)
	body := html.UnescapeString(readBody(resp))
	if resp.StatusCode != 200 {
		t.Fatalf("test: %d", resp.StatusCode)
	}
	var got hook.Request
	select {
	case got = <-hs.requests:
	default:
		t.Fatalf("the hook got no signed request (%d with a bad signature)\n%s", hs.badSigs.Load(), body)
	}
	if got.Username != "admin1" || got.PublicIP != "127.0.0.1" || got.Platform != "Linux" || got.ClientVersion != "Chromium 120" ||
		got.SchemaVersion != "v1" || got.Resource == "" || got.Protocol != "ssh" || got.Groups == nil {
		t.Errorf("request %+v", got)
	}
	for _, want := range []string{`id="hook-decision"`, ">allowed<", "disk-encrypted", "POST", hook.HeaderSignature, `"username":"admin1"`,
		`"allow":true`, "200 OK", `id="hook-elapsed"`} {
		if !strings.Contains(body, want) {
			t.Errorf("test result lacks %q", want)
		}
	}
	if strings.Contains(body, testHookSecret) {
		t.Error("the test result shows the secret")
	}

	// Denied, with the hook's message.
	deny := `{"allow":false,"error-msg-on-denied-connection":"Your laptop is not compliant.","posture-compliance-statuses":[],"schema-version":"v1"}`
	hs.answer.Store(&deny)
	body = html.UnescapeString(readBody(f.do(admin, "POST", "/admin/settings/hook/test", url.Values{}, nil)))
	for _, want := range []string{">refused<", string(hook.ReasonDenied), "Your laptop is not compliant."} {
		if !strings.Contains(body, want) {
			t.Errorf("denied test lacks %q", want)
		}
	}
	// Through the API.
	tok, _, _ := f.store.CreateToken(ctx, f.users["admin"].ID, "t", time.Hour)
	req, _ := http.NewRequest("POST", f.srv.URL+"/api/v1/settings/hook/test", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	apiResp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out apiHookTest
	json.NewDecoder(apiResp.Body).Decode(&out)
	apiResp.Body.Close()
	if out.Allowed || out.Reason != string(hook.ReasonDenied) || out.Message != "Your laptop is not compliant." ||
		!strings.Contains(out.Request, `"username":"admin1"`) || !strings.Contains(out.Response, "not compliant") || out.ElapsedMS <= 0 {
		t.Errorf("API test: %+v", out)
	}
	evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionSettingsHookTest})
	if len(evs) != 3 || evs[0].Outcome != audit.OutcomeFailure || evs[0].Reason != string(hook.ReasonDenied) || evs[2].Outcome != audit.OutcomeSuccess {
		t.Errorf("test requests audited as %+v", evs)
	}
}

// TestTrustedProxies: addresses in forwarding headers are believed only
// from the listed networks, for sign-in, audit events and the page.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	admin := f.client("admin")
	xff := http.Header{"X-Forwarded-For": {"198.51.100.7"}}
	failSignIn := func() string {
		t.Helper()
		resp := f.do(f.client(""), "POST", "/signin", url.Values{"username": {"user1"}, "password": {"wrong"}}, xff)
		readBody(resp)
		evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionSignIn, Outcome: audit.OutcomeFailure})
		return evs[0].ClientAddr
	}
	if got := failSignIn(); got != "127.0.0.1" {
		t.Fatalf("untrusted X-Forwarded-For believed: %q", got)
	}
	for _, tc := range []struct{ networks, want string }{
		{"10.0.0.0/33", "is not a network"},
		{"0.0.0.0/0", "would trust every address"},
		{"proxy.example.com", `&#34;proxy.example.com&#34; is not a network`},
	} {
		resp := f.do(admin, "POST", "/admin/settings/proxies", url.Values{"networks": {tc.networks}}, nil)
		body := readBody(resp)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, tc.want) {
			t.Errorf("%q: %d, want 422 with %q", tc.networks, resp.StatusCode, tc.want)
		}
	}
	if len(f.ui.ClientInfo.Trusted()) != 0 {
		t.Fatal("a refused list was applied")
	}
	resp := f.do(admin, "POST", "/admin/settings/proxies", url.Values{"networks": {"127.0.0.0/8\r\n192.0.2.1"}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save proxies: %d", resp.StatusCode)
	}
	if v, _ := f.store.GetSetting(ctx, proxiesSetting); v != "127.0.0.0/8\n192.0.2.1/32" {
		t.Fatalf("stored %q", v)
	}
	if got := failSignIn(); got != "198.51.100.7" {
		t.Fatalf("trusted proxy's X-Forwarded-For not believed: %q", got)
	}
	body := readBody(f.do(admin, "GET", "/admin/settings", nil, xff))
	for _, want := range []string{`id="your-addr">198.51.100.7<`, "X-Forwarded-For: 198.51.100.7", "127.0.0.0/8\n192.0.2.1/32", "Your address is now"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionSettingsProxies})
	if len(evs) != 1 || evs[0].Details["networks"] != "127.0.0.0/8 192.0.2.1/32" {
		t.Fatalf("change audited as %+v", evs)
	}
}

func TestSettingsAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tok, _, _ := f.store.CreateToken(context.Background(), f.users["admin"].ID, "t", time.Hour)
	call := func(method, path, body string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readBody(resp)
	}
	hs := newHookServer(t, testHookSecret)
	caJSON, _ := json.Marshal(hs.ca)
	for _, tc := range []struct {
		method, path, body string
		status             int
		contains           string
	}{
		{"GET", "/api/v1/settings/hook", "", 200, `{"enabled":false,"url":"","ca_bundle":"","max_in_flight":50,"secret_set":false}`},
		{"PUT", "/api/v1/settings/hook", `{"enabled":true,"url":"` + hs.srv.URL + `"}`, 422, `"secret":"Set a shared secret`},
		{"PUT", "/api/v1/settings/hook", `{"url":"ftp://x"}`, 422, `"url":"The URL must start with https://`},
		{"PUT", "/api/v1/settings/hook", `{"max_in_flight":0}`, 422, `"max_in_flight"`},
		{"PUT", "/api/v1/settings/hook", `{"secret":"abc"}`, 422, `"secret"`},
		{"PUT", "/api/v1/settings/hook", `{"enabled":"yes"}`, 400, "malformed JSON"},
		{"PUT", "/api/v1/settings/hook", `{"password":"x"}`, 400, "unknown field"},
		{"PUT", "/api/v1/settings/hook", `{"enabled":true,"url":"` + hs.srv.URL + `","ca_bundle":` + string(caJSON) + `,"secret":"` + testHookSecret + `"}`, 200,
			`"enabled":true,"url":"` + hs.srv.URL + `"`},
		{"GET", "/api/v1/settings/hook", "", 200, `"max_in_flight":50,"secret_set":true}`},
		{"PUT", "/api/v1/settings/hook", `{"max_in_flight":3}`, 200, `"max_in_flight":3,"secret_set":true}`},
		{"POST", "/api/v1/settings/hook/test", "", 200, `"allowed":true,"reason":"","message":"","posture":["disk-encrypted"]`},
		{"PUT", "/api/v1/settings/hook", `{"enabled":false}`, 200, `"enabled":false`},
		{"PUT", "/api/v1/settings/hook", `{"clear_secret":true}`, 200, `"secret_set":false`},
		{"PUT", "/api/v1/settings/trusted-proxies", `{}`, 422, "networks"},
		{"PUT", "/api/v1/settings/trusted-proxies", `{"networks":["10.0.0.0/8, 6.6.6.6/32"]}`, 422, "not one network"},
		{"PUT", "/api/v1/settings/trusted-proxies", `{"networks":["10.0.0.0/33"]}`, 422, "is not a network"},
		{"PUT", "/api/v1/settings/trusted-proxies", `{"networks":["127.0.0.1","2001:db8::/32"]}`, 200,
			`{"networks":["127.0.0.1/32","2001:db8::/32"],"your_address":"127.0.0.1"}`},
		{"GET", "/api/v1/settings/trusted-proxies", "", 200, `"networks":["127.0.0.1/32","2001:db8::/32"]`},
	} {
		status, body := call(tc.method, tc.path, tc.body)
		if status != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("%s %s %s: %d %s; want %d containing %q", tc.method, tc.path, tc.body, status, body, tc.status, tc.contains)
		}
		if strings.Contains(body, testHookSecret) {
			t.Errorf("%s %s returned the secret", tc.method, tc.path)
		}
	}
	// The caller's address with the proxies now trusted.
	if _, body := call("GET", "/api/v1/settings/trusted-proxies", "", "X-Forwarded-For", "198.51.100.9"); !strings.Contains(body, `"your_address":"198.51.100.9"`) {
		t.Errorf("your_address: %s", body)
	}
	// A generated secret comes back once.
	status, body := call("PUT", "/api/v1/settings/hook", `{"generate_secret":true}`)
	var out apiHook
	json.Unmarshal([]byte(body), &out)
	if status != 200 || out.Secret == "" || out.Secret != f.ui.Hook.Config().Secret || !out.SecretSet {
		t.Fatalf("generate: %d %s", status, body)
	}
	if _, body := call("GET", "/api/v1/settings/hook", ""); strings.Contains(body, out.Secret) {
		t.Fatal("GET shows the generated secret")
	}
}

// TestSettingsSurviveRestart saves the hook and the trusted proxies,
// then opens the same SQLite file with a new portal.
func TestSettingsSurviveRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	open := func(keyFile string) (*store.Store, *Server) {
		t.Helper()
		key, err := store.LoadOrCreateKey(filepath.Join(dir, keyFile))
		if err != nil {
			t.Fatal(err)
		}
		sealer, _ := store.NewSealer(key)
		st, err := store.Open(ctx, filepath.Join(dir, "keyway.db"), sealer)
		if err != nil {
			t.Fatal(err)
		}
		logger := slog.New(slog.NewTextHandler(io.Discard, nil))
		sessions, stop := auth.NewSessions(st)
		al, err := audit.New(st, make([]byte, 32), logger, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		s := New(Deps{Store: st, Sessions: sessions, Audit: al, Logger: logger})
		t.Cleanup(func() { s.Close(); stop(); st.Close() })
		return st, s
	}
	st1, s1 := open("secrets.key")
	actor := store.User{Name: "admin1", Role: store.RoleAdmin}
	r := httptest.NewRequest("POST", "/", nil)
	hs := newHookServer(t, testHookSecret)
	if _, _, err := s1.saveHook(r, actor, hookInput{Enabled: ptr(true), URL: ptr(hs.srv.URL), CABundle: ptr(hs.ca), MaxInFlight: ptr("12"), Secret: testHookSecret}); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.saveProxies(r, actor, "10.0.0.0/8 2001:db8::/32"); err != nil {
		t.Fatal(err)
	}
	want := s1.Hook.Config()
	s1.Close()
	st1.Close()

	_, s2 := open("secrets.key")
	if s2.Hook.Enabled() {
		t.Fatal("a new portal has the hook before loading its settings")
	}
	if err := s2.LoadSettings(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s2.Hook.Config(); got != want || got.Secret != testHookSecret {
		t.Fatalf("after restart %+v, want %+v", got, want)
	}
	if got := s2.ClientInfo.Trusted(); !slices.Equal(got, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}) {
		t.Fatalf("trusted after restart %v", got)
	}
	// The test request goes out with the loaded secret (the hook checks
	// the signature).
	if x := s2.testHook(httptest.NewRequest("POST", "/", nil), actor); !x.Result.Allowed {
		t.Fatalf("test after restart: %+v (%d bad signatures)", x.Result, hs.badSigs.Load())
	}
}

// TestSettingsLoadRefusesUnreadableHook: with another secrets key the
// stored secret does not open, and the portal must not start without
// its hook.
func TestSettingsLoadRefusesUnreadableHook(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	r := httptest.NewRequest("POST", "/", nil)
	if _, _, err := f.ui.saveHook(r, f.users["admin"], hookInput{Enabled: ptr(true), URL: ptr("https://127.0.0.1:1/"), Secret: testHookSecret}); err != nil {
		t.Fatal(err)
	}
	raw, _ := f.store.GetSetting(ctx, hookSetting)
	var hs hookSettings
	json.Unmarshal([]byte(raw), &hs)
	hs.SealedSecret = "AAAA" + hs.SealedSecret[4:]
	b, _ := json.Marshal(hs)
	f.store.SetSetting(ctx, hookSetting, string(b))
	if err := f.ui.LoadSettings(ctx); err == nil || !strings.Contains(err.Error(), "hook") {
		t.Fatalf("LoadSettings with a tampered secret: %v", err)
	}
	f.store.SetSetting(ctx, proxiesSetting, "not a network")
	if err := f.ui.LoadSettings(ctx); err == nil || !strings.Contains(err.Error(), "trusted proxies") {
		t.Fatalf("LoadSettings with bad proxies: %v", err)
	}
}
