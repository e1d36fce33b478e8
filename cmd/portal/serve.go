package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keyway-dev/keyway/gateway"
	"github.com/keyway-dev/keyway/gateway/control"
	"github.com/keyway-dev/keyway/gateway/metrics"
	"github.com/keyway-dev/keyway/gateway/shutdown"
	"github.com/keyway-dev/keyway/gateway/tlsconf"
	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/authz"
	"github.com/keyway-dev/keyway/portal/certs"
	"github.com/keyway-dev/keyway/portal/clientinfo"
	"github.com/keyway-dev/keyway/portal/exports"
	"github.com/keyway-dev/keyway/portal/gateways"
	connhook "github.com/keyway-dev/keyway/portal/hook"
	"github.com/keyway-dev/keyway/portal/httpui"
	"github.com/keyway-dev/keyway/portal/objstore"
	"github.com/keyway-dev/keyway/portal/retention"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/recordings/storage"
	"github.com/keyway-dev/keyway/recordings/video"
	"github.com/keyway-dev/keyway/web/assets"
)

// serveConfig is what `portal serve` is configured with.
type serveConfig struct {
	DataDir string
	// Database is a postgres:// URL; empty is the SQLite file in DataDir.
	Database      string
	Listen        string
	PublicURL     string
	TLSCert       string
	TLSKey        string
	SecretsKey    string
	GatewayListen string
	// GatewayRDPListen and GatewayVNCListen are the embedded gateway's RDP
	// and VNC listeners; empty shares GatewayListen.
	GatewayRDPListen string
	GatewayVNCListen string
	LogLevel         string
	// Retention is how long recordings and the connection log are kept
	// ("90d", "2160h"); empty or 0 keeps them forever.
	Retention string
	// KeyFrames is the least time between key frames of the embedded
	// gateway's desktop recordings: shorter seeks faster, longer is
	// smaller.
	KeyFrames time.Duration
	// GatewayTokenLifetime is how long gateways' access tokens live (at
	// most 30 days; 0 means 30 days).
	GatewayTokenLifetime time.Duration
	// ExportsMaxMB bounds the MiB of video exports of desktop recordings
	// kept in DATA/exports; empty or "0" keeps them all (until their
	// recording goes).
	ExportsMaxMB string
	// TLSNextCert is a certificate with a new key the portal will serve
	// next; gateways learn its key from their signed configs.
	TLSNextCert string
	// ClientsDir holds the native client builds the Account page offers;
	// empty is "clients" next to the portal executable.
	ClientsDir string
	// TLSMinVersion ("1.2" or "1.3"), TLSServerCiphers and
	// TLSClientCiphers (comma-separated TLS 1.2 suites; empty: Go's) are
	// parsed by tlsSettings.
	TLSMinVersion    string
	TLSServerCiphers string
	TLSClientCiphers string
	// LogFormat is text (the default) or json.
	LogFormat string
	// MetricsListen serves /metrics, /livez and /readyz over plain HTTP;
	// empty is off. PprofListen serves net/http/pprof on loopback; empty
	// is off.
	MetricsListen string
	PprofListen   string
	// Recordings is where recordings go: empty is DATA/recordings,
	// s3://BUCKET/PREFIX an S3-compatible bucket reached at S3Endpoint
	// (empty: AWS) in S3Region, with the bucket in the URL's path when
	// S3PathStyle.
	Recordings  string
	S3Endpoint  string
	S3Region    string
	S3PathStyle bool
	// ClusterListen and ClusterAdvertise configure the internal listener
	// of cluster mode, on whenever Database is PostgreSQL (cluster.go).
	ClusterListen, ClusterAdvertise string
	// DrainTimeout is how long running sessions may go on after SIGTERM
	// ("30m"; empty is 30 minutes, "0" closes them at once).
	DrainTimeout string
}

// Defaults of --data and --listen. The demo keeps its data apart from a
// real portal's, and listens on loopback only because it prints its
// passwords.
const (
	serveDataDir = "./data"
	serveListen  = ":8443"
	demoDataDir  = "./data-demo"
	demoListen   = "127.0.0.1:8443"
)

