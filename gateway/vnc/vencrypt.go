package vnc

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// VeNCrypt sub-types (the RFB community specification, "VeNCrypt").
const (
	vencPlain     = 256
	vencTLSNone   = 257
	vencTLSVnc    = 258
	vencTLSPlain  = 259
	vencX509None  = 260
	vencX509Vnc   = 261
	vencX509Plain = 262
	vencTLSSASL   = 263
	vencX509SASL  = 264
)

var vencNames = map[uint32]string{1: "None", 2: "VNC Authentication", vencPlain: "Plain", vencTLSNone: "TLSNone",
	vencTLSVnc: "TLSVnc", vencTLSPlain: "TLSPlain", vencX509None: "X509None", vencX509Vnc: "X509Vnc",
	vencX509Plain: "X509Plain", vencTLSSASL: "TLSSASL", vencX509SASL: "X509SASL"}

// maxSubTypes bounds the sub-types a server may list.
const maxSubTypes = 64

// CertMismatchError is a server certificate that differs from the pinned
// one.
type CertMismatchError struct{ Pinned, Got string }

func (e *CertMismatchError) Error() string {
	return fmt.Sprintf("the VNC server's TLS certificate changed: expected %s, got %s", e.Pinned, e.Got)
}

// UnverifiedPinError refuses a server that offers no security type that
// checks the pinned certificate (only VeNCrypt's X509 sub-types do):
// nothing is sent to it, the password least of all.
type UnverifiedPinError struct {
	// Pinned is the pinned certificate's fingerprint.
	Pinned string
	// Offered names the security types (or VeNCrypt sub-types) offered.
	Offered string
}

func (e *UnverifiedPinError) Error() string {
	return fmt.Sprintf("the VNC server offers only %s, none of which checks the pinned TLS certificate %s", e.Offered, e.Pinned)
}

// vencrypt runs the VeNCrypt handshake and whatever sub-type it picks.
// With an X509 sub-type the rest of the connection runs over TLS.
func (c *Client) vencrypt(cfg Config) error {
	var ver [2]byte
	if _, err := io.ReadFull(c.r, ver[:]); err != nil {
		return fmt.Errorf("read VeNCrypt version: %w", err)
	}
	if ver[0] != 0 || ver[1] < 2 {
		return fmt.Errorf("%w: VeNCrypt version %d.%d; 0.2 is required", ErrUnsupported, ver[0], ver[1])
	}
	if _, err := c.conn.Write([]byte{0, 2}); err != nil {
		return err
	}
	status, err := c.r.ReadByte()
	if err != nil {
		return err
	}
	if status != 0 {
		return fmt.Errorf("%w: the server refused VeNCrypt 0.2", ErrUnsupported)
	}
	n, err := c.r.ReadByte()
	if err != nil {
		return err
	}
	if n == 0 || n > maxSubTypes {
		return fmt.Errorf("%w: %d VeNCrypt sub-types", ErrProtocol, n)
	}
	subs := make([]uint32, n)
	if err := binary.Read(c.r, binary.BigEndian, subs); err != nil {
		return err
	}
	chosen := chooseSubType(subs, cfg)
	var names []string
	for _, s := range subs {
		names = append(names, cmpName(vencNames[s], fmt.Sprintf("type %d", s)))
	}
	if chosen == 0 && cfg.PinnedCert != "" {
		return &UnverifiedPinError{Pinned: strings.TrimPrefix(cfg.PinnedCert, wire.CertPrefix), Offered: "VeNCrypt with " + strings.Join(names, ", ")}
	}
	if chosen == 0 {
		hint := ""
		if hasAny(subs, vencTLSNone, vencTLSVnc, vencTLSPlain) {
			hint = "; anonymous TLS (TLSNone, TLSVnc, TLSPlain) is not used because it cannot prove the server's identity: give the server an X.509 certificate"
		}
		if hasAny(subs, vencPlain, vencX509Plain, vencTLSPlain) && cfg.Username == "" {
			hint += "; Plain sub-types need a login name on the resource"
		}
		return fmt.Errorf("%w: the server offers VeNCrypt with %s%s", ErrUnsupported, strings.Join(names, ", "), hint)
	}
	if err := binary.Write(c.conn, binary.BigEndian, chosen); err != nil {
		return err
	}
	if chosen == secNone || chosen == secVNCAuth {
		return c.plainSecurity(byte(chosen), cfg.Password)
	}
	ack, err := c.r.ReadByte()
	if err != nil {
		return err
	}
	if ack != 1 {
		return fmt.Errorf("%w: the server refused VeNCrypt sub-type %s", ErrUnsupported, vencNames[chosen])
	}
	if err := c.startTLS(cfg); err != nil {
		return err
	}
	switch chosen {
	case vencX509Vnc:
		return c.vncAuth(cfg.Password)
	case vencX509Plain:
		return c.plainAuth(cfg.Username, cfg.Password)
	}
	return c.securityResult()
}

