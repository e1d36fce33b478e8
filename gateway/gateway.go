// Package gateway is the data plane: it accepts session connections from
// portals over mutual TLS, opens the real protocol connection to the target
// and streams the session back.
package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyway-dev/keyway/gateway/metrics"
	"github.com/keyway-dev/keyway/gateway/splice"
	"github.com/keyway-dev/keyway/gateway/spool"
	"github.com/keyway-dev/keyway/gateway/sshgw"
	"github.com/keyway-dev/keyway/gateway/target"
	"github.com/keyway-dev/keyway/gateway/vnc"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// Defaults for Config's timeouts.
const (
	defaultDialTimeout      = 15 * time.Second
	defaultHandshakeTimeout = 10 * time.Second
)

// Config configures a Gateway.
type Config struct {
	// SSHAddr is the listen address for SSH terminal, SFTP and tcp
	// sessions (":7993" in production; "127.0.0.1:0" in tests). RDPAddr (":7994")
	// and VNCAddr (":7995") are those of RDP and VNC sessions; a protocol
	// without its own address is served on SSHAddr. Every listener takes
	// relays.
	SSHAddr  string
	RDPAddr  string
	VNCAddr  string
	Identity *wire.Identity
	// TrustedPortal approves a portal's key; it is asked at every
	// handshake, so a revoked key is refused at once.
	TrustedPortal func(ed25519.PublicKey) bool
	Logger        *slog.Logger
	// DialTimeout bounds reaching and signing in to a target.
	DialTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake and reading the request, so
	// a silent or half-open client is dropped quickly.
	HandshakeTimeout time.Duration

	// ManagementAddr, if set, serves GET /status over the same mutual TLS
	// for the portal's health checks.
	ManagementAddr string
	// HealthAddr, if set, serves plain GET /healthz or /livez (liveness) and
	// /readyz (readiness) for orchestrators.
	HealthAddr string
	// ID and Version are reported by /status.
	ID      string
	Version string
	// Networks returns the networks targets must be in; none allows any.
	// It is asked per session, so a pulled config applies at once.
	Networks func() []netip.Prefix
	// ConfigVersion reports the version of the config in use, for /status.
	ConfigVersion func() int64
	// Spool, if set, is where sessions are recorded; its owner runs the
	// uploader. Without one, sessions whose resource requires recording
	// are refused and others run unrecorded.
	Spool *spool.Spool
	// Name is how the gateway names itself in recordings (ID if empty).
	Name string
	// KeyFrameInterval is the least time between two key frames of a
	// desktop recording (display.DefaultKeyFrameInterval if 0).
	KeyFrameInterval time.Duration
	// Ready, if set, says why the gateway may not take sessions yet (a
	// remote gateway without a signed config from the portal); nil means
	// it may. It is asked per session and by /status.
	Ready func() error
	// RelayAddresses returns the session listeners (host:port) of the
	// gateways the portal has enrolled: the only addresses a relay may
	// reach. Without it the gateway relays nowhere.
	RelayAddresses func() []string
	// Listen opens the session listeners (net.Listen if nil; tests
	// inject failures).
	Listen func(network, address string) (net.Listener, error)
	// Metrics counts sessions and their bytes; nil counts nothing.
	Metrics *metrics.Gateway
}

// Accept retries: a listener whose Accept fails (too many open files, say)
// is retried with a delay doubling from minAcceptDelay to maxAcceptDelay.
const (
	minAcceptDelay = 5 * time.Millisecond
	maxAcceptDelay = time.Second
)

