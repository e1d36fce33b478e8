package control

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/tlsconf"
	"github.com/keyway-dev/keyway/gateway/wire"
)

func newIdentity(t *testing.T) *wire.Identity {
	t.Helper()
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	id, err := wire.NewIdentity(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// portalCert makes a self-signed certificate for 127.0.0.1 with key.
func portalCert(t *testing.T, key *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "portal"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func certSHA256(c tls.Certificate) string {
	sum := sha256.Sum256(c.Certificate[0])
	return hex.EncodeToString(sum[:])
}

func keySHA256(t *testing.T, c tls.Certificate) string {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// fakePortal serves signed configs and upload status to one gateway, with
// a certificate the test can replace.
type fakePortal struct {
	t       *testing.T
	srv     *httptest.Server
	id      *wire.Identity
	gateway *wire.Identity
	cert    atomic.Pointer[tls.Certificate]
	// limit, if set, restricts the TLS versions and suites offered.
	limit  atomic.Pointer[tls.Config]
	nonces *wire.NonceCache

	mu     sync.Mutex
	config wire.GatewayConfig
	sign   bool
	pulls  int
}

func newFakePortal(t *testing.T, gateway *wire.Identity, cert tls.Certificate) *fakePortal {
	p := &fakePortal{t: t, id: newIdentity(t), gateway: gateway, nonces: wire.NewNonceCache(1000), sign: true,
		config: wire.GatewayConfig{Version: 1, GatewayID: "7", Name: "gw", Segment: "office", AllowedNetworks: []string{"10.0.0.0/8"},
			RelayAddresses: []string{"10.0.0.2:7993"}}}
	p.cert.Store(&cert)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /gateway-api/v1/config", func(w http.ResponseWriter, r *http.Request) {
		if _, err := wire.VerifyRequest(r, gateway.PublicKey(), time.Now(), p.nonces); err != nil {
			http.Error(w, `{"error":"`+err.Error()+`"}`, http.StatusUnauthorized)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.pulls++
		body, _ := json.Marshal(p.config)
		if p.sign {
			w.Header().Set(wire.HeaderConfigSignature, wire.SignConfig(p.id, p.config.GatewayID, body))
		}
		w.Write(body)
	})
	mux.HandleFunc("GET /gateway-api/v1/recordings/{session}", func(w http.ResponseWriter, r *http.Request) {
		if _, err := wire.VerifyRequest(r, gateway.PublicKey(), time.Now(), p.nonces); err != nil {
			http.Error(w, `{"error":"`+err.Error()+`"}`, http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"size":3,"stored":false}`))
	})
	p.srv = httptest.NewUnstartedServer(mux)
	// Per connection, so a replaced certificate shows at the next
	// handshake (httptest's own certificate would win over GetCertificate
	// for clients that send no server name).
	p.srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := &tls.Config{Certificates: []tls.Certificate{*p.cert.Load()}}
		if l := p.limit.Load(); l != nil {
			c.MaxVersion, c.CipherSuites = l.MaxVersion, l.CipherSuites
		}
		return c, nil
	}}
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	return p
}

func (p *fakePortal) edit(f func(*wire.GatewayConfig, *bool)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.config, &p.sign)
}

func (p *fakePortal) options(t *testing.T, gateway *wire.Identity) Options {
	return Options{PortalURL: p.srv.URL, GatewayID: "7", Identity: gateway, PortalKey: p.id.PublicKey(),
		BackupPath: filepath.Join(t.TempDir(), "config-backup.json"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// TestFirstConfigMustBeSigned: a gateway without a config backup takes
// no sessions until it pulled a config signed with the portal's key; a
// backup without that signature, or altered, does not count.
func TestFirstConfigMustBeSigned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gw := newIdentity(t)
	key := ecKey(t)
	portal := newFakePortal(t, gw, portalCert(t, key))
	o := portal.options(t, gw)
	o.PortalTLSKeySHA256 = keySHA256(t, *portal.cert.Load())
	p := New(o)
	if err := p.LoadBackup(); err != nil || p.Ready() == nil {
		t.Fatalf("no backup: %v, ready %v", err, p.Ready())
	}
	// A backup of an earlier version: the config without a signature.
	os.WriteFile(o.BackupPath, []byte(`{"version":1,"gateway_id":"7","allowed_networks":[]}`), 0o600)
	if err := p.LoadBackup(); err == nil || p.Ready() == nil {
		t.Fatalf("unsigned backup: %v, ready %v", err, p.Ready())
	}
	// Unsigned, or signed with another key, a pulled config is refused.
	portal.edit(func(_ *wire.GatewayConfig, sign *bool) { *sign = false })
	if err := p.Pull(ctx); err == nil || !strings.Contains(err.Error(), "not signed") || p.Ready() == nil {
		t.Fatalf("unsigned config: %v, ready %v", err, p.Ready())
	}
	stranger := o
	stranger.PortalKey = newIdentity(t).PublicKey()
	portal.edit(func(_ *wire.GatewayConfig, sign *bool) { *sign = true })
	if err := New(stranger).Pull(ctx); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("config signed with another key: %v", err)
	}
	if err := p.Pull(ctx); err != nil || p.Ready() != nil {
		t.Fatalf("signed config: %v, ready %v", err, p.Ready())
	}
	if n := p.Networks(); len(n) != 1 || n[0].String() != "10.0.0.0/8" || strings.Join(p.RelayAddresses(), ",") != "10.0.0.2:7993" {
		t.Fatalf("config in use: networks %v, relays %v", n, p.RelayAddresses())
	}
	// The signed backup lets a restart serve at once…
	q := New(o)
	if err := q.LoadBackup(); err != nil || q.Ready() != nil {
		t.Fatalf("signed backup: %v, ready %v", err, q.Ready())
	}
	// …unless someone widened its networks.
	raw, _ := os.ReadFile(o.BackupPath)
	os.WriteFile(o.BackupPath, []byte(strings.Replace(string(raw), "10.0.0.0/8", "0.0.0.0/0", 1)), 0o600)
	if err := New(o).LoadBackup(); err == nil {
		t.Fatal("an altered backup was accepted")
	}
	// An older config (replayed by something in between) is refused.
	portal.edit(func(c *wire.GatewayConfig, _ *bool) { c.Version = 2 })
	if err := p.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	portal.edit(func(c *wire.GatewayConfig, _ *bool) { c.Version, c.AllowedNetworks = 1, nil })
	if err := p.Pull(ctx); err == nil || len(p.Networks()) != 1 {
		t.Fatalf("older config: %v, networks %v", err, p.Networks())
	}
}

// TestPortalCertificateRenewal: config pulls and uploads keep working when
// the portal renews its certificate with the same key, or moves to a key
// its signed config announced; an unannounced key is refused. Gateways
// whose config file pins the exact certificate (earlier versions) learn
// the key from their first pull.
func TestPortalCertificateRenewal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gw := newIdentity(t)
	key := ecKey(t)
	first := portalCert(t, key)
	portal := newFakePortal(t, gw, first)
	portal.edit(func(c *wire.GatewayConfig, _ *bool) { c.PortalTLSKeys = []string{keySHA256(t, first)} })

	byKey := portal.options(t, gw)
	byKey.PortalTLSKeySHA256 = keySHA256(t, first)
	byCert := portal.options(t, gw)
	byCert.PortalCertSHA256 = certSHA256(first)
	type gateway struct {
		name    string
		puller  *Puller
		uploads *Uploads
	}
	var gws []gateway
	for name, o := range map[string]Options{"key pin": byKey, "certificate pin": byCert} {
		p := New(o)
		o.LearnedKeys = p.PortalTLSKeys
		gws = append(gws, gateway{name, p, NewUploads(o)})
	}
	works := func(when string) {
		t.Helper()
		for _, g := range gws {
			g.uploads.client.CloseIdleConnections() // a new handshake sees the new certificate
			if err := g.puller.Pull(ctx); err != nil {
				t.Fatalf("%s, %s: config pull: %v", when, g.name, err)
			}
			if n, err := g.uploads.Status(ctx, "S1"); err != nil || n != 3 {
				t.Fatalf("%s, %s: upload status: %d %v", when, g.name, n, err)
			}
			g.puller.client.CloseIdleConnections()
		}
	}
	works("before renewal")

	renewed := portalCert(t, key)
	portal.cert.Store(&renewed)
	works("renewed with the same key")

	next := portalCert(t, ecKey(t))
	portal.edit(func(c *wire.GatewayConfig, _ *bool) {
		c.Version++
		c.PortalTLSKeys = []string{keySHA256(t, first), keySHA256(t, next)}
	})
	works("next key announced")
	portal.cert.Store(&next)
	works("moved to the announced key")

	rogue := portalCert(t, ecKey(t))
	portal.cert.Store(&rogue)
	for _, g := range gws {
		g.puller.client.CloseIdleConnections()
		if err := g.puller.Pull(ctx); err == nil || !strings.Contains(err.Error(), "download the gateway's config file again") {
			t.Fatalf("%s: unannounced key: %v", g.name, err)
		}
	}
}

// TestPortalTLSSettings: config pulls and uploads use the gateway's TLS
// settings: a 1.3 minimum refuses a portal offering only TLS 1.2, and a
// client suite list refuses a portal without any of its suites.
func TestPortalTLSSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gw := newIdentity(t)
	portal := newFakePortal(t, gw, portalCert(t, ecKey(t)))
	portal.limit.Store(&tls.Config{MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}})
	options := func(s tlsconf.Settings) Options {
		o := portal.options(t, gw)
		o.PortalTLSKeySHA256 = keySHA256(t, *portal.cert.Load())
		o.TLS = s
		return o
	}
	suites := func(list string) []uint16 {
		ids, err := tlsconf.ParseSuites(list)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	for _, tc := range []struct {
		name string
		s    tlsconf.Settings
		ok   bool
	}{
		{"defaults", tlsconf.Default(), true},
		{"the zero value", tlsconf.Settings{}, true},
		{"minimum 1.3", tlsconf.Settings{MinVersion: tls.VersionTLS13}, false},
		{"the portal's suite", tlsconf.Settings{MinVersion: tls.VersionTLS12,
			ClientSuites: suites("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")}, true},
		{"another suite", tlsconf.Settings{MinVersion: tls.VersionTLS12,
			ClientSuites: suites("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256")}, false},
	} {
		o := options(tc.s)
		pullErr := New(o).Pull(ctx)
		_, statusErr := NewUploads(o).Status(ctx, "S1")
		if (pullErr == nil) != tc.ok || (statusErr == nil) != tc.ok {
			t.Errorf("%s: pull %v, upload status %v; want ok %v", tc.name, pullErr, statusErr, tc.ok)
		}
	}
}
