package ldap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/tlsconf"
)

// TestDirectoryTLSSettings: connections to the directory use Config.TLS.
// Against an LDAPS listener that speaks only TLS 1.2, a 1.3 minimum fails
// the handshake; the defaults complete it (the listener then hangs up, so
// the bind fails later, for another reason).
func TestDirectoryTLSSettings(t *testing.T) {
	t.Parallel()
	cert, caPEM := selfSignedLoopback(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	base := Config{URL: "ldaps://" + ln.Addr().String(), CAPEM: caPEM,
		UserDNTemplate: "uid={username},ou=people,dc=example,dc=com", UserBase: "ou=people,dc=example,dc=com"}
	base.Defaults()
	for _, tc := range []struct {
		name      string
		s         tlsconf.Settings
		handshake bool
	}{
		{"defaults", tlsconf.Default(), true},
		{"minimum 1.3", tlsconf.Settings{MinVersion: tls.VersionTLS13}, false},
	} {
		c := base
		c.TLS = tc.s
		_, err := newDirectory(t, c).Authenticate(context.Background(), "alice", "pw")
		var se *StepError
		t.Logf("%s: %v", tc.name, err)
		tlsFailed := errors.As(err, &se) && se.Step == StepConnect && strings.Contains(err.Error(), "protocol version")
		if err == nil || tlsFailed == tc.handshake {
			t.Errorf("%s: %v; want the handshake to succeed: %v", tc.name, err, tc.handshake)
		}
	}
}

// selfSignedLoopback makes a certificate for 127.0.0.1 that is its own CA.
func selfSignedLoopback(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "directory"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