// Gateway serves sessions.
type Gateway struct {
	cfg Config
	ssh *sshgw.Engine

	ln net.Listener
	// listeners by protocol (ssh, rdp, vnc); rdp and vnc may be ln.
	lns     map[string]net.Listener
	mgmt    net.Addr
	health  net.Addr
	servers []*http.Server
	started time.Time
	active  atomic.Int64
	// idleChanged is closed and replaced when a session ends (WaitIdle);
	// drain is set once the gateway drains.
	idleMu      sync.Mutex
	idleChanged chan struct{}
	drain       atomic.Pointer[drainState]
	ctx         context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	// acceptErrs holds the error of each session listener whose Accept
	// fails now; while one does, the gateway reports itself unhealthy.
	acceptErrs map[net.Listener]error
}

// New checks cfg and returns a Gateway; Start begins listening.
func New(cfg Config) (*Gateway, error) {
	if cfg.Identity == nil || cfg.TrustedPortal == nil || cfg.Logger == nil {
		return nil, errors.New("gateway config needs Identity, TrustedPortal and Logger")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
	}
	if cfg.Networks == nil {
		cfg.Networks = func() []netip.Prefix { return nil }
	}
	if cfg.ConfigVersion == nil {
		cfg.ConfigVersion = func() int64 { return 0 }
	}
	if cfg.Ready == nil {
		cfg.Ready = func() error { return nil }
	}
	if cfg.RelayAddresses == nil {
		cfg.RelayAddresses = func() []string { return nil }
	}
	if cfg.Listen == nil {
		cfg.Listen = net.Listen
	}
	g := &Gateway{cfg: cfg, ssh: sshgw.New(cfg.Logger, cfg.DialTimeout), conns: map[net.Conn]struct{}{},
		acceptErrs: map[net.Listener]error{}, idleChanged: make(chan struct{})}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g, nil
}

// Start binds the listeners and serves them in the background.
func (g *Gateway) Start() error {
	g.started = time.Now()
	tlsConf := wire.ServerTLSConfig(g.cfg.Identity, g.cfg.TrustedPortal)
	ln, err := g.cfg.Listen("tcp", g.cfg.SSHAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", g.cfg.SSHAddr, err)
	}
	g.ln = ln
	g.lns = map[string]net.Listener{wire.ProtocolSSH: ln, wire.ProtocolRDP: ln, wire.ProtocolVNC: ln}
	for protocol, addr := range map[string]string{wire.ProtocolRDP: g.cfg.RDPAddr, wire.ProtocolVNC: g.cfg.VNCAddr} {
		if addr == "" {
			continue
		}
		l, err := g.cfg.Listen("tcp", addr)
		if err != nil {
			g.closeListeners()
			return fmt.Errorf("listen for %s sessions on %s: %w", protocol, addr, err)
		}
		g.lns[protocol] = l
	}
	if g.cfg.ManagementAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /status", g.status)
		addr, err := g.serveHTTP(g.cfg.ManagementAddr, mux, tlsConf)
		if err != nil {
			g.closeListeners()
			return err
		}
		g.mgmt = addr
	}
	if g.cfg.HealthAddr != "" {
		mux := http.NewServeMux()
		// /healthz fails while a session listener cannot accept (a
		// restart may help); /readyz also until the first signed config
		// (a restart would not).
		probe := func(check func() error) http.HandlerFunc {
			return func(w http.ResponseWriter, _ *http.Request) {
				if check() != nil {
					http.Error(w, "unavailable", http.StatusServiceUnavailable)
					return
				}
				io.WriteString(w, "ok\n")
			}
		}
		mux.HandleFunc("GET /healthz", probe(g.acceptFailure))
		mux.HandleFunc("GET /livez", probe(g.acceptFailure)) // the portal's name for it
		mux.HandleFunc("GET /readyz", probe(g.unhealthy))
		addr, err := g.serveHTTP(g.cfg.HealthAddr, mux, nil)
		if err != nil {
			g.Close()
			return err
		}
		g.health = addr
	}
	g.cfg.Logger.Info("gateway listening", "ssh", ln.Addr().String(), "rdp", g.lns[wire.ProtocolRDP].Addr().String(),
		"vnc", g.lns[wire.ProtocolVNC].Addr().String(), "management", addrString(g.mgmt), "key", g.cfg.Identity.PublicKeyString())
	for _, protocol := range []string{wire.ProtocolSSH, wire.ProtocolRDP, wire.ProtocolVNC} {
		l := g.lns[protocol]
		if protocol != wire.ProtocolSSH && l == ln {
			continue
		}
		g.wg.Add(1)
		go g.serve(l, tlsConf, g.accepts(l))
	}
	return nil
}

