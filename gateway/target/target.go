// Package target dials the targets sessions are for, and says in words
// why a dial failed.
package target

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
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

// minAttempt is the least time one address of several is given, so a
// first address that swallows packets leaves the others a chance without
// starving itself.
const minAttempt = 2 * time.Second

// DialAddrs connects to t's port on the first of addrs (t.Host resolved,
// and checked, by the caller) that answers, trying them in order within
// timeout (and ctx); as net.Dialer does, each but the last gets a share of
// what time is left. It returns the address connected to, or the first
// address's failure, whose words name the target and the address.
func DialAddrs(ctx context.Context, t wire.Target, addrs []netip.Addr, timeout time.Duration) (net.Conn, netip.Addr, *wire.Error) {
	if len(addrs) == 0 {
		return nil, netip.Addr{}, wire.Errorf(wire.CodeUnreachable, "target %s has no address to dial", t)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var first *wire.Error
	for i, a := range addrs {
		attempt, cancelAttempt := ctx, context.CancelFunc(func() {})
		if left := len(addrs) - i; left > 1 {
			if deadline, ok := ctx.Deadline(); ok {
				share := time.Until(deadline) / time.Duration(left)
				attempt, cancelAttempt = context.WithTimeout(ctx, max(share, minAttempt))
			}
		}
		var d net.Dialer
		c, err := d.DialContext(attempt, "tcp", netip.AddrPortFrom(a, uint16(t.Port)).String())
		cancelAttempt()
		if err == nil {
			return c, a, nil
		}
		if first == nil {
			first = dialError(Describe(t, []netip.Addr{a}), err, timeout)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, netip.Addr{}, first
}

// Describe names t and, when its host is a name, the addresses it
// resolved to: "db.internal:5432 (10.20.0.5, 10.20.0.6)".
func Describe(t wire.Target, addrs []netip.Addr) string {
	const shown = 4 // a long list helps nobody, and answers are bounded
	if h, err := netip.ParseAddr(t.Host); err == nil && len(addrs) == 1 && h.Unmap() == addrs[0] {
		return t.String()
	}
	var b strings.Builder
	for i, a := range addrs[:min(len(addrs), shown)] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(a.String())
	}
	if len(addrs) > shown {
		b.WriteString(", …")
	}
	return fmt.Sprintf("%s (%s)", t, b.String())
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
