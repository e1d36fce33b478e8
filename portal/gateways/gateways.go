// Package gateways keeps the portal's view of the gateways it may send sessions
// through, chooses one for a connection and opens the mutually authenticated
// session connection to it.
package gateways

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// DefaultSegment is the segment of the portal's embedded gateway. Resources
// that name no segment are served from any available gateway.
const DefaultSegment = "default"

// ErrNoGateway is returned by Select when no available gateway can serve a
// resource.
var ErrNoGateway = errors.New("no gateway available")

// Gateway is one gateway as the portal dials it.
type Gateway struct {
	ID      string
	Name    string
	Segment string
	// SSHAddr is the host:port of the gateway's SSH/SFTP session listener.
	SSHAddr string
	// Key is the gateway's pinned Ed25519 public key; a gateway without one is
	// pending and never selected.
	Key ed25519.PublicKey
}

// Pool holds the known gateways and dials them.
type Pool struct {
	identity *wire.Identity
	logger   *slog.Logger
	// timeout bounds the TCP dial, the TLS handshake and the wait for the
	// gateway's answer, which includes the gateway's own dial of the target.
	timeout time.Duration

	mu       sync.Mutex
	gateways []Gateway
}

// New returns a Pool that authenticates to gateways with identity.
func New(identity *wire.Identity, logger *slog.Logger, timeout time.Duration) *Pool {
	return &Pool{identity: identity, logger: logger, timeout: timeout}
}

// Set replaces the known gateways.
func (p *Pool) Set(gws []Gateway) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gateways = append([]Gateway(nil), gws...)
}

// Select chooses a gateway for a resource tagged with tags: at random among
// the available gateways of the segment a tag names, or among all available
// gateways when no tag names a known segment.
func (p *Pool) Select(tags []string) (Gateway, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	segments := map[string]bool{}
	for _, g := range p.gateways {
		segments[g.Segment] = true
	}
	segment := ""
	for _, t := range tags {
		if segments[t] {
			segment = t
			break
		}
	}
	var candidates []Gateway
	for _, g := range p.gateways {
		if len(g.Key) == 0 || (segment != "" && g.Segment != segment) {
			continue
		}
		candidates = append(candidates, g)
	}
	if len(candidates) == 0 {
		if segment != "" {
			return Gateway{}, fmt.Errorf("%w in segment %s", ErrNoGateway, segment)
		}
		return Gateway{}, ErrNoGateway
	}
	return candidates[rand.IntN(len(candidates))], nil
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

// Open dials gw, sends req and waits for the gateway's answer. On success the
// returned connection carries the session stream; the caller closes it. A
// refusal by the gateway (target unreachable, wrong password…) comes back as a
// *wire.Error.
func (p *Pool) Open(ctx context.Context, gw Gateway, req *wire.Request) (net.Conn, *wire.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	d := tls.Dialer{Config: wire.ClientTLSConfig(p.identity, gw.Key)}
	c, err := d.DialContext(ctx, "tcp", gw.SSHAddr)
	if err != nil {
		return nil, nil, &UnavailableError{Gateway: gw, Err: err}
	}
	// The deadline follows ctx so a gateway that never answers cannot hold the
	// browser's connection open.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if err := wire.WriteRequest(c, req); err != nil {
		c.Close()
		return nil, nil, &UnavailableError{Gateway: gw, Err: fmt.Errorf("send session request: %w", err)}
	}
	resp, err := wire.ReadResponse(c)
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, nil, &UnavailableError{Gateway: gw, Err: fmt.Errorf("no answer within %s", p.timeout)}
		}
		return nil, nil, &UnavailableError{Gateway: gw, Err: fmt.Errorf("read session response: %w", err)}
	}
	if !stop() {
		c.Close()
		return nil, nil, &UnavailableError{Gateway: gw, Err: fmt.Errorf("no answer within %s", p.timeout)}
	}
	if !resp.OK {
		c.Close()
		return nil, resp, resp.Err()
	}
	return c, resp, nil
}