// addrString is a's text, or "" for none (the log shows where a listener
// bound, port 0 resolved).
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// accepts returns the protocols listener l serves.
func (g *Gateway) accepts(l net.Listener) map[string]bool {
	ok := map[string]bool{}
	for protocol, pl := range g.lns {
		if pl == l {
			ok[protocol] = true
		}
	}
	if ok[wire.ProtocolSSH] {
		ok[wire.ProtocolSFTP] = true
		ok[wire.ProtocolTCP] = true
	}
	return ok
}

// closeListeners closes the session listeners.
func (g *Gateway) closeListeners() error {
	var err error
	seen := map[net.Listener]bool{}
	for _, l := range g.lns {
		if !seen[l] {
			seen[l] = true
			err = errors.Join(err, l.Close())
		}
	}
	return err
}

// serveHTTP serves h on addr, with TLS when tlsConf is set, and returns
// the address it listens on.
func (g *Gateway) serveHTTP(addr string, h http.Handler, tlsConf *tls.Config) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	bound := ln.Addr()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(g.cfg.Logger.Handler(), slog.LevelDebug)}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	g.servers = append(g.servers, srv)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		srv.Serve(ln)
	}()
	return bound, nil
}

func (g *Gateway) status(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	st := wire.Status{
		GatewayID: g.cfg.ID, Version: g.cfg.Version, UptimeSeconds: int64(time.Since(g.started).Seconds()),
		ActiveSessions: int(g.active.Load()), ConfigVersion: g.cfg.ConfigVersion(), DrainDeadline: g.drainDeadline(),
	}
	if err := g.unhealthy(); err != nil {
		// The portal's health check marks the gateway unavailable, so no
		// session is sent to it until it can take them again.
		st.Error = err.Error()
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(st)
}

// unhealthy says why the gateway cannot take sessions now, or nil.
func (g *Gateway) unhealthy() error {
	if err := g.draining(); err != nil {
		return err
	}
	if err := g.cfg.Ready(); err != nil {
		return err
	}
	return g.acceptFailure()
}

// Live is nil while every session listener accepts connections (the
// liveness probe).
func (g *Gateway) Live() error { return g.acceptFailure() }

// Ready is nil while the gateway can take sessions (the readiness probe).
func (g *Gateway) Ready() error { return g.unhealthy() }

// acceptFailure says which session listener cannot accept connections
// now, or nil.
func (g *Gateway) acceptFailure() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for l, err := range g.acceptErrs {
		return fmt.Errorf("the session listener on %s cannot accept connections: %w", l.Addr(), err)
	}
	return nil
}

// Addr is the SSH, SFTP and tcp session listener's address.
func (g *Gateway) Addr() net.Addr { return g.ln.Addr() }

// SessionAddr is the address of the listener for protocol's sessions.
func (g *Gateway) SessionAddr(protocol string) net.Addr {
	if l, ok := g.lns[protocol]; ok {
		return l.Addr()
	}
	return g.ln.Addr()
}

// ManagementAddr is the management listener's address, or nil.
func (g *Gateway) ManagementAddr() net.Addr { return g.mgmt }

// HealthAddr is the plain health listener's address, or nil.
func (g *Gateway) HealthAddr() net.Addr { return g.health }

// ActiveSessions is the number of sessions running now.
func (g *Gateway) ActiveSessions() int { return int(g.active.Load()) }

