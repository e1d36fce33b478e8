package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotLeader is LeaderExec's answer on a replica that does not hold the
// leader's lock.
var ErrNotLeader = errors.New("this replica is not the leader")

// LeaderExec runs sql on the connection that holds the leader's lock, so
// it fails once that connection is gone: a leader that lost the lock but
// has not noticed yet (until its next ping) cannot write as leader.
func (c *Cluster) LeaderExec(ctx context.Context, sql string, args ...any) error {
	c.lockMu.Lock()
	defer c.lockMu.Unlock()
	if c.lockConn == nil {
		return ErrNotLeader
	}
	_, err := c.lockConn.Exec(ctx, sql, args...)
	return err
}

// Lead runs for leader: while this replica holds the leader's advisory
// lock, f runs with a context that ends when it loses the lock (its
// connection broke) or the cluster closes. Call it once; f may be nil.
func (c *Cluster) Lead(f func(ctx context.Context)) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.runElection(c.ctx, f)
	}()
}

// Leading reports whether this replica leads now.
func (c *Cluster) Leading() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leading
}

// runElection tries the lock every LeaderRetryInterval on a connection of
// its own: the lock lives as long as that connection.
func (c *Cluster) runElection(ctx context.Context, f func(ctx context.Context)) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	wait := func() bool {
		t := time.NewTimer(LeaderRetryInterval)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, LeaderRetryInterval)
			var err error
			conn, err = pgx.ConnectConfig(cctx, c.conn.Copy())
			cancel()
			if err != nil {
				conn = nil
				if ctx.Err() == nil {
					c.logger.Warn("leader election: connect to the database", "err", err)
				}
				if !wait() {
					return
				}
				continue
			}
		}
		var got bool
		qctx, cancel := context.WithTimeout(ctx, LeaderRetryInterval)
		err := conn.QueryRow(qctx, `SELECT pg_try_advisory_lock($1)`, LeaderLockKey).Scan(&got)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				c.logger.Warn("leader election: try the lock", "err", err)
			}
			conn.Close(context.Background())
			conn = nil
		} else if got {
			c.lead(ctx, conn, f)
			// The lock may be gone with the connection, or held still if
			// only a ping timed out: a new connection starts afresh.
			conn.Close(context.Background())
			conn = nil
		}
		if !wait() {
			return
		}
	}
}

// lead runs f while the lock's connection answers pings.
func (c *Cluster) lead(ctx context.Context, conn *pgx.Conn, f func(ctx context.Context)) {
	c.lockMu.Lock()
	c.lockConn = conn
	c.lockMu.Unlock()
	c.setLeading(true)
	c.logger.Info("this replica leads: it checks the gateways' health")
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if f != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lctx)
		}()
	}
	defer func() {
		stop()
		wg.Wait()
		c.lockMu.Lock()
		c.lockConn = nil
		c.lockMu.Unlock()
		c.setLeading(false)
	}()
	tick := time.NewTicker(LeaderPingInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pctx, cancel := context.WithTimeout(ctx, leaderPingTimeout)
		c.lockMu.Lock()
		err := conn.Ping(pctx)
		c.lockMu.Unlock()
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				c.logger.Error("lost the leader's lock: its database connection broke; stepping down", "err", err)
			}
			return
		}
	}
}

func (c *Cluster) setLeading(on bool) {
	c.mu.Lock()
	c.leading = on
	c.mu.Unlock()
	if c.cfg.OnLeader != nil {
		c.cfg.OnLeader(on)
	}
}
