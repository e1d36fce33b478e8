package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/store"
)

// tokenLifetime is the gateways' token lifetime in this test: short, so
// that renewals happen while it runs.
const tokenLifetime = 3 * time.Second

// TestGatewayTokenRenewalAndRotation runs a real gateway process against
// a real portal whose access tokens live a few seconds: the gateway
// renews its token itself; an admin rotates primary to secondary without
// a failed config pull; an expired and a tampered token are refused;
// regenerating the key in use cuts the gateway off, and pasting its key
// again lets it back.
func TestGatewayTokenRenewalAndRotation(t *testing.T) {
	ctx := context.Background()
	bin := buildGateway(t)
	dir := t.TempDir()
	run(ctx, []string{"users", "add", "root-admin", "--role", "admin", "--password-stdin", "--data", dir},
		strings.NewReader("admin-password-1\n"), io.Discard, io.Discard)
	p, portalLog, _ := startPortalWith(t, serveConfig{DataDir: dir, Listen: "127.0.0.1:0", GatewayListen: "127.0.0.1:0", LogLevel: "info",
		GatewayTokenLifetime: tokenLifetime})
	admin := newBrowser(t, p.URL)
	admin.signIn("root-admin", "admin-password-1")
	if resp := admin.post("/admin/segments", url.Values{"name": {"gateway-t"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create segment: %d", resp.StatusCode)
	}
	seg, _ := p.Store.SegmentByName(ctx, "gateway-t")
	g := enrol(t, admin, bin, strconv.FormatInt(seg.ID, 10), "t1", dir)
	gw, err := gatewayByName(ctx, p.Store, "t1")
	if err != nil {
		t.Fatal(err)
	}
	page := fmt.Sprintf("/admin/gateways/%d", gw.ID)
	count := func(s, what string) int { return strings.Count(s, what) }
	explain := func() string { return "gateway:\n" + g.log.String() + "\nportal:\n" + portalLog.String() }
	waitFor(t, "t1 to become available", func() bool { return stateOf(p, "t1") == gateways.StateAvailable }, explain)

	// Renewal: the first token, then two renewals at two thirds of the
	// token's life, each issued by the portal. Before its key was pasted
	// the gateway was refused; from its first token on, nothing fails.
	gwFirst, portalFirst := strings.Index(g.log.String(), "access token renewed"), len(portalLog.String())
	waitFor(t, "two renewals", func() bool { return count(g.log.String(), "access token renewed") >= 3 }, explain)
	if evs, _ := p.Store.SearchAudit(ctx, store.AuditFilter{Action: audit.ActionGatewayTokenIssue, Target: "t1"}); len(evs) < 3 {
		t.Fatalf("%d token issues audited, want 3 or more", len(evs))
	}
	if strings.Contains(g.log.String()[gwFirst:], "config pull failed") || strings.Contains(portalLog.String()[portalFirst:], "pull refused") {
		t.Fatalf("a config pull failed while the token was renewed:\n%s", explain())
	}
	if _, body := admin.get(page); !strings.Contains(body, "Token expires") || !strings.Contains(body, "current token") {
		t.Fatalf("gateway page does not show the token")
	}
	// The issues are counted and the token's expiry exported.
	fams := scrape(t, p.MetricsURL)
	if v := value(fams, "keyway_portal_gateway_token_events_total", "gateway", "t1", "event", "issued"); v < 3 {
		t.Errorf("token issues counted: %v, want 3 or more", v)
	}
	if v := value(fams, "keyway_portal_gateway_token_expiry_timestamp_seconds", "gateway", "t1"); v < float64(time.Now().Add(-tokenLifetime).Unix()) {
		t.Errorf("token expiry exported: %v", v)
	}

	// An expired and a tampered token of the gateway's are refused, even
	// signed with its key.
	id, err := wire.LoadOrCreateIdentity(filepath.Join(dir, "t1", "identity.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var kept struct{ wire.TokenGrant }
	raw, err := os.ReadFile(filepath.Join(dir, "t1", "access-token.json"))
	if err != nil || json.Unmarshal(raw, &kept) != nil || kept.Token == "" {
		t.Fatalf("token file: %v %s", err, raw)
	}
	pull := func(token string) (int, string) {
		req, _ := http.NewRequest("GET", p.URL+"/gateway-api/v1/config", nil)
		req.Header.Set(wire.HeaderGatewayToken, token)
		wire.SignRequest(req, id, strconv.FormatInt(gw.ID, 10), time.Now(), wire.EmptyBody)
		resp, err := admin.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	tampered := strings.Replace(kept.Token, fmt.Sprintf(".%d.", kept.ExpiresAt.UnixMilli()), fmt.Sprintf(".%d.", kept.ExpiresAt.Add(time.Hour).UnixMilli()), 1)
	if code, body := pull(tampered); code != 401 || !strings.Contains(body, "signature does not match") {
		t.Fatalf("tampered token: %d %s", code, body)
	}
	// Waiting for the token's own expiry is the test: no shorter way.
	time.Sleep(time.Until(kept.ExpiresAt) + 50*time.Millisecond)
	if code, body := pull(kept.Token); code != 401 || !strings.Contains(body, "expired") {
		t.Fatalf("expired token: %d %s", code, body)
	}
	if !strings.Contains(portalLog.String(), "gateway config pull refused: access token expired") {
		t.Fatalf("no log line for the expired token:\n%s", portalLog.String())
	}
	if v := value(scrape(t, p.MetricsURL), "keyway_portal_gateway_token_events_total", "gateway", "t1", "event", "refused"); v < 2 {
		t.Errorf("refused tokens counted: %v, want 2 or more", v)
	}

	// Rotation: new tokens on the secondary key; once the gateway moved
	// to it, the primary key is regenerated. No config pull fails.
	gwBefore, portalBefore := len(g.log.String()), len(portalLog.String())
	if resp := admin.post(page+"/token-slot", url.Values{"slot": {"secondary"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("choose secondary: %d", resp.StatusCode)
	}
	waitFor(t, "a token on the secondary key", func() bool { return strings.Contains(g.log.String()[gwBefore:], "slot=secondary") }, explain)
	if resp := admin.post(page+"/keys/primary/regenerate", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("regenerate primary: %d", resp.StatusCode)
	}
	mark := len(g.log.String())
	waitFor(t, "five config pulls after the rotation", func() bool { return count(g.log.String()[mark:], "config pulled") >= 5 }, explain)
	if pulls := count(g.log.String()[gwBefore:], "config pulled"); pulls < 5 ||
		strings.Contains(g.log.String()[gwBefore:], "config pull failed") || strings.Contains(g.log.String()[gwBefore:], "renewal failed") ||
		strings.Contains(portalLog.String()[portalBefore:], "pull refused") {
		t.Fatalf("rotation: %d pulls, some failed:\n%s", pulls, explain())
	}

	// Regenerating the key in use cuts the gateway off at once.
	gwBefore = len(g.log.String())
	if resp := admin.post(page+"/keys/secondary/regenerate", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("regenerate secondary: %d", resp.StatusCode)
	}
	waitFor(t, "the cut-off gateway's pull to fail", func() bool {
		return strings.Contains(g.log.String()[gwBefore:], "config pull failed") &&
			strings.Contains(portalLog.String(), "gateway config pull refused: access token made with a regenerated key")
	}, explain)
	waitFor(t, "the failed renewal to show", func() bool {
		_, body := admin.get(page)
		return strings.Contains(body, "renewal failed") || strings.Contains(body, "access token has expired")
	}, explain)
	// Its public key pasted again, it gets a new token and pulls again.
	gwBefore = len(g.log.String())
	if resp := admin.post(page+"/key", url.Values{"public_key": {id.PublicKeyString()}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("paste key again: %d", resp.StatusCode)
	}
	waitFor(t, "the gateway back", func() bool {
		l := g.log.String()[gwBefore:]
		return strings.Contains(l, "access token renewed") && strings.Contains(l, "config pull works again")
	}, explain)

	// The embedded gateway is the portal's own: regenerating its key in
	// use lets it fetch a new token by itself.
	var emb store.Gateway
	gs, _ := p.Store.ListGateways(ctx)
	for _, g := range gs {
		if g.Embedded {
			emb = g
		}
	}
	portalBefore = len(portalLog.String())
	if resp := admin.post(fmt.Sprintf("/admin/gateways/%d/keys/primary/regenerate", emb.ID), url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("regenerate the embedded gateway's key: %d", resp.StatusCode)
	}
	waitFor(t, "the embedded gateway's new token", func() bool {
		return strings.Contains(portalLog.String()[portalBefore:], `gateway access token issued" gateway=embedded how="first token"`)
	}, explain)
}
