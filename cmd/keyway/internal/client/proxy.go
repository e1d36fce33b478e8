package client

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// maxProxyAnswer bounds the forward proxy's answer to CONNECT, headers
// included: it is read before the TLS handshake, from a party we do not
// trust.
const maxProxyAnswer = 16 << 10

// proxyDial returns a dial function that reaches addresses through the
// forward proxy proxy names for an https:// URL of the address (as
// HTTPS_PROXY and NO_PROXY say, by default), with an HTTP CONNECT, and
// directly where it names none. TLS to the portal then runs end to end
// through the proxy's tunnel, so the proxy sees neither credentials nor
// streams; a proxy that does not pass HTTP/2 makes the client fall back
// to HTTP/1.1 CONNECT, one stream per connection.
func proxyDial(proxy func(*http.Request) (*url.URL, error), dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Scheme: "https", Host: addr}, Host: addr, Header: http.Header{}}
		pu, err := proxy(req)
		if err != nil {
			return nil, fmt.Errorf("read the proxy settings (HTTPS_PROXY): %w", err)
		}
		if pu == nil {
			return dial(ctx, network, addr)
		}
		if pu.Scheme != "http" && pu.Scheme != "https" && pu.Scheme != "" {
			return nil, fmt.Errorf("the proxy %s is not an http:// proxy, the only kind keyway uses", pu.Redacted())
		}
		proxyAddr := pu.Host
		if pu.Port() == "" {
			proxyAddr = net.JoinHostPort(pu.Hostname(), "80")
		}
		conn, err := dial(ctx, network, proxyAddr)
		if err != nil {
			return nil, fmt.Errorf("reach the proxy %s: %w", pu.Redacted(), err)
		}
		if err := proxyConnect(ctx, conn, pu, addr); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
}

// proxyConnect asks the proxy on conn for a tunnel to addr.
func proxyConnect(ctx context.Context, conn net.Conn, pu *url.URL, addr string) error {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
		defer conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := "CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	if u := pu.User; u != nil {
		pass, _ := u.Password()
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)) + "\r\n"
	}
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
		return fmt.Errorf("ask the proxy %s for a tunnel: %w", pu.Redacted(), err)
	}
	// One byte at a time past the answer's end would be slow; a buffered
	// reader may read ahead, but a proxy sends nothing after its answer
	// until the TLS handshake, which we start.
	br := bufio.NewReaderSize(&limitedConn{Conn: conn, left: maxProxyAnswer}, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return fmt.Errorf("read the proxy %s's answer: %w", pu.Redacted(), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the proxy %s refused the tunnel to %s: %s", pu.Redacted(), addr, resp.Status)
	}
	if br.Buffered() > 0 {
		return fmt.Errorf("the proxy %s sent data before the tunnel was used", pu.Redacted())
	}
	return nil
}

// limitedConn fails reads past left bytes.
type limitedConn struct {
	net.Conn
	left int
}

func (c *limitedConn) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("the proxy's answer is longer than %d bytes", maxProxyAnswer)
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= n
	return n, err
}
