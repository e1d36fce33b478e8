// Package gateways keeps the portal's view of its gateways: which exist,
// which are healthy, which one serves a resource, and how to open a session
// through it, directly or relayed through the embedded gateway (tunnel mode).
package gateways

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// DefaultSegment is the segment of the portal's embedded gateway.
const DefaultSegment = "default"

// ErrNoGateway is returned by Select when no available gateway can serve a
// resource.
var ErrNoGateway = errors.New("no gateway available")

// Gateway is one gateway as the portal dials it.
type Gateway struct {
	ID      string
	Name    string
	Segment string
	// SSHAddr, RDPAddr and VNCAddr are host:port of the session
	// listeners (7993 for SSH and SFTP, 7994, 7995); ManagementAddr of the
	// management listener (443).
	SSHAddr        string
	RDPAddr        string
	VNCAddr        string
	ManagementAddr string
	// Key is the gateway's pinned Ed25519 public key; a gateway without one
	// is pending and never selected.
	Key      ed25519.PublicKey
	Embedded bool
}

// SessionAddr is the listener for protocol's sessions: RDP and VNC have
// their own when set; SSH, SFTP and tcp (native clients' streams) share
// the SSH listener. A gateway takes a relay on any of them.
func (g Gateway) SessionAddr(protocol string) string {
	switch {
	case protocol == wire.ProtocolRDP && g.RDPAddr != "":
		return g.RDPAddr
	case protocol == wire.ProtocolVNC && g.VNCAddr != "":
		return g.VNCAddr
	}
	return g.SSHAddr
}

// State is a gateway's health as the portal sees it.
type State string

// States.
const (
	StatePending     State = "pending"     // no key pasted yet
	StateChecking    State = "checking"    // key known, not checked yet
	StateAvailable   State = "available"   // last check passed
	StateUnavailable State = "unavailable" // last check failed after retries
)

// Health is the result of the latest checks of a gateway.
type Health struct {
	State          State
	LastCheck      time.Time
	LastError      string
	Version        string
	Uptime         time.Duration
	ActiveSessions int
}

// Status is a gateway with its health, for pages.
type Status struct {
	Gateway
	Health
}

type entry struct {
	gw     Gateway
	health Health
	// conns are the open session connections through this gateway, closed
	// at once if its key is revoked or replaced.
	conns map[net.Conn]struct{}
	// transport carries health checks; it pins the key it was made with.
	transport *http.Transport
}

// Pool holds the known gateways and dials them.
type Pool struct {
	identity *wire.Identity
	logger   *slog.Logger
	// timeout bounds the TCP dial, the TLS handshake and the wait for the
	// gateway's answer, which includes the gateway's own dial of the target.
	timeout time.Duration
	now     func() time.Time

	mu      sync.Mutex
	entries map[string]*entry
	// segments are those an admin created, by lower-case name; a tag
	// naming one ties a resource to it even when it has no gateway left.
	segments map[string]Segment
	tunnel   bool
	// checkNow wakes the health loop, e.g. after a key was pasted.
	checkNow chan struct{}
	ledger   Ledger
	// drainNotify is told of gateways that drain (SetDrainNotify).
	drainNotify func(gatewayID string, deadline time.Time)
}

// Ledger remembers the recorded sessions the pool opened and through which
// gateway, so that the recording a gateway uploads later is checked
// against the session it really ran.
type Ledger interface {
	// Opened records a session; an error refuses the session.
	Opened(ctx context.Context, gw Gateway, req *wire.Request, started, opened time.Time) error
	// Closed records that the portal's side of session id closed.
	Closed(id string, at time.Time)
}

// SetLedger sets where recorded sessions are remembered.
func (p *Pool) SetLedger(l Ledger) {
	p.mu.Lock()
	p.ledger = l
	p.mu.Unlock()
}

