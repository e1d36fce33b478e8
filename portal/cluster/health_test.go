package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/gateways"
)

// waitFor polls cond until it holds, failing after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		<-tick.C
	}
}

// TestHealthShared: of two replicas only the leader checks a remote
// gateway; the other shows the leader's result. Its own embedded gateway
// each replica checks itself.
func TestHealthShared(t *testing.T) {
	t.Parallel()
	pg := newPostgres(t)
	id, err := wire.LoadOrCreateIdentity(filepath.Join(t.TempDir(), "id.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, _, _ := ed25519.GenerateKey(rand.Reader)
	// Nothing listens on port 1: every check fails at once.
	remote := gateways.Gateway{ID: "7", Name: "far", Segment: "dmz", SSHAddr: "127.0.0.1:1", ManagementAddr: "127.0.0.1:1", Key: key}
	embedded := gateways.Gateway{ID: "1", Name: "embedded", Segment: "default", Embedded: true, SSHAddr: "127.0.0.1:1", ManagementAddr: "127.0.0.1:1", Key: key}
	cfg := gateways.HealthConfig{Interval: 500 * time.Millisecond, Attempts: 1, Timeout: time.Second, Parallel: 4}
	type member struct {
		c    *Cluster
		pool *gateways.Pool
	}
	var ms []member
	leaders := make(chan leaderEvent, 8)
	for i := range 2 {
		c := join(t, pg, i, leaders)
		pool := gateways.New(id, slog.New(slog.DiscardHandler), time.Second)
		pool.Set([]gateways.Gateway{remote, embedded})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		h := &Health{Cluster: c, Pool: pool, Config: cfg}
		go func() { defer close(done); h.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		ms = append(ms, member{c, pool})
	}
	e := nextEvent(t, leaders, failoverBound)
	follower := ms[1-e.member]
	state := func(p *gateways.Pool, id string) gateways.Health {
		for _, s := range p.Statuses() {
			if s.ID == id {
				return s.Health
			}
		}
		return gateways.Health{}
	}
	waitFor(t, 30*time.Second, "the follower shows the leader's result", func() bool {
		h := state(follower.pool, "7")
		return h.State == gateways.StateUnavailable && strings.Contains(h.LastError, "127.0.0.1:1")
	})
	waitFor(t, 30*time.Second, "the follower checks its embedded gateway", func() bool {
		return state(follower.pool, "1").State == gateways.StateUnavailable
	})
	var by string
	if err := follower.c.pool.QueryRow(context.Background(), `SELECT checked_by FROM cluster_gateway_health WHERE gateway_id = '7'`).Scan(&by); err != nil || by != ms[e.member].c.ID() {
		t.Fatalf("checked by %q (%v), want the leader %s", by, err, ms[e.member].c.ID())
	}
	var n int
	follower.c.pool.QueryRow(context.Background(), `SELECT count(*) FROM cluster_gateway_health WHERE gateway_id = '1'`).Scan(&n)
	if n != 0 {
		t.Fatal("the embedded gateway's health was shared")
	}
}
