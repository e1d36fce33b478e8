package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connectProxy is a forward proxy that answers CONNECT with status, and
// with 200 tunnels to the asked address; it counts the tunnels.
type connectProxy struct {
	ln      net.Listener
	status  int
	tunnels atomic.Int32
	wg      sync.WaitGroup
}

func startConnectProxy(t *testing.T, status int) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{ln: ln, status: status}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *connectProxy) serve(c net.Conn) {
	defer c.Close()
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	if p.status != http.StatusOK {
		fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n", p.status, http.StatusText(p.status))
		return
	}
	far, err := net.Dial("tcp", req.Host)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer far.Close()
	p.tunnels.Add(1)
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{}, 2)
	go func() { io.Copy(far, c); done <- struct{}{} }()
	go func() { io.Copy(c, far); done <- struct{}{} }()
	<-done
}

// TestThroughForwardProxy reaches the portal through an HTTP CONNECT
// proxy (HTTPS_PROXY), still over HTTP/2 end to end, and says in words
// when the proxy refuses.
func TestThroughForwardProxy(t *testing.T) {
	t.Parallel()
	var protos sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
		io.WriteString(w, `{"user":"alice"}`)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	newClient := func(p *connectProxy) *Client {
		pu := &url.URL{Scheme: "http", Host: p.ln.Addr().String()}
		c, err := New(Options{URL: srv.URL, TLS: &tls.Config{RootCAs: pool, ServerName: "example.com"},
			Proxy: func(*http.Request) (*url.URL, error) { return pu, nil }, Wait: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ok := startConnectProxy(t, http.StatusOK)
	var out struct{ User string }
	if err := newClient(ok).Do(ctx, http.MethodGet, "/api/v1/client/status", nil, &out); err != nil || out.User != "alice" {
		t.Fatalf("through the proxy: %+v, %v", out, err)
	}
	if n := ok.tunnels.Load(); n != 1 {
		t.Errorf("the proxy carried %d tunnels, want 1", n)
	}
	if _, h2 := protos.Load("HTTP/2.0"); !h2 {
		t.Error("the request through the proxy was not HTTP/2")
	}

	refusing := startConnectProxy(t, http.StatusProxyAuthRequired)
	err := newClient(refusing).Do(ctx, http.MethodGet, "/api/v1/client/status", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "refused the tunnel") {
		t.Fatalf("a refusing proxy gave %v", err)
	}
}