// Close stops listening, ends every session and waits for them.
func (g *Gateway) Close() error {
	g.cancel()
	var err error
	if g.lns != nil {
		err = g.closeListeners()
	}
	for _, srv := range g.servers {
		srv.Close()
	}
	g.mu.Lock()
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
	return err
}

// serve accepts session connections for protocols on l (and relays). An
// Accept that fails (too many open files, say) is retried with backoff
// until the gateway closes; meanwhile the gateway reports itself unhealthy.
func (g *Gateway) serve(l net.Listener, tlsConf *tls.Config, protocols map[string]bool) {
	defer g.wg.Done()
	var delay time.Duration
	for {
		raw, err := l.Accept()
		if err != nil {
			if g.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, minAcceptDelay), maxAcceptDelay)
			if g.setAcceptErr(l, err) {
				g.cfg.Logger.Error("session listener cannot accept connections; retrying", "addr", l.Addr().String(), "err", err)
			}
			t := time.NewTimer(delay)
			select {
			case <-g.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		if delay > 0 {
			delay = 0
			g.setAcceptErr(l, nil)
			g.cfg.Logger.Info("session listener accepts connections again", "addr", l.Addr().String())
		}
		c := tls.Server(g.cfg.Metrics.CountConn(raw), tlsConf)
		if !g.track(c) {
			c.Close()
			return
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer g.untrack(c)
			defer c.Close()
			g.handle(c, protocols)
		}()
	}
}

// setAcceptErr records whether l's Accept fails and reports whether it
// started failing.
func (g *Gateway) setAcceptErr(l net.Listener, err error) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, was := g.acceptErrs[l]
	if err == nil {
		delete(g.acceptErrs, l)
		return false
	}
	g.acceptErrs[l] = err
	return !was
}

