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
func (r *Resolver) SetTrusted(p []netip.Prefix) {
	p = append([]netip.Prefix(nil), p...)
	r.trusted.Store(&p)
}

// Trusted returns the networks of trusted proxies.
func (r *Resolver) Trusted() []netip.Prefix { return append([]netip.Prefix(nil), *r.trusted.Load()...) }

// isTrusted says whether a is the address of a trusted proxy.
func isTrusted(trusted []netip.Prefix, a netip.Addr) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Addr returns the client address of req: the address the connection
// came from, unless that is a trusted proxy; then the nearest address
// the proxies' forwarding header names that is not a trusted proxy.
//
// Of the two headers, X-Forwarded-For (what most load balancers send)
// is read when present, Forwarded (RFC 7239) otherwise; the entries are
// walked from the right, past trusted proxies. A malformed entry is
// never believed: the walk stops at it and the last address before it
// is the client's.
func (r *Resolver) Addr(req *http.Request) string {
	remote, ok := remoteAddr(req.RemoteAddr)
	if !ok {
		return hostOf(req.RemoteAddr)
	}
	trusted := *r.trusted.Load()
	if len(trusted) == 0 || !isTrusted(trusted, remote) {
		return remote.String()
	}
	var hops hopList
	if v := req.Header.Values("X-Forwarded-For"); len(v) > 0 {
		hops = forwardedFor(v)
	} else if v := req.Header.Values("Forwarded"); len(v) > 0 {
		hops = forwarded(v)
	} else {
		return remote.String()
	}
	return walk(trusted, remote, hops).String()
}

// walk returns the client of a request that came from the trusted proxy
// remote with the forwarding entries hops.
func walk(trusted []netip.Prefix, remote netip.Addr, hops hopList) netip.Addr {
	client := remote
	for i := hops.n - 1; i >= 0; i-- {
		a, ok := parseHop(hops.at(i))
		if !ok {
			return client
		}
		client = a
		if !isTrusted(trusted, a) {
			return client
		}
	}
	return client
}

// remoteAddr parses a connection's "host:port" into an address, with
// IPv4-mapped IPv6 addresses unmapped so that IPv4 networks match them.
func remoteAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(hostOf(s))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func hostOf(s string) string {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return s
	}
	return host
}

// Info returns everything known about the client of req.
func (r *Resolver) Info(req *http.Request) Info {
	info := Info{Addr: r.Addr(req)}
	if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
		info.CommonName = clean(req.TLS.PeerCertificates[0].Subject.CommonName)
	}
	info.Platform, info.PlatformVersion, info.ClientVersion = hints(req.Header)
	return info
}