func cmpName(name, fallback string) string {
	if name == "" {
		return fallback
	}
	return name
}

func hasAny(subs []uint32, want ...uint32) bool {
	for _, s := range subs {
		for _, w := range want {
			if s == w {
				return true
			}
		}
	}
	return false
}

// chooseSubType picks the strongest sub-type the credentials can use:
// X.509-authenticated TLS first, then the classic types, unless a
// certificate is pinned: then only the X509 sub-types, which check it.
// Plain without TLS would send the password in clear and anonymous TLS
// proves nothing about the server, so neither is ever chosen.
func chooseSubType(subs []uint32, cfg Config) uint32 {
	canPlain := cfg.Username != "" && cfg.Password != ""
	prefs := []uint32{}
	if canPlain {
		prefs = append(prefs, vencX509Plain)
	}
	if cfg.Password != "" {
		prefs = append(prefs, vencX509Vnc)
	}
	prefs = append(prefs, vencX509None)
	if cfg.PinnedCert == "" {
		if cfg.Password != "" {
			prefs = append(prefs, secVNCAuth)
		}
		prefs = append(prefs, secNone)
	}
	for _, p := range prefs {
		if hasAny(subs, p) {
			return p
		}
	}
	return 0
}

// startTLS switches the connection to TLS, checking the server's
// certificate against the pin, or reporting it for pinning when none is
// set yet.
func (c *Client) startTLS(cfg Config) error {
	if c.r.Buffered() > 0 {
		return fmt.Errorf("%w: data before the TLS handshake", ErrProtocol)
	}
	tc := tls.Client(c.conn, &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The certificate is checked by its pin below, not by a CA: VNC
		// servers mostly have self-signed certificates.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			fp := wire.CertFingerprint(cs.PeerCertificates[0].Raw)
			c.CertFingerprint = fp
			if pinned := strings.TrimPrefix(cfg.PinnedCert, wire.CertPrefix); pinned != "" && pinned != fp {
				return &CertMismatchError{Pinned: pinned, Got: fp}
			}
			return nil
		},
	})
	if err := tc.Handshake(); err != nil {
		var mismatch *CertMismatchError
		if errors.As(err, &mismatch) {
			return mismatch
		}
		var certErr *x509.CertificateInvalidError
		if errors.As(err, &certErr) {
			return fmt.Errorf("%w: the server's certificate is unusable: %v", ErrProtocol, err)
		}
		return fmt.Errorf("%w: TLS handshake: %v", ErrProtocol, err)
	}
	c.conn = tc
	c.r = bufio.NewReaderSize(tc, 64<<10)
	return nil
}

// vncAuth answers the VNC Authentication challenge, then reads the result.
func (c *Client) vncAuth(password string) error {
	var challenge [16]byte
	if _, err := io.ReadFull(c.r, challenge[:]); err != nil {
		return fmt.Errorf("read VNC challenge: %w", err)
	}
	resp, err := vncAuthResponse(password, challenge)
	if err != nil {
		return err
	}
	if _, err := c.conn.Write(resp[:]); err != nil {
		return err
	}
	return c.securityResult()
}

// plainAuth sends the login name and password (over TLS only).
func (c *Client) plainAuth(username, password string) error {
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(username)))
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(password)))
	msg = append(append(msg, username...), password...)
	if _, err := c.conn.Write(msg); err != nil {
		return err
	}
	return c.securityResult()
}
