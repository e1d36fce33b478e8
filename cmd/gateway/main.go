// Command gateway runs a Keyway gateway: it opens the real protocol
// connections to targets for the portal, in the network segment it is
// deployed in.
//
//	gateway run --config FILE      run the gateway (--tls-min-version, --tls-client-ciphers: docs/tls.md)
//	gateway pubkey --config FILE   print its public key (to paste into the portal)
//	gateway health --url URL       exit 0 if the health endpoint answers (for containers)
package main

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/gateway"
	"github.com/keyway-dev/keyway/gateway/control"
	"github.com/keyway-dev/keyway/gateway/logctx"
	"github.com/keyway-dev/keyway/gateway/metrics"
	"github.com/keyway-dev/keyway/gateway/shutdown"
	"github.com/keyway-dev/keyway/gateway/spool"
	"github.com/keyway-dev/keyway/gateway/tlsconf"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// version is set by the build.
var version = "dev"

const usage = `Usage:
  gateway run --config FILE      run the gateway
      [--tls-min-version 1.2|1.3] [--tls-client-ciphers SUITE,...] [--drain-timeout 30m]
  gateway pubkey --config FILE   print the gateway's public key
  gateway health --url URL       check a gateway's health endpoint
`

var errUsage = errors.New("usage")

func main() {
	// The first SIGTERM or SIGINT drains `gateway run`, the second ends it
	// at once.
	ctx, stop := shutdown.Signals()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "gateway:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	fs := flag.NewFlagSet("gateway "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "/etc/keyway/gateway.json", "config file downloaded from the portal")
	var o options
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json (one JSON object a line, for log collectors)")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "plain-HTTP address serving Prometheus /metrics, /livez and /readyz; a bare port (:9100) is loopback; overrides listen.metrics of the config; default off")
	fs.StringVar(&o.pprofListen, "pprof-listen", "", "loopback address serving Go profiles (/debug/pprof/); default off")
	fs.StringVar(&o.drainTimeout, "drain-timeout", cmp.Or(os.Getenv("KEYWAY_DRAIN_TIMEOUT"), "30m"), "after SIGTERM, how long running sessions may go on before they are closed; new sessions are refused at once and a second SIGTERM closes them at once (env KEYWAY_DRAIN_TIMEOUT)")
	url := fs.String("url", "http://127.0.0.1:8081/healthz", "health endpoint (health)")
	fs.StringVar(&o.tls.minVersion, "tls-min-version", "", "lowest TLS version for reaching the portal: 1.2 or 1.3 (default: the config's tls_min_version, else 1.2)")
	fs.StringVar(&o.tls.clientCiphers, "tls-client-ciphers", "", "comma-separated TLS 1.2 cipher suites allowed for reaching the portal (default: the config's tls_client_ciphers, else Go's)")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	switch args[0] {
	case "run":
		o.config = *configPath
		return serve(ctx, o, stdout, stderr)
	case "pubkey":
		f, err := loadFile(*configPath)
		if err != nil {
			return err
		}
		id, err := wire.LoadOrCreateIdentity(filepath.Join(f.StateDir, "identity.pem"))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, id.PublicKeyString())
		return nil
	case "health":
		c := &http.Client{Timeout: 3 * time.Second}
		resp, err := c.Get(*url)
		if err != nil {
			return fmt.Errorf("health check: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health check: HTTP %d", resp.StatusCode)
		}
		return nil
	default:
		fmt.Fprintf(stderr, "unknown command %q\n%s", args[0], usage)
		return errUsage
	}
}

func loadFile(path string) (wire.GatewayFile, error) {
	var f wire.GatewayFile
	raw, err := os.ReadFile(path)
	if err != nil {
		return f, fmt.Errorf("read config: %w (download it from the gateway's page in the portal)", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("config %s: %w", path, err)
	}
	var missing []string
	for name, v := range map[string]string{"gateway_id": f.GatewayID, "portal_url": f.PortalURL, "portal_key": f.PortalKey, "state_dir": f.StateDir, "listen.ssh": f.Listen["ssh"]} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return f, fmt.Errorf("config %s lacks %s", path, strings.Join(missing, ", "))
	}
	return f, nil
}

// tlsOverrides are the TLS flags of gateway run; a flag given wins over
// the config file's key.
type tlsOverrides struct{ minVersion, clientCiphers string }

// tlsSettings parses the TLS settings of f and the flags, naming the flag
// or key whose value is refused.
func tlsSettings(f wire.GatewayFile, o tlsOverrides) (tlsconf.Settings, error) {
	s := tlsconf.Default()
	version, versionFrom := f.TLSMinVersion, "config tls_min_version"
	if o.minVersion != "" {
		version, versionFrom = o.minVersion, "--tls-min-version"
	}
	ciphers, ciphersFrom := f.TLSClientCiphers, "config tls_client_ciphers"
	if o.clientCiphers != "" {
		ciphers, ciphersFrom = o.clientCiphers, "--tls-client-ciphers"
	}
	var err error
	if s.MinVersion, err = tlsconf.ParseVersion(version); err != nil {
		return s, fmt.Errorf("%s: %w", versionFrom, err)
	}
	if s.ClientSuites, err = tlsconf.ParseSuites(ciphers); err != nil {
		return s, fmt.Errorf("%s: %w", ciphersFrom, err)
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("TLS settings: %w", err)
	}
	return s, nil
}

