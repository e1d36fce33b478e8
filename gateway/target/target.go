// Package target dials the targets sessions are for, and says in words
// why a dial failed.
package target

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// Dial connects to t within timeout (and ctx).
func Dial(ctx context.Context, t wire.Target, timeout time.Duration) (net.Conn, *wire.Error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", t.String())
	if err != nil {
		return nil, dialError(t.String(), err, timeout)
	}
	return c, nil
}

func dialError(target string, err error, timeout time.Duration) *wire.Error {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return wire.Errorf(wire.CodeRefused, "target %s refused the connection: is the server running on that port?", target)
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return wire.Errorf(wire.CodeTimeout, "target %s did not answer within %s", target, timeout)
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return wire.Errorf(wire.CodeUnreachable, "target %s cannot be reached from the gateway (no route)", target)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return wire.Errorf(wire.CodeUnreachable, "target host %s could not be resolved by the gateway", dnsErr.Name)
	}
	return wire.Errorf(wire.CodeUnreachable, "target %s could not be reached: %v", target, err)
}
