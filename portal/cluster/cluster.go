// Package cluster lets several `portal serve` processes (replicas) behind
// a load balancer share one PostgreSQL database as one portal: each
// replica registers itself with a heartbeat (membership), one of them
// checks the gateways' health for all (the leader, by an advisory lock),
// the sessions running on every replica are listed and counted together
// (the registry), a terminate reaches the replica running the session (by
// NOTIFY), and a watch is forwarded to it over the replicas' internal
// listener, authenticated with a key every replica derives from the
// shared secrets key.
//
// A portal on SQLite is one process and uses none of this.
package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// Membership and failover timing. The leader's connection holds the lock;
// PostgreSQL releases it when that connection ends: at once when the
// leader's process dies (its kernel closes the socket), and within
// keepaliveIdle + keepaliveInterval×keepaliveCount (11 s) or
// tcpUserTimeout (10 s) when its machine vanishes. Followers try the lock
// every LeaderRetryInterval, so another replica leads within about 16 s,
// under the 30 s the design allows. A leader that can no longer reach the
// database steps down after LeaderPingInterval + leaderPingTimeout (4 s),
// before the server lets anyone else take the lock.
const (
	// HeartbeatInterval is how often a replica refreshes its row.
	HeartbeatInterval = 5 * time.Second
	// ReplicaTTL is how old a replica's heartbeat may get before the
	// others take it for dead and delete it with its sessions.
	ReplicaTTL = 30 * time.Second
	// LeaderRetryInterval is how often a follower tries to take the lead.
	LeaderRetryInterval = 5 * time.Second
	// LeaderPingInterval is how often the leader checks that its
	// connection, and so its lock, is still there.
	LeaderPingInterval = 2 * time.Second
	leaderPingTimeout  = 2 * time.Second

	// Server-side TCP settings of the lock and listen connections (set per
	// connection, no superuser needed).
	keepaliveIdle     = 5  // seconds
	keepaliveInterval = 2  // seconds
	keepaliveCount    = 3  // probes
	tcpUserTimeout    = 10 // seconds, as milliseconds below
)

// LeaderLockKey is the advisory lock (pg_try_advisory_lock) the leader
// holds: any constant unlikely to be used by something else sharing the
// database. Exported for tests that end the leader's connection.
const LeaderLockKey int64 = 0x6b65797761790001 // "keyway" 0001

// maxAddress bounds a replica's advertised address.
const maxAddress = 255

// Config is what a replica joins the cluster with.
type Config struct {
	// URL is the PostgreSQL connection URL (postgres://…).
	URL string
	// ID names this replica; empty makes one from the host name and a
	// random suffix, so a restarted process is a new replica.
	ID string
	// Address is host:port where the other replicas reach this one's
	// internal listener (--cluster-advertise).
	Address string
	// SecretsKey is the portal's secrets key, which every replica shares:
	// the replicas' internal connections are authenticated with a key
	// derived from it (PeerIdentity). Nil leaves them off (tests of the
	// registry alone).
	SecretsKey []byte
	Logger     *slog.Logger
	// OnLeader, if set, is told when this replica becomes the leader
	// (true) and stops being it (false).
	OnLeader func(leading bool)
	// SessionsGone, if set, is given the sessions of replicas that
	// stopped beating (crashed, killed, cut off) before their rows are
	// deleted, to end them in the connection log; an error keeps the rows
	// for the next heartbeat to try again.
	SessionsGone func(ctx context.Context, ids []string) error
}

// Cluster is this replica's membership. Close leaves the cluster.
type Cluster struct {
	cfg  Config
	pool *pgxpool.Pool
	// uploads counts the connections holding recordings' upload locks
	// (uploadlock.go).
	uploads chan struct{}
	// identity authenticates replicas to each other; nil without a
	// secrets key.
	identity *wire.Identity
	conn     *pgx.ConnConfig // for the dedicated connections
	logger   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// closeOnce makes Close safe to call again.
	closeOnce sync.Once

	mu sync.Mutex
	// revived are called when this replica's row had to be made again
	// (it was taken for dead while cut off from the database).
	revived []func(ctx context.Context)
	leading bool

	// lockMu guards lockConn, the leader's lock connection while this
	// replica leads (pgx connections are not safe for concurrent use).
	lockMu   sync.Mutex
	lockConn *pgx.Conn
}

