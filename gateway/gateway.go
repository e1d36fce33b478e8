// Package gateway is the data plane: it accepts session connections from
// portals over mutual TLS, opens the real protocol connection to the target
// and streams the session back.
package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/gateway/sshgw"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// Defaults for Config's timeouts.
const (
	defaultDialTimeout      = 15 * time.Second
	defaultHandshakeTimeout = 10 * time.Second
)

// Config configures a Gateway.
type Config struct {
	// SSHAddr is the listen address for SSH terminal and SFTP sessions
	// (":7993" in production; "127.0.0.1:0" in tests).
	SSHAddr  string
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
}

// Gateway serves sessions.
type Gateway struct {
	cfg Config
	ssh *sshgw.Engine

	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
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
	g := &Gateway{cfg: cfg, ssh: sshgw.New(cfg.Logger, cfg.DialTimeout), conns: map[net.Conn]struct{}{}}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g, nil
}

// Start binds the session listener and serves it in the background.
func (g *Gateway) Start() error {
	ln, err := net.Listen("tcp", g.cfg.SSHAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", g.cfg.SSHAddr, err)
	}
	g.ln = ln
	g.cfg.Logger.Info("gateway listening", "addr", ln.Addr().String(), "key", g.cfg.Identity.PublicKeyString())
	g.wg.Add(1)
	go g.serve(tls.NewListener(ln, wire.ServerTLSConfig(g.cfg.Identity, g.cfg.TrustedPortal)))
	return nil
}

// Addr is the session listener's address.
func (g *Gateway) Addr() net.Addr { return g.ln.Addr() }

// Close stops listening, ends every session and waits for them.
func (g *Gateway) Close() error {
	g.cancel()
	var err error
	if g.ln != nil {
		err = g.ln.Close()
	}
	g.mu.Lock()
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
	return err
}

func (g *Gateway) serve(ln net.Listener) {
	defer g.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if g.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			g.cfg.Logger.Error("accept", "err", err)
			return
		}
		if !g.track(c) {
			c.Close()
			return
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer g.untrack(c)
			defer c.Close()
			g.handle(c.(*tls.Conn))
		}()
	}
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

// handle serves one session connection.
func (g *Gateway) handle(c *tls.Conn) {
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
	switch req.Protocol {
	case wire.ProtocolSSH:
		g.terminal(c, req, log)
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
	if err := wire.WriteResponse(c, resp); err != nil {
		t.Close()
		log.Warn("portal left before the session started", "err", err)
		return
	}
	log.Info("terminal session started", "host_key", resp.HostKeyFingerprint, "setup", time.Since(start).Round(time.Millisecond))
	ex := t.Relay(c)
	log.Info("terminal session ended", "status", ex.Status, "signal", ex.Signal, "message", ex.Message, "duration", time.Since(start).Round(time.Second))
}
