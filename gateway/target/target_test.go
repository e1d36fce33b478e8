package target

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// TestDialAddrs checks that the addresses of a name are tried in order,
// and that a failure names the target and the address.
func TestDialAddrs(t *testing.T) {
	t.Parallel()
	ln, port := listenWhereFirstRefuses(t)
	defer ln.Close()
	one, two := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	target := wire.Target{Host: "db.internal", Port: port}

	c, got, werr := DialAddrs(context.Background(), target, []netip.Addr{one, two}, 5*time.Second)
	if werr != nil || got != two {
		t.Fatalf("dialed %v, %v; want the second address", got, werr)
	}
	c.Close()

	_, _, werr = DialAddrs(context.Background(), target, []netip.Addr{one}, 5*time.Second)
	if werr == nil || werr.Code != wire.CodeRefused || !strings.Contains(werr.Message, "target db.internal:"+strconv.Itoa(port)+" (127.0.0.1) refused") {
		t.Fatalf("got %v, want target_refused naming the name and the address", werr)
	}
	_, _, werr = DialAddrs(context.Background(), wire.Target{Host: "127.0.0.1", Port: port}, []netip.Addr{one}, 5*time.Second)
	if werr == nil || strings.Contains(werr.Message, "(127.0.0.1)") {
		t.Fatalf("an address named twice: %v", werr)
	}
	if _, _, werr = DialAddrs(context.Background(), target, nil, time.Second); werr == nil || werr.Code != wire.CodeUnreachable {
		t.Fatalf("no addresses: %v", werr)
	}
}

// listenWhereFirstRefuses listens on a port of 127.0.0.2 where 127.0.0.1
// does not listen (another test's listener may hold it: then another).
func listenWhereFirstRefuses(t *testing.T) (net.Listener, int) {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		c, err := net.Dial("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String())
		if err != nil {
			return ln, port
		}
		c.Close()
		ln.Close()
	}
	t.Fatal("127.0.0.1 listens on every port 127.0.0.2 got")
	return nil, 0
}
