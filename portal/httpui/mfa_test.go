package httpui

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/pquerna/otp/totp"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/identity/mfa"
	"github.com/keyway-dev/keyway/portal/store"
)

// mfaOrigin is the portal URL of the MFA tests: WebAuthn needs a host
// name, and the software authenticator below signs for it.
const mfaOrigin = "https://localhost"

// testClock is a clock tests move, read by the server's goroutines.
type testClock struct{ ns atomic.Int64 }

func (c *testClock) now() time.Time       { return time.Unix(0, c.ns.Load()) }
func (c *testClock) add(d time.Duration)  { c.ns.Add(int64(d)) }
func newTestClock(t time.Time) *testClock { c := &testClock{}; c.ns.Store(t.UnixNano()); return c }

func newMFAFixture(t *testing.T) (*fixture, *testClock) {
	t.Helper()
	clock := newTestClock(time.Now())
	f := newFixtureWith(t, fakeVideo, func(d *Deps) { d.PortalURL = mfaOrigin; d.Now = clock.now })
	return f, clock
}

// addTOTP gives the user a TOTP factor and returns its secret.
func (f *fixture) addTOTP(u store.User) string {
	f.t.Helper()
	k, err := mfa.NewTOTPKey("Keyway", u.Name)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.store.AddMFAFactor(context.Background(), store.MFAFactor{UserID: u.ID, Kind: store.FactorTOTP, Name: "phone", Secret: k.Secret}); err != nil {
		f.t.Fatal(err)
	}
	return k.Secret
}

