package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/identity/mfa"
	"github.com/keyway-dev/keyway/portal/store"
)

// stepUpLine is the keyway client's instruction for a step-up refusal.
var stepUpLine = regexp.MustCompile(`This resource needs a fresh MFA check: open (https://\S+), then run the command again`)

// TestNativeStepUp: a device signed in from a browser session without an
// MFA check is refused by a resource asking for one, and the keyway
// client says where to pass it; the user passes a TOTP check on that page
// (sent through /mfa/verify), confirms, and the same command then carries
// a stream through the tunnel.
func TestNativeStepUp(t *testing.T) {
	t.Parallel()
	echo := targets.NewEcho(t)
	f := newNativeFixture(t)
	ctx := context.Background()
	f.grant(t, store.Resource{Name: "echo", Protocol: "tcp", Host: echo.Host, Port: echo.Port,
		Options: store.Options{StepUpMinutes: 10}}, nil)
	env := []string{"KEYWAY_CONFIG_DIR=" + t.TempDir(), "KEYWAY_CA=" + filepath.Join(f.dir, "tls.crt"), "KEYWAY_TOKEN="}
	login := targets.LaunchKeyway(t, f.bin, env, "login", "--no-browser", f.p.URL)
	line, err := login.WaitLine(30*time.Second, userCodeLine)
	if err != nil {
		t.Fatal(err)
	}
	alice := newBrowser(t, f.p.URL)
	alice.signIn("alice", "alice-password-1")
	if resp := alice.post("/device/approve", url.Values{"code": {userCodeLine.FindStringSubmatch(line)[1]}}); resp.StatusCode >= 400 {
		t.Fatalf("approve the device: %d", resp.StatusCode)
	}
	select {
	case <-login.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("keyway login did not finish after approval:\n%s", login.Output())
	}
	// Alice enrols TOTP after signing in: her browser session has passed
	// no check, so neither has the device it approved.
	key, err := mfa.NewTOTPKey("Keyway", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Store.AddMFAFactor(ctx, store.MFAFactor{UserID: f.alice.ID, Kind: store.FactorTOTP, Name: "phone", Secret: key.Secret}); err != nil {
		t.Fatal(err)
	}

	runCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := targets.RunKeyway(runCtx, f.bin, env, "tunnel", "--stdio", "--no-browser", "echo")
	m := stepUpLine.FindStringSubmatch(out)
	if err == nil || m == nil {
		t.Fatalf("keyway tunnel to a step-up resource: %v\n%s", err, out)
	}
	page, err := url.Parse(m[1])
	if err != nil || !strings.HasPrefix(m[1], f.p.URL+"/device/") {
		t.Fatalf("step-up page %q is not the portal's", m[1])
	}

	// The page sends alice through the MFA check, which sends her back.
	status, location := alice.follow("GET", page.RequestURI(), nil)
	if status != http.StatusSeeOther || !strings.HasPrefix(location, "/mfa/verify?") {
		t.Fatalf("step-up page without a check: %d to %q", status, location)
	}
	code, err := totp.GenerateCode(key.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	status, location = alice.follow("POST", "/mfa/verify", url.Values{"code": {code}, "next": {page.RequestURI()}})
	if status != http.StatusSeeOther || location != page.RequestURI() {
		t.Fatalf("MFA check: %d to %q, want back to %s", status, location, page.RequestURI())
	}
	if status, body := alice.get(page.RequestURI()); status != http.StatusOK || !strings.Contains(body, "Use this MFA check") {
		t.Fatalf("step-up page after the check: %d", status)
	}
	within := page.Query().Get("within")
	status, location = alice.follow("POST", page.Path, url.Values{"within": {within}})
	if status != http.StatusSeeOther || location != "/account#devices" {
		t.Fatalf("confirm the step-up: %d to %q", status, location)
	}
	evs, err := f.p.Store.SearchAudit(ctx, store.AuditFilter{Action: "device.stepup", Actor: "alice"})
	if err != nil || len(evs) != 1 {
		t.Fatalf("device.stepup events: %v, %v", evs, err)
	}

	k := targets.StartKeyway(t, f.bin, env, "tunnel", "echo", "--listen", "127.0.0.1:0")
	c, err := net.Dial("tcp", k.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echoOnce(c, []byte("stepped up")); err != nil {
		t.Fatalf("stream after the step-up: %v\nkeyway:\n%s", err, k.Output())
	}
}

// follow sends one request without following its redirect and returns
// the status and where it sends the browser.
func (b *browser) follow(method, path string, form url.Values) (int, string) {
	b.t.Helper()
	var resp *http.Response
	var err error
	if method == http.MethodPost {
		resp, err = b.client.PostForm(b.base+path, form)
	} else {
		resp, err = b.client.Get(b.base + path)
	}
	if err != nil {
		b.t.Fatal(fmt.Errorf("%s %s: %w", method, path, err))
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}
