package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyway-dev/keyway/portal/sessions"
)

// notifyChannel is the LISTEN/NOTIFY channel the replicas talk on.
const notifyChannel = "keyway_cluster"

// Limits of what goes through the registry.
const (
	// maxNotify is PostgreSQL's bound on a NOTIFY payload (8000 bytes,
	// less than its 8000-byte limit by design); a terminate is far
	// smaller, its reason cut to maxReason.
	maxNotify = 7900
	maxReason = 1000
	// maxListed bounds the other replicas' sessions one listing reads.
	maxListed = 10_000
	// listenRetry is the wait before the listening connection is made
	// again after it broke.
	listenRetry = 2 * time.Second
)

// userLockClass namespaces the per-user advisory locks that make a cap
// check and its insert one step across replicas.
const userLockClass int32 = 0x6b77 // "kw"

// Registry is the cluster's list of running sessions: a
// sessions.Registry on PostgreSQL. Terminates reach the replica running
// the session by NOTIFY.
type Registry struct {
	c *Cluster

	mu sync.Mutex
	// local are the sessions this replica registered, made again if its
	// replica row (and with it their rows) was deleted while it was cut
	// off from the database.
	local map[string]sessions.Entry
	// here is this replica's session manager.
	here sessions.Local
	// transport reaches the other replicas' internal listeners; nil
	// without the replicas' key.
	transport *http.Transport
}

// NewRegistry returns the cluster's registry and starts listening for
// terminates addressed to this replica; it returns once it listens.
// What other replicas ask of this one goes to the Manager given to
// SetLocal.
func NewRegistry(ctx context.Context, c *Cluster) (*Registry, error) {
	r := &Registry{c: c, local: map[string]sessions.Entry{}}
	if c.identity != nil {
		r.transport = peerTransport(c.identity)
	}
	conn, err := r.listen(ctx)
	if err != nil {
		return nil, err
	}
	c.onRevive(r.revive)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		r.runListen(c.ctx, conn)
	}()
	return r, nil
}

// SetLocal sets this replica's session manager, which ends the sessions
// other replicas ask to end.
func (r *Registry) SetLocal(l sessions.Local) {
	r.mu.Lock()
	r.here = l
	r.mu.Unlock()
}

// Acquire implements sessions.Registry: the cap check and the insert run
// under the user's advisory lock, so two replicas cannot both admit the
// user's last allowed session. Sessions of replicas past their TTL do not
// count.
func (r *Registry) Acquire(ctx context.Context, e sessions.Entry, max int) (bool, error) {
	info, err := json.Marshal(e)
	if err != nil {
		return false, fmt.Errorf("register session %s: %w", e.ID, err)
	}
	ok := false
	err = pgx.BeginFunc(ctx, r.c.pool, func(tx pgx.Tx) error {
		if max > 0 && e.Counted() {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, userLockClass, int32(e.UserID)); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, countSQL, e.UserID, ReplicaTTL.Seconds()).Scan(&n); err != nil {
				return err
			}
			if n >= max {
				return nil
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO cluster_sessions (id, replica_id, user_id, counted, started_at, info)
			VALUES ($1, $2, $3, $4, $5, $6)`, e.ID, r.c.cfg.ID, e.UserID, e.Counted(), e.Start, info)
		ok = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("register session %s: %w", e.ID, err)
	}
	if ok {
		r.mu.Lock()
		r.local[e.ID] = e
		r.mu.Unlock()
	}
	return ok, nil
}

// countSQL counts a user's counted sessions on live replicas.
const countSQL = `SELECT count(*) FROM cluster_sessions s JOIN cluster_replicas r ON r.id = s.replica_id
	WHERE s.user_id = $1 AND s.counted AND r.heartbeat_at >= now() - make_interval(secs => $2)`

// Release implements sessions.Registry.
func (r *Registry) Release(ctx context.Context, id string) {
	r.mu.Lock()
	delete(r.local, id)
	r.mu.Unlock()
	if _, err := r.c.pool.Exec(ctx, `DELETE FROM cluster_sessions WHERE id = $1 AND replica_id = $2`, id, r.c.cfg.ID); err != nil {
		// The row goes with this replica's at the latest.
		r.c.logger.Error("unregister session", "session", id, "err", err)
	}
}

// Count implements sessions.Registry.
func (r *Registry) Count(ctx context.Context, userID int64) (int, error) {
	var n int
	if err := r.c.pool.QueryRow(ctx, countSQL, userID, ReplicaTTL.Seconds()).Scan(&n); err != nil {
		return 0, fmt.Errorf("count sessions of user %d: %w", userID, err)
	}
	return n, nil
}

// Remote implements sessions.Registry: the sessions of the other live
// replicas.
func (r *Registry) Remote(ctx context.Context) ([]sessions.Entry, error) {
	rows, err := r.c.pool.Query(ctx, `SELECT s.replica_id, s.info FROM cluster_sessions s JOIN cluster_replicas r ON r.id = s.replica_id
		WHERE s.replica_id <> $1 AND r.heartbeat_at >= now() - make_interval(secs => $2)
		ORDER BY s.started_at DESC LIMIT $3`, r.c.cfg.ID, ReplicaTTL.Seconds(), maxListed)
	if err != nil {
		return nil, fmt.Errorf("list the other replicas' sessions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (sessions.Entry, error) {
		var replica string
		var info []byte
		if err := row.Scan(&replica, &info); err != nil {
			return sessions.Entry{}, err
		}
		var e sessions.Entry
		if err := json.Unmarshal(info, &e); err != nil {
			return e, fmt.Errorf("session of replica %s: %w", replica, err)
		}
		e.Replica = replica
		return e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the other replicas' sessions: %w", err)
	}
	return out, nil
}

// message is what replicas NOTIFY each other.
type message struct {
	Type string `json:"type"` // "terminate", "signed_out"
	// Replica is the replica a terminate is for, the sender of a
	// sign-out.
	Replica string `json:"replica"`
	// Token is the hash of the token that signed out.
	Token   string `json:"token,omitempty"`
	Session string `json:"session"`
	Code    string `json:"code,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Terminate implements sessions.Registry: it tells the replica running e
// to end it. Delivery is not confirmed: a replica that is gone has no
// session left to end.
func (r *Registry) Terminate(ctx context.Context, e sessions.Entry, code, reason string) error {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	if err := r.notify(ctx, message{Type: "terminate", Replica: e.Replica, Session: e.ID, Code: code, Reason: reason}); err != nil {
		return fmt.Errorf("terminate %s on replica %s: %w", e.ID, e.Replica, err)
	}
	return nil
}

// SignedOut implements sessions.Registry.
func (r *Registry) SignedOut(ctx context.Context, tokenHash string) error {
	return r.notify(ctx, message{Type: "signed_out", Replica: r.c.cfg.ID, Token: tokenHash})
}

// notify sends m to every replica.
func (r *Registry) notify(ctx context.Context, m message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > maxNotify {
		return fmt.Errorf("notify: message of %d bytes is over %d", len(b), maxNotify)
	}
	if _, err := r.c.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, string(b)); err != nil {
		return fmt.Errorf("notify the other replicas: %w", err)
	}
	return nil
}

// listen opens the listening connection.
func (r *Registry) listen(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, r.c.conn.Copy())
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to listen: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("cluster: listen: %w", err)
	}
	return conn, nil
}

