package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/portal/cluster"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/httpui"
	"github.com/keyway-dev/keyway/portal/store"
)

// clusterFlags registers the flags of cluster mode (several replicas on
// one PostgreSQL database).
func (c *serveConfig) clusterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ClusterListen, "cluster-listen", envOr("KEYWAY_CLUSTER_LISTEN", ":8444"), "in cluster mode, the address of the internal listener the other replicas call (mutual TLS with a key derived from the secrets key); keep it off the load balancer (env KEYWAY_CLUSTER_LISTEN)")
	fs.StringVar(&c.ClusterAdvertise, "cluster-advertise", envOr("KEYWAY_CLUSTER_ADVERTISE", ""), "in cluster mode, host:port where the other replicas reach --cluster-listen; default: this machine's first non-loopback address (env KEYWAY_CLUSTER_ADVERTISE)")
}

// clusterURL is the database the replicas coordinate through, "" for a
// portal alone: a portal on PostgreSQL is always a replica, the only one
// or one of several.
func (c *serveConfig) clusterURL() string {
	if store.IsPostgres(c.Database) {
		return c.Database
	}
	return ""
}

// replica is this process's part in a cluster; nil methods do nothing,
// so a portal alone carries a nil *replica.
type replica struct {
	c        *cluster.Cluster
	reg      *cluster.Registry
	ln       net.Listener
	internal *cluster.InternalServer
	logger   *slog.Logger
}

// joinCluster joins the cluster when cfg says so; nil otherwise. st is
// the store, already open (and so migrated) on the cluster's database.
func joinCluster(ctx context.Context, cfg serveConfig, st *store.Store, logger *slog.Logger) (*replica, error) {
	url := cfg.clusterURL()
	if url == "" {
		return nil, nil
	}
	key, err := loadSecretsKey(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.ClusterListen)
	if err != nil {
		return nil, fmt.Errorf("--cluster-listen %s: %w", cfg.ClusterListen, err)
	}
	advertise := cfg.ClusterAdvertise
	if advertise == "" {
		if advertise, err = defaultAdvertise(ln.Addr().(*net.TCPAddr)); err != nil {
			ln.Close()
			return nil, err
		}
	}
	// The sessions of a replica that stopped without ending them end in
	// the connection log when the others notice it is gone.
	gone := func(ctx context.Context, ids []string) error {
		n, err := st.EndSessionConnections(ctx, ids, time.Now())
		if n > 0 {
			logger.Warn("connection log: sessions of a replica that stopped beating are marked interrupted", "sessions", n)
		}
		return err
	}
	c, err := cluster.Open(ctx, cluster.Config{URL: url, Address: advertise, SecretsKey: key, Logger: logger, SessionsGone: gone})
	if err != nil {
		ln.Close()
		return nil, err
	}
	reg, err := cluster.NewRegistry(ctx, c)
	if err != nil {
		c.Close()
		ln.Close()
		return nil, err
	}
	return &replica{c: c, reg: reg, ln: ln, logger: logger}, nil
}

// defaultAdvertise is where other replicas reach a listener bound to a:
// a itself when bound to one address, else this machine's first address
// that is not loopback (a pod's IP).
func defaultAdvertise(a *net.TCPAddr) (string, error) {
	if !a.IP.IsUnspecified() {
		return a.String(), nil
	}
	for _, s := range listenAddresses(a) {
		host, _, err := net.SplitHostPort(s)
		if ip := net.ParseIP(host); err == nil && ip != nil && !ip.IsLoopback() {
			return s, nil
		}
	}
	return "", fmt.Errorf("--cluster-advertise: this machine has no address other replicas could reach --cluster-listen at (port %s); give one", strconv.Itoa(a.Port))
}

// deps puts the cluster into the web server's dependencies: its
// registry, and recordings whose upload lock holds across the replicas.
func (r *replica) deps(d *httpui.Deps) {
	if r != nil {
		d.Cluster = r.reg
		d.Recordings = r.c.Recordings(d.Recordings)
	}
}

// serve starts the internal listener for the other replicas.
func (r *replica) serve(ui *httpui.Server) {
	if r == nil {
		return
	}
	r.internal = cluster.ServeInternal(r.ln, r.c.Identity(), ui.ForwardedWatch, r.logger.With("component", "cluster"))
	r.logger.Info("cluster: internal listener", "listen", r.ln.Addr().String(), "advertise", r.c.Address(), "replica", r.c.ID())
}

// runHealth runs the gateways' health checks: alone, every gateway here;
// in a cluster, the leader's checks shared with the others.
func (r *replica) runHealth(ctx context.Context, wg *sync.WaitGroup, pool *gateways.Pool, ui *httpui.Server) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if r == nil {
			pool.RunHealth(ctx, gateways.DefaultHealth)
			return
		}
		// What an admin saves on another replica (gateways, the hook,
		// the trusted proxies) is taken up at each read.
		sync := func(ctx context.Context) error {
			if err := ui.SyncGateways(ctx); err != nil {
				return err
			}
			return ui.SyncSettings(ctx)
		}
		h := &cluster.Health{Cluster: r.c, Pool: pool, Config: gateways.DefaultHealth, Sync: sync}
		h.Run(ctx)
	}()
}

// close leaves the cluster: the internal listener stops, this replica's
// rows go.
func (r *replica) close() {
	if r == nil {
		return
	}
	if r.internal != nil {
		r.internal.Close()
	} else {
		r.ln.Close()
	}
	r.c.Close()
}