func (g *Gateway) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil {
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *Gateway) untrack(c net.Conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// handle serves one session connection that came in on the listener for
// protocols.
func (g *Gateway) handle(c *tls.Conn, protocols map[string]bool) {
	log := g.cfg.Logger.With("client", c.RemoteAddr().String())
	c.SetDeadline(time.Now().Add(g.cfg.HandshakeTimeout))
	if err := c.HandshakeContext(g.ctx); err != nil {
		log.Warn("refused connection: TLS handshake failed", "err", err)
		return
	}
	req, err := wire.ReadRequest(c)
	if err != nil {
		log.Warn("refused connection: unreadable session request", "err", err)
		wire.WriteResponse(c, &wire.Response{Code: wire.CodeBadRequest, Message: "the gateway could not read the session request"})
		return
	}
	c.SetDeadline(time.Time{})
	log = log.With("session", req.SessionID, "user", req.User, "resource", req.Resource, "target", req.Target.String(), "protocol", req.Protocol)
	if err := req.Validate(); err != nil {
		log.Warn("refused session: invalid request", "err", err)
		wire.WriteResponse(c, &wire.Response{Code: wire.CodeBadRequest, Message: "invalid session request: " + err.Error()})
		return
	}
	if err := g.draining(); err != nil {
		g.cfg.Metrics.SessionRefused(req.Protocol, string(wire.CodeDraining))
		log.Info("refused session: the gateway drains")
		wire.WriteResponse(c, &wire.Response{Code: wire.CodeDraining, Message: "The gateway is restarting and takes no new sessions; reconnect in a moment."})
		return
	}
	if err := g.cfg.Ready(); err != nil {
		g.cfg.Metrics.SessionRefused(req.Protocol, string(wire.CodeGatewayDown))
		log.Warn("refused session: the gateway is not ready", "err", err)
		wire.WriteResponse(c, &wire.Response{Code: wire.CodeGatewayDown, Message: "the gateway cannot take sessions yet: " + err.Error()})
		return
	}
	if req.Kind == wire.KindRelay {
		g.relay(c, req, log)
		return
	}
	if !protocols[req.Protocol] {
		log.Warn("refused session: wrong port for the protocol")
		wire.WriteResponse(c, &wire.Response{Code: wire.CodeBadRequest,
			Message: fmt.Sprintf("this gateway port does not take %s sessions; the portal has the wrong port for it", req.Protocol)})
		return
	}
	addrs, resp := g.checkTarget(req)
	if resp != nil {
		g.cfg.Metrics.SessionRefused(req.Protocol, string(resp.Code))
		log.Warn("refused session: target not allowed or not found", "code", resp.Code, "reason", resp.Message)
		wire.WriteResponse(c, resp)
		return
	}
	if resp := g.checkRecording(req, log); resp != nil {
		g.cfg.Metrics.SessionRefused(req.Protocol, string(resp.Code))
		wire.WriteResponse(c, resp)
		return
	}
	g.sessionStarted()
	defer g.sessionEnded()
	// Counted as started once the gateway's own checks passed; a target
	// that then refuses shows in the portal's outcome codes.
	g.cfg.Metrics.SessionOpened(req.Protocol)
	defer g.cfg.Metrics.SessionEnded(req.Protocol)
	switch req.Protocol {
	case wire.ProtocolSSH:
		g.terminal(c, req, log)
	case wire.ProtocolSFTP:
		g.files(c, req, log)
	case wire.ProtocolVNC:
		g.vncDesktop(c, req, log)
	case wire.ProtocolRDP:
		g.rdpDesktop(c, req, log)
	case wire.ProtocolTCP:
		g.tcp(c, req, addrs, log)
	default:
		log.Warn("refused session: protocol not supported")
		wire.WriteResponse(c, &wire.Response{Code: wire.CodeUnsupported, Message: fmt.Sprintf("this gateway does not support %s sessions yet", req.Protocol)})
	}
}

func (g *Gateway) terminal(c *tls.Conn, req *wire.Request, log *slog.Logger) {
	start := time.Now()
	t, resp := g.ssh.OpenTerminal(g.ctx, req)
	if !resp.OK {
		log.Warn("session refused", "code", resp.Code, "reason", resp.Message)
		wire.WriteResponse(c, resp)
		return
	}
	// Recording starts only now that the target accepted the login.
	rec, err := g.startTerminalRecording(req, log)
	if err != nil {
		t.Close()
		refusal := recordingRefusal(req, err)
		refusal.HostKey, refusal.HostKeyFingerprint = resp.HostKey, resp.HostKeyFingerprint
		log.Error("session refused: it must be recorded and the recording could not start", "err", err)
		wire.WriteResponse(c, refusal)
		return
	}
	var recorder sshgw.Recorder
	if rec != nil {
		defer rec.finish()
		recorder = rec
	}
	if err := wire.WriteResponse(c, resp); err != nil {
		t.Close()
		log.Warn("portal left before the session started", "err", err)
		return
	}
	log.Info("terminal session started", "host_key", resp.HostKeyFingerprint, "setup", time.Since(start).Round(time.Millisecond))
	ex := t.Relay(c, recorder)
	log.Info("terminal session ended", "status", ex.Status, "signal", ex.Signal, "message", ex.Message, "duration", time.Since(start).Round(time.Second))
}

// refuseUnrecorded answers a session that must be recorded, and whose
// recording could not start, with the reason; ok is the answer it would
// have had, whose pinned key is passed on.
func (g *Gateway) refuseUnrecorded(c *tls.Conn, req *wire.Request, ok *wire.Response, err error, log *slog.Logger) {
	refusal := recordingRefusal(req, err)
	refusal.HostKey, refusal.HostKeyFingerprint = ok.HostKey, ok.HostKeyFingerprint
	log.Error("session refused: it must be recorded and the recording could not start", "err", err)
	wire.WriteResponse(c, refusal)
}

// files serves a target's sftp subsystem: after the response the
// connection carries the raw SFTP protocol, spoken by the portal's client.
// The portal audits each file operation; the gateway logs the session.
func (g *Gateway) files(c *tls.Conn, req *wire.Request, log *slog.Logger) {
	start := time.Now()
	s, resp := g.ssh.OpenSFTP(g.ctx, req)
	if !resp.OK {
		log.Warn("session refused", "code", resp.Code, "reason", resp.Message)
		wire.WriteResponse(c, resp)
		return
	}
	if err := wire.WriteResponse(c, resp); err != nil {
		s.Close()
		log.Warn("portal left before the session started", "err", err)
		return
	}
	log.Debug("sftp session started", "host_key", resp.HostKeyFingerprint, "setup", time.Since(start).Round(time.Millisecond))
	up, down := s.Relay(c)
	log.Debug("sftp session ended", "sent", up, "received", down, "duration", time.Since(start).Round(time.Millisecond))
}

// maxTargetAddrs bounds the addresses of one target name that are checked
// and dialed, so a hostile DNS answer cannot make the gateway dial
// hundreds.
const maxTargetAddrs = 16

// checkTarget refuses targets outside the allowed networks: the segment's
// (as a second line of defence behind the portal's own checks) and, for a
// request with Allow, the network resource's rules. When either restricts,
// and always for a tcp session (whose host may be a name only this
// segment's DNS knows), the target is resolved here, with the gateway's
// resolver, and dialed by address, so a name cannot resolve to another
// address between the check and the dial. It returns the addresses that
// may be dialed, in the resolver's order (nil when nothing restricts and
// the engine dials the name); for the engines, which dial req.Target, the
// target's host becomes the first of them.
func (g *Gateway) checkTarget(req *wire.Request) ([]netip.Addr, *wire.Response) {
	nets := g.cfg.Networks()
	if len(nets) == 0 && len(req.Allow) == 0 && req.Protocol != wire.ProtocolTCP {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.DialTimeout)
	defer cancel()
	resolved, err := net.DefaultResolver.LookupNetIP(ctx, "ip", req.Target.Host)
	if err != nil || len(resolved) == 0 {
		return nil, &wire.Response{Code: wire.CodeUnreachable, Message: fmt.Sprintf("target host %s could not be resolved by the gateway", req.Target.Host)}
	}
	var seen, inNets, allowed []netip.Addr
	for _, a := range resolved {
		a = a.Unmap()
		if slices.Contains(seen, a) || len(seen) == maxTargetAddrs {
			continue
		}
		seen = append(seen, a)
		if len(nets) > 0 && !slices.ContainsFunc(nets, func(n netip.Prefix) bool { return n.Contains(a) }) {
			continue
		}
		inNets = append(inNets, a)
		if len(req.Allow) == 0 || req.Allow.Allows(a, req.Target.Port) {
			allowed = append(allowed, a)
		}
	}
	switch {
	case len(inNets) == 0:
		return nil, &wire.Response{Code: wire.CodeForbiddenTarget,
			Message: fmt.Sprintf("target %s is outside the networks this gateway may reach; an administrator can allow it in the segment's settings", target.Describe(req.Target, seen))}
	case len(allowed) == 0:
		return nil, &wire.Response{Code: wire.CodeForbiddenTarget,
			Message: fmt.Sprintf("target %s is outside the networks and ports the network resource allows", target.Describe(req.Target, inNets))}
	}
	if req.Protocol != wire.ProtocolTCP {
		req.Target.Host = allowed[0].String()
	}
	return allowed, nil
}

// tcp serves a native client's stream: it dials the first address that
// checkTarget allowed and, after the answer, the connection carries the
// target's bytes unchanged both ways. It is not recorded; the portal
// audits it.
func (g *Gateway) tcp(c *tls.Conn, req *wire.Request, addrs []netip.Addr, log *slog.Logger) {
	start := time.Now()
	if req.Recording != nil {
		// Only a required recording refuses it (checkRecording).
		log.Info("tcp session not recorded: raw TCP tunnels cannot be recorded")
	}
	conn, addr, werr := target.DialAddrs(g.ctx, req.Target, addrs, g.cfg.DialTimeout)
	if werr != nil {
		log.Warn("session refused", "code", werr.Code, "reason", werr.Message)
		wire.WriteResponse(c, &wire.Response{Code: werr.Code, Message: werr.Message})
		return
	}
	log = log.With("address", addr.String())
	if err := wire.WriteResponse(c, &wire.Response{OK: true}); err != nil {
		conn.Close()
		log.Warn("portal left before the session started", "err", err)
		return
	}
	log.Info("tcp session started", "setup", time.Since(start).Round(time.Millisecond))
	sent, received, err := splice.Join(c, conn)
	log.Info("tcp session ended", "sent", sent, "received", received, "err", err, "duration", time.Since(start).Round(time.Millisecond))
}

// relay forwards the rest of the connection to another gateway. The portal
// runs a TLS handshake with that gateway through this one, so only
// ciphertext passes here: no credentials, no session content.
func (g *Gateway) relay(c *tls.Conn, req *wire.Request, log *slog.Logger) {
	log = log.With("relay_to", req.Relay.Address, "relay_gateway", req.Relay.GatewayID)
	if !slices.ContainsFunc(g.cfg.RelayAddresses(), func(a string) bool { return sameAddress(a, req.Relay.Address) }) {
		// Never dialed, so the answer says nothing about the address.
		log.Warn("relay refused: not the address of an enrolled gateway")
		wire.WriteResponse(c, &wire.Response{Code: wire.CodeForbiddenTarget,
			Message: "this gateway relays only to the gateways the portal has enrolled, and " + req.Relay.Address + " is not one of them"})
		return
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.DialTimeout)
	var d net.Dialer
	far, err := d.DialContext(ctx, "tcp", req.Relay.Address)
	cancel()
	if err != nil {
		// The reason (refused, timed out…) stays in the log: in the
		// answer it would tell a port scanner what is listening.
		log.Warn("relay refused: far gateway unreachable", "err", err)
		wire.WriteResponse(c, &wire.Response{Code: wire.CodeGatewayDown,
			Message: fmt.Sprintf("the gateway at %s could not be reached from the tunnel gateway", req.Relay.Address)})
		return
	}
	if err := wire.WriteResponse(c, &wire.Response{OK: true}); err != nil {
		far.Close()
		return
	}
	g.sessionStarted()
	defer g.sessionEnded()
	start := time.Now()
	log.Info("relay started")
	// An end passes through as a half-close, so a tcp session relayed to
	// the far gateway keeps its half-close; an idle relayed stream holds
	// only small buffers.
	sent, received, err := splice.Join(c, far)
	log.Info("relay ended", "sent", sent, "received", received, "err", err, "duration", time.Since(start).Round(time.Millisecond))
}

// sameAddress reports whether host:port a and b name the same listener,
// ignoring the case of host names.
func sameAddress(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp {
		return false
	}
	if aa, err := netip.ParseAddr(ah); err == nil {
		ba, err := netip.ParseAddr(bh)
		return err == nil && aa.Unmap() == ba.Unmap()
	}
	return strings.EqualFold(ah, bh)
}

// vncDesktop serves a VNC desktop as Guacamole display instructions.
func (g *Gateway) vncDesktop(c *tls.Conn, req *wire.Request, log *slog.Logger) {
	start := time.Now()
	conn, werr := target.Dial(g.ctx, req.Target, g.cfg.DialTimeout)
	if werr != nil {
		log.Warn("session refused", "code", werr.Code, "reason", werr.Message)
		wire.WriteResponse(c, &wire.Response{Code: werr.Code, Message: werr.Message})
		return
	}
	conn.SetDeadline(time.Now().Add(g.cfg.DialTimeout))
	var opts wire.Desktop
	if req.Desktop != nil {
		opts = *req.Desktop
	}
	client, err := vnc.Connect(conn, vnc.Config{Username: req.Credentials.Username, Password: string(req.Credentials.Password),
		PinnedCert: req.HostKey, Shared: true, Depth: opts.ColorDepth})
	if err != nil {
		conn.Close()
		resp := vncRefusal(req.Target, err)
		log.Warn("session refused", "code", resp.Code, "reason", resp.Message)
		wire.WriteResponse(c, resp)
		return
	}
	conn.SetDeadline(time.Time{})
	ok := &wire.Response{OK: true}
	if fp := client.CertFingerprint; fp != "" {
		ok.HostKey, ok.HostKeyFingerprint = wire.CertPrefix+fp, fp // pinned by the portal on first use
	}
	// Recording starts only now that the server accepted the sign-in.
	rec, err := g.startDesktopRecording(req, log)
	if err != nil {
		client.Close()
		g.refuseUnrecorded(c, req, ok, err, log)
		return
	}
	defer rec.finish()
	if err := wire.WriteResponse(c, ok); err != nil {
		client.Close()
		return
	}
	w, h := client.Size()
	fw, fh := client.FramebufferSize()
	log.Info("desktop session started", "name", client.Name, "size", fmt.Sprintf("%dx%d", w, h),
		"framebuffer", fmt.Sprintf("%dx%d", fw, fh), "setup", time.Since(start).Round(time.Millisecond))
	err = client.Serve(g.ctx, c, opts, rec.display(opts))
	log.Info("desktop session ended", "err", err, "duration", time.Since(start).Round(time.Second), "rects", client.RectCounts())
}

// vncRefusal says in words why a VNC server could not be signed in to.
func vncRefusal(t wire.Target, err error) *wire.Response {
	var ne net.Error
	var mismatch *vnc.CertMismatchError
	var unverified *vnc.UnverifiedPinError
	switch {
	case errors.As(err, &unverified):
		return &wire.Response{Code: wire.CodeHostKeyMismatch,
			Message: fmt.Sprintf("the VNC server at %s offers only %s, so it cannot prove it holds the TLS certificate pinned for this resource (%s): the connection was refused and no password was sent. This can mean TLS was turned off on the server, or that someone in the path is hiding it. If the server really no longer uses TLS, an administrator can clear the pin with \"Forget pinned TLS certificate\" on the resource's page (under /admin/resources)", t, unverified.Offered, unverified.Pinned)}
	case errors.As(err, &mismatch):
		return &wire.Response{Code: wire.CodeHostKeyMismatch,
			Message: fmt.Sprintf("the TLS certificate of the VNC server at %s has changed: expected %s, got %s. This can mean the server's certificate was renewed, or that someone is intercepting the connection; an administrator must check and accept the new certificate on the resource's page", t, mismatch.Pinned, mismatch.Got),
			HostKey: wire.CertPrefix + mismatch.Got, HostKeyFingerprint: mismatch.Got}
	case errors.Is(err, vnc.ErrAuthFailed):
		return &wire.Response{Code: wire.CodeAuthFailed, Message: fmt.Sprintf("the VNC server at %s refused the password", t)}
	case errors.Is(err, vnc.ErrUnsupported), errors.Is(err, vnc.ErrProtocol):
		return &wire.Response{Code: wire.CodeUnsupported, Message: fmt.Sprintf("cannot sign in to %s: %v", t, err)}
	case errors.As(err, &ne) && ne.Timeout():
		return &wire.Response{Code: wire.CodeTimeout, Message: fmt.Sprintf("the VNC server at %s did not complete the handshake in time", t)}
	}
	return &wire.Response{Code: wire.CodeUnreachable, Message: fmt.Sprintf("the VNC handshake with %s failed: %v", t, err)}
}