// runListen handles notifications until ctx ends, making the connection
// again when it breaks. What is sent while it is down is lost: an admin
// sees the session still listed and ends it again.
func (r *Registry) runListen(ctx context.Context, conn *pgx.Conn) {
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			var err error
			if conn, err = r.listen(ctx); err != nil {
				if ctx.Err() == nil {
					r.c.logger.Warn("cluster: listen for terminates", "err", err)
				}
				t := time.NewTimer(listenRetry)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
				continue
			}
		}
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.c.logger.Warn("cluster: listening connection broke", "err", err)
			}
			conn.Close(context.Background())
			conn = nil
			continue
		}
		r.handle(n.Payload)
	}
}

// handle acts on one notification.
func (r *Registry) handle(payload string) {
	var m message
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		r.c.logger.Warn("cluster: unreadable notification", "err", err)
		return
	}
	r.mu.Lock()
	here := r.here
	r.mu.Unlock()
	if here == nil {
		return
	}
	if m.Type == "signed_out" && m.Replica != r.c.cfg.ID {
		here.EndSignedOutHash(m.Token)
		return
	}
	if m.Type != "terminate" || m.Replica != r.c.cfg.ID {
		return
	}
	if !here.TerminateLocal(m.Session, m.Code, m.Reason) {
		r.c.logger.Info("terminate from another replica: no such session here", "session", m.Session)
		return
	}
	r.c.logger.Info("session ended at another replica's request", "session", m.Session, "code", m.Code)
}

// revive registers this replica's sessions again after its row was made
// again.
func (r *Registry) revive(ctx context.Context) {
	r.mu.Lock()
	local := make([]sessions.Entry, 0, len(r.local))
	for _, e := range r.local {
		local = append(local, e)
	}
	r.mu.Unlock()
	for _, e := range local {
		info, _ := json.Marshal(e)
		_, err := r.c.pool.Exec(ctx, `INSERT INTO cluster_sessions (id, replica_id, user_id, counted, started_at, info)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`, e.ID, r.c.cfg.ID, e.UserID, e.Counted(), e.Start, info)
		if err != nil && !errors.Is(err, context.Canceled) {
			r.c.logger.Error("register session again", "session", e.ID, "err", err)
		}
	}
}

var _ sessions.Registry = (*Registry)(nil)