// New returns a Pool that authenticates to gateways with identity.
func New(identity *wire.Identity, logger *slog.Logger, timeout time.Duration) *Pool {
	return &Pool{identity: identity, logger: logger, timeout: timeout, now: time.Now,
		entries: map[string]*entry{}, checkNow: make(chan struct{}, 1)}
}

// Close drops the idle health-check connections. Sessions are closed by
// their owners.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.entries {
		if e.transport != nil {
			e.transport.CloseIdleConnections()
		}
	}
}

// SetTunnel turns tunnel mode on or off for new connections.
func (p *Pool) SetTunnel(on bool) {
	p.mu.Lock()
	p.tunnel = on
	p.mu.Unlock()
}

// Tunnel reports whether tunnel mode is on.
func (p *Pool) Tunnel() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tunnel
}

// Set replaces the known gateways. Health is kept for gateways whose
// address and key did not change; sessions through a gateway that is gone
// or whose key changed are cut off at once.
func (p *Pool) Set(gws []Gateway) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := make(map[string]*entry, len(gws))
	kept := map[string]bool{}
	for _, g := range gws {
		e := &entry{gw: g, conns: map[net.Conn]struct{}{}, health: Health{State: StateChecking}}
		if len(g.Key) == 0 {
			e.health.State = StatePending
		}
		if old, ok := p.entries[g.ID]; ok && bytes.Equal(old.gw.Key, g.Key) &&
			old.gw.SSHAddr == g.SSHAddr && old.gw.RDPAddr == g.RDPAddr && old.gw.VNCAddr == g.VNCAddr && old.gw.ManagementAddr == g.ManagementAddr {
			e.health, e.conns, e.transport = old.health, old.conns, old.transport
			kept[g.ID] = true
		}
		next[g.ID] = e
	}
	for id, old := range p.entries {
		if kept[id] {
			continue
		}
		reason := fmt.Sprintf("An administrator revoked or replaced the key of gateway %s, or removed it; the session was closed.", old.gw.Name)
		for c := range old.conns {
			p.logger.Warn("closing session: the gateway's key was revoked or replaced, or the gateway removed", "gateway", old.gw.Name)
			c.(*trackedConn).closeWith(reason)
		}
		if old.transport != nil {
			old.transport.CloseIdleConnections()
		}
	}
	changed := len(kept) != len(next) || len(kept) != len(p.entries)
	p.entries = next
	if !changed {
		// Nothing to check anew: a cluster's replicas set the same
		// gateways every few seconds.
		return
	}
	select {
	case p.checkNow <- struct{}{}:
	default:
	}
}

// CheckRequests says when the set of gateways changed (a key pasted, an
// address changed), so that a health loop other than RunHealth checks at
// once.
func (p *Pool) CheckRequests() <-chan struct{} { return p.checkNow }

// Segment is a segment as selection needs it.
type Segment struct {
	Name string
	// ServesUntagged lets its gateways serve resources no tag ties to a
	// segment.
	ServesUntagged bool
}

// SetSegments replaces the known segments.
func (p *Pool) SetSegments(segs []Segment) {
	m := make(map[string]Segment, len(segs))
	for _, sg := range segs {
		m[strings.ToLower(sg.Name)] = sg
	}
	p.mu.Lock()
	p.segments = m
	p.mu.Unlock()
}

// Statuses returns every gateway with its health.
func (p *Pool) Statuses() []Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Status, 0, len(p.entries))
	for _, e := range p.entries {
		out = append(out, Status{Gateway: e.gw, Health: e.health})
	}
	return out
}