// flags registers the flags shared by the commands, with dataDir and
// listen as the defaults of --data and --listen.
func (c *serveConfig) flags(fs *flag.FlagSet, dataDir, listen string) {
	fs.StringVar(&c.DataDir, "data", envOr("KEYWAY_DATA", dataDir), "data directory: database, keys, certificate (env KEYWAY_DATA)")
	fs.StringVar(&c.Database, "database", envOr("KEYWAY_DATABASE", ""), "PostgreSQL URL for the portal's state, postgres://user:password@host:5432/db?sslmode=verify-full; default the SQLite file DATA/keyway.db (env KEYWAY_DATABASE)")
	fs.StringVar(&c.Listen, "listen", envOr("KEYWAY_LISTEN", listen), "HTTPS listen address; :8443 is every interface, 127.0.0.1:8443 this machine only (env KEYWAY_LISTEN)")
	fs.StringVar(&c.PublicURL, "public-url", envOr("KEYWAY_PUBLIC_URL", ""), "URL users reach the portal at, for printed links (default https://localhost:PORT)")
	fs.StringVar(&c.TLSCert, "tls-cert", envOr("KEYWAY_TLS_CERT", ""), "PEM certificate file; default: a self-signed one in the data directory")
	fs.StringVar(&c.TLSKey, "tls-key", envOr("KEYWAY_TLS_KEY", ""), "PEM private key file for -tls-cert")
	fs.StringVar(&c.TLSNextCert, "tls-next-cert", envOr("KEYWAY_TLS_NEXT_CERT", ""), "PEM certificate with a new key the portal will switch to: announced to gateways, which then accept it (env KEYWAY_TLS_NEXT_CERT)")
	fs.StringVar(&c.SecretsKey, "secrets-key", envOr("KEYWAY_SECRETS_KEY", ""), "file with the key that encrypts target credentials (default DATA/secrets.key; keep it outside backups of the database)")
	fs.StringVar(&c.GatewayListen, "gateway-listen", envOr("KEYWAY_GATEWAY_LISTEN", "127.0.0.1:7993"), "loopback address of the embedded gateway's SSH and SFTP listener")
	fs.StringVar(&c.GatewayRDPListen, "gateway-rdp-listen", envOr("KEYWAY_GATEWAY_RDP_LISTEN", "127.0.0.1:7994"), "loopback address of the embedded gateway's RDP listener")
	fs.StringVar(&c.GatewayVNCListen, "gateway-vnc-listen", envOr("KEYWAY_GATEWAY_VNC_LISTEN", "127.0.0.1:7995"), "loopback address of the embedded gateway's VNC listener")
	fs.StringVar(&c.ClientsDir, "clients", envOr("KEYWAY_CLIENTS", ""), "directory of the keyway client builds the Account page offers (default: clients next to the portal executable, where make build puts them) (env KEYWAY_CLIENTS)")
	fs.StringVar(&c.LogLevel, "log-level", envOr("KEYWAY_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", envOr("KEYWAY_LOG_FORMAT", "text"), "text or json (one JSON object a line, for log collectors) (env KEYWAY_LOG_FORMAT)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", envOr("KEYWAY_METRICS_LISTEN", ""), "plain-HTTP address serving Prometheus /metrics, /livez and /readyz; a bare port (:9090) is loopback; default off (env KEYWAY_METRICS_LISTEN)")
	fs.StringVar(&c.PprofListen, "pprof-listen", envOr("KEYWAY_PPROF_LISTEN", ""), "loopback address serving Go profiles (/debug/pprof/); default off (env KEYWAY_PPROF_LISTEN)")
	fs.StringVar(&c.DrainTimeout, "drain-timeout", envOr("KEYWAY_DRAIN_TIMEOUT", "30m"), "after SIGTERM, how long running sessions may go on (their users see a countdown) before they are closed; new sessions are refused at once; a second SIGTERM closes them at once (env KEYWAY_DRAIN_TIMEOUT)")
	fs.DurationVar(&c.GatewayTokenLifetime, "gateway-token-lifetime", 30*24*time.Hour, "how long the access tokens gateways renew themselves live (at most 720h); they renew at two thirds of it")
	fs.DurationVar(&c.KeyFrames, "recording-keyframes", 10*time.Second, "least time between key frames of desktop recordings: a seek replays at most this much after the key frame before it")
	fs.StringVar(&c.Retention, "recordings-retention", envOr("KEYWAY_RECORDINGS_RETENTION", "0"), "how long session recordings and the connection log are kept, e.g. 90d; 0 keeps them forever")
	fs.StringVar(&c.TLSMinVersion, "tls-min-version", envOr("KEYWAY_TLS_MIN_VERSION", "1.2"), "lowest TLS version of the HTTPS listener and of the portal's outgoing connections: 1.2 or 1.3; 1.3 is preferred either way (env KEYWAY_TLS_MIN_VERSION)")
	fs.StringVar(&c.TLSServerCiphers, "tls-server-ciphers", envOr("KEYWAY_TLS_SERVER_CIPHERS", ""), "comma-separated TLS 1.2 cipher suites the HTTPS listener allows, e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256; default Go's (env KEYWAY_TLS_SERVER_CIPHERS)")
	fs.StringVar(&c.TLSClientCiphers, "tls-client-ciphers", envOr("KEYWAY_TLS_CLIENT_CIPHERS", ""), "comma-separated TLS 1.2 cipher suites allowed when the portal connects out (hook, OIDC, SAML, LDAP); default Go's (env KEYWAY_TLS_CLIENT_CIPHERS)")
	fs.StringVar(&c.Recordings, "recordings", envOr("KEYWAY_RECORDINGS", ""), "where recordings are stored: empty is DATA/recordings; s3://BUCKET/PREFIX is S3-compatible object storage, with credentials from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) (env KEYWAY_RECORDINGS)")
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", envOr("KEYWAY_S3_ENDPOINT", ""), "URL of the S3-compatible server for --recordings s3://...; empty is AWS (env KEYWAY_S3_ENDPOINT)")
	fs.StringVar(&c.S3Region, "s3-region", envOr("KEYWAY_S3_REGION", ""), "region of the bucket; default AWS_REGION, else us-east-1 (env KEYWAY_S3_REGION)")
	pathStyle, _ := strconv.ParseBool(envOr("KEYWAY_S3_PATH_STYLE", "false")) // refused when opened if invalid
	fs.BoolVar(&c.S3PathStyle, "s3-path-style", pathStyle, "address the bucket in the URL's path (most self-hosted servers), not its host name (env KEYWAY_S3_PATH_STYLE=true)")
	c.clusterFlags(fs)
	fs.StringVar(&c.ExportsMaxMB, "exports-max-mb", envOr("KEYWAY_EXPORTS_MAX_MB", "5120"), "MiB of video exports of desktop recordings kept in DATA/exports; past it the least recently used go; 0 for no bound (env KEYWAY_EXPORTS_MAX_MB)")
}

// resolvePaths makes the data directory absolute, once, before anything
// uses it: paths inside it are handed to other processes (the demo's
// servers), which need not run where we do, and freerdp-shadow-cli cannot
// create its configuration under a relative path at all.
func (c *serveConfig) resolvePaths() error {
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("data directory %q: %w", c.DataDir, err)
	}
	c.DataDir = abs
	return nil
}

