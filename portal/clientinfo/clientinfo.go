// Package clientinfo says who is on the other end of a request: the
// client's address (believing X-Forwarded-For and Forwarded only from
// trusted proxies), its TLS client certificate's name, and its platform
// and browser from User-Agent Client Hints.
package clientinfo

import (
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
)

// Info describes the client of one request.
type Info struct {
	// Addr is the client's IP address, after trusted-proxy handling.
	Addr string
	// CommonName is the CN of the client's TLS certificate, if it
	// presented one.
	CommonName string
	// Platform and PlatformVersion are the client's operating system, and
	// ClientVersion its browser name and version ("Chromium 120.0.6099.71").
	Platform, PlatformVersion, ClientVersion string
}

// Resolver reads client information from requests. Its trusted proxies
// can change while it serves.
type Resolver struct {
	trusted atomic.Pointer[[]netip.Prefix]
}

// New returns a Resolver that trusts no proxy.
func New() *Resolver {
	r := &Resolver{}
	r.trusted.Store(&[]netip.Prefix{})
	return r
}

// SetTrusted replaces the networks of trusted proxies.
func (r *Resolver) SetTrusted(p []netip.Prefix) { r.trusted.Store(&p) }

// Trusted returns the networks of trusted proxies.
func (r *Resolver) Trusted() []netip.Prefix { return *r.trusted.Load() }

// Addr returns the client address of req.
func (r *Resolver) Addr(req *http.Request) string {
	// TODO(settings helper): X-Forwarded-For / Forwarded from trusted proxies.
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		return req.RemoteAddr
	}
	return host
}

// Info returns everything known about the client of req.
func (r *Resolver) Info(req *http.Request) Info {
	// TODO(settings helper): certificate CN and client hints.
	return Info{Addr: r.Addr(req)}
}
