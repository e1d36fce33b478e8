// Package socks is the server side of SOCKS5 (RFC 1928) as keyway proxy
// needs it: no authentication, CONNECT only, and destination names kept as
// names, since the gateway in the target's segment resolves them.
//
// Hand-written rather than a library: the libraries at hand resolve names
// themselves or dial for themselves, and keyway needs the raw name and
// its own reply codes from the portal's answer.
package socks

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// Reply codes (RFC 1928 §6).
const (
	Succeeded          byte = 0x00
	GeneralFailure     byte = 0x01
	NotAllowed         byte = 0x02
	NetworkUnreachable byte = 0x03
	HostUnreachable    byte = 0x04
	ConnectionRefused  byte = 0x05
	TTLExpired         byte = 0x06
	CommandUnsupported byte = 0x07
	AddressUnsupported byte = 0x08
)

const (
	version5      = 0x05
	methodNone    = 0x00
	methodNoneOK  = 0xff
	cmdConnect    = 0x01
	atypIPv4      = 0x01
	atypName      = 0x03
	atypIPv6      = 0x04
	maxNameLength = 255 // one length byte
)

// Request is a CONNECT request's destination: Addr when it is an address,
// else Name.
type Request struct {
	Addr netip.Addr
	Name string
	Port int
}

// Host is the destination's address or name.
func (r Request) Host() string {
	if r.Addr.IsValid() {
		return r.Addr.String()
	}
	return r.Name
}

// String is host:port, with brackets around an IPv6 address.
func (r Request) String() string {
	if r.Addr.Is6() {
		return "[" + r.Addr.String() + "]:" + strconv.Itoa(r.Port)
	}
	return r.Host() + ":" + strconv.Itoa(r.Port)
}

// Handshake reads the client's greeting and CONNECT request from rw and
// answers the greeting. It reads no byte beyond the request, so what
// follows is the stream. On an error it has already sent the reply the
// error calls for, when there is one; the caller closes the connection.
// After a Request, the caller sends Reply.
func Handshake(rw io.ReadWriter) (Request, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(rw, hdr[:]); err != nil {
		return Request{}, fmt.Errorf("read the greeting: %w", err)
	}
	if hdr[0] != version5 {
		return Request{}, fmt.Errorf("not SOCKS5 (version byte %d)", hdr[0])
	}
	if hdr[1] == 0 {
		return Request{}, errors.New("the greeting offers no method")
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(rw, methods); err != nil {
		return Request{}, fmt.Errorf("read the greeting: %w", err)
	}
	ok := false
	for _, m := range methods {
		ok = ok || m == methodNone
	}
	if !ok {
		rw.Write([]byte{version5, methodNoneOK})
		return Request{}, errors.New("the client wants authentication, which this proxy does not take")
	}
	if _, err := rw.Write([]byte{version5, methodNone}); err != nil {
		return Request{}, fmt.Errorf("answer the greeting: %w", err)
	}
	var req [4]byte
	if _, err := io.ReadFull(rw, req[:]); err != nil {
		return Request{}, fmt.Errorf("read the request: %w", err)
	}
	if req[0] != version5 {
		return Request{}, fmt.Errorf("not SOCKS5 (version byte %d)", req[0])
	}
	if req[1] != cmdConnect {
		Reply(rw, CommandUnsupported)
		return Request{}, fmt.Errorf("command %d asked; only CONNECT is offered", req[1])
	}
	var r Request
	switch req[3] {
	case atypIPv4:
		var a [4]byte
		if _, err := io.ReadFull(rw, a[:]); err != nil {
			return Request{}, fmt.Errorf("read the request: %w", err)
		}
		r.Addr = netip.AddrFrom4(a)
	case atypIPv6:
		var a [16]byte
		if _, err := io.ReadFull(rw, a[:]); err != nil {
			return Request{}, fmt.Errorf("read the request: %w", err)
		}
		r.Addr = netip.AddrFrom16(a).Unmap()
	case atypName:
		var n [1]byte
		if _, err := io.ReadFull(rw, n[:]); err != nil {
			return Request{}, fmt.Errorf("read the request: %w", err)
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(rw, name); err != nil {
			return Request{}, fmt.Errorf("read the request: %w", err)
		}
		if !validName(name) {
			Reply(rw, HostUnreachable)
			return Request{}, fmt.Errorf("%q is not a host name", name)
		}
		// curl and others send addresses as names too.
		if a, err := netip.ParseAddr(string(name)); err == nil && a.Zone() == "" {
			r.Addr = a.Unmap()
		} else {
			r.Name = string(name)
		}
	default:
		Reply(rw, AddressUnsupported)
		return Request{}, fmt.Errorf("address type %d is not known", req[3])
	}
	var p [2]byte
	if _, err := io.ReadFull(rw, p[:]); err != nil {
		return Request{}, fmt.Errorf("read the request: %w", err)
	}
	r.Port = int(p[0])<<8 | int(p[1])
	if r.Port == 0 {
		Reply(rw, HostUnreachable)
		return Request{}, errors.New("port 0 asked")
	}
	return r, nil
}

// validName allows the letters of DNS names (and IP literals): the name
// goes into a request header and a gateway's resolver.
func validName(b []byte) bool {
	if len(b) == 0 || len(b) > maxNameLength {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == '_', c == ':':
		default:
			return false
		}
	}
	return true
}

// Reply sends a reply with an unspecified bound address: the stream's
// local end is at the gateway, which the client has no use for.
func Reply(w io.Writer, code byte) error {
	_, err := w.Write([]byte{version5, code, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
	return err
}
