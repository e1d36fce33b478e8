package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

// handshake dials the portal's HTTPS listener with conf and returns the
// negotiated state.
func handshake(t *testing.T, base string, conf *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conf.InsecureSkipVerify = true // self-signed, loopback
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", u.Host, conf)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

// TestServeTLSSettings: the HTTPS listener applies --tls-min-version and
// --tls-server-ciphers.
func TestServeTLSSettings(t *testing.T) {
	t.Parallel()
	const gcm = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
	base := serveConfig{Listen: "127.0.0.1:0", GatewayListen: "127.0.0.1:0", GatewayRDPListen: "127.0.0.1:0",
		GatewayVNCListen: "127.0.0.1:0", LogLevel: "info"}
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		cfg := base
		cfg.DataDir = t.TempDir()
		p, _, _ := startPortalWith(t, cfg)
		if st, err := handshake(t, p.URL, &tls.Config{}); err != nil || st.Version != tls.VersionTLS13 {
			t.Fatalf("a default client: %#x, %v; want TLS 1.3", st.Version, err)
		}
		if st, err := handshake(t, p.URL, &tls.Config{MaxVersion: tls.VersionTLS12}); err != nil || st.Version != tls.VersionTLS12 {
			t.Fatalf("a TLS 1.2 client: %#x, %v", st.Version, err)
		}
		if _, err := handshake(t, p.URL, &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
			t.Fatal("a TLS 1.1 client was served")
		}
	})
	t.Run("minimum 1.3", func(t *testing.T) {
		t.Parallel()
		cfg := base
		cfg.DataDir, cfg.TLSMinVersion = t.TempDir(), "1.3"
		p, _, _ := startPortalWith(t, cfg)
		if _, err := handshake(t, p.URL, &tls.Config{MaxVersion: tls.VersionTLS12}); err == nil {
			t.Fatal("a TLS 1.2 client was served")
		}
		if st, err := handshake(t, p.URL, &tls.Config{}); err != nil || st.Version != tls.VersionTLS13 {
			t.Fatalf("a TLS 1.3 client: %#x, %v", st.Version, err)
		}
	})
	t.Run("one suite", func(t *testing.T) {
		t.Parallel()
		cfg := base
		cfg.DataDir, cfg.TLSServerCiphers = t.TempDir(), gcm
		p, _, _ := startPortalWith(t, cfg)
		if _, err := handshake(t, p.URL, &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}); err == nil {
			t.Fatal("a TLS 1.2 client without the suite was served")
		}
		st, err := handshake(t, p.URL, &tls.Config{MaxVersion: tls.VersionTLS12})
		if err != nil || tls.CipherSuiteName(st.CipherSuite) != gcm {
			t.Fatalf("a TLS 1.2 client: %s, %v; want %s", tls.CipherSuiteName(st.CipherSuite), err, gcm)
		}
	})
}

// TestServeRefusesBadTLSSettings: bad TLS flags stop the start with the
// flag and the entry named.
func TestServeRefusesBadTLSSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--tls-min-version", "1.1"}, "--tls-min-version: TLS 1.1 is insecure"},
		{[]string{"--tls-server-ciphers", "TLS_ECDHE_RSA_WITH_RC4_128_SHA"}, `--tls-server-ciphers: cipher suite "TLS_ECDHE_RSA_WITH_RC4_128_SHA" is insecure`},
		{[]string{"--tls-client-ciphers", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,AES"}, `--tls-client-ciphers: cipher suite "AES" is unknown; allowed: TLS_ECDHE_`},
		{[]string{"--tls-min-version", "1.3", "--tls-server-ciphers", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}, "TLS 1.2 only"},
		// The self-signed certificate has an ECDSA key.
		{[]string{"--tls-server-ciphers", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}, "--tls-server-ciphers: HTTP/2 over TLS 1.2 requires the AES-128-GCM suite for the certificate's ECDSA key"},
		{[]string{"--tls-server-ciphers", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"}, "add TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
	} {
		args := append([]string{"--data", t.TempDir(), "--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0",
			"--gateway-rdp-listen", "127.0.0.1:0", "--gateway-vnc-listen", "127.0.0.1:0"}, tc.flags...)
		err := serve(context.Background(), args, io.Discard, func(context.Context, *portal) error {
			t.Errorf("%v: the portal started", tc.flags)
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want an error with %q", tc.flags, err, tc.want)
		}
	}
}
