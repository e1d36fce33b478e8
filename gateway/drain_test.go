package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// TestDrain: a draining gateway refuses new sessions and relays with
// gateway_draining, says so with its deadline on /status and fails
// /readyz (not /livez), while a session running through it goes on;
// WaitIdle returns once that session ends.
func TestDrain(t *testing.T) {
	t.Parallel()
	sshd := targets.NewSSHD(t)
	g := startGatewayConfig(t, func(c *Config) {
		c.HealthAddr = "127.0.0.1:0"
		c.RelayAddresses = func() []string { return []string{"127.0.0.1:1"} }
	})
	s, resp := g.open(t, sshRequest(sshd))
	if !resp.OK {
		t.Fatalf("refused: %+v", resp)
	}
	s.send("echo before-$((6*7))\n")
	s.waitFor("before-42")

	deadline := time.Now().Add(time.Hour).Truncate(time.Second)
	if !g.Drain(deadline) || g.Drain(deadline) {
		t.Fatal("Drain must start once")
	}
	for _, req := range []*wire.Request{
		sshRequest(sshd),
		{Kind: wire.KindRelay, Relay: &wire.Relay{GatewayID: "2", Address: "127.0.0.1:1"}},
	} {
		_, resp := g.open(t, req)
		if resp.OK || resp.Code != wire.CodeDraining || !strings.Contains(resp.Message, "restarting") {
			t.Fatalf("%s while draining: %+v", req.Kind, resp)
		}
	}
	if code, st := g.status(t); code != http.StatusServiceUnavailable || !strings.HasPrefix(st.Error, "draining") || !st.DrainDeadline.Equal(deadline) {
		t.Fatalf("status while draining: %d %+v", code, st)
	}
	if live, ready := g.probe(t, "/livez"), g.probe(t, "/readyz"); live != 200 || ready != 503 {
		t.Fatalf("probes while draining: livez %d, readyz %d", live, ready)
	}
	if g.Ready() == nil {
		t.Fatal("Ready is nil while draining")
	}
	// The running session goes on.
	s.send("echo during-$((6*7))\n")
	s.waitFor("during-42")
	if g.ActiveSessions() != 1 {
		t.Fatalf("%d sessions running, want 1", g.ActiveSessions())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := g.WaitIdle(ctx); err == nil {
		t.Fatal("WaitIdle returned with a session running")
	}
	cancel()
	done := make(chan error, 1)
	go func() { done <- g.WaitIdle(context.Background()) }()
	s.send("exit\n")
	s.waitExit()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("WaitIdle did not return after the session ended")
	}
}
