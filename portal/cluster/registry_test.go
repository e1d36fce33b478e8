package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/authz"
	"github.com/keyway-dev/keyway/portal/clientinfo"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/sessions"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/portal/store/storetest"
)

// replica is one portal replica of a test: its membership, registry and
// session manager, on the test's shared store and PostgreSQL.
type replica struct {
	c   *Cluster
	reg *Registry
	m   *sessions.Manager
}

func newReplica(t *testing.T, pg *targets.Postgres, st *store.Store, name string) *replica {
	t.Helper()
	ctx := context.Background()
	// As cmd/portal wires it: the sessions of a crashed replica end in
	// the connection log.
	gone := func(ctx context.Context, ids []string) error {
		_, err := st.EndSessionConnections(ctx, ids, time.Now())
		return err
	}
	c, err := Open(ctx, Config{URL: dsn(pg), ID: name, Address: "127.0.0.1:1", SessionsGone: gone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	reg, err := NewRegistry(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	id, err := wire.LoadOrCreateIdentity(filepath.Join(t.TempDir(), "id.pem"))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	m := sessions.New(sessions.Deps{Store: st, Authz: authz.New(st), Gateways: gateways.New(id, logger, 5*time.Second),
		Logger: logger, Registry: reg})
	reg.SetLocal(m)
	return &replica{c: c, reg: reg, m: m}
}

// crash stops a replica as a killed process stops: no goodbye, its rows
// stay until they expire.
func (r *replica) crash() {
	r.c.closeOnce.Do(func() {
		r.c.cancel()
		r.c.wg.Wait()
		r.c.pool.Close()
	})
}

// TestRegistryAcrossReplicas: a terminal running on replica A is listed
// on replica B (watchable), counts against its user's cap there, and B's
// terminate ends it on A; the sessions of a replica that died are
// removed with it.
func TestRegistryAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg := newPostgres(t)
	st := storetest.Open(t)
	user, err := st.CreateUser(ctx, store.User{Name: "ann", Role: store.RoleUser}, "x")
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.CreateResource(ctx, store.Resource{Name: "web", Protocol: "ssh", Host: "127.0.0.1", Port: 1}, &store.Secrets{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateGrantMode(ctx, res.ID, "user", user.ID, store.GrantBoth); err != nil {
		t.Fatal(err)
	}
	a, b := newReplica(t, pg, st, "a"), newReplica(t, pg, st, "b")

	portalEnd, userEnd := net.Pipe()
	t.Cleanup(func() { portalEnd.Close(); userEnd.Close() })
	term := a.m.AddForTest("T1", user, res, sessions.KindTerminal, portalEnd)

	listed := b.m.Find(ctx, "T1")
	if listed == nil || listed.Replica != "a" || !listed.Watchable() || listed.User.Name != "ann" || listed.Resource.Name != "web" {
		t.Fatalf("replica b lists %+v", listed)
	}
	if all := b.m.All(ctx); len(all) != 1 || len(b.m.Live()) != 0 {
		t.Fatalf("replica b: %d listed, %d live", len(all), len(b.m.Live()))
	}

	// The cap counts A's sessions on B: with MaxPerUser running on A, B
	// refuses the next before it looks for a gateway.
	for i := 1; i < sessions.MaxPerUser; i++ {
		p, q := net.Pipe()
		t.Cleanup(func() { p.Close(); q.Close() })
		a.m.AddForTest(fmt.Sprint("F", i), user, res, sessions.KindTerminal, p)
	}
	_, err = b.m.Start(ctx, sessions.Request{User: user, ResourceID: res.ID, Kind: sessions.KindTerminal, Client: clientinfo.Info{Addr: "192.0.2.7"}})
	var ref *sessions.Refusal
	if !errors.As(err, &ref) || ref.Code != "too_many_sessions" {
		t.Fatalf("replica b with %d sessions on a: %v", sessions.MaxPerUser, err)
	}

	// B ends A's terminal: A cuts its connection.
	if ended := b.m.Terminate("boss", sessions.Filter{ID: "T1"}); len(ended) != 1 || ended[0].User.Name != "ann" {
		t.Fatalf("terminate from b ended %d", len(ended))
	}
	userEnd.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = userEnd.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
		t.Fatalf("a's terminal still open 30 s after b's terminate: %v", err)
	}
	term.End("terminated", "")
	if b.m.Find(ctx, "T1") != nil {
		t.Fatal("an ended session is still listed on b")
	}

	// Signing out on B ends the sessions opened from that sign-in on A.
	fromWeb, webUser := net.Pipe()
	t.Cleanup(func() { fromWeb.Close(); webUser.Close() })
	a.m.AddForTest("T2", user, res, sessions.KindTerminal, fromWeb).SetWebTokenForTest("sign-in-token")
	b.m.EndSignedOut("sign-in-token")
	webUser.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = webUser.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
		t.Fatalf("a's session still open after signing out on b: %v", err)
	}
	a.m.Get("T2").End("signed out", "")

	// A replica that dies leaves its sessions until its heartbeat is past
	// the TTL; then any other replica's heartbeat removes them, and ends
	// them in the connection log (a's still running; b's untouched).
	if n, _ := b.reg.Count(ctx, user.ID); n != sessions.MaxPerUser-1 {
		t.Fatalf("b counts %d of ann's sessions", n)
	}
	var conns []int64
	for i := 1; i < sessions.MaxPerUser; i++ {
		id, err := st.AddConnection(ctx, store.Connection{SessionID: fmt.Sprint("F", i), Start: time.Now(), User: "ann", Result: store.ConnectionConnected})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, id)
	}
	bSession, bEnd := net.Pipe()
	t.Cleanup(func() { bSession.Close(); bEnd.Close() })
	b.m.AddForTest("B1", user, res, sessions.KindTerminal, bSession)
	bConn, err := st.AddConnection(ctx, store.Connection{SessionID: "B1", Start: time.Now(), User: "ann", Result: store.ConnectionConnected})
	if err != nil {
		t.Fatal(err)
	}
	a.crash()
	if _, err := b.c.pool.Exec(ctx, `UPDATE cluster_replicas SET heartbeat_at = now() - interval '1 hour' WHERE id = 'a'`); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.reg.Count(ctx, user.ID); n != 1 { // b's own
		t.Fatalf("sessions of a dead replica still count: %d counted, want b's 1", n)
	}
	if _, err := b.c.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := b.c.pool.QueryRow(ctx, `SELECT count(*) FROM cluster_sessions WHERE replica_id = 'a'`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%d session rows left of the dead replica (%v)", rows, err)
	}
	for _, id := range conns {
		if c, err := st.ConnectionByID(ctx, id); err != nil || c.Running() || c.Reason != store.ReasonInterrupted {
			t.Errorf("the dead replica's session %s in the connection log: %+v %v", c.SessionID, c, err)
		}
	}
	if c, _ := st.ConnectionByID(ctx, bConn); !c.Running() {
		t.Errorf("b's running session ended with a's: %+v", c)
	}
}

// TestCapRace: two replicas admitting the same user's last allowed
// session at once admit exactly one.
func TestCapRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg := newPostgres(t)
	st := storetest.Open(t)
	a, b := newReplica(t, pg, st, "a"), newReplica(t, pg, st, "b")
	const max = 3
	for i := range max - 1 {
		if ok, err := a.reg.Acquire(ctx, sessions.Entry{ID: fmt.Sprint("S", i), Kind: sessions.KindTerminal, UserID: 7, Start: time.Now()}, max); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	for round := range 10 {
		var wg sync.WaitGroup
		got := make([]bool, 2)
		for i, r := range []*replica{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := r.reg.Acquire(ctx, sessions.Entry{ID: fmt.Sprint("R", round, "-", i), Kind: sessions.KindTerminal, UserID: 7, Start: time.Now()}, max)
				if err != nil {
					t.Error(err)
				}
				got[i] = ok
			}()
		}
		wg.Wait()
		if got[0] == got[1] {
			t.Fatalf("round %d: both admitted=%v", round, got[0])
		}
		// A tunnel stream does not count.
		if ok, err := a.reg.Acquire(ctx, sessions.Entry{ID: fmt.Sprint("T", round), Kind: sessions.KindTCP, UserID: 7, Start: time.Now()}, max); !ok || err != nil {
			t.Fatalf("tunnel stream refused: %v %v", ok, err)
		}
		for i, r := range []*replica{a, b} {
			if got[i] {
				r.reg.Release(ctx, fmt.Sprint("R", round, "-", i))
			}
		}
	}
}
