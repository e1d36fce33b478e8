package httpui

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// testDevice is a signed-in native client.
type testDevice struct {
	store.Device
	priv ed25519.PrivateKey
	cred string
}

// addDevice signs in a device for userID through the store, as the
// client and the /device page would.
func (f *fixture) addDevice(userID int64, name string) testDevice {
	f.t.Helper()
	ctx := context.Background()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	code, req, err := f.store.CreateDeviceRequest(ctx, store.DeviceRequest{PublicKey: pub, Name: name, OS: "linux", Arch: "amd64", ClientAddr: "127.0.0.1"})
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.store.ApproveDeviceRequest(ctx, req.UserCode, userID); err != nil {
		f.t.Fatal(err)
	}
	cred, d, err := f.store.ExchangeDeviceCode(ctx, code, ed25519.Sign(priv, store.DeviceTokenMessage(code)), time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	return testDevice{Device: d, priv: priv, cred: cred}
}

// proof is the Keyway-Proof header of d for a request at ts.
func (d testDevice) proof(ts time.Time, method, target string) string {
	t := strconv.FormatInt(ts.Unix(), 10)
	return t + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(d.priv, proofMessage(t, method, target)))
}

func postJSON(t *testing.T, c *http.Client, u string, body any, hdr http.Header) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", u, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	return resp.StatusCode, out
}

// TestDeviceSignInFlow goes through the device flow over HTTP: the client
// asks, the user approves on /device, the client polls and gets its
// credential once, and signs out with it.
func TestDeviceSignInFlow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	anon := f.srv.Client()
	user := f.client("user")
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)

	status, login := postJSON(t, anon, f.srv.URL+"/api/v1/client/login", map[string]string{
		"public_key": base64.StdEncoding.EncodeToString(pub), "name": "laptop-7", "os": "linux", "arch": "arm64", "version": "0.1.0"}, nil)
	if status != 200 {
		t.Fatalf("login: %d %v", status, login)
	}
	code, _ := login["device_code"].(string)
	userCode, _ := login["user_code"].(string)
	if len(userCode) != 9 || userCode[4] != '-' || login["verification_uri"] != f.srv.URL+"/device" ||
		login["verification_uri_complete"] != f.srv.URL+"/device?code="+userCode || login["interval"] != 2.0 || login["expires_in"] != 600.0 {
		t.Fatalf("login answer: %v", login)
	}
	sig := base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, store.DeviceTokenMessage(code)))
	poll := func() (int, map[string]any) {
		return postJSON(t, anon, f.srv.URL+"/api/v1/client/token", map[string]string{"device_code": code, "signature": sig}, nil)
	}
	if st, out := poll(); st != 400 || out["error"] != "authorization_pending" {
		t.Fatalf("pending poll: %d %v", st, out)
	}

	// Not signed in: the page sends to sign-in and back to the same URL.
	resp := f.do(f.client(""), "GET", "/device?code="+userCode, nil, nil)
	readBody(resp)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/signin?next="+url.QueryEscape("/device?code="+userCode) {
		t.Fatalf("anonymous /device: %d %q", resp.StatusCode, loc)
	}
	// Lower case without the dash finds it too, and shows what asked.
	resp = f.do(user, "GET", "/device?code="+strings.ToLower(strings.ReplaceAll(userCode, "-", "")), nil, nil)
	body := readBody(resp)
	if resp.StatusCode != 200 || !strings.Contains(body, "laptop-7") || !strings.Contains(body, keyFingerprint(pub)) || !strings.Contains(body, "linux/arm64") {
		t.Fatalf("device page: %d\n%.2000s", resp.StatusCode, body)
	}
	resp = f.do(user, "GET", "/device?code=BCDF-GHJK", nil, nil)
	if body := readBody(resp); resp.StatusCode != 404 || !strings.Contains(body, "No device is waiting") {
		t.Fatalf("unknown code: %d", resp.StatusCode)
	}
	resp = f.do(user, "POST", "/device/approve", url.Values{"code": {userCode}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve: %d", resp.StatusCode)
	}
	resp = f.do(user, "POST", "/device/approve", url.Values{"code": {userCode}}, nil)
	if body := readBody(resp); resp.StatusCode != 422 || !strings.Contains(body, "No device is waiting") {
		t.Fatalf("approve twice: %d", resp.StatusCode)
	}

	st, tok := poll()
	if st != 200 || tok["user"] != "user1" || !strings.HasPrefix(fmt.Sprint(tok["credential"]), "kwd_") {
		t.Fatalf("token: %d %v", st, tok)
	}
	if exp, err := time.Parse(time.RFC3339, fmt.Sprint(tok["expires_at"])); err != nil || time.Until(exp) < 11*time.Hour || time.Until(exp) > 13*time.Hour {
		t.Fatalf("expiry %v (%v), want the default 12 hours", tok["expires_at"], err)
	}
	if st, out := poll(); st != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("second exchange: %d %v", st, out)
	}
	dev, _ := tok["device"].(map[string]any)
	if dev["name"] != "laptop-7" {
		t.Fatalf("device %v", dev)
	}

	// The Account page lists it.
	resp = f.do(user, "GET", "/account", nil, nil)
	if body := readBody(resp); !strings.Contains(body, "laptop-7") || !strings.Contains(body, "keyway-linux-amd64") {
		t.Fatalf("account page lacks the device or the download:\n%.3000s", body)
	}

	// Logout with the credential and a proof revokes it; again says revoked.
	d := testDevice{priv: priv, cred: fmt.Sprint(tok["credential"])}
	logout := func() (int, map[string]any) {
		return postJSON(t, anon, f.srv.URL+"/api/v1/client/logout", nil, http.Header{
			"Authorization": {"Bearer " + d.cred}, headerProof: {d.proof(time.Now(), "POST", "/api/v1/client/logout")}})
	}
	if st, out := logout(); st != 200 || out["revoked"] != true {
		t.Fatalf("logout: %d %v", st, out)
	}
	if st, out := logout(); st != 401 || out["error"] != "device_revoked" {
		t.Fatalf("logout of a revoked device: %d %v", st, out)
	}
	for _, action := range []string{audit.ActionDeviceApprove, audit.ActionDeviceRevoke} {
		if evs, _ := f.audit.Search(context.Background(), store.AuditFilter{Action: action}); len(evs) != 1 || evs[0].Actor != "user1" {
			t.Errorf("%s audited: %+v", action, evs)
		}
	}
}

