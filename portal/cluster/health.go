package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/gateways"
)

// HealthReadInterval is how often a replica that does not lead reads the
// leader's health results, and reloads what admins may have changed on
// another replica (Health.Sync).
const HealthReadInterval = 5 * time.Second

// maxHealthRows bounds the health rows one read takes.
const maxHealthRows = 10_000

// Health shares the gateways' health: the leader checks every remote
// gateway and writes the results, the others read them; every replica
// checks its own embedded gateway, which only it can reach.
type Health struct {
	Cluster *Cluster
	Pool    *gateways.Pool
	Config  gateways.HealthConfig
	// Sync, if set, reloads the gateways (and the settings) from the
	// database before each read: an admin's change on another replica
	// reaches this one within HealthReadInterval.
	Sync func(ctx context.Context) error
}

// Run runs the health sharing until ctx ends: it runs for leader (Lead),
// so call it once per Cluster.
func (h *Health) Run(ctx context.Context) {
	// A change of the gateways (Pool.CheckRequests) wakes both the local
	// checks and, on the leader, the remote ones.
	wakeLocal, wakeLead := make(chan struct{}, 1), make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-h.Pool.CheckRequests():
				for _, c := range []chan struct{}{wakeLocal, wakeLead} {
					select {
					case c <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		h.every(ctx, h.Config.Interval, wakeLocal, func(ctx context.Context) {
			h.Pool.CheckWhere(ctx, h.Config, func(g gateways.Gateway) bool { return g.Embedded })
		})
	}()
	go func() {
		defer wg.Done()
		h.every(ctx, HealthReadInterval, nil, h.follow)
	}()
	h.Cluster.Lead(func(lctx context.Context) {
		h.every(lctx, h.Config.Interval, wakeLead, h.lead)
	})
	wg.Wait()
}

// every runs f now, then every d and whenever wake fires, until ctx ends.
func (h *Health) every(ctx context.Context, d time.Duration, wake <-chan struct{}, f func(ctx context.Context)) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		f(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-wake:
		}
	}
}

// lead checks the remote gateways and writes what it found, through the
// leader's lock connection.
func (h *Health) lead(ctx context.Context) {
	remote := func(g gateways.Gateway) bool { return !g.Embedded }
	h.Pool.CheckWhere(ctx, h.Config, remote)
	for _, st := range h.Pool.Statuses() {
		if st.Embedded || len(st.Key) == 0 || st.State == gateways.StateChecking || st.State == gateways.StatePending {
			continue
		}
		var last *time.Time
		if !st.LastCheck.IsZero() {
			last = &st.LastCheck
		}
		err := h.Cluster.LeaderExec(ctx, `INSERT INTO cluster_gateway_health
			(gateway_id, key_fingerprint, state, last_check, last_error, version, uptime_seconds, active_sessions, checked_by, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
			ON CONFLICT (gateway_id) DO UPDATE SET key_fingerprint = EXCLUDED.key_fingerprint, state = EXCLUDED.state,
				last_check = EXCLUDED.last_check, last_error = EXCLUDED.last_error, version = EXCLUDED.version,
				uptime_seconds = EXCLUDED.uptime_seconds, active_sessions = EXCLUDED.active_sessions,
				checked_by = EXCLUDED.checked_by, updated_at = now()`,
			st.ID, wire.Fingerprint(st.Key), string(st.State), last, st.LastError, st.Version,
			int64(st.Uptime/time.Second), st.ActiveSessions, h.Cluster.ID())
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, ErrNotLeader) {
				h.Cluster.logger.Error("write gateway health", "gateway", st.Name, "err", err)
			}
			return
		}
	}
}

// follow reloads the gateways and, unless this replica leads, applies the
// leader's results to them.
func (h *Health) follow(ctx context.Context) {
	if h.Sync != nil {
		if err := h.Sync(ctx); err != nil && ctx.Err() == nil {
			h.Cluster.logger.Error("reload gateways and settings", "err", err)
		}
	}
	if h.Cluster.Leading() {
		return
	}
	rows, err := h.Cluster.pool.Query(ctx, `SELECT gateway_id, key_fingerprint, state, last_check, last_error, version,
		uptime_seconds, active_sessions FROM cluster_gateway_health LIMIT $1`, maxHealthRows)
	if err != nil {
		if ctx.Err() == nil {
			h.Cluster.logger.Error("read gateway health", "err", err)
		}
		return
	}
	type row struct {
		id, fp string
		h      gateways.Health
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		var state string
		var last *time.Time
		var uptime int64
		err := r.Scan(&x.id, &x.fp, &state, &last, &x.h.LastError, &x.h.Version, &uptime, &x.h.ActiveSessions)
		x.h.State, x.h.Uptime = gateways.State(state), time.Duration(uptime)*time.Second
		if last != nil {
			x.h.LastCheck = *last
		}
		return x, err
	})
	if err != nil {
		if ctx.Err() == nil {
			h.Cluster.logger.Error("read gateway health", "err", err)
		}
		return
	}
	byID := map[string]row{}
	for _, r := range got {
		byID[r.id] = r
	}
	for _, st := range h.Pool.Statuses() {
		r, ok := byID[st.ID]
		if st.Embedded || !ok || len(st.Key) == 0 || r.fp != wire.Fingerprint(st.Key) {
			continue
		}
		h.Pool.SetHealth(st.ID, r.h)
	}
}