// options are the flags of `gateway run`.
type options struct {
	config, logLevel, logFormat, metricsListen, pprofListen string
	tls                                                     tlsOverrides
	// drainTimeout is how long running sessions may go on after SIGTERM
	// (shutdown.ParseDrainTimeout).
	drainTimeout string
}

func serve(ctx context.Context, o options, stdout, stderr io.Writer) error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("log level %q: use debug, info, warn or error", o.logLevel)
	}
	hopts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch o.logFormat {
	case "", "text":
		h = slog.NewTextHandler(stderr, hopts)
	case "json":
		h = slog.NewJSONHandler(stderr, hopts)
	default:
		return fmt.Errorf("log format %q: use text or json", o.logFormat)
	}
	drainTimeout, err := shutdown.ParseDrainTimeout(o.drainTimeout)
	if err != nil {
		return err
	}
	f, err := loadFile(o.config)
	if err != nil {
		return err
	}
	tlsSet, err := tlsSettings(f, o.tls)
	if err != nil {
		return err
	}
	logger := slog.New(logctx.Handler(h)).With("gateway", f.Name, "segment", f.Segment)
	metricsAddr, pprofAddr := cmp.Or(o.metricsListen, f.Listen["metrics"]), o.pprofListen
	if metricsAddr != "" {
		if metricsAddr, err = metrics.ListenAddr(metricsAddr); err != nil {
			return fmt.Errorf("metrics listen address: %w", err)
		}
	}
	if pprofAddr != "" {
		if pprofAddr, err = metrics.LoopbackAddr(pprofAddr); err != nil {
			return fmt.Errorf("--pprof-listen: %w", err)
		}
	}
	reg := metrics.NewRegistry()
	gwMetrics := metrics.NewGateway(reg)
	portalKey, err := wire.ParsePublicKey(f.PortalKey)
	if err != nil {
		return fmt.Errorf("config portal_key: %w", err)
	}
	if err := os.MkdirAll(f.StateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	keyPath := filepath.Join(f.StateDir, "identity.pem")
	_, statErr := os.Stat(keyPath)
	id, err := wire.LoadOrCreateIdentity(keyPath)
	if err != nil {
		return err
	}
	if statErr != nil {
		fmt.Fprintf(stdout, "Created this gateway's key. Paste its public key on the gateway's page in the portal:\n\n  %s\n\n", id.PublicKeyString())
	}
	ctlOpts := control.Options{
		PortalURL: f.PortalURL, GatewayID: f.GatewayID, Identity: id, PortalKey: portalKey,
		PortalCertSHA256: f.PortalCertSHA256, PortalTLSKeySHA256: f.PortalTLSKeySHA256,
		BackupPath: filepath.Join(f.StateDir, "config-backup.json"), Logger: logger, TLS: tlsSet,
		TokenPath: filepath.Join(f.StateDir, "access-token.json"),
	}
	// The token keeper reaches the portal as the puller does, accepting
	// the portal keys the signed config announces.
	var puller *control.Puller
	tokOpts := ctlOpts
	tokOpts.Logger = logger.With("component", "token")
	tokOpts.LearnedKeys = func() []string { return puller.PortalTLSKeys() }
	tokOpts.Metrics = gwMetrics
	tokens := control.NewTokens(tokOpts)
	if err := tokens.Load(); err != nil {
		logger.Warn("ignoring the access token on disk", "err", err)
	}
	metrics.WatchToken(reg, func() time.Time { return tokens.Current().ExpiresAt })
	ctlOpts.Tokens = tokens
	puller = control.New(ctlOpts)
	if err := puller.LoadBackup(); err != nil {
		logger.Warn("ignoring the config backup; no sessions until the first config pull", "err", err)
	}
	// Recordings wait in the spool until the portal confirmed them; what a
	// crash left open is finished (as incomplete) before anything else.
	spoolLog := logger.With("component", "spool")
	sp, err := spool.Open(spool.Config{Dir: filepath.Join(f.StateDir, "spool"), MinFree: spoolMinFree(f), Fsync: true, Logger: spoolLog,
		Metrics: gwMetrics})
	if err != nil {
		return fmt.Errorf("recording spool: %w", err)
	}
	defer sp.Close()
	metrics.WatchSpool(reg, sp)
	if recovered, err := sp.Recover(); err != nil {
		spoolLog.Error("recording spool recovery", "err", err)
	} else if len(recovered) > 0 {
		spoolLog.Warn("recovered recordings left open by a crash; they are uploaded as incomplete", "count", len(recovered))
	}
	g, err := gateway.New(gateway.Config{
		Spool: sp, Name: f.Name,
		SSHAddr: f.Listen["ssh"], RDPAddr: f.Listen["rdp"], VNCAddr: f.Listen["vnc"],
		ManagementAddr: f.Listen["management"], HealthAddr: f.Listen["health"],
		Identity:      id,
		TrustedPortal: func(k ed25519.PublicKey) bool { return k.Equal(portalKey) },
		Logger:        logger, ID: f.GatewayID, Version: version,
		Networks: puller.Networks, ConfigVersion: puller.Version,
		Ready: puller.Ready, RelayAddresses: puller.RelayAddresses,
		Metrics: gwMetrics,
	})
	if err != nil {
		return err
	}
	if err := g.Start(); err != nil {
		return err
	}
	defer g.Close()
	for _, d := range []struct {
		addr, what string
		h          http.Handler
	}{
		{metricsAddr, "metrics", metricsMux(metrics.Handler(reg), g)},
		{pprofAddr, "Go profiles", metrics.PprofHandler()},
	} {
		if d.addr == "" {
			continue
		}
		srv, err := metrics.Serve(d.addr, d.h, logger.With("component", d.what))
		if err != nil {
			return fmt.Errorf("%s: %w", d.what, err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Close(ctx)
		}()
		logger.Info("serving "+d.what, "addr", srv.Addr().String())
	}
	// Uploads, config pulls and token renewals go on while the gateway
	// drains (after ctx ended); they stop when serve returns.
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	uploadOpts := ctlOpts
	uploadOpts.Logger = logger.With("component", "uploads")
	uploadOpts.LearnedKeys = puller.PortalTLSKeys
	stopUploads := control.StartUploads(bg, sp, uploadOpts)
	defer stopUploads()
	logger.Info("gateway started", "public_key", id.PublicKeyString(), "portal", f.PortalURL)

	interval := time.Duration(f.PullIntervalSecs) * time.Second
	if interval <= 0 {
		interval = 10 * time.Second
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopBackground() // before the wait
	wg.Add(2)
	go func() {
		defer wg.Done()
		puller.Run(bg, interval)
	}()
	go func() {
		defer wg.Done()
		tokens.Run(bg)
	}()
	<-ctx.Done()
	logger.Info("shutting down: draining (a second SIGTERM or Ctrl-C stops at once)", "timeout", drainTimeout)
	drainGateway(shutdown.StopNow(ctx), g, sp, drainTimeout, logger)
	return nil
}

// drainUploadWait bounds the wait for spooled recordings to reach the
// portal once the sessions ended; what is not uploaded by then stays in
// the spool for the next start.
const drainUploadWait = time.Minute

// drainGateway drains g: it refuses new sessions (the portal then
// chooses another gateway of the segment) and fails its readiness at
// once, lets running sessions go on until timeout or until now ends,
// closes those left (finishing their recordings) and, unless now ended,
// waits for the spool's recordings to be uploaded.
func drainGateway(now context.Context, g *gateway.Gateway, sp *spool.Spool, timeout time.Duration, logger *slog.Logger) {
	start := time.Now()
	g.Drain(start.Add(timeout))
	wait, cancel := context.WithTimeout(now, timeout)
	err := g.WaitIdle(wait)
	cancel()
	if err != nil {
		logger.Info("closing the sessions still running", "sessions", g.ActiveSessions(), "second_signal", now.Err() != nil)
	}
	// Closing waits for every session, and so for its recording.
	g.Close()
	if timeout > 0 && now.Err() == nil {
		ctx, cancel := context.WithTimeout(now, drainUploadWait)
		n, err := control.WaitUploaded(ctx, sp)
		cancel()
		switch {
		case err != nil:
			logger.Warn("drain: cannot look at the recording spool", "err", err)
		case n > 0:
			logger.Warn("recordings not yet uploaded stay in the spool and are uploaded at the next start", "recordings", n)
		}
	}
	logger.Info("drained", "took", time.Since(start).Round(time.Millisecond))
}

// metricsMux serves /metrics, and the probes of the health listener, on
// the metrics listener, so one port can serve both.
func metricsMux(metricsHandler http.Handler, g *gateway.Gateway) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsHandler)
	mux.Handle("GET /livez", probe(g.Live))
	mux.Handle("GET /readyz", probe(g.Ready))
	return mux
}

func probe(check func() error) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if err := check(); err != nil {
			http.Error(w, "unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	}
}

// defaultSpoolMinFree is the free disk space the spool needs to start a
// recording, unless the config says otherwise.
const defaultSpoolMinFree = 64 << 20

func spoolMinFree(f wire.GatewayFile) uint64 {
	if f.SpoolMinFreeMB > 0 {
		return uint64(f.SpoolMinFreeMB) << 20
	}
	return defaultSpoolMinFree
}