// tlsSettings parses the TLS flags, naming the flag whose value is
// refused.
func (c *serveConfig) tlsSettings() (tlsconf.Settings, error) {
	s := tlsconf.Default()
	var err error
	if s.MinVersion, err = tlsconf.ParseVersion(c.TLSMinVersion); err != nil {
		return s, fmt.Errorf("--tls-min-version: %w", err)
	}
	if s.ServerSuites, err = tlsconf.ParseSuites(c.TLSServerCiphers); err != nil {
		return s, fmt.Errorf("--tls-server-ciphers: %w", err)
	}
	if s.ClientSuites, err = tlsconf.ParseSuites(c.TLSClientCiphers); err != nil {
		return s, fmt.Errorf("--tls-client-ciphers: %w", err)
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("TLS settings: %w", err)
	}
	return s, nil
}

// openRecordings opens the recordings directory, or the bucket
// --recordings names, reached with the portal's client TLS settings.
func (c *serveConfig) openRecordings(ctx context.Context, tlsSet tlsconf.Settings, logger *slog.Logger) (storage.Store, error) {
	if v := os.Getenv("KEYWAY_S3_PATH_STYLE"); v != "" {
		if _, err := strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("KEYWAY_S3_PATH_STYLE=%q: want true or false", v)
		}
	}
	if c.Recordings == "" {
		if c.S3Endpoint != "" || c.S3Region != "" || c.S3PathStyle {
			return nil, errors.New("--s3-endpoint, --s3-region and --s3-path-style are for --recordings s3://BUCKET/PREFIX, which is not set")
		}
		return storage.Open(filepath.Join(c.DataDir, "recordings"))
	}
	bucket, prefix, err := objstore.ParseURL(c.Recordings)
	if err != nil {
		return nil, fmt.Errorf("--recordings: %w", err)
	}
	if c.S3Endpoint != "" {
		if u, err := url.Parse(c.S3Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("--s3-endpoint %q: want a URL such as https://s3.example.com:9000", c.S3Endpoint)
		}
	}
	return objstore.New(ctx, objstore.Config{Bucket: bucket, Prefix: prefix, Endpoint: c.S3Endpoint, Region: c.S3Region,
		PathStyle: c.S3PathStyle, ClientTLS: tlsSet.Client, Logger: logger.With("component", "recordings")})
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// afterStart is called once the portal listens, with its URL; demo uses it.
type afterStart func(ctx context.Context, p *portal) error