// Select chooses a gateway for a resource tagged with tags: at random among
// the available gateways of the segment a tag names (never outside it, even
// when it has none), or, when no tag names a segment, among the available
// gateways of the segments that serve untagged resources.
func (p *Pool) Select(tags []string) (Gateway, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Segments are those an admin created, and those of the gateways held
	// (for a pool that was never told the segments).
	named := func(t string) bool {
		if _, ok := p.segments[strings.ToLower(t)]; ok {
			return true
		}
		for _, e := range p.entries {
			if strings.EqualFold(e.gw.Segment, t) {
				return true
			}
		}
		return false
	}
	segment := ""
	for _, t := range tags {
		if named(t) {
			segment = t
			break
		}
	}
	var candidates []Gateway
	for _, e := range p.entries {
		if e.health.State != StateAvailable {
			continue
		}
		if segment != "" && !strings.EqualFold(e.gw.Segment, segment) {
			continue
		}
		if sg, ok := p.segments[strings.ToLower(e.gw.Segment)]; segment == "" && ok && !sg.ServesUntagged {
			continue
		}
		candidates = append(candidates, e.gw)
	}
	if len(candidates) == 0 {
		if segment != "" {
			return Gateway{}, fmt.Errorf("%w in segment %s", ErrNoGateway, segment)
		}
		return Gateway{}, ErrNoGateway
	}
	return candidates[rand.IntN(len(candidates))], nil
}

// embedded returns the embedded gateway, if it is available.
func (p *Pool) embedded() (Gateway, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.entries {
		if e.gw.Embedded && e.health.State == StateAvailable {
			return e.gw, true
		}
	}
	return Gateway{}, false
}

