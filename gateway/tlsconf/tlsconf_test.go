package tlsconf

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want uint16
		err  string
	}{
		{"", tls.VersionTLS12, ""},
		{"1.2", tls.VersionTLS12, ""},
		{"1.3", tls.VersionTLS13, ""},
		{"TLS1.3", tls.VersionTLS13, ""},
		{" tls 1.2 ", tls.VersionTLS12, ""},
		{"1.1", 0, "insecure"},
		{"1.0", 0, "insecure"},
		{"1.4", 0, `"1.4" is unknown`},
		{"13", 0, "unknown"},
	} {
		got, err := ParseVersion(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseVersion(%q) = %v, %v; want error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseVersion(%q) = %#x, %v; want %#x", tc.in, got, err, tc.want)
		}
	}
}

func TestParseSuites(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []uint16
		err  string // substring of the error; the allowed list must follow
	}{
		{"", nil, ""},
		{"  ", nil, ""},
		{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, ""},
		{"tls_ecdhe_rsa_with_aes_256_gcm_sha384 , TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
			[]uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, ""},
		{"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", []uint16{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}, ""},
		{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, ""},
		{"TLS_BOGUS", nil, `"TLS_BOGUS" is unknown`},
		{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,,", nil, "entry 2 is empty"},
		{"TLS_RSA_WITH_RC4_128_SHA", nil, `"TLS_RSA_WITH_RC4_128_SHA" is insecure`},
		{"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", nil, "is insecure"},
		{"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", nil, `"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA" is insecure`},
		{"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", nil, "is insecure"},
		{"TLS_RSA_WITH_AES_128_GCM_SHA256", nil, "is insecure"},
		{"TLS_AES_128_GCM_SHA256", nil, "TLS 1.3 suite"},
		{strings.Repeat("x", maxListLen+1), nil, "more than"},
	} {
		got, err := ParseSuites(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSuites(%.40q) = %v, %v; want error with %q", tc.in, got, err, tc.err)
			} else if tc.err != "more than" && !strings.Contains(err.Error(), "allowed: TLS_ECDHE_") {
				t.Errorf("ParseSuites(%q) error %q does not list the allowed names", tc.in, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseSuites(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestAllowedSuitesParse(t *testing.T) {
	t.Parallel()
	names := AllowedSuites()
	if len(names) == 0 {
		t.Fatal("no allowed suites")
	}
	ids, err := ParseSuites(strings.Join(names, ","))
	if err != nil || len(ids) != len(names) {
		t.Fatalf("the allowed names do not parse: %v, %v", ids, err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	one := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	for _, tc := range []struct {
		s  Settings
		ok bool
	}{
		{Default(), true},
		{Settings{MinVersion: tls.VersionTLS13}, true},
		{Settings{MinVersion: tls.VersionTLS12, ServerSuites: one, ClientSuites: one}, true},
		{Settings{MinVersion: tls.VersionTLS13, ServerSuites: one}, false},
		{Settings{MinVersion: tls.VersionTLS13, ClientSuites: one}, false},
		{Settings{}, false},
		{Settings{MinVersion: tls.VersionTLS11}, false},
	} {
		if err := tc.s.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v.Validate() = %v, want ok %v", tc.s, err, tc.ok)
		}
	}
}

func TestApply(t *testing.T) {
	t.Parallel()
	s := Settings{MinVersion: tls.VersionTLS12, ServerSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		ClientSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}
	if c := s.Server(nil); c.MinVersion != tls.VersionTLS12 || !slices.Equal(c.CipherSuites, s.ServerSuites) {
		t.Errorf("Server: %#x %v", c.MinVersion, c.CipherSuites)
	}
	if c := s.Client(&tls.Config{}); c.MinVersion != tls.VersionTLS12 || !slices.Equal(c.CipherSuites, s.ClientSuites) {
		t.Errorf("Client: %#x %v", c.MinVersion, c.CipherSuites)
	}
	// A config that already demands 1.3 (the gateway's pinned mTLS) keeps it.
	if c := Default().Client(&tls.Config{MinVersion: tls.VersionTLS13}); c.MinVersion != tls.VersionTLS13 {
		t.Errorf("kept minimum: %#x", c.MinVersion)
	}
	if c := Default().Server(nil); c.CipherSuites != nil {
		t.Errorf("default suites changed: %v", c.CipherSuites)
	}
}

func TestCheckServerKey(t *testing.T) {
	t.Parallel()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ed, _, _ := ed25519.GenerateKey(rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecdsaOnly := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	rsaOnly := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	ecdsaChaCha := []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	for _, tc := range []struct {
		name  string
		s     Settings
		pub   any
		http2 bool
		err   string
	}{
		{"default", Default(), &rk.PublicKey, true, ""},
		{"ecdsa fits", Settings{MinVersion: tls.VersionTLS12, ServerSuites: ecdsaOnly}, &ec.PublicKey, true, ""},
		{"ed25519 fits", Settings{MinVersion: tls.VersionTLS12, ServerSuites: ecdsaOnly}, ed, false, ""},
		{"rsa fits", Settings{MinVersion: tls.VersionTLS12, ServerSuites: rsaOnly}, &rk.PublicKey, true, ""},
		{"ecdsa key, rsa suites", Settings{MinVersion: tls.VersionTLS12, ServerSuites: rsaOnly}, &ec.PublicKey, false, "ECDSA key"},
		{"rsa key, ecdsa suites", Settings{MinVersion: tls.VersionTLS12, ServerSuites: ecdsaOnly}, &rk.PublicKey, false, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
		{"chacha without http2", Settings{MinVersion: tls.VersionTLS12, ServerSuites: ecdsaChaCha}, &ec.PublicKey, false, ""},
		{"chacha with http2", Settings{MinVersion: tls.VersionTLS12, ServerSuites: ecdsaChaCha}, &ec.PublicKey, true,
			"HTTP/2 over TLS 1.2 requires the AES-128-GCM suite for the certificate's ECDSA key; add TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
		{"1.3 only", Settings{MinVersion: tls.VersionTLS13}, &rk.PublicKey, true, ""},
	} {
		err := tc.s.CheckServerKey(tc.pub, tc.http2)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: CheckServerKey = %v, want error with %q", tc.name, err, tc.err)
		}
	}
}

func FuzzParseSuites(f *testing.F) {
	for _, s := range []string{"", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "a,,b", "TLS_RSA_WITH_RC4_128_SHA,x", "tls_ecdhe_rsa_with_chacha20_poly1305"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ids, err := ParseSuites(in)
		if err != nil {
			if ids != nil {
				t.Fatalf("error %v with suites %v", err, ids)
			}
			return
		}
		allowedNames := AllowedSuites()
		for i, id := range ids {
			if !slices.Contains(allowedNames, tls.CipherSuiteName(id)) {
				t.Fatalf("%q gave suite %s, not allowed", in, tls.CipherSuiteName(id))
			}
			if slices.Contains(ids[:i], id) {
				t.Fatalf("%q gave %s twice", in, tls.CipherSuiteName(id))
			}
		}
		// ParseVersion must never panic either.
		ParseVersion(in)
	})
}

// certificate makes a self-signed certificate for 127.0.0.1 with an ECDSA
// key.
func certificate(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// serve runs a TLS server with conf on loopback port 0 that echoes one
// byte per connection; it stops at cleanup.
func serve(t *testing.T, conf *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
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
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err == nil {
				c.Write(b)
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// dial completes a handshake and one echoed byte, and returns the
// negotiated state.
func dial(addr string, conf *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, conf)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		return tls.ConnectionState{}, err
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

func TestServerMinimum13RefusesTLS12Client(t *testing.T) {
	t.Parallel()
	cert, pool := certificate(t)
	s := Settings{MinVersion: tls.VersionTLS13}
	addr := serve(t, s.Server(&tls.Config{Certificates: []tls.Certificate{cert}}))
	_, err := dial(addr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12})
	if err == nil {
		t.Fatal("a TLS 1.2 client reached a server with minimum 1.3")
	}
	st, err := dial(addr, Default().Client(&tls.Config{RootCAs: pool}))
	if err != nil || st.Version != tls.VersionTLS13 {
		t.Fatalf("a default client: version %#x, %v; want TLS 1.3", st.Version, err)
	}
}

func TestDefaultsPreferTLS13AndRefuseTLS11(t *testing.T) {
	t.Parallel()
	cert, pool := certificate(t)
	addr := serve(t, Default().Server(&tls.Config{Certificates: []tls.Certificate{cert}}))
	if st, err := dial(addr, Default().Client(&tls.Config{RootCAs: pool})); err != nil || st.Version != tls.VersionTLS13 {
		t.Fatalf("version %#x, %v; want TLS 1.3", st.Version, err)
	}
	if _, err := dial(addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Fatal("a TLS 1.1 client reached a server with the defaults")
	}
	// And a default client refuses a TLS 1.1 server.
	old := serve(t, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if _, err := dial(old, Default().Client(&tls.Config{RootCAs: pool})); err == nil {
		t.Fatal("a default client reached a TLS 1.1 server")
	}
}

func TestClientLimitedToOneSuite(t *testing.T) {
	t.Parallel()
	cert, pool := certificate(t)
	want := tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
	ids, err := ParseSuites(tls.CipherSuiteName(want))
	if err != nil {
		t.Fatal(err)
	}
	client := Settings{MinVersion: tls.VersionTLS12, ClientSuites: ids}
	// TLS 1.2 servers: the suite list is what TLS 1.2 negotiates.
	with := serve(t, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, want}})
	without := serve(t, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}})

	st, err := dial(with, client.Client(&tls.Config{RootCAs: pool}))
	if err != nil || st.CipherSuite != want {
		t.Fatalf("with the suite: %s, %v; want %s", tls.CipherSuiteName(st.CipherSuite), err, tls.CipherSuiteName(want))
	}
	if _, err := dial(without, client.Client(&tls.Config{RootCAs: pool})); err == nil {
		t.Fatal("a client limited to one suite reached a server without it")
	}
	// A server limited the same way refuses a client without the suite.
	server := Settings{MinVersion: tls.VersionTLS12, ServerSuites: ids}
	limited := serve(t, server.Server(&tls.Config{Certificates: []tls.Certificate{cert}}))
	if _, err := dial(limited, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}); err == nil {
		t.Fatal("a server limited to one suite accepted a TLS 1.2 client without it")
	}
	if st, err := dial(limited, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12}); err != nil || st.CipherSuite != want {
		t.Fatalf("limited server: %s, %v", tls.CipherSuiteName(st.CipherSuite), err)
	}
}