func TestDeviceDeny(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	ctx := context.Background()
	code, req, err := f.store.CreateDeviceRequest(ctx, store.DeviceRequest{PublicKey: pub, Name: "intruder", ClientAddr: "192.0.2.9"})
	if err != nil {
		t.Fatal(err)
	}
	resp := f.do(f.client("user"), "POST", "/device/deny", url.Values{"code": {store.FormatUserCode(req.UserCode)}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("deny: %d", resp.StatusCode)
	}
	st, out := postJSON(t, f.srv.Client(), f.srv.URL+"/api/v1/client/token", map[string]string{"device_code": code,
		"signature": base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, store.DeviceTokenMessage(code)))}, nil)
	if st != 400 || out["error"] != "access_denied" {
		t.Fatalf("token after deny: %d %v", st, out)
	}
	if evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionDeviceDeny}); len(evs) != 1 {
		t.Fatalf("deny audited: %+v", evs)
	}
}

func TestClientLoginBounds(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.srv.Client()
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, tc := range []struct {
		name string
		body string
	}{
		{"short key", `{"public_key":"AAAA","name":"x","os":"linux","arch":"amd64"}`},
		{"no name", `{"public_key":"` + key + `","name":"","os":"linux","arch":"amd64"}`},
		{"long name", `{"public_key":"` + key + `","name":"` + strings.Repeat("n", 65) + `","os":"linux","arch":"amd64"}`},
		{"control in name", `{"public_key":"` + key + `","name":"a\u001b[2Jb","os":"linux","arch":"amd64"}`},
		{"odd os", `{"public_key":"` + key + `","name":"x","os":"Linux <b>","arch":"amd64"}`},
		{"long version", `{"public_key":"` + key + `","name":"x","os":"linux","arch":"amd64","version":"` + strings.Repeat("1", 33) + `"}`},
		{"huge body", `{"public_key":"` + key + `","name":"x","pad":"` + strings.Repeat("p", 5000) + `"}`},
	} {
		resp, err := c.Post(f.srv.URL+"/api/v1/client/login", "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		body := readBody(resp)
		if resp.StatusCode != 400 || !strings.Contains(body, `"invalid_request"`) || !strings.Contains(body, `"message"`) {
			t.Errorf("%s: %d %s", tc.name, resp.StatusCode, body)
		}
	}
	// Every request counts against the address: the 21st within the
	// window is refused (7 above).
	var last *http.Response
	for i := 0; i < 14; i++ {
		last, _ = c.Post(f.srv.URL+"/api/v1/client/login", "application/json",
			strings.NewReader(`{"public_key":"`+key+`","name":"x`+strconv.Itoa(i)+`","os":"linux","arch":"amd64"}`))
		readBody(last)
	}
	if last.StatusCode != 429 || last.Header.Get("Retry-After") == "" {
		t.Fatalf("past the per-address limit: %d", last.StatusCode)
	}
}

// TestDeviceAuth checks each way a device request can be wrong.
func TestDeviceAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	uid := f.users["user"].ID
	good := f.addDevice(uid, "good")
	revoked := f.addDevice(uid, "revoked")
	if _, err := f.store.RevokeDevice(ctx, uid, revoked.ID); err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	wrongKey := good
	wrongKey.priv = otherKey
	now := time.Now()

	req := func(d testDevice, method, path, target string, ts time.Time, mutate func(*http.Request)) *http.Request {
		r := httptest.NewRequest(method, "https://portal.test"+path, nil)
		if method == http.MethodConnect {
			r.URL.Path = ""
			r.Header.Set(headerTarget, target)
			path = target
		}
		r.Header.Set("Authorization", "Bearer "+d.cred)
		r.Header.Set(headerProof, d.proof(ts, method, path))
		if mutate != nil {
			mutate(r)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		r    *http.Request
		code string // "" for success
		err  error
	}{
		{"good GET", req(good, "GET", "/api/v1/client/status", "", now, nil), "", nil},
		{"good CONNECT", req(good, "CONNECT", "", "resource/pg", now, nil), "", nil},
		{"ts at the edge", req(good, "GET", "/x", "", now.Add(-proofWindow+5*time.Second), nil), "", nil},
		{"old ts", req(good, "GET", "/x", "", now.Add(-proofWindow-5*time.Second), nil), "invalid_credential", errProofTime},
		{"future ts", req(good, "GET", "/x", "", now.Add(proofWindow+5*time.Second), nil), "invalid_credential", errProofTime},
		{"wrong key", req(wrongKey, "GET", "/x", "", now, nil), "invalid_credential", errBadProof},
		{"other target", req(good, "CONNECT", "", "resource/pg", now, func(r *http.Request) { r.Header.Set(headerTarget, "resource/other") }), "invalid_credential", errBadProof},
		{"other method", req(good, "GET", "/x", "", now, func(r *http.Request) { r.Method = "POST" }), "invalid_credential", errBadProof},
		{"no proof", req(good, "GET", "/x", "", now, func(r *http.Request) { r.Header.Del(headerProof) }), "invalid_credential", errBadProof},
		{"garbage proof", req(good, "GET", "/x", "", now, func(r *http.Request) { r.Header.Set(headerProof, "12.!!") }), "invalid_credential", errBadProof},
		{"signed ts differs", req(good, "GET", "/x", "", now, func(r *http.Request) {
			p := r.Header.Get(headerProof)
			_, sig, _ := strings.Cut(p, ".")
			r.Header.Set(headerProof, strconv.FormatInt(now.Unix()+1, 10)+"."+sig)
		}), "invalid_credential", errBadProof},
		{"wrong secret", req(good, "GET", "/x", "", now, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+good.cred+"x") }), "invalid_credential", store.ErrNotFound},
		{"revoked", req(revoked, "GET", "/x", "", now, nil), "device_revoked", store.ErrDeviceRevoked},
		{"API token", req(good, "GET", "/x", "", now, func(r *http.Request) { r.Header.Set("Authorization", "Bearer kw_abc") }), "invalid_credential", errNoDeviceCredential},
		{"no bearer", req(good, "GET", "/x", "", now, func(r *http.Request) { r.Header.Del("Authorization") }), "invalid_credential", errNoDeviceCredential},
	} {
		u, d, err := f.ui.deviceAuth(tc.r)
		if tc.code == "" {
			if err != nil || u.ID != uid || d.ID != good.ID {
				t.Errorf("%s: %+v %+v %v", tc.name, u, d, err)
			}
			continue
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.err)
		}
		if code, msg := deviceAuthError(err); code != tc.code || msg == "" {
			t.Errorf("%s: code %q, want %q", tc.name, code, tc.code)
		}
	}

	// An expired credential, then a disabled user.
	expired := f.addDevice(uid, "expiring")
	if _, err := f.store.DB().Exec(`UPDATE devices SET credential_expires_at = ? WHERE id = ?`, time.Now().Add(-time.Minute).UnixMilli(), expired.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.ui.deviceAuth(req(expired, "GET", "/x", "", now, nil))
	if code, _ := deviceAuthError(err); !errors.Is(err, store.ErrDeviceExpired) || code != "expired_credential" {
		t.Errorf("expired: %v %s", err, code)
	}
	u := f.users["user"]
	u.Disabled = true
	if err := f.store.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.ui.deviceAuth(req(good, "GET", "/x", "", now, nil)); !errors.Is(err, errUserDisabled) {
		t.Errorf("disabled user: %v", err)
	}
}

func FuzzCheckProof(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	d := testDevice{priv: priv}
	now := time.Unix(1_800_000_000, 0)
	f.Add(d.proof(now, "GET", "/x"))
	f.Add("1800000000.")
	f.Add(".AAAA")
	f.Add("99999999999999999999.AAAA")
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("GET", "https://portal.test/x", nil)
		r.Header.Set(headerProof, h)
		err := checkProof(r, pub, now)
		if err == nil && h != d.proof(now, "GET", "/x") && !strings.HasPrefix(h, strconv.FormatInt(now.Unix(), 10)+".") {
			t.Fatalf("accepted %q", h)
		}
	})
}