// UnavailableError reports that a gateway could not be reached or did not
// answer; the session never got as far as the target.
type UnavailableError struct {
	Gateway Gateway
	Err     error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("gateway %s (%s) is unavailable: %v", e.Gateway.Name, e.Gateway.SSHAddr, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Open dials gw, sends req and waits for the gateway's answer. With tunnel
// mode on, a gateway other than the embedded one is reached through the
// embedded gateway, which relays the TLS connection without seeing inside.
// On success the returned connection carries the session stream; the caller
// closes it. A refusal by the gateway (target unreachable, wrong
// password…) comes back as a *wire.Error with the Response.
func (p *Pool) Open(ctx context.Context, gw Gateway, req *wire.Request) (net.Conn, *wire.Response, error) {
	started := p.now()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	addr := gw.SessionAddr(req.Protocol)
	raw, err := p.dialRaw(ctx, gw, addr)
	if err != nil {
		return nil, nil, &UnavailableError{Gateway: gw, Err: err}
	}
	conn, resp, err := p.handshake(ctx, raw, gw, req)
	if err != nil {
		return nil, resp, err
	}
	p.mu.Lock()
	ledger := p.ledger
	p.mu.Unlock()
	var closed func()
	if ledger != nil && req.Kind == wire.KindSession && req.Recording != nil {
		if err := ledger.Opened(ctx, gw, req, started, p.now()); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("remember session %s: %w", req.SessionID, err)
		}
		closed = func() { ledger.Closed(req.SessionID, p.now()) }
	}
	tracked, ok := p.track(gw, conn, closed)
	if !ok {
		conn.Close()
		if closed != nil {
			closed()
		}
		return nil, nil, &UnavailableError{Gateway: gw, Err: errors.New("its key was revoked")}
	}
	return tracked, resp, nil
}

// dialRaw returns a byte stream to gw's session listener at addr: a TCP
// connection, or in tunnel mode a relay through the embedded gateway.
func (p *Pool) dialRaw(ctx context.Context, gw Gateway, addr string) (net.Conn, error) {
	if !gw.Embedded && p.Tunnel() {
		via, ok := p.embedded()
		if !ok {
			return nil, errors.New("tunnel mode is on and the embedded gateway is unavailable")
		}
		c, _, err := p.handshake(ctx, nil, via, &wire.Request{Kind: wire.KindRelay,
			Relay: &wire.Relay{GatewayID: gw.ID, Address: addr}})
		if err != nil {
			var we *wire.Error
			if errors.As(err, &we) {
				return nil, errors.New(we.Message)
			}
			return nil, fmt.Errorf("tunnel through %s: %w", via.Name, err)
		}
		return c, nil
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// handshake runs mutual TLS with gw over raw (dialing when raw is nil),
// sends req and reads the response.
func (p *Pool) handshake(ctx context.Context, raw net.Conn, gw Gateway, req *wire.Request) (net.Conn, *wire.Response, error) {
	if raw == nil {
		var d net.Dialer
		var err error
		if raw, err = d.DialContext(ctx, "tcp", gw.SSHAddr); err != nil {
			return nil, nil, &UnavailableError{Gateway: gw, Err: err}
		}
	}
	c := tls.Client(raw, wire.ClientTLSConfig(p.identity, gw.Key))
	// The deadline follows ctx so a gateway that never answers cannot hold
	// the browser's connection open.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	fail := func(err error) (net.Conn, *wire.Response, error) {
		c.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer within %s", p.timeout)
		}
		return nil, nil, &UnavailableError{Gateway: gw, Err: err}
	}
	if err := c.HandshakeContext(ctx); err != nil {
		return fail(fmt.Errorf("TLS handshake: %w", err))
	}
	if err := wire.WriteRequest(c, req); err != nil {
		return fail(fmt.Errorf("send request: %w", err))
	}
	resp, err := wire.ReadResponse(c)
	if err != nil {
		return fail(err)
	}
	if !stop() {
		return fail(errors.New("no answer in time"))
	}
	if !resp.OK {
		c.Close()
		return nil, resp, resp.Err()
	}
	return c, resp, nil
}

// trackedConn unregisters itself from its gateway entry when closed, and
// remembers why the portal closed it, if it did.
type trackedConn struct {
	net.Conn
	once   sync.Once
	close  func()
	reason atomic.Pointer[string]
	code   atomic.Pointer[string]
}

func (t *trackedConn) Close() error {
	err := t.Conn.Close()
	t.once.Do(t.close)
	return err
}

// closeWith closes the connection with a reason for the user. It runs
// under the pool's lock, so it does not unregister (the caller drops the
// whole set).
func (t *trackedConn) closeWith(reason string) {
	t.closeWithCode("gateway_revoked", reason)
}

func (t *trackedConn) closeWithCode(code, reason string) {
	t.code.Store(&code)
	t.reason.Store(&reason)
	t.Conn.Close()
}

// Terminate cuts a session connection the pool opened, with a reason the
// user is shown; it reports false for a connection it did not open.
func Terminate(c net.Conn, reason string) bool {
	return TerminateWith(c, "terminated", reason)
}

// TerminateWith is Terminate with the machine-readable code CloseCode
// reports, e.g. "access_revoked" or "idle_timeout".
func TerminateWith(c net.Conn, code, reason string) bool {
	t, ok := c.(*trackedConn)
	if ok {
		t.closeWithCode(code, reason)
	}
	return ok
}

// CloseWrite ends what the portal sends on a session connection while
// it goes on reading (a TLS close_notify): a native client's stream that
// half-closed.
func CloseWrite(c net.Conn) error {
	if t, ok := c.(*trackedConn); ok {
		c = t.Conn
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// CloseCode is the machine-readable kind of a CloseReason:
// "gateway_revoked", "terminated" or the code given to TerminateWith.
func CloseCode(c net.Conn) string {
	if t, ok := c.(*trackedConn); ok {
		if r := t.code.Load(); r != nil {
			return *r
		}
	}
	return ""
}

// CloseReason says why the portal cut a session connection, or "".
func CloseReason(c net.Conn) string {
	if t, ok := c.(*trackedConn); ok {
		if r := t.reason.Load(); r != nil {
			return *r
		}
	}
	return ""
}

// track registers c as a session through gw; closed, if set, runs when c
// is closed.
func (p *Pool) track(gw Gateway, c net.Conn, closed func()) (net.Conn, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[gw.ID]
	if !ok || !bytes.Equal(e.gw.Key, gw.Key) {
		return nil, false
	}
	conns := e.conns
	tc := &trackedConn{Conn: c}
	tc.close = func() {
		p.mu.Lock()
		delete(conns, tc)
		p.mu.Unlock()
		if closed != nil {
			closed()
		}
	}
	conns[tc] = struct{}{}
	return tc, true
}
