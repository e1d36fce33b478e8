package httpui

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// offsetClock is the real clock moved by an offset a test sets.
type offsetClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *offsetClock) set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off = d
}

// lockedBuffer is a log a handler writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// pull does a config pull as g and returns status, body and the renewal
// the portal asks for.
func (g *testGateway) pull(edit func(*http.Request)) (int, string, string) {
	g.f.t.Helper()
	req, _ := http.NewRequest("GET", g.f.srv.URL+"/gateway-api/v1/config", nil)
	if edit != nil {
		edit(req)
	}
	tok := g.token
	if v, ok := req.Header[wire.HeaderGatewayToken]; ok {
		tok = v[0]
	}
	req.Header.Set(wire.HeaderGatewayToken, tok)
	wire.SignRequest(req, g.id, fmt.Sprint(g.gw.ID), time.Now(), wire.EmptyBody)
	resp, err := g.f.srv.Client().Do(req)
	if err != nil {
		g.f.t.Fatal(err)
	}
	return resp.StatusCode, readBody(resp), resp.Header.Get(wire.HeaderTokenRenew)
}

// TestGatewayTokens: the portal's side of access tokens, with a moved
// clock: expiry, tampering, renewal, rotation between the two keys,
// regeneration cutting off the tokens of a key, reported renewal failures.
func TestGatewayTokens(t *testing.T) {
	clock := &offsetClock{}
	var logs lockedBuffer
	f := newFixtureWith(t, fakeVideo, func(d *Deps) {
		d.Now = clock.Now
		// Within the signatures' allowed clock skew, so that only the
		// token's expiry decides.
		d.GatewayTokenLifetime = time.Minute
		d.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	ctx := context.Background()
	admin := f.client("admin")
	g := f.enrolGateway("gw-tok")
	first := g.token
	if code, body, renew := g.pull(nil); code != 200 || renew != "" {
		t.Fatalf("config pull with the first token: %d %q %s", code, renew, body)
	}
	// A second first token is not given: the right was used up.
	g.token = ""
	if code, _, body := g.renew(); code != 401 || !strings.Contains(body, "no access token") {
		t.Fatalf("a second token without a token: %d %s", code, body)
	}
	g.token = first

	tok, _ := wire.ParseToken(first)
	longer := strings.Replace(first, fmt.Sprintf(".%d.", tok.ExpiresAt.UnixMilli()), fmt.Sprintf(".%d.", tok.ExpiresAt.Add(time.Hour).UnixMilli()), 1)
	for _, c := range []struct{ name, token, want string }{
		{"tampered expiry", longer, "signature does not match"},
		{"none", "", "carries no access token"},
		{"garbage", "kwgt1.x", "malformed"},
	} {
		code, body, _ := g.pull(func(r *http.Request) { r.Header[wire.HeaderGatewayToken] = []string{c.token} })
		if code != 401 || !strings.Contains(body, "access token refused") || !strings.Contains(body, c.want) {
			t.Errorf("%s token: %d %s", c.name, code, body)
		}
	}
	if evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionGatewayTokenRefused}); len(evs) == 0 || evs[0].Target != "gw-tok" {
		t.Fatalf("refused tokens not audited: %+v", evs)
	}

	// Near its expiry, the token still works, but the portal asks for a
	// renewal, logs and audits it once.
	clock.set(50 * time.Second)
	for range 2 {
		if code, body, renew := g.pull(nil); code != 200 || renew != store.SlotPrimary {
			t.Fatalf("pull near expiry: %d renew %q %s", code, renew, body)
		}
	}
	if evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionGatewayTokenExpiring}); len(evs) != 1 {
		t.Fatalf("expiring token audited %d times, want once", len(evs))
	}
	if _, page := f.get(admin, fmt.Sprintf("/admin/gateways/%d", g.gw.ID)); !strings.Contains(page, "was not renewed") {
		t.Fatalf("gateway page does not warn of the expiring token:\n%s", page)
	}
	// Past its expiry it is refused, also for a renewal.
	clock.set(61 * time.Second)
	if code, body, _ := g.pull(nil); code != 401 || !strings.Contains(body, "expired") {
		t.Fatalf("expired token: %d %s", code, body)
	}
	if !strings.Contains(logs.String(), "gateway config pull refused: access token expired") {
		t.Fatalf("no clear log line for the expired token:\n%s", logs.String())
	}
	if code, _, body := g.renew(); code != 401 || !strings.Contains(body, "expired") {
		t.Fatalf("renewal with an expired token: %d %s", code, body)
	}
	if _, page := f.get(admin, fmt.Sprintf("/admin/gateways/%d", g.gw.ID)); !strings.Contains(page, "access token has expired") {
		t.Fatalf("gateway page does not say the token expired")
	}
	clock.set(0)

	// Renewal with a valid token, carrying the report of a failed one.
	code, grant, body := g.renew()
	if code != 200 || grant.Slot != store.SlotPrimary || !grant.ExpiresAt.After(tok.ExpiresAt.Add(-time.Second)) {
		t.Fatalf("renewal: %d %+v %s", code, grant, body)
	}
	req, _ := http.NewRequest("GET", f.srv.URL+"/gateway-api/v1/config", nil)
	req.Header.Set(wire.HeaderTokenRenewError, "reach portal: connection refused\t\xff")
	g.sign(req, wire.EmptyBody)
	if code, body := f.send(req); code != 200 {
		t.Fatalf("pull with a renewal error: %d %s", code, body)
	}
	if _, page := f.get(admin, fmt.Sprintf("/admin/gateways/%d", g.gw.ID)); !strings.Contains(page, "last token renewal failed: reach portal: connection refused") {
		t.Fatalf("gateway page does not show the failed renewal")
	}
	if evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionGatewayTokenRenewError}); len(evs) != 1 {
		t.Fatalf("failed renewal audited %d times", len(evs))
	}

	// Rotation: new tokens on the secondary key; the primary token still
	// works, and the portal asks for a renewal, which moves the gateway.
	onPrimary := g.token
	if resp := f.do(admin, "POST", fmt.Sprintf("/admin/gateways/%d/token-slot", g.gw.ID), url.Values{"slot": {"secondary"}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("choose the secondary key: %d", resp.StatusCode)
	}
	if code, _, renew := g.pull(nil); code != 200 || renew != store.SlotSecondary {
		t.Fatalf("pull after the switch: %d, renew %q", code, renew)
	}
	if code, grant, body := g.renew(); code != 200 || grant.Slot != store.SlotSecondary {
		t.Fatalf("renewal onto the secondary key: %d %+v %s", code, grant, body)
	}
	if resp := f.do(admin, "POST", fmt.Sprintf("/admin/gateways/%d/keys/primary/regenerate", g.gw.ID), url.Values{}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("regenerate the primary key: %d", resp.StatusCode)
	}
	if code, body, renew := g.pull(nil); code != 200 || renew != "" {
		t.Fatalf("secondary token after the primary key was regenerated: %d %q %s", code, renew, body)
	}
	if code, body, _ := g.pull(func(r *http.Request) { r.Header[wire.HeaderGatewayToken] = []string{onPrimary} }); code != 401 || !strings.Contains(body, "regenerated") {
		t.Fatalf("token of the regenerated key: %d %s", code, body)
	}
	if evs, _ := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionGatewayKeyRegenerate}); len(evs) != 1 || evs[0].Details["slot"] != "primary" {
		t.Fatalf("regeneration audit: %+v", evs)
	}
	// Regenerating the key in use cuts the gateway off, renewal too; its
	// key pasted again lets it get a new token.
	if resp := f.do(admin, "POST", fmt.Sprintf("/admin/gateways/%d/keys/secondary/regenerate", g.gw.ID), url.Values{}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("regenerate the secondary key: %d", resp.StatusCode)
	}
	if code, body, _ := g.pull(nil); code != 401 || !strings.Contains(body, "regenerated") {
		t.Fatalf("cut-off token: %d %s", code, body)
	}
	if code, _, body := g.renew(); code != 401 || !strings.Contains(body, "paste the gateway's public key again") {
		t.Fatalf("renewal of a cut-off token: %d %s", code, body)
	}
	f.do(admin, "POST", fmt.Sprintf("/admin/gateways/%d/key", g.gw.ID), url.Values{"public_key": {g.id.PublicKeyString()}}, nil)
	if code, grant, body := g.renew(); code != 200 || grant.Slot != store.SlotSecondary {
		t.Fatalf("token after the key was pasted again: %d %s", code, body)
	}
	if code, body, _ := g.pull(nil); code != 200 {
		t.Fatalf("pull with the new token: %d %s", code, body)
	}
	for _, bad := range []string{"/keys/tertiary/regenerate", "/keys/primary_key/regenerate"} {
		if resp := f.do(admin, "POST", fmt.Sprintf("/admin/gateways/%d%s", g.gw.ID, bad), url.Values{}, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", bad, resp.StatusCode)
		}
	}
}

// get fetches path as c and returns status and body.
func (f *fixture) get(c *http.Client, path string) (int, string) {
	f.t.Helper()
	resp := f.do(c, "GET", path, nil, nil)
	return resp.StatusCode, readBody(resp)
}
