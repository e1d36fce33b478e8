package rdp

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
)

// maxServerConnections bounds the connections FreeRDP may open for one
// session: the first, and one for each security protocol it falls back to
// (NLA, TLS, standard RDP) or retries after its transport failed.
const maxServerConnections = 4

// pipe carries FreeRDP's connections to the server. FreeRDP connects to a
// Unix socket in the session's private directory (its "/path" form of the
// host name), and each connection it makes is forwarded to a TCP
// connection Go dials afresh: the first to one dialled before FreeRDP
// starts, so that dial errors keep their words and the caller's context.
//
// Why not hand FreeRDP a dialled socket ("|fd")? FreeRDP closes its socket
// when a security protocol fails and reconnects with the same descriptor
// number to try the next one. By then Go may have given that number to an
// unrelated connection, which FreeRDP would read, write and close.
// Through the pipe FreeRDP owns every descriptor it uses.
type pipe struct {
	path   string
	addr   string
	ln     *net.UnixListener
	ctx    context.Context // ends the dials; cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	first    *net.TCPConn // for FreeRDP's first connection
	conns    map[net.Conn]struct{}
	accepted int
	closed   bool
	dialErr  error // why a later dial failed
}

// newPipe listens in dir for FreeRDP and forwards to addr; first is the
// already dialled connection for FreeRDP's first connection. The pipe owns
// first from here.
func newPipe(dir, addr string, first *net.TCPConn) (*pipe, error) {
	path := filepath.Join(dir, "server")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		first.Close()
		return nil, fmt.Errorf("rdp: listen for FreeRDP: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipe{path: path, addr: addr, ln: ln, ctx: ctx, cancel: cancel, first: first, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	return p, nil
}

func (p *pipe) serve() {
	for {
		c, err := p.ln.AcceptUnix()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		if p.closed || p.accepted >= maxServerConnections {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.accepted++
		server := p.first
		p.first = nil
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.forward(c, server) })
	}
}

// forward copies between one FreeRDP connection and the server until
// either side ends, then closes both.
func (p *pipe) forward(c *net.UnixConn, server *net.TCPConn) {
	defer p.drop(c)
	if server == nil {
		d := net.Dialer{Timeout: defaultConnectTimeout}
		sc, err := d.DialContext(p.ctx, "tcp", p.addr)
		if err != nil {
			p.mu.Lock()
			p.dialErr = dialError(err)
			p.mu.Unlock()
			return
		}
		server = sc.(*net.TCPConn)
	}
	if !p.track(server) {
		return
	}
	defer p.drop(server)
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		// One direction ending ends the connection: RDP has no use for a
		// half-closed one, and closing both wakes the other copy.
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go cp(server, c)
	go cp(c, server)
	<-done
	<-done
}

// track adds conn to what close closes, or closes it if the pipe is
// closed already.
func (p *pipe) track(conn net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		conn.Close()
		return false
	}
	p.conns[conn] = struct{}{}
	return true
}

func (p *pipe) drop(conn net.Conn) {
	conn.Close()
	p.mu.Lock()
	delete(p.conns, conn)
	p.mu.Unlock()
}

// lastDialError is why the latest dial for FreeRDP failed, if one did.
func (p *pipe) lastDialError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dialErr
}

// shutdown ends every connection and the listener without waiting: it
// unblocks FreeRDP wherever it is reading.
func (p *pipe) shutdown() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	p.cancel()
	p.ln.Close()
	if p.first != nil {
		p.first.Close()
		p.first = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// close shuts the pipe down and waits for its goroutines.
func (p *pipe) close() {
	p.shutdown()
	p.wg.Wait()
}