func serve(ctx context.Context, args []string, stderr io.Writer, hook afterStart) error {
	var cfg serveConfig
	fs := flag.NewFlagSet("portal serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs, serveDataDir, serveListen)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if err := cfg.resolvePaths(); err != nil {
		return err
	}
	return serveWith(ctx, cfg, stderr, hook)
}

// portal is a running portal's parts, for commands that act on it.
type portal struct {
	cfg serveConfig
	URL string
	// Addresses are where the HTTPS listener can be reached (see
	// listenAddresses).
	Addresses []string
	Store     *store.Store
	Pool      *gateways.Pool
	Logger    *slog.Logger
	// MetricsURL and PprofURL are the base URLs of --metrics-listen and
	// --pprof-listen ("http://127.0.0.1:9090"), empty when off.
	MetricsURL, PprofURL string
}

func serveWith(ctx context.Context, cfg serveConfig, stderr io.Writer, hook afterStart) error {
	logger, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	// Diagnostics addresses are checked before anything starts.
	var metricsAddr, pprofAddr string
	if cfg.MetricsListen != "" {
		if metricsAddr, err = metrics.ListenAddr(cfg.MetricsListen); err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
	}
	if cfg.PprofListen != "" {
		if pprofAddr, err = metrics.LoopbackAddr(cfg.PprofListen); err != nil {
			return fmt.Errorf("--pprof-listen: %w", err)
		}
	}
	drainTimeout, err := shutdown.ParseDrainTimeout(cfg.DrainTimeout)
	if err != nil {
		return err
	}
	reg := metrics.NewRegistry()
	portalMetrics := metrics.NewPortal(reg)
	if cfg.GatewayTokenLifetime < 0 || cfg.GatewayTokenLifetime > wire.MaxTokenLifetime {
		return fmt.Errorf("--gateway-token-lifetime %s: give a duration up to %s (30 days)", cfg.GatewayTokenLifetime, wire.MaxTokenLifetime)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return errors.New("give both -tls-cert and -tls-key, or neither for a self-signed certificate")
	}
	tlsSet, err := cfg.tlsSettings()
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	// The password in a URL never reaches the log.
	logger.Info("database", "location", store.Redact(cfg.databaseLocation()))

	// Web sessions are kept under their token's hash now; those an older
	// portal stored as plain tokens are dropped, and their users sign in
	// again.
	if n, err := st.DeleteUnhashedSessions(ctx); err != nil {
		return err
	} else if n > 0 {
		logger.Info("signed out web sessions stored before session tokens were hashed", "sessions", n)
	}
	rep, err := joinCluster(ctx, cfg, st, logger)
	if err != nil {
		return err
	}
	defer rep.close()
	// A portal that stopped without ending its sessions (killed, crashed)
	// left them running in the connection log; none runs yet. Not so in
	// a cluster, where the other replicas' sessions run.
	if rep == nil {
		if n, err := st.EndRunningConnections(ctx, time.Now()); err != nil {
			return err
		} else if n > 0 {
			logger.Warn("connection log: sessions an earlier run of the portal left running are marked interrupted", "sessions", n)
		}
	}
	sessions, stopSessions := auth.NewSessions(st)
	defer stopSessions()
	auditLog, err := newAuditLog(cfg, st, logger)
	if err != nil {
		return err
	}
	// Signed checkpoints of the audit log's head: now, every minute while
	// it grows, and at shutdown. Stopped by the defer, not by ctx, the last
	// one is written after the sessions have ended and before the
	// database closes.
	stopCheckpoints, err := auditLog.StartCheckpoints(context.WithoutCancel(ctx), checkpointsPath(cfg), audit.CheckpointInterval)
	if err != nil {
		return err
	}
	defer stopCheckpoints()

	// The embedded gateway is a real gateway reached over the same mutual TLS
	// as a remote one; only its keys are set up here instead of by an admin.
	portalID, err := wire.LoadOrCreateIdentity(filepath.Join(cfg.DataDir, "portal-identity.pem"))
	if err != nil {
		return fmt.Errorf("portal identity: %w", err)
	}
	gwID, err := wire.LoadOrCreateIdentity(filepath.Join(cfg.DataDir, "gateway", "identity.pem"))
	if err != nil {
		return fmt.Errorf("embedded gateway identity: %w", err)
	}
	// The embedded gateway records into its own spool and uploads like a
	// remote one, through the portal's HTTPS listener, signed with its key.
	spoolDir := filepath.Join(cfg.DataDir, "gateway", "spool")
	// The embedded gateway's metrics are the portal's: keyway_gateway_*
	// on the same registry.
	embeddedMetrics := metrics.NewGateway(reg)
	sp, err := openSpool(spoolDir, 0, logger.With("component", "spool", "gateway", "embedded"), embeddedMetrics)
	if err != nil {
		return err
	}
	defer sp.Close()
	metrics.WatchSpool(reg, sp)
	recDir, err := cfg.openRecordings(ctx, tlsSet, logger)
	if err != nil {
		return err
	}
	logger.Info("recordings stored in " + cfg.recordingsLocation())
	var defaultNets atomic.Pointer[[]netip.Prefix]
	var relayAddrs atomic.Pointer[[]string]
	gw, err := gateway.New(gateway.Config{
		Spool: sp, Name: "embedded", KeyFrameInterval: cfg.KeyFrames,
		Networks: func() []netip.Prefix {
			if n := defaultNets.Load(); n != nil {
				return *n
			}
			return nil
		},
		SSHAddr: cfg.GatewayListen,
		RDPAddr: cfg.GatewayRDPListen,
		VNCAddr: cfg.GatewayVNCListen,
		// The portal hands the embedded gateway the enrolled gateways'
		// addresses directly, as remote ones get them in their config.
		RelayAddresses: func() []string {
			if a := relayAddrs.Load(); a != nil {
				return *a
			}
			return nil
		},
		ManagementAddr: "127.0.0.1:0",
		Identity:       gwID,
		TrustedPortal:  func(k ed25519.PublicKey) bool { return portalID.PublicKey().Equal(k) },
		Logger:         logger.With("component", "gateway", "gateway", "embedded"),
		ID:             "embedded",
		Version:        version,
		Metrics:        embeddedMetrics,
	})
	if err != nil {
		return fmt.Errorf("embedded gateway: %w", err)
	}
	if err := gw.Start(); err != nil {
		err = fmt.Errorf("start embedded gateway on %s: %w", cfg.GatewayListen, err)
		if errors.Is(err, syscall.EADDRINUSE) {
			err = fmt.Errorf("%w: another program (another portal?) uses one of its ports; stop it, or choose other loopback addresses with --gateway-listen, --gateway-rdp-listen and --gateway-vnc-listen", err)
		}
		return err
	}
	defer gw.Close()
	sshAddr, mgmtAddr := gw.Addr().(*net.TCPAddr), gw.ManagementAddr().(*net.TCPAddr)
	port := func(protocol string) int { return gw.SessionAddr(protocol).(*net.TCPAddr).Port }
	embedded, err := st.EnsureEmbeddedGateway(ctx, store.Gateway{Host: sshAddr.IP.String(), SSHPort: sshAddr.Port,
		RDPPort: port(wire.ProtocolRDP), VNCPort: port(wire.ProtocolVNC), ManagementPort: mgmtAddr.Port, PublicKey: gwID.PublicKeyString()})
	if err != nil {
		return err
	}
	pool := gateways.New(portalID, logger.With("component", "gateways"), 30*time.Second)
	metrics.GatewayStates(reg, func() []metrics.GatewayState {
		var out []metrics.GatewayState
		for _, g := range pool.Statuses() {
			out = append(out, metrics.GatewayState{Gateway: g.Name, State: string(g.State)})
		}
		return out
	})
	metrics.GatewayTokenExpiries(reg, func() []metrics.GatewayTokenExpiry {
		// A scrape waits at most this long for the database; scrapes go
		// on while the portal drains (after ctx ended).
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		list, err := st.GatewayTokenExpiries(ctx)
		if err != nil {
			logger.Warn("metrics: gateway token expiries", "err", err)
			return nil
		}
		out := make([]metrics.GatewayTokenExpiry, len(list))
		for i, e := range list {
			out[i] = metrics.GatewayTokenExpiry{Gateway: e.Gateway, Expires: e.Expires}
		}
		return out
	})
	// The health loop, token renewals and uploads go on while the portal
	// drains (after ctx ended); the defers stop them.
	healthCtx, stopHealth := context.WithCancel(context.WithoutCancel(ctx))
	var healthDone sync.WaitGroup
	defer func() { stopHealth(); healthDone.Wait(); pool.Close() }()

	cert, err := loadCert(cfg, logger)
	if err != nil {
		return err
	}
	if cert.Leaf != nil { // tls.X509KeyPair fills it in
		// The listener speaks HTTP/2 (ServeTLS), which needs AES-128-GCM.
		if err := tlsSet.CheckServerKey(cert.Leaf.PublicKey, true); err != nil {
			return fmt.Errorf("--tls-server-ciphers: %w", err)
		}
	}
	var nextKeys []string
	if cfg.TLSNextCert != "" {
		k, err := certs.KeySHA256File(cfg.TLSNextCert)
		if err != nil {
			return err
		}
		nextKeys = append(nextKeys, k)
		logger.Info("announcing the next TLS certificate's key to gateways", "file", cfg.TLSNextCert, "key_sha256", k)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listen on %s: %w: another program (another portal?) uses this port; stop it, or choose another address with --listen", cfg.Listen, err)
	}
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	addresses := listenAddresses(ln.Addr().(*net.TCPAddr))
	publicURL := cfg.PublicURL
	if publicURL == "" {
		publicURL = fmt.Sprintf("https://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	}
	publicURL = strings.TrimRight(publicURL, "/")

	// Video export is optional: without ffmpeg the pages say it needs it.
	// The videos are managed either way, so retention deletes those made
	// while ffmpeg was there.
	maxMB, err := parseExportsMax(cfg.ExportsMaxMB)
	if err != nil {
		return err
	}
	expCfg := exports.Config{Dir: filepath.Join(cfg.DataDir, "exports"), Recordings: recDir, MaxBytes: maxMB << 20,
		Logger: logger.With("component", "exports")}
	if shared, ok := recDir.(exports.Shared); ok {
		// Recordings in a bucket: videos go there too, for every replica.
		expCfg.Shared = shared
	}
	ffmpeg, noFFmpeg := video.LookFFmpeg()
	if noFFmpeg == nil {
		expCfg.Export = video.New(video.Config{FFmpeg: ffmpeg, Logger: expCfg.Logger}).Export
	}
	videos, err := exports.New(expCfg)
	if err != nil {
		return err
	}
	var uiExports *exports.Runner
	if noFFmpeg != nil {
		logger.Info("video export of desktop recordings is off", "reason", noFFmpeg)
	} else {
		uiExports = videos
	}

	uiDeps := httpui.Deps{
		Store: st, Sessions: sessions, Auth: auth.New(st, auth.NewLimiter(time.Now), logger, auth.WithDirectoryTLS(tlsSet)),
		Audit: auditLog, Authz: authz.New(st), Gateways: pool, Assets: assets.Handler(), Logger: logger,
		PortalKey: portalID.PublicKeyString(), PortalURL: publicURL, PortalTLSKeySHA256: certs.KeySHA256(cert), PortalIdentity: portalID, GatewayTokenLifetime: cfg.GatewayTokenLifetime,
		PortalTLSNextKeys: nextKeys,
		DefaultNetworks:   func(n []netip.Prefix) { defaultNets.Store(&n) },
		RelayAddresses:    func(a []string) { relayAddrs.Store(&a) },
		Recordings:        recDir,
		Exports:           uiExports,
		ClientInfo:        clientinfo.New(),
		Hook:              connhook.New(connhook.WithTLS(tlsSet)),
		ClientsDir:        clientsDir(cfg.ClientsDir),
		ClientTLS:         tlsSet,
		Metrics:           portalMetrics,
	}
	rep.deps(&uiDeps)
	ui := httpui.New(uiDeps)
	defer ui.Close()
	// The hook and the trusted proxies as admins saved them; a hook that
	// no longer loads stops the start rather than connect without it.
	if err := ui.LoadSettings(ctx); err != nil {
		return err
	}
	if err := ui.SyncGateways(ctx); err != nil {
		return err
	}
	// The embedded gateway is checked before serving, so the first
	// connections need not wait for the health loop; remote gateways, which
	// may be slow or down, are left to the loop.
	pool.Check(ctx, strconv.FormatInt(embedded.ID, 10), gateways.DefaultHealth)
	rep.runHealth(healthCtx, &healthDone, pool, ui)
	rep.serve(ui)
	// Expired recordings and connection log rows go at start and then
	// hourly; the health loop's context and wait group own this goroutine
	// too.
	keep, err := parseRetention(cfg.Retention)
	if err != nil {
		return err
	}
	if keep > 0 {
		job := &retention.Job{Store: st, Recordings: recDir, Audit: auditLog, Period: keep, Logger: logger.With("component", "retention"), Now: time.Now,
			Exports: videos}
		healthDone.Add(1)
		go func() {
			defer healthDone.Done()
			job.Run(healthCtx, time.Hour)
		}()
	}
	var metricsSrv, pprofSrv *metrics.Server
	defer func() {
		// Scrapes in flight get a few seconds to finish.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range []*metrics.Server{metricsSrv, pprofSrv} {
			if s != nil {
				s.Close(ctx)
			}
		}
	}()
	if metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics.Handler(reg))
		mux.Handle("GET /livez", ui)
		mux.Handle("GET /readyz", ui)
		if metricsSrv, err = metrics.Serve(metricsAddr, mux, logger.With("component", "metrics")); err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		logger.Info("serving metrics", "url", "http://"+metricsSrv.Addr().String()+"/metrics")
	}
	if pprofAddr != "" {
		if pprofSrv, err = metrics.Serve(pprofAddr, metrics.PprofHandler(), logger.With("component", "pprof")); err != nil {
			return fmt.Errorf("--pprof-listen: %w", err)
		}
		logger.Info("serving Go profiles", "url", "http://"+pprofSrv.Addr().String()+"/debug/pprof/")
	}
	srv := ui.HTTPServer(tlsSet.Server(&tls.Config{Certificates: []tls.Certificate{cert}}),
		slog.NewLogLogger(logger.Handler(), slog.LevelWarn))
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ServeTLS(ln, "", "") }()
	// The embedded gateway uploads with an access token like any other;
	// the portal lets it get a first one at every start.
	embOpts := control.Options{
		PortalURL: loopbackURL(ln.Addr()), GatewayID: strconv.FormatInt(embedded.ID, 10), Identity: gwID,
		PortalTLSKeySHA256: certs.KeySHA256(cert), Logger: logger.With("component", "token", "gateway", "embedded"),
		TokenPath: filepath.Join(cfg.DataDir, "gateway", "access-token.json"), TLS: tlsSet,
	}
	embOpts.Tokens = control.NewTokens(embOpts)
	healthDone.Add(1)
	go func() {
		defer healthDone.Done()
		embOpts.Tokens.Run(healthCtx)
	}()
	embOpts.Logger = logger.With("component", "uploads", "gateway", "embedded")
	stopUploads := control.StartUploads(healthCtx, sp, embOpts)
	defer stopUploads()
	logger.Info("portal listening", "url", publicURL, "listen", ln.Addr().String(), "addresses", strings.Join(addresses, " "),
		"gateway", gw.Addr().String(), "data", cfg.DataDir)

	p := &portal{cfg: cfg, URL: publicURL, Addresses: addresses, Store: st, Pool: pool, Logger: logger}
	if metricsSrv != nil {
		p.MetricsURL = "http://" + metricsSrv.Addr().String()
	}
	if pprofSrv != nil {
		p.PprofURL = "http://" + pprofSrv.Addr().String()
	}
	if hook != nil {
		if err := hook(ctx, p); err != nil {
			srv.Close()
			return err
		}
	}
	// A shutdown that comes while the link is written is no failure.
	if err := announceSetup(ctx, st, logger, publicURL); err != nil && ctx.Err() == nil {
		return err
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve HTTPS: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down: draining (a second SIGTERM or Ctrl-C stops at once)", "timeout", drainTimeout)
	drainer{ui: ui, gw: gw, spool: sp, timeout: drainTimeout, logger: logger}.run(shutdown.StopNow(ctx))
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ui.Close() // ends hijacked terminal sessions, which Shutdown does not see
	if err := srv.Shutdown(shutCtx); err != nil {
		// No request may be served once the database closes: what did
		// not end in time is cut.
		logger.Warn("shutdown", "err", err)
		srv.Close()
	}
	return nil
}