// Open joins the cluster: it registers this replica and starts its
// heartbeat. It does not yet run for leader (see Lead). The cluster's
// tables are the store's migration 0016: open the store on the database
// first.
func Open(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = strings.Trim(host+"-"+strings.ToLower(rand.Text()[:8]), "-")
	}
	if cfg.Address == "" || len(cfg.Address) > maxAddress {
		return nil, fmt.Errorf("cluster: give the replica's internal address as host:port (at most %d characters)", maxAddress)
	}
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("cluster: internal address %q: %w", cfg.Address, err)
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("cluster: database URL: %w", err)
	}
	// The pool serves short queries; the lock and LISTEN have their own
	// connections.
	pcfg.MaxConns = 4
	setKeepalives(pcfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to the database: %w", err)
	}
	c := &Cluster{cfg: cfg, pool: pool, conn: pcfg.ConnConfig, logger: cfg.Logger.With("component", "cluster", "replica", cfg.ID),
		uploads: make(chan struct{}, maxUploadLocks)}
	if cfg.SecretsKey != nil {
		if c.identity, err = PeerIdentity(cfg.SecretsKey); err != nil {
			pool.Close()
			return nil, err
		}
	}
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	var tables bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('cluster_replicas') IS NOT NULL`).Scan(&tables); err != nil {
		c.closePool()
		return nil, fmt.Errorf("cluster: connect to the database: %w", err)
	}
	if !tables {
		c.closePool()
		return nil, errors.New("cluster: the database has no cluster tables: open the store on it first, which migrates it")
	}
	if _, err := c.heartbeat(ctx); err != nil {
		c.closePool()
		return nil, err
	}
	c.logger.Info("joined the cluster", "address", cfg.Address)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.runHeartbeat(c.ctx)
	}()
	return c, nil
}

// setKeepalives makes PostgreSQL notice a vanished client within seconds,
// not the system default of hours: its advisory lock and its sessions
// must not outlive it for long.
func setKeepalives(cc *pgx.ConnConfig) {
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["tcp_keepalives_idle"] = fmt.Sprint(keepaliveIdle)
	cc.RuntimeParams["tcp_keepalives_interval"] = fmt.Sprint(keepaliveInterval)
	cc.RuntimeParams["tcp_keepalives_count"] = fmt.Sprint(keepaliveCount)
	cc.RuntimeParams["tcp_user_timeout"] = fmt.Sprint(tcpUserTimeout * 1000)
	cc.RuntimeParams["application_name"] = "keyway-portal-cluster"
}

// ID is this replica's id.
func (c *Cluster) ID() string { return c.cfg.ID }

// Address is this replica's internal address.
func (c *Cluster) Address() string { return c.cfg.Address }

// Identity is the replicas' shared TLS identity (PeerIdentity), nil
// without a secrets key.
func (c *Cluster) Identity() *wire.Identity { return c.identity }

// Pool is the cluster's connection pool.
func (c *Cluster) Pool() *pgxpool.Pool { return c.pool }

// Close stops the heartbeat and the leadership, deletes this replica's
// row (and so its sessions' rows) and closes the connections.
func (c *Cluster) Close() { c.closeOnce.Do(c.close) }

func (c *Cluster) close() {
	c.cancel()
	c.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.pool.Exec(ctx, `DELETE FROM cluster_replicas WHERE id = $1`, c.cfg.ID); err != nil {
		c.logger.Warn("leave the cluster", "err", err)
	}
	c.closePool()
}

func (c *Cluster) closePool() {
	c.cancel()
	c.pool.Close()
}

// onRevive registers f to run after this replica's row was made again.
func (c *Cluster) onRevive(f func(ctx context.Context)) {
	c.mu.Lock()
	c.revived = append(c.revived, f)
	c.mu.Unlock()
}

// heartbeat refreshes this replica's row and deletes those of replicas
// that stopped beating (their sessions go with them). The database's
// clock decides, so replicas' clocks need not agree. revived is true when
// the row had to be made: it was gone.
func (c *Cluster) heartbeat(ctx context.Context) (revived bool, err error) {
	err = c.pool.QueryRow(ctx, `
		INSERT INTO cluster_replicas (id, address) VALUES ($1, $2)
		ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), address = EXCLUDED.address
		RETURNING xmax = 0`, c.cfg.ID, c.cfg.Address).Scan(&revived)
	if err != nil {
		return false, fmt.Errorf("cluster: heartbeat: %w", err)
	}
	if err := c.expire(ctx); err != nil {
		return revived, err
	}
	return revived, nil
}

// expire deletes the replicas that stopped beating, with their sessions'
// rows, once SessionsGone has ended those sessions. Several replicas may
// do it at once: ending a session twice changes nothing.
func (c *Cluster) expire(ctx context.Context) error {
	rows, err := c.pool.Query(ctx, `SELECT r.id, s.id FROM cluster_replicas r LEFT JOIN cluster_sessions s ON s.replica_id = r.id
		WHERE r.heartbeat_at < now() - make_interval(secs => $1)`, ReplicaTTL.Seconds())
	if err != nil {
		return fmt.Errorf("cluster: find expired replicas: %w", err)
	}
	var dead, sessions []string
	for rows.Next() {
		var replica string
		var session *string
		if err := rows.Scan(&replica, &session); err != nil {
			rows.Close()
			return fmt.Errorf("cluster: find expired replicas: %w", err)
		}
		if !slices.Contains(dead, replica) {
			dead = append(dead, replica)
		}
		if session != nil {
			sessions = append(sessions, *session)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cluster: find expired replicas: %w", err)
	}
	if len(dead) == 0 {
		return nil
	}
	if len(sessions) > 0 && c.cfg.SessionsGone != nil {
		if err := c.cfg.SessionsGone(ctx, sessions); err != nil {
			return fmt.Errorf("cluster: end the sessions of expired replicas %v: %w", dead, err)
		}
	}
	// Only those found above: a replica expiring since has its sessions
	// ended at the next heartbeat. One that beat again since is kept.
	tag, err := c.pool.Exec(ctx, `DELETE FROM cluster_replicas WHERE id = ANY($1) AND heartbeat_at < now() - make_interval(secs => $2)`,
		dead, ReplicaTTL.Seconds())
	if err != nil {
		return fmt.Errorf("cluster: expire replicas: %w", err)
	}
	if n := tag.RowsAffected(); n > 0 {
		c.logger.Warn("replicas stopped beating: removed, their sessions ended", "replicas", dead, "sessions", len(sessions), "ttl", ReplicaTTL)
	}
	return nil
}

func (c *Cluster) runHeartbeat(ctx context.Context) {
	tick := time.NewTicker(HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		hctx, cancel := context.WithTimeout(ctx, HeartbeatInterval)
		revived, err := c.heartbeat(hctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				c.logger.Error("cluster heartbeat failed", "err", err)
			}
			continue
		}
		if revived {
			c.logger.Warn("this replica was taken for dead while cut off from the database: registering its sessions again")
			c.mu.Lock()
			fs := append([]func(context.Context){}, c.revived...)
			c.mu.Unlock()
			for _, f := range fs {
				f(ctx)
			}
		}
	}
}

// Replica is a member of the cluster.
type Replica struct {
	ID, Address string
	Heartbeat   time.Time
}

// Replicas lists the live members, this one included.
func (c *Cluster) Replicas(ctx context.Context) ([]Replica, error) {
	rows, err := c.pool.Query(ctx, `SELECT id, address, heartbeat_at FROM cluster_replicas
		WHERE heartbeat_at >= now() - make_interval(secs => $1) ORDER BY id`, ReplicaTTL.Seconds())
	if err != nil {
		return nil, fmt.Errorf("cluster: list replicas: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Replica, error) {
		var x Replica
		return x, r.Scan(&x.ID, &x.Address, &x.Heartbeat)
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: list replicas: %w", err)
	}
	return out, nil
}

// address is the internal address of replica id.
func (c *Cluster) address(ctx context.Context, id string) (string, error) {
	var addr string
	err := c.pool.QueryRow(ctx, `SELECT address FROM cluster_replicas WHERE id = $1`, id).Scan(&addr)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("replica %s has left the cluster", id)
	}
	if err != nil {
		return "", fmt.Errorf("look up replica %s: %w", id, err)
	}
	return addr, nil
}
