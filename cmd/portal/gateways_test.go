package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/store"
)

// buildGateway builds cmd/gateway once for the test.
func buildGateway(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gateway")
	out, err := exec.Command("go", "build", "-o", bin, "../gateway").CombinedOutput()
	if err != nil {
		t.Fatalf("build gateway: %v\n%s", err, out)
	}
	return bin
}

// gatewayProc is a gateway process started from a downloaded config.
type gatewayProc struct {
	t      *testing.T
	bin    string
	config string
	cmd    *exec.Cmd
	log    *syncBuffer
	done   chan struct{}
	// args are added to gateway run's.
	args []string
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (g *gatewayProc) start() {
	g.t.Helper()
	g.log = &syncBuffer{}
	g.cmd = exec.Command(g.bin, append([]string{"run", "--config", g.config, "--log-level", "debug"}, g.args...)...)
	g.cmd.Stdout, g.cmd.Stderr = g.log, g.log
	g.cmd.WaitDelay = time.Second
	if err := g.cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.done = make(chan struct{})
	go func() { g.cmd.Wait(); close(g.done) }()
	g.t.Cleanup(g.stop)
	waitFor(g.t, "gateway to start", func() bool { return strings.Contains(g.log.String(), "gateway started") }, func() string { return g.log.String() })
}

func (g *gatewayProc) stop() {
	if g.cmd == nil || g.cmd.Process == nil {
		return
	}
	g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.done
}

// waitFor waits up to 20 s for cond, failing the test with what was
// awaited and, if explain is not nil, its account of the state.
func waitFor(t *testing.T, what string, cond func() bool, explain func() string) {
	t.Helper()
	waitWithin(t, 20*time.Second, what, cond, explain)
}

// waitWithin is waitFor with another bound: cond is polled every 25 ms.
func waitWithin(t *testing.T, within time.Duration, what string, cond func() bool, explain func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			if explain != nil {
				msg = explain()
			}
			t.Fatalf("timed out waiting for %s\n%s", what, msg)
		}
		<-tick.C
	}
}

func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	resp, err := b.client.Get(b.base + path)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body)
}

// enrol walks the admin journey for one gateway: create it, download its
// config, start it, paste its key. It returns the running process.
func enrol(t *testing.T, admin *browser, bin, segmentID, name, dir string, args ...string) *gatewayProc {
	t.Helper()
	return enrolVia(t, admin, bin, segmentID, name, dir, "", args...)
}