// passwordStep signs in with the password only and returns the client
// and where it was sent.
func (f *fixture) passwordStep(name string) (*http.Client, string) {
	f.t.Helper()
	c := f.client("")
	resp := f.do(c, "POST", "/signin", url.Values{"username": {name}, "password": {testPassword}, "next": {"/account"}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		f.t.Fatalf("password step: %d", resp.StatusCode)
	}
	return c, resp.Header.Get("Location")
}

// signedIn reports whether c's session is signed in.
func (f *fixture) signedIn(c *http.Client) bool {
	f.t.Helper()
	resp := f.do(c, "GET", "/account", nil, nil)
	readBody(resp)
	return resp.StatusCode == http.StatusOK
}

func code(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMFASignInWithTOTP(t *testing.T) {
	t.Parallel()
	f, clock := newMFAFixture(t)
	u := f.users["user"]
	secret := f.addTOTP(u)

	c, to := f.passwordStep(u.Name)
	if to != "/signin/mfa" {
		t.Fatalf("password step sent to %q, want /signin/mfa", to)
	}
	// Waiting for the factor is not being signed in: pages send the user
	// to sign in, and the sign-in page back to the second factor.
	if f.signedIn(c) {
		t.Fatal("signed in before the second factor")
	}
	resp := f.do(c, "GET", "/", nil, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
		t.Fatalf("GET / while pending: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = f.do(c, "GET", resp.Header.Get("Location"), nil, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin/mfa" {
		t.Fatalf("sign-in page while pending: %d %s, want back to /signin/mfa", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = f.do(c, "GET", "/signin/mfa", nil, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Authenticator code") {
		t.Fatalf("GET /signin/mfa: %d\n%.500s", resp.StatusCode, body)
	}

	tests := []struct {
		name   string
		code   string
		status int
	}{
		{"wrong", "000000", http.StatusUnauthorized},
		{"stale (two steps old)", code(t, secret, clock.now().Add(-90*time.Second)), http.StatusUnauthorized},
		{"right", code(t, secret, clock.now()), http.StatusSeeOther},
	}
	for _, tt := range tests {
		if tt.code == code(t, secret, clock.now()) && tt.status != http.StatusSeeOther {
			continue // the random key's code happens to be this
		}
		resp := f.do(c, "POST", "/signin/mfa", url.Values{"code": {tt.code}}, nil)
		body := readBody(resp)
		if resp.StatusCode != tt.status {
			t.Fatalf("%s code: %d, want %d\n%.300s", tt.name, resp.StatusCode, tt.status, body)
		}
	}
	if resp.Header.Get("Location"); !f.signedIn(c) {
		t.Fatal("not signed in after the right code")
	}
	evs, _ := f.audit.Search(context.Background(), store.AuditFilter{Actor: u.Name, Action: audit.ActionSignIn, Outcome: audit.OutcomeSuccess})
	if len(evs) != 1 || evs[0].Details["method"] != "password" || evs[0].Details["factor"] != "totp" {
		t.Fatalf("sign-in events %+v, want one with method password, factor totp", evs)
	}
	fails, _ := f.audit.Search(context.Background(), store.AuditFilter{Actor: u.Name, Action: audit.ActionMFAVerify, Outcome: audit.OutcomeFailure})
	if len(fails) < 1 {
		t.Fatal("wrong codes were not audited")
	}

	// The same code again, from another browser, is refused: a code works
	// once.
	c2, _ := f.passwordStep(u.Name)
	resp = f.do(c2, "POST", "/signin/mfa", url.Values{"code": {code(t, secret, clock.now())}}, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "already used") {
		t.Fatalf("replayed code: %d\n%.300s", resp.StatusCode, body)
	}
	// The next step's code passes.
	clock.add(30 * time.Second)
	resp = f.do(c2, "POST", "/signin/mfa", url.Values{"code": {code(t, secret, clock.now())}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account" {
		t.Fatalf("next code: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestMFAPendingDropped: a sign-in waiting for its second factor ends
// when it is too old, the password changed, or
// it was cancelled; the right code then signs nobody in.
func TestMFAPendingDropped(t *testing.T) {
	t.Parallel()
	f, clock := newMFAFixture(t)
	u := f.users["user"]
	secret := f.addTOTP(u)
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		after  func(c *http.Client)
		status int
	}{
		{"too old", func(*http.Client) { clock.add(pendingMFATimeout + time.Second) }, http.StatusUnauthorized},
		{"password changed", func(*http.Client) {
			if err := f.store.SetPasswordHash(ctx, u.ID, "x"); err != nil {
				t.Fatal(err)
			}
		}, http.StatusUnauthorized},
		{"cancelled", func(c *http.Client) { readBody(f.do(c, "POST", "/signin/mfa/cancel", url.Values{}, nil)) }, http.StatusUnauthorized},
	} {
		hash, _ := auth.HashPassword(testPassword)
		if err := f.store.SetPasswordHash(ctx, u.ID, hash); err != nil {
			t.Fatal(err)
		}
		c, _ := f.passwordStep(u.Name)
		tt.after(c)
		clock.add(30 * time.Second) // a fresh code each time
		resp := f.do(c, "POST", "/signin/mfa", url.Values{"code": {code(t, secret, clock.now())}}, nil)
		readBody(resp)
		if resp.StatusCode != tt.status || f.signedIn(c) {
			t.Fatalf("%s: code answered %d, want %d and not signed in", tt.name, resp.StatusCode, tt.status)
		}
		resp = f.do(c, "GET", "/signin", nil, nil)
		readBody(resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: sign-in page: %d, want the form", tt.name, resp.StatusCode)
		}
	}
}

func TestMFARateLimit(t *testing.T) {
	t.Parallel()
	f, clock := newMFAFixture(t)
	u := f.users["user"]
	secret := f.addTOTP(u)
	right := code(t, secret, clock.now())
	wrong := "123456"
	if wrong == right {
		wrong = "654321"
	}
	c, _ := f.passwordStep(u.Name)
	for i := range 5 {
		resp := f.do(c, "POST", "/signin/mfa", url.Values{"code": {wrong}}, nil)
		readBody(resp)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong code %d: %d", i, resp.StatusCode)
		}
	}
	// Locked: even the right code is refused, from any browser.
	c2, _ := f.passwordStep(u.Name)
	resp := f.do(c2, "POST", "/signin/mfa", url.Values{"code": {right}}, nil)
	if body := readBody(resp); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Too many wrong codes") {
		t.Fatalf("right code after 5 wrong: %d\n%.300s", resp.StatusCode, body)
	}
	// The lock ends with the window.
	clock.add(15*time.Minute + time.Second)
	c3, _ := f.passwordStep(u.Name)
	resp = f.do(c3, "POST", "/signin/mfa", url.Values{"code": {code(t, secret, clock.now())}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the window: %d", resp.StatusCode)
	}
}

func TestMFARecoveryCodeOnce(t *testing.T) {
	t.Parallel()
	f, _ := newMFAFixture(t)
	u := f.users["user"]
	f.addTOTP(u)
	codes, hashes := mfa.NewRecoveryCodes()
	if err := f.store.SetRecoveryCodes(context.Background(), u.ID, hashes); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{http.StatusSeeOther, http.StatusUnauthorized} {
		c, _ := f.passwordStep(u.Name)
		resp := f.do(c, "POST", "/signin/mfa", url.Values{"code": {strings.ToUpper(codes[0])}}, nil)
		readBody(resp)
		if resp.StatusCode != want {
			t.Fatalf("use %d of a recovery code: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	left, _ := f.store.RecoveryCodesLeft(context.Background(), u.ID)
	if left != len(codes)-1 {
		t.Fatalf("%d codes left, want %d", left, len(codes)-1)
	}
}

// TestMFAEnrolmentRequired: a user who must use MFA and has none is taken
// to enrolment, is not signed in until enrolled, and sees recovery codes
// once after.
func TestMFAEnrolmentRequired(t *testing.T) {
	t.Parallel()
	f, clock := newMFAFixture(t)
	admin := f.client("admin")
	resp := f.do(admin, "POST", "/admin/identity/mfa", url.Values{"group": {f.group.Name}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("require MFA for a group: %d", resp.StatusCode)
	}
	u := f.users["user"]
	u.Groups = []string{f.group.Name}
	if err := f.store.UpdateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	c, to := f.passwordStep(u.Name)
	if to != "/signin/enrol" {
		t.Fatalf("password step sent to %q, want /signin/enrol", to)
	}
	if f.signedIn(c) {
		t.Fatal("signed in before enrolling")
	}
	resp = f.do(c, "GET", "/signin/mfa", nil, nil)
	readBody(resp)
	if resp.Header.Get("Location") != "/signin/enrol" {
		t.Fatalf("/signin/mfa while enrolment is due: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = f.do(c, "GET", "/signin/enrol", nil, nil)
	body := readBody(resp)
	m := regexp.MustCompile(`data-totp-secret>([A-Z2-7]+)<`).FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil || !strings.Contains(body, "data:image/png;base64,") {
		i := max(strings.Index(body, "<img"), 0)
		t.Fatalf("enrolment page: %d\n%.400s", resp.StatusCode, body[i:])
	}
	secret := m[1]
	resp = f.do(c, "POST", "/signin/enrol/totp", url.Values{"secret": {secret}, "code": {"000001"}}, nil)
	readBody(resp)
	if resp.StatusCode != http.StatusUnprocessableEntity || f.signedIn(c) {
		t.Fatalf("wrong enrolment code: %d", resp.StatusCode)
	}
	resp = f.do(c, "POST", "/signin/enrol/totp", url.Values{"secret": {secret}, "code": {code(t, secret, clock.now())}, "name": {"my phone"}}, nil)
	body = readBody(resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "data-recovery-codes") || !f.signedIn(c) {
		t.Fatalf("enrolment: %d\n%.500s", resp.StatusCode, body)
	}
	pre := regexp.MustCompile(`(?s)data-recovery-codes>(.*?)</pre>`).FindStringSubmatch(body)
	if pre == nil {
		t.Fatal("no recovery codes on the page")
	}
	codes := regexp.MustCompile(`\b[a-z2-9]{5}-[a-z2-9]{5}\b`).FindAllString(pre[1], -1)
	if len(codes) != mfa.RecoveryCodeCount {
		t.Fatalf("%d recovery codes shown, want %d", len(codes), mfa.RecoveryCodeCount)
	}
	fs, _ := f.store.MFAFactors(context.Background(), u.ID)
	if len(fs) != 1 || fs[0].Name != "my phone" || fs[0].Kind != store.FactorTOTP {
		t.Fatalf("factors %+v", fs)
	}
	// The admin sees them on the user's page, and resets them; the next
	// sign-in must enrol again.
	resp = f.do(admin, "GET", "/admin/users/"+itoa(u.ID), nil, nil)
	if body := readBody(resp); !strings.Contains(body, "my phone") || !strings.Contains(body, "10 recovery codes left") || !strings.Contains(body, "Reset second factors") {
		t.Fatalf("user page does not show the factor\n%.300s", body)
	}
	resp = f.do(admin, "POST", "/admin/users/"+itoa(u.ID)+"/mfa/reset", url.Values{}, nil)
	readBody(resp)
	if fs, _ := f.store.MFAFactors(context.Background(), u.ID); resp.StatusCode != http.StatusSeeOther || len(fs) != 0 {
		t.Fatalf("reset: %d, %d factors left", resp.StatusCode, len(fs))
	}
	if left, _ := f.store.RecoveryCodesLeft(context.Background(), u.ID); left != 0 {
		t.Fatalf("%d recovery codes left after reset", left)
	}
	resp = f.do(admin, "GET", "/admin/users/"+itoa(u.ID), nil, nil)
	if body := readBody(resp); !strings.Contains(body, "No second factor") {
		t.Fatal("user page still shows factors after the reset")
	}
	evs, _ := f.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionMFAReset, Target: u.Name})
	if len(evs) != 1 || evs[0].Actor != "admin1" {
		t.Fatalf("mfa.reset events %+v", evs)
	}
	if _, to := f.passwordStep(u.Name); to != "/signin/enrol" {
		t.Fatalf("after reset, sent to %q", to)
	}
}

func itoa(n int64) string { return strconvFormat(n) }

// TestStepUpVerify: /mfa/verify checks a factor again, stamps the session
// and returns to a local next only.
func TestStepUpVerify(t *testing.T) {
	t.Parallel()
	f, clock := newMFAFixture(t)
	u := f.users["user"]
	c := f.client("user") // no factor yet: signed in with the password
	resp := f.do(c, "GET", "/mfa/verify?next=/connect/1", nil, nil)
	body := readBody(resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "/account/mfa?next=") {
		t.Fatalf("verify without factors: %d, want a link to enrol\n%.500s", resp.StatusCode, body)
	}
	secret := f.addTOTP(u)
	for _, tt := range []struct{ next, want string }{
		{"/connect/1", "/connect/1"},
		{"https://evil.example/", "/"},
		{"//evil.example", "/"},
	} {
		clock.add(30 * time.Second)
		resp := f.do(c, "POST", "/mfa/verify", url.Values{"code": {code(t, secret, clock.now())}, "next": {tt.next}}, nil)
		readBody(resp)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != tt.want {
			t.Fatalf("verify next=%q: %d %q, want %q", tt.next, resp.StatusCode, resp.Header.Get("Location"), tt.want)
		}
	}
	evs, _ := f.audit.Search(context.Background(), store.AuditFilter{Actor: u.Name, Action: audit.ActionMFAVerify, Outcome: audit.OutcomeSuccess})
	if len(evs) != 3 || evs[0].Details["purpose"] != "step-up" {
		t.Fatalf("mfa.verify events %+v", evs)
	}
}

// softKey is a software WebAuthn authenticator: one ES256 credential,
// attestation "none", as Chromium's virtual authenticator would answer.
type softKey struct {
	key    *ecdsa.PrivateKey
	id     []byte
	origin string
	count  uint32
}

func newSoftKey(t *testing.T, origin string) *softKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	return &softKey{key: k, id: id, origin: origin}
}

var b64 = base64.RawURLEncoding

func (k *softKey) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": k.origin, "crossOrigin": false})
	return b
}

func (k *softKey) authData(rpID string, flags byte, attested []byte) []byte {
	h := sha256.Sum256([]byte(rpID))
	out := append(h[:], flags)
	out = binary.BigEndian.AppendUint32(out, k.count)
	return append(out, attested...)
}

// create answers navigator.credentials.create options (as JSON).
func (k *softKey) create(t *testing.T, options []byte) []byte {
	t.Helper()
	var o struct {
		PublicKey struct {
			Challenge string              `json:"challenge"`
			RP        struct{ ID string } `json:"rp"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		t.Fatalf("creation options %s: %v", options, err)
	}
	x, y := k.key.PublicKey.X.FillBytes(make([]byte, 32)), k.key.PublicKey.Y.FillBytes(make([]byte, 32))
	cose, _ := cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: y})
	attested := make([]byte, 16) // AAGUID
	attested = binary.BigEndian.AppendUint16(attested, uint16(len(k.id)))
	attested = append(append(attested, k.id...), cose...)
	ad := k.authData(o.PublicKey.RP.ID, 0x45, attested) // UP, UV, AT
	att, _ := cbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": ad})
	b, _ := json.Marshal(map[string]any{"id": b64.EncodeToString(k.id), "rawId": b64.EncodeToString(k.id), "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64.EncodeToString(k.clientData("webauthn.create", o.PublicKey.Challenge)),
			"attestationObject": b64.EncodeToString(att), "transports": []string{"internal"}},
		"clientExtensionResults": map[string]any{}})
	return b
}

// get answers navigator.credentials.get options, counting up.
func (k *softKey) get(t *testing.T, options []byte) []byte {
	t.Helper()
	var o struct {
		PublicKey struct {
			Challenge string `json:"challenge"`
			RPID      string `json:"rpId"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		t.Fatalf("request options %s: %v", options, err)
	}
	k.count++
	ad := k.authData(o.PublicKey.RPID, 0x05, nil) // UP, UV
	cd := k.clientData("webauthn.get", o.PublicKey.Challenge)
	h := sha256.Sum256(cd)
	sig, err := ecdsa.SignASN1(rand.Reader, k.key, sha256Sum(append(append([]byte{}, ad...), h[:]...)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"id": b64.EncodeToString(k.id), "rawId": b64.EncodeToString(k.id), "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64.EncodeToString(cd), "authenticatorData": b64.EncodeToString(ad),
			"signature": b64.EncodeToString(sig)},
		"clientExtensionResults": map[string]any{}})
	return b
}

func sha256Sum(b []byte) []byte { h := sha256.Sum256(b); return h[:] }

// ceremonyStep posts body (a form or JSON) and returns the status and
// the answer.
func (f *fixture) ceremonyStep(c *http.Client, path string, form url.Values, answer []byte) (int, []byte) {
	f.t.Helper()
	var req *http.Request
	if answer != nil {
		req, _ = http.NewRequest("POST", f.srv.URL+path, strings.NewReader(string(answer)))
		req.Header.Set("Content-Type", "application/json")
	} else {
		req, _ = http.NewRequest("POST", f.srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, []byte(readBody(resp))
}

func TestMFAWebAuthn(t *testing.T) {
	t.Parallel()
	f, _ := newMFAFixture(t)
	u := f.users["user"]
	key := newSoftKey(t, mfaOrigin)

	// Enrol from the account page.
	c := f.client("user")
	status, opts := f.ceremonyStep(c, "/account/mfa/webauthn/begin", url.Values{"name": {"laptop"}}, nil)
	if status != http.StatusOK {
		t.Fatalf("begin registration: %d %s", status, opts)
	}
	att := key.create(t, opts)
	status, ans := f.ceremonyStep(c, "/account/mfa/webauthn/finish", nil, att)
	if status != http.StatusOK || !strings.Contains(string(ans), `"redirect"`) {
		t.Fatalf("finish registration: %d %s", status, ans)
	}
	// The ceremony works once.
	if status, _ := f.ceremonyStep(c, "/account/mfa/webauthn/finish", nil, att); status != http.StatusUnprocessableEntity {
		t.Fatalf("registration answer replayed: %d", status)
	}
	fs, _ := f.store.MFAFactors(context.Background(), u.ID)
	if len(fs) != 1 || fs[0].Kind != store.FactorWebAuthn || fs[0].Name != "laptop" {
		t.Fatalf("factors %+v", fs)
	}

	// Sign in with it.
	c2, to := f.passwordStep(u.Name)
	if to != "/signin/mfa" {
		t.Fatalf("sent to %q", to)
	}
	status, opts = f.ceremonyStep(c2, "/signin/mfa/webauthn/begin", url.Values{}, nil)
	if status != http.StatusOK {
		t.Fatalf("begin sign-in: %d %s", status, opts)
	}
	assertion := key.get(t, opts)
	status, ans = f.ceremonyStep(c2, "/signin/mfa/webauthn/finish", nil, assertion)
	if status != http.StatusOK || !strings.Contains(string(ans), `"redirect":"/account"`) || !f.signedIn(c2) {
		t.Fatalf("finish sign-in: %d %s", status, ans)
	}

	tests := []struct {
		name   string
		answer func(opts []byte) []byte
	}{
		// A counter that does not advance: a cloned key.
		{"counter went back", func(opts []byte) []byte { key.count -= 2; return key.get(t, opts) }},
		{"wrong origin", func(opts []byte) []byte {
			other := *key
			other.origin = "https://evil.example"
			return other.get(t, opts)
		}},
		{"other key", func(opts []byte) []byte { return newSoftKey(t, mfaOrigin).get(t, opts) }},
		{"garbage", func([]byte) []byte { return []byte(`{"id":"x"}`) }},
	}
	for _, tt := range tests {
		c3, _ := f.passwordStep(u.Name)
		status, opts := f.ceremonyStep(c3, "/signin/mfa/webauthn/begin", url.Values{}, nil)
		if status != http.StatusOK {
			t.Fatalf("%s: begin: %d", tt.name, status)
		}
		status, ans := f.ceremonyStep(c3, "/signin/mfa/webauthn/finish", nil, tt.answer(opts))
		if status == http.StatusOK || f.signedIn(c3) {
			t.Fatalf("%s: accepted: %d %s", tt.name, status, ans)
		}
	}
	fails, _ := f.audit.Search(context.Background(), store.AuditFilter{Actor: u.Name, Action: audit.ActionMFAVerify, Outcome: audit.OutcomeFailure})
	if len(fails) < 3 {
		t.Fatalf("%d failed passkey checks audited, want at least 3", len(fails))
	}
}

func strconvFormat(n int64) string { return strconv.FormatInt(n, 10) }
