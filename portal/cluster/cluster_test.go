package cluster

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/store"
)

// failoverBound is the design's bound on a leader's failover.
const failoverBound = 30 * time.Second

// dsn is the URL of a test PostgreSQL.
func dsn(pg *targets.Postgres) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(pg.User, pg.Password), Host: pg.Addr(), Path: "/" + pg.Database, RawQuery: "sslmode=disable"}
	return u.String()
}

// newPostgres starts a PostgreSQL whose database the store has migrated,
// as `portal serve` does before it joins the cluster.
func newPostgres(t *testing.T) *targets.Postgres {
	t.Helper()
	pg := targets.NewPostgres(t)
	sealer, err := store.NewSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), dsn(pg), sealer)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	return pg
}

// leaderEvent is a member's change of leadership.
type leaderEvent struct {
	member  int
	leading bool
	at      time.Time
}

// join opens member i of a test cluster on pg, telling events of its
// leadership; it leaves the cluster when the test ends.
func join(t *testing.T, pg *targets.Postgres, i int, events chan<- leaderEvent) *Cluster {
	t.Helper()
	c, err := Open(context.Background(), Config{URL: dsn(pg), ID: fmt.Sprint("replica-", i), Address: fmt.Sprintf("127.0.0.1:%d", 9000+i),
		OnLeader: func(on bool) { events <- leaderEvent{member: i, leading: on, at: time.Now()} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// nextEvent waits for the next leadership event, failing after limit.
func nextEvent(t *testing.T, events <-chan leaderEvent, limit time.Duration) leaderEvent {
	t.Helper()
	select {
	case e := <-events:
		return e
	case <-time.After(limit):
		t.Fatalf("no leadership change within %s", limit)
		return leaderEvent{}
	}
}

// TestLeaderFailover: of three replicas on one PostgreSQL exactly one
// leads; when the leader's database connection is killed (as when its
// process dies) it steps down and another replica leads within 30 s; when
// a leader leaves (Close), another takes over as well.
func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	pg := newPostgres(t)
	events := make(chan leaderEvent, 16)
	members := make([]*Cluster, 3)
	for i := range members {
		members[i] = join(t, pg, i, events)
		members[i].Lead(nil)
	}
	first := nextEvent(t, events, failoverBound)
	if !first.leading {
		t.Fatalf("first event: member %d stopped leading", first.member)
	}
	replicas, err := members[0].Replicas(context.Background())
	if err != nil || len(replicas) != 3 {
		t.Fatalf("replicas %v, %v; want 3", replicas, err)
	}
	for i, m := range members {
		if m.Leading() != (i == first.member) {
			t.Fatalf("member %d leading=%v; the leader is %d", i, m.Leading(), first.member)
		}
	}

	// Kill the leader's connection from outside, as PostgreSQL sees a
	// process die.
	admin, err := pgx.Connect(context.Background(), dsn(pg))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	killed := time.Now()
	var n int
	if err := admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objid = $1 AND classid = $2`, LeaderLockKey&0xffffffff, LeaderLockKey>>32).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminate the leader's connection: %d killed, %v", n, err)
	}
	// The old leader may learn of its loss after another leads (at its
	// next ping), but it cannot act as leader in between.
	if err := members[first.member].LeaderExec(context.Background(), `SELECT 1`); err == nil {
		t.Fatal("the killed leader can still act as leader")
	}
	var stepped, took *leaderEvent
	for stepped == nil || took == nil {
		e := nextEvent(t, events, 2*failoverBound)
		switch {
		case !e.leading && e.member == first.member:
			stepped = &e
		case e.leading && e.member != first.member:
			took = &e
		case e.leading && e.member == first.member:
			// The old leader may win again only after it stepped down.
			if stepped == nil {
				t.Fatalf("member %d led again without stepping down", e.member)
			}
			took = &e
		case !e.leading && took != nil && e.member == took.member:
			t.Fatalf("the new leader %d stepped down", e.member)
		default:
			t.Fatalf("unexpected event %+v", e)
		}
	}
	took2 := took.at.Sub(killed)
	t.Logf("leader %d killed; member %d leads after %s (bound %s)", first.member, took.member, took2.Round(time.Millisecond), failoverBound)
	if took2 > failoverBound {
		t.Fatalf("failover took %s, over %s", took2, failoverBound)
	}
	if err := members[took.member].LeaderExec(context.Background(), `SELECT 1`); err != nil {
		t.Fatalf("the new leader cannot act as leader: %v", err)
	}

	// The leader leaves: another takes over.
	leader := took.member
	left := time.Now()
	members[leader].Close()
	e := nextEvent(t, events, failoverBound)
	if e.member != leader || e.leading {
		t.Fatalf("after Close: %+v", e)
	}
	e = nextEvent(t, events, 2*failoverBound)
	if !e.leading || e.member == leader {
		t.Fatalf("after the leader left: %+v", e)
	}
	if d := e.at.Sub(left); d > failoverBound {
		t.Fatalf("takeover after leaving took %s", d)
	}
	if replicas, _ := members[e.member].Replicas(context.Background()); len(replicas) != 2 {
		t.Fatalf("after one left: %d replicas", len(replicas))
	}
}

// TestJoinTogether: replicas starting at the same moment all join.
func TestJoinTogether(t *testing.T) {
	t.Parallel()
	pg := newPostgres(t)
	const n = 4
	errs := make(chan error, n)
	for i := range n {
		go func() {
			c, err := Open(context.Background(), Config{URL: dsn(pg), ID: fmt.Sprint("r", i), Address: "127.0.0.1:1"})
			if err == nil {
				t.Cleanup(c.Close)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestOpenNeedsMigratedDatabase: on a database the store has not
// migrated, joining fails saying so, and leaves nothing behind.
func TestOpenNeedsMigratedDatabase(t *testing.T) {
	t.Parallel()
	pg := targets.NewPostgres(t)
	_, err := Open(context.Background(), Config{URL: dsn(pg), ID: "r", Address: "127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "no cluster tables: open the store on it first") {
		t.Fatalf("open on an empty database: %v", err)
	}
}