// listenAddresses lists the addresses a listener bound to a can be reached
// at: a itself, or for a wildcard address (":8443") each address of this
// machine's interfaces, so that the log says plainly whether the portal is
// reachable from other machines. A dual-stack wildcard ("[::]") takes
// IPv4 and IPv6 addresses, "0.0.0.0" only IPv4 ones.
func listenAddresses(a *net.TCPAddr) []string {
	if !a.IP.IsUnspecified() {
		return []string{a.String()}
	}
	port := strconv.Itoa(a.Port)
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return []string{a.String() + " (every interface)"}
	}
	v4Only := a.IP.To4() != nil
	var out []string
	for _, ia := range ifAddrs {
		n, ok := ia.(*net.IPNet)
		// IPv6 link-local addresses need a zone to be used: not listed.
		if !ok || (v4Only && n.IP.To4() == nil) || (n.IP.IsLinkLocalUnicast() && n.IP.To4() == nil) {
			continue
		}
		out = append(out, net.JoinHostPort(n.IP.String(), port))
	}
	if len(out) == 0 {
		return []string{a.String() + " (every interface)"}
	}
	return out
}

func openStore(ctx context.Context, cfg serveConfig) (*store.Store, error) {
	if err := cfg.checkDatabase(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	key, err := loadSecretsKey(cfg)
	if err != nil {
		return nil, err
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, cfg.databaseLocation(), sealer)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return st, nil
}

// databaseLocation is --database, or the SQLite file in the data
// directory.
func (c serveConfig) databaseLocation() string {
	if c.Database != "" {
		return c.Database
	}
	return filepath.Join(c.DataDir, "keyway.db")
}

// checkDatabase refuses a --database that is neither empty nor a
// PostgreSQL URL: a SQLite file lives in the data directory.
func (c serveConfig) checkDatabase() error {
	if c.Database != "" && !store.IsPostgres(c.Database) {
		return fmt.Errorf("--database %s: give a postgres:// URL, or nothing for the SQLite file in the data directory (--data)", store.Redact(c.Database))
	}
	return nil
}

// loadSecretsKey reads (or creates) the key that seals target credentials
// and from which the audit chain's key is derived.
func loadSecretsKey(cfg serveConfig) ([]byte, error) {
	key, err := store.LoadOrCreateKey(secretsKeyPath(cfg))
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	return key, nil
}

// newAuditLog returns the audit log on st, keyed by the secrets key.
func newAuditLog(cfg serveConfig, st *store.Store, logger *slog.Logger) (*audit.Log, error) {
	key, err := loadSecretsKey(cfg)
	if err != nil {
		return nil, err
	}
	return audit.New(st, key, logger, time.Now)
}

// checkpointsPath is the file the portal appends signed audit checkpoints
// to, for an operator to ship elsewhere.
func checkpointsPath(cfg serveConfig) string { return filepath.Join(cfg.DataDir, "audit-checkpoints") }

func loadCert(cfg serveConfig, logger *slog.Logger) (tls.Certificate, error) {
	if cfg.TLSCert != "" {
		c, err := certs.Load(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return c, err
		}
		logger.Info("using TLS certificate", "file", cfg.TLSCert, "sha256", certs.Fingerprint(c), "key_sha256", certs.KeySHA256(c))
		return c, nil
	}
	host, _, _ := net.SplitHostPort(cfg.Listen)
	c, created, err := certs.LoadOrCreateSelfSigned(cfg.DataDir, []string{host})
	if err != nil {
		return c, err
	}
	msg := "using self-signed TLS certificate"
	if created {
		msg = "created self-signed TLS certificate"
	}
	logger.Info(msg, "file", filepath.Join(cfg.DataDir, "tls.crt"), "sha256", certs.Fingerprint(c),
		"hint", "browsers will warn; compare this fingerprint, or pass -tls-cert and -tls-key")
	return c, nil
}

// announceSetup prints a one-time link to create the first admin while the
// portal has no users. A new link replaces the previous one at every start.
func announceSetup(ctx context.Context, st *store.Store, logger *slog.Logger, publicURL string) error {
	n, err := st.CountUsers(ctx)
	if err != nil {
		return fmt.Errorf("count users: %w", err)
	}
	if n > 0 {
		return nil
	}
	token, err := httpui.NewSetupToken(ctx, st)
	if err != nil {
		return err
	}
	logger.Info("no users yet: open this one-time link to create the first admin, or run `portal users add NAME --role admin --password-stdin`",
		"setup_url", publicURL+"/setup/"+token)
	return nil
}

// parseExportsMax reads --exports-max-mb: MiB, empty or 0 for no bound.
func parseExportsMax(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 1<<30 {
		return 0, fmt.Errorf("--exports-max-mb %q: give a number of MiB such as 5120, or 0 for no bound", s)
	}
	return n, nil
}

// parseRetention reads a retention period: days ("90d") or a Go duration
// ("2160h"); "0" or "" keeps recordings forever.
func parseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err == nil && n > 0 && n <= 36500 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d >= time.Hour {
		return d, nil
	}
	return 0, fmt.Errorf("--recordings-retention %q: give days (90d) or a duration of at least an hour (2160h), or 0 to keep recordings forever", s)
}

// clientsDir is dir, or "clients" next to the running executable.
func clientsDir(dir string) string {
	if dir != "" {
		return dir
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return filepath.Join(filepath.Dir(exe), "clients")
}
