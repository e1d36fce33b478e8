package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyway-dev/keyway/cmd/keyway/internal/client"
	"github.com/keyway-dev/keyway/cmd/keyway/internal/socks"
	"github.com/keyway-dev/keyway/gateway/splice"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// defaultStreamLimit is the local bound when the portal states none.
const defaultStreamLimit = 256

// forwarder carries local connections over streams: at most limit at
// once, the excess closed at once with a line on stderr.
type forwarder struct {
	a      *app
	s      *session
	sem    chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newForwarder(a *app, s *session, limit int) *forwarder {
	if limit <= 0 {
		limit = defaultStreamLimit
	}
	return &forwarder{a: a, s: s, sem: make(chan struct{}, limit), conns: make(map[net.Conn]struct{})}
}

// dest is where one local connection goes: a Keyway-Target, the label
// for messages, and, for SOCKS, the reply to send once the stream opened
// or failed.
type dest struct {
	target string
	label  string
	reply  func(err error)
}

// serve accepts local connections until ctx ends, then closes them all
// and waits for their goroutines. route finds where each goes; ok false
// means it already told the client and the user why not.
func (f *forwarder) serve(ctx context.Context, l net.Listener, route func(net.Conn) (dest, bool)) error {
	stop := context.AfterFunc(ctx, func() {
		l.Close()
		f.mu.Lock()
		f.closed = true
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	defer stop()
	defer f.wg.Wait()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept local connections: %w", err)
		}
		select {
		case f.sem <- struct{}{}:
		default:
			conn.Close()
			f.a.stderr.line(fmt.Sprintf("keyway: more than %d connections at once (the portal's limit per device); closed a new one from %s", cap(f.sem), conn.RemoteAddr()))
			continue
		}
		if !f.track(conn) {
			conn.Close()
			<-f.sem
			return nil
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer func() { <-f.sem }()
			defer f.untrack(conn)
			defer conn.Close()
			d, ok := route(conn)
			if !ok {
				return
			}
			f.carry(ctx, conn, d)
		}()
	}
}

func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// carry opens the stream for one local connection and copies both ways.
func (f *forwarder) carry(ctx context.Context, conn net.Conn, d dest) {
	st, err := f.s.client.Open(ctx, d.target)
	if d.reply != nil {
		d.reply(err)
	}
	if err != nil {
		if ctx.Err() == nil {
			f.report(ctx, d.label, err)
		}
		return
	}
	var local io.ReadWriteCloser = conn
	if tc, ok := conn.(*net.TCPConn); ok {
		local = &lingerConn{TCPConn: tc}
	}
	splice.Join(local, st)
	if why := st.EndReason(); why != "" {
		f.a.stderr.line("keyway: " + d.label + ": the portal ended the connection: " + oneLine(why))
	}
}

// report tells the user, on one line, why a stream failed.
func (f *forwarder) report(ctx context.Context, label string, err error) {
	if e := f.a.refused(ctx, f.s, err); e != nil {
		f.a.stderr.line("keyway: " + oneLine(e.Error()))
		return
	}
	f.a.stderr.line("keyway: " + label + ": " + oneLine(err.Error()))
}

// lingerTime bounds the lingering close of a local connection.
const lingerTime = 2 * time.Second

// lingerConn closes a local connection whose sending side was ended
// (CloseWrite) only after reading what the application still sends, for up
// to lingerTime: closing a socket with unread input resets it, and a reset
// destroys the target's last bytes still on their way to the application
// (a target that answered and closed while the application was still
// sending).
type lingerConn struct {
	*net.TCPConn
	wroteEnd atomic.Bool
}

func (c *lingerConn) CloseWrite() error {
	err := c.TCPConn.CloseWrite()
	if err == nil {
		c.wroteEnd.Store(true)
	}
	return err
}

func (c *lingerConn) Close() error {
	if c.wroteEnd.Load() {
		c.SetReadDeadline(time.Now().Add(lingerTime))
		io.Copy(io.Discard, c.TCPConn)
	}
	return c.TCPConn.Close()
}

// resource is the granted resource called name, or an error saying there
// is none.
func (st *Status) resource(name string) (*StatusResource, error) {
	for i := range st.Resources {
		if st.Resources[i].Name == name {
			return &st.Resources[i], nil
		}
	}
	return nil, fmt.Errorf("no resource %q is granted to %s for native clients; keyway status lists those that are", name, st.User)
}

// granted signs in, reads the status and finds the granted resource
// called name; on success the caller closes s.client.
func (a *app) granted(ctx context.Context, http1 bool, name string) (*session, *Status, *StatusResource, error) {
	s, err := a.signedIn(http1)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := a.fetchStatus(ctx, s)
	if err == nil {
		var res *StatusResource
		if res, err = st.resource(name); err == nil {
			return s, st, res, nil
		}
	}
	s.client.Close()
	return nil, nil, nil, err
}

func (a *app) tunnel(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("tunnel", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "the local address to listen on")
	stdio := fs.Bool("stdio", false, "carry one connection on standard input and output (for ProxyCommand)")
	http1 := fs.Bool("http1", false, "use HTTP/1.1 CONNECT, one connection per stream")
	fs.BoolVar(&a.noBrowser, "no-browser", false, "do not open a browser for an MFA check; only print its address")
	pos, _, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: keyway tunnel RESOURCE [--listen 127.0.0.1:PORT] [--stdio]")
	}
	name := pos[0]
	s, st, res, err := a.granted(ctx, *http1, name)
	if err != nil {
		return err
	}
	defer s.client.Close()
	switch {
	case !res.Tunnel:
		return fmt.Errorf("%s may not be tunnelled to (its Tunnel option is off)", name)
	}
	label := name + " (" + oneLine(res.target()) + ")"
	target := "resource/" + name
	if *stdio {
		return a.stdio(ctx, s, target, label)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	fmt.Fprintf(a.env.Stdout, "listening on %s\n", l.Addr())
	if a.env.Listening != nil {
		a.env.Listening(l.Addr())
	}
	f := newForwarder(a, s, st.Limits.StreamsPerDevice)
	return f.serve(ctx, l, func(net.Conn) (dest, bool) {
		return dest{target: target, label: label}, true
	})
}

// stdioDrain bounds the wait for the standard input reader after the
// stream ended: a terminal read cannot always be interrupted.
const stdioDrain = time.Second

// stdio carries one stream on standard input and output.
func (a *app) stdio(ctx context.Context, s *session, target, label string) error {
	st, err := s.client.Open(ctx, target)
	if err != nil {
		if e := a.refused(ctx, s, err); e != nil {
			return e
		}
		return fmt.Errorf("%s: %w", label, err)
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	in := make(chan struct{})
	go func() {
		defer close(in)
		if _, err := splice.Copy(st, a.env.Stdin); err != nil {
			st.Close()
			return
		}
		st.CloseWrite()
	}()
	_, err = splice.Copy(a.env.Stdout, st)
	if c, ok := a.env.Stdin.(io.Closer); ok {
		c.Close()
	}
	t := time.NewTimer(stdioDrain)
	defer t.Stop()
	select {
	case <-in:
	case <-t.C:
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	return nil
}

func (a *app) proxy(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	addr := fs.String("socks", "", "the local address of the SOCKS5 proxy, like 127.0.0.1:1080")
	http1 := fs.Bool("http1", false, "use HTTP/1.1 CONNECT, one connection per stream")
	fs.BoolVar(&a.noBrowser, "no-browser", false, "do not open a browser for an MFA check; only print its address")
	pos, _, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 || *addr == "" {
		return errors.New("usage: keyway proxy --socks 127.0.0.1:1080")
	}
	s, err := a.signedIn(*http1)
	if err != nil {
		return err
	}
	defer s.client.Close()
	st, err := a.fetchStatus(ctx, s)
	if err != nil {
		return err
	}
	var rules wire.NetRules
	for _, n := range st.Networks {
		r, err := wire.ParseNetRules(n.Rules)
		if err != nil {
			a.stderr.line(fmt.Sprintf("keyway: the portal's rules of network %s cannot be read (%s); it is left out", oneLine(n.Name), oneLine(err.Error())))
			continue
		}
		rules = append(rules, r...)
	}
	if len(rules) == 0 {
		a.stderr.line("keyway: no network is granted to " + oneLine(st.User) + "; every connection will be refused")
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	fmt.Fprintf(a.env.Stdout, "SOCKS5 proxy listening on %s\n", l.Addr())
	if a.env.Listening != nil {
		a.env.Listening(l.Addr())
	}
	f := newForwarder(a, s, st.Limits.StreamsPerDevice)
	return f.serve(ctx, l, func(conn net.Conn) (dest, bool) {
		return a.socksRoute(conn, rules)
	})
}

// socksHandshakeTimeout bounds a SOCKS client's greeting and request.
const socksHandshakeTimeout = 30 * time.Second

func (a *app) socksRoute(conn net.Conn, rules wire.NetRules) (dest, bool) {
	conn.SetDeadline(time.Now().Add(socksHandshakeTimeout))
	req, err := socks.Handshake(conn)
	if err != nil {
		a.stderr.line("keyway: SOCKS request from " + conn.RemoteAddr().String() + ": " + oneLine(err.Error()))
		return dest{}, false
	}
	conn.SetDeadline(time.Time{})
	label := req.String()
	if req.Addr.IsValid() {
		if !rules.Allows(req.Addr, req.Port) {
			socks.Reply(conn, socks.NotAllowed)
			a.stderr.line("keyway: " + label + ": no network granted to you allows this address and port; refused here")
			return dest{}, false
		}
	} else if !rules.AllowsPort(req.Port) {
		socks.Reply(conn, socks.NotAllowed)
		a.stderr.line("keyway: " + label + ": no network granted to you allows port " + strconv.Itoa(req.Port) + "; refused here")
		return dest{}, false
	}
	host := req.Host()
	if req.Addr.IsValid() {
		host = netip.AddrPortFrom(req.Addr, uint16(req.Port)).String()
	} else {
		host = net.JoinHostPort(host, strconv.Itoa(req.Port))
	}
	return dest{
		target: "net/" + host,
		label:  label,
		reply: func(err error) {
			if err == nil {
				socks.Reply(conn, socks.Succeeded)
				return
			}
			socks.Reply(conn, replyCode(err))
		},
	}, true
}

// replyCode is the SOCKS reply for a failed stream.
func replyCode(err error) byte {
	var ref *client.Refusal
	if !errors.As(err, &ref) {
		return socks.GeneralFailure
	}
	switch ref.Code {
	case "target_refused":
		return socks.ConnectionRefused
	case "target_unreachable", "target_timeout":
		return socks.HostUnreachable
	case "not_allowed", "target_forbidden", "no_grant", "policy", "hook", client.CodeStepUp:
		return socks.NotAllowed
	}
	return socks.GeneralFailure
}
