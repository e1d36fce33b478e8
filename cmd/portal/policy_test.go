package main

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/keyway-dev/keyway/portal/store"
)

// TestPoliciesDecideConnections: through the real gateway and sshd, a
// policy refuses a terminal from a network it does not allow, naming
// itself, and the refusal is audited with the rule; once changed, the
// next connection opens; changed back, the running session ends, saying
// why; a policy without uploads takes them away from the file browser.
func TestPoliciesDecideConnections(t *testing.T) {
	ctx := context.Background()
	f := newFilesFixture(t)
	st := f.p.Store
	pol, err := st.CreatePolicy(ctx, store.Policy{Name: "lab only", ScopeKind: store.ScopeResource, ScopeID: f.res.ID,
		Networks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Allow: store.AllowAll, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := f.alice.terminal(f.res.ID)
	if c["type"] != "error" || c["code"] != "policy" || !strings.Contains(c["message"].(string), `"lab only"`) {
		t.Fatalf("a terminal from outside the policy's networks: %v", c)
	}
	evs, _ := st.SearchAudit(ctx, store.AuditFilter{Action: "connect", Actor: "alice"})
	if len(evs) != 1 || evs[0].Outcome != "denied" || evs[0].Details["policy"] != "lab only" || evs[0].Details["rule"] != "network" ||
		!strings.Contains(evs[0].Reason, "lab only") {
		t.Fatalf("the refusal was audited as %+v", evs)
	}

	pol.Networks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	if err := st.UpdatePolicy(ctx, pol); err != nil {
		t.Fatal(err)
	}
	c, ws := f.alice.terminal(f.res.ID)
	if c["type"] != "connected" {
		t.Fatalf("the next connection after the change: %v", c)
	}
	ws.WriteMessage(websocket.BinaryMessage, []byte("echo policy-$((6*7))\n"))
	readUntil(t, ws, "policy-42")

	// The policy changes back while the session runs (through the store,
	// so nothing kicks the guard: its next round ends it).
	pol.Networks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	if err := st.UpdatePolicy(ctx, pol); err != nil {
		t.Fatal(err)
	}
	terminalTold(t, ws, "policy", `"lab only"`)

	// Uploads off: the file browser offers none and refuses one sent
	// anyway.
	pol.Networks = nil
	pol.Allow.Upload = false
	if err := st.UpdatePolicy(ctx, pol); err != nil {
		t.Fatal(err)
	}
	code, page := f.alice.get("/files/" + strconv.FormatInt(f.res.ID, 10) + "?path=" + url.QueryEscape(f.dir))
	if code != http.StatusOK || strings.Contains(page, `id="upload-form"`) {
		t.Fatalf("the file browser with uploads forbidden: %d, upload form shown %v", code, strings.Contains(page, `id="upload-form"`))
	}
	if code, _ := f.upload(t, f.dir, "no.txt", strings.NewReader("x"), 1); code != http.StatusForbidden {
		t.Fatalf("an upload a policy forbids: %d, want 403", code)
	}
}