// enrolVia is enrol with the gateway reaching the portal at portalURL
// (a load balancer), "" for the URL in the downloaded config; args are
// more flags of gateway run.
func enrolVia(t *testing.T, admin *browser, bin, segmentID, name, dir, portalURL string, args ...string) *gatewayProc {
	t.Helper()
	sshPort, rdpPort, vncPort, mgmtPort := freePort(t), freePort(t), freePort(t), freePort(t)
	resp := admin.post("/admin/gateways", url.Values{"name": {name}, "segment_id": {segmentID}, "host": {"127.0.0.1"},
		"ssh_port": {strconv.Itoa(sshPort)}, "rdp_port": {strconv.Itoa(rdpPort)}, "vnc_port": {strconv.Itoa(vncPort)},
		"management_port": {strconv.Itoa(mgmtPort)}})
	m := regexp.MustCompile(`^/admin/gateways/(\d+)$`).FindStringSubmatch(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || m == nil {
		t.Fatalf("create gateway %s: %d %s", name, resp.StatusCode, resp.Header.Get("Location"))
	}
	id := m[1]
	status, body := admin.get("/admin/gateways/" + id + "/config")
	if status != http.StatusOK {
		t.Fatalf("download config: %d", status)
	}
	var f wire.GatewayFile
	if err := json.Unmarshal([]byte(body), &f); err != nil {
		t.Fatal(err)
	}
	// Loopback only in tests, and a fast pull for the test's sake.
	f.StateDir = filepath.Join(dir, name)
	f.Listen = map[string]string{"ssh": fmt.Sprintf("127.0.0.1:%d", sshPort), "rdp": fmt.Sprintf("127.0.0.1:%d", rdpPort),
		"vnc": fmt.Sprintf("127.0.0.1:%d", vncPort), "management": fmt.Sprintf("127.0.0.1:%d", mgmtPort)}
	f.PullIntervalSecs = 1
	if portalURL != "" {
		f.PortalURL = portalURL
	}
	cfgPath := filepath.Join(dir, name+".json")
	raw, _ := json.Marshal(f)
	os.WriteFile(cfgPath, raw, 0o600)
	g := &gatewayProc{t: t, bin: bin, config: cfgPath, args: args}
	g.start()
	key := regexp.MustCompile(`ed25519:[A-Za-z0-9+/=]+`).FindString(g.log.String())
	if key == "" {
		t.Fatalf("gateway printed no key:\n%s", g.log.String())
	}
	out, err := exec.Command(bin, "pubkey", "--config", cfgPath).Output()
	if err != nil || strings.TrimSpace(string(out)) != key {
		t.Fatalf("gateway pubkey printed %q (%v), want %q", out, err, key)
	}
	if resp := admin.post("/admin/gateways/"+id+"/key", url.Values{"public_key": {key}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("paste key: %d", resp.StatusCode)
	}
	return g
}

func stateOf(p *portal, name string) gateways.State {
	for _, s := range p.Pool.Statuses() {
		if s.Name == name {
			return s.State
		}
	}
	return ""
}

// servedBy returns the gateway names in the audit log's successful
// connections to resource, counted.
func servedBy(t *testing.T, p *portal, resource string) map[string]int {
	evs, err := p.Store.SearchAudit(context.Background(), store.AuditFilter{Action: audit.ActionConnect, Outcome: audit.OutcomeSuccess, Target: resource})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range evs {
		out[e.Details["gateway"]]++
	}
	return out
}

func TestRemoteGateways(t *testing.T) {
	ctx := context.Background()
	bin := buildGateway(t)
	sshd := targets.NewSSHD(t)
	dir := t.TempDir()
	run(ctx, []string{"users", "add", "root-admin", "--role", "admin", "--password-stdin", "--data", dir},
		strings.NewReader("admin-password-1\n"), io.Discard, io.Discard)
	p, portalLog := startPortal(t, dir)
	admin := newBrowser(t, p.URL)
	admin.signIn("root-admin", "admin-password-1")

	// Segments, through the forms.
	for _, seg := range []string{"gateway-a", "gateway-b"} {
		if resp := admin.post("/admin/segments", url.Values{"name": {seg}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("create segment %s: %d", seg, resp.StatusCode)
		}
	}
	segA, _ := p.Store.SegmentByName(ctx, "gateway-a")
	segB, _ := p.Store.SegmentByName(ctx, "gateway-b")
	a1 := enrol(t, admin, bin, strconv.FormatInt(segA.ID, 10), "a1", dir)
	enrol(t, admin, bin, strconv.FormatInt(segA.ID, 10), "a2", dir)
	b1 := enrol(t, admin, bin, strconv.FormatInt(segB.ID, 10), "b1", dir)
	// A pending gateway: created, never given a key.
	admin.post("/admin/gateways", url.Values{"name": {"a3"}, "segment_id": {strconv.FormatInt(segA.ID, 10)}, "host": {"127.0.0.1"},
		"ssh_port": {strconv.Itoa(freePort(t))}, "rdp_port": {strconv.Itoa(freePort(t))}, "vnc_port": {strconv.Itoa(freePort(t))},
		"management_port": {strconv.Itoa(freePort(t))}})
	for _, name := range []string{"a1", "a2", "b1"} {
		waitFor(t, name+" to become available", func() bool { return stateOf(p, name) == gateways.StateAvailable }, nil)
	}
	if s := stateOf(p, "a3"); s != gateways.StatePending {
		t.Fatalf("a3 is %s, want pending", s)
	}

	// Resources in each segment, granted to alice.
	u, _ := p.Store.CreateUser(ctx, store.User{Name: "alice", Role: store.RoleUser}, mustHash(t, "user-password-1"))
	mk := func(name string, tags ...string) store.Resource {
		r, err := p.Store.CreateResource(ctx, store.Resource{Name: name, Protocol: "ssh", Host: sshd.Host, Port: sshd.Port, Login: sshd.User, Tags: tags},
			&store.Secrets{Password: sshd.Password})
		if err != nil {
			t.Fatal(err)
		}
		p.Store.CreateGrantMode(ctx, r.ID, "user", u.ID, store.GrantBoth)
		return r
	}
	resA, resB := mk("in-a", "gateway-a"), mk("in-b", "gateway-b")
	alice := newBrowser(t, p.URL)
	alice.signIn("alice", "user-password-1")

	// Selection: random among a1 and a2 only; never the pending a3.
	for range 16 {
		if c, ws := alice.terminal(resA.ID); c["type"] != "connected" {
			t.Fatalf("connect through segment a: %v", c)
		} else {
			ws.Close()
		}
	}
	spread := servedBy(t, p, "in-a")
	if spread["a1"] == 0 || spread["a2"] == 0 || len(spread) != 2 {
		t.Fatalf("segment a sessions went to %v, want a1 and a2 both", spread)
	}
	// Tunnel mode is on by default: the embedded gateway relayed them.
	if !strings.Contains(portalLog.String(), "relay started") {
		t.Fatal("tunnel mode did not relay through the embedded gateway")
	}
	// The file browser takes the same way, to the segment's gateways.
	filesVia(t, p, alice, resA, "a1", "a2")

	// The CIDR allow-list, pulled by b1 within its interval.
	admin.post(fmt.Sprintf("/admin/segments/%d", segB.ID), url.Values{"allowed_networks": {"10.0.0.0/8"}})
	waitFor(t, "b1 to pull its new config", func() bool { return strings.Contains(b1.log.String(), "allowed_networks=10.0.0.0/8") }, func() string { return b1.log.String() })
	if c, _ := alice.terminal(resB.ID); c["type"] != "error" || c["code"] != "target_forbidden" {
		t.Fatalf("target outside the allowed networks: %v", c)
	}
	admin.post(fmt.Sprintf("/admin/segments/%d", segB.ID), url.Values{"allowed_networks": {"127.0.0.0/8"}})
	waitFor(t, "b1 to pull the widened config", func() bool { return strings.Contains(b1.log.String(), "allowed_networks=127.0.0.0/8") }, nil)

	// Tunnel off: the portal dials b1 directly.
	admin.post("/admin/gateways/tunnel", url.Values{})
	if c, ws := alice.terminal(resB.ID); c["type"] != "connected" {
		t.Fatalf("direct connection to b1: %v", c)
	} else {
		ws.Close()
	}
	filesVia(t, p, alice, resB, "b1")

	// Failover: a1 dies; once marked unavailable, sessions go to a2.
	a1.stop()
	fast := gateways.HealthConfig{Attempts: 2, Backoff: 50 * time.Millisecond, Timeout: time.Second, Parallel: 8}
	p.Pool.CheckAll(ctx, fast)
	if s := stateOf(p, "a1"); s != gateways.StateUnavailable {
		t.Fatalf("a1 is %s after it died", s)
	}
	before := servedBy(t, p, "in-a")
	for range 4 {
		if c, ws := alice.terminal(resA.ID); c["type"] != "connected" {
			t.Fatalf("connect after failover: %v", c)
		} else {
			ws.Close()
		}
	}
	after := servedBy(t, p, "in-a")
	if after["a1"] != before["a1"] || after["a2"] != before["a2"]+4 {
		t.Fatalf("after a1 died: %v then %v", before, after)
	}

	// Revoking a2's key cuts its running session at once; then segment a has
	// nothing left.
	c, ws := alice.terminal(resA.ID)
	if c["type"] != "connected" {
		t.Fatalf("connect: %v", c)
	}
	a2, _ := gatewayByName(ctx, p.Store, "a2")
	admin.post(fmt.Sprintf("/admin/gateways/%d/revoke", a2.ID), url.Values{})
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		mt, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("the session ended without saying why: %v", err)
		}
		if mt == 1 {
			if !strings.Contains(string(msg), `"gateway_revoked"`) || !strings.Contains(string(msg), "revoked or replaced the key of gateway a2") {
				t.Fatalf("session ended with %s", msg)
			}
			break
		}
	}
	if c, _ := alice.terminal(resA.ID); c["type"] != "error" || !strings.Contains(c["message"].(string), "No gateway available in segment gateway-a") {
		t.Fatalf("segment a with no gateway left: %v", c)
	}

	// Static failure: b1 restarts while its portal is unreachable, from its
	// config backup.
	b1.stop()
	var f wire.GatewayFile
	raw, _ := os.ReadFile(b1.config)
	json.Unmarshal(raw, &f)
	f.PortalURL = fmt.Sprintf("https://127.0.0.1:%d", freePort(t))
	raw, _ = json.Marshal(f)
	os.WriteFile(b1.config, raw, 0o600)
	b1.start()
	waitFor(t, "b1 to start from its backup", func() bool {
		l := b1.log.String()
		return strings.Contains(l, "started from the config backup") && strings.Contains(l, "config pull failed")
	}, func() string { return b1.log.String() })
	p.Pool.CheckAll(ctx, fast)
	if c, ws := alice.terminal(resB.ID); c["type"] != "connected" {
		t.Fatalf("b1 serving from its backup: %v", c)
	} else {
		ws.Close()
	}
}

func gatewayByName(ctx context.Context, st *store.Store, name string) (store.Gateway, error) {
	gs, err := st.ListGateways(ctx)
	for _, g := range gs {
		if g.Name == name {
			return g, nil
		}
	}
	return store.Gateway{}, fmt.Errorf("no gateway %s: %v", name, err)
}

// filesVia lists res's files as b and checks that one of gateways served it.
func filesVia(t *testing.T, p *portal, b *browser, res store.Resource, gateways ...string) {
	t.Helper()
	if code, body := b.get(fmt.Sprintf("/files/%d", res.ID)); code != http.StatusOK || !strings.Contains(body, "/home/") {
		t.Fatalf("files of %s: %d", res.Name, code)
	}
	evs, err := p.Store.SearchAudit(context.Background(), store.AuditFilter{Action: "file.list", Actor: "alice"})
	if err != nil || len(evs) == 0 {
		t.Fatalf("no file.list event: %v", err)
	}
	if gw := evs[0].Details["gateway"]; !slices.Contains(gateways, gw) {
		t.Fatalf("files of %s went through %q, want one of %v", res.Name, gw, gateways)
	}
}
