package targets

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
)

// EchoServer is an in-process TCP server on a free loopback port that
// writes back every byte it reads, per connection, until the peer closes
// its side; then it closes its own.
type EchoServer struct {
	Host string
	Port int

	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	count int
}

// Addr returns host:port.
func (e *EchoServer) Addr() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// Accepted returns how many connections the server has taken so far.
func (e *EchoServer) Accepted() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.count
}

// StartEcho starts an echo server; Close stops it.
func StartEcho() (*EchoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := ln.Addr().(*net.TCPAddr)
	e := &EchoServer{Host: "127.0.0.1", Port: a.Port, ln: ln, conns: map[net.Conn]struct{}{}}
	e.wg.Add(1)
	go e.serve()
	return e, nil
}

func (e *EchoServer) serve() {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return // closed
		}
		e.mu.Lock()
		if e.conns == nil { // closed meanwhile
			e.mu.Unlock()
			c.Close()
			return
		}
		e.conns[c] = struct{}{}
		e.count++
		e.mu.Unlock()
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			io.Copy(c, c)
			e.mu.Lock()
			delete(e.conns, c)
			e.mu.Unlock()
			c.Close()
		}()
	}
}

// Close stops accepting, closes every open connection and waits for the
// server's goroutines.
func (e *EchoServer) Close() error {
	err := e.ln.Close()
	e.mu.Lock()
	for c := range e.conns {
		c.Close()
	}
	e.conns = nil
	e.mu.Unlock()
	e.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// NewEcho starts an echo server for a test and stops it when the test
// ends.
func NewEcho(t testing.TB) *EchoServer {
	t.Helper()
	e, err := StartEcho()
	if err != nil {
		t.Fatalf("start echo server: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// HTTPBody is what NewHTTP's server answers to every GET, so a test can
// tell it from any other server's page.
const HTTPBody = "keyway loopback HTTP target\n"

// NewHTTP starts a plain HTTP server on a free loopback port that answers
// every request with HTTPBody, and stops it when the test ends. Its host
// and port are in the returned server's Listener.Addr().
func NewHTTP(t testing.TB) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, HTTPBody)
	}))
	t.Cleanup(s.Close)
	return s
}

// NewSilent starts a TCP server on a free loopback port that accepts
// every connection and never reads or answers: a hung server, to test
// timeouts. It returns host:port; the test's cleanup closes the listener
// and the connections it holds.
func NewSilent(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	})
	return ln.Addr().String()
}
