package main

import (
	"bytes"
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
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/metrics/metricstest"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// syncBuffer is a log shared by the gateway and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func selfSigned(t *testing.T, key *ecdsa.PrivateKey) tls.Certificate {
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

// listening returns the addresses the gateway's log says it bound, once
// it says so.
func listening(log fmt.Stringer) (ssh, mgmt string, ok bool) {
	m := regexp.MustCompile(`msg="gateway listening".* ssh=(\S+) .* management=(\S+)`).FindStringSubmatch(log.String())
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

func waitFor(t *testing.T, what string, cond func() bool, log fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; gateway log:\n%s", what, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLiveGatewayFirstStartAndRenewal runs the gateway as `gateway run`
// does, against a portal on loopback: with no config backup it refuses
// sessions until its first signed config; it keeps pulling after the
// portal renewed its certificate with the same key.
func TestLiveGatewayFirstStartAndRenewal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gwID, err := wire.LoadOrCreateIdentity(filepath.Join(dir, "state", "identity.pem"))
	if err != nil {
		t.Fatal(err)
	}
	_, pk, _ := ed25519Key()
	portalID, _ := wire.NewIdentity(pk)
	tlsKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var cert atomic.Pointer[tls.Certificate]
	first := selfSigned(t, tlsKey)
	cert.Store(&first)
	leaf, _ := x509.ParseCertificate(first.Certificate[0])
	keySum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)

	var serving atomic.Bool
	var pulls atomic.Int64
	nonces := wire.NewNonceCache(1000)
	mux := http.NewServeMux()
	// Access tokens as the portal makes them, with one key.
	tokenKey := make([]byte, wire.TokenKeySize)
	keys := func(string) ([]byte, int64, error) { return tokenKey, 1, nil }
	mux.HandleFunc("POST "+wire.TokenPath, func(w http.ResponseWriter, r *http.Request) {
		if _, err := wire.VerifyRequest(r, gwID.PublicKey(), time.Now(), nonces); err != nil {
			http.Error(w, `{"error":"`+err.Error()+`"}`, http.StatusUnauthorized)
			return
		}
		now := time.UnixMilli(time.Now().UnixMilli())
		tok := wire.Token{GatewayID: "7", Slot: wire.SlotPrimary, Generation: 1, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
		json.NewEncoder(w).Encode(wire.TokenGrant{Token: wire.MakeToken(tok, tokenKey), Slot: tok.Slot, IssuedAt: tok.IssuedAt, ExpiresAt: tok.ExpiresAt})
	})
	mux.HandleFunc("GET /gateway-api/v1/config", func(w http.ResponseWriter, r *http.Request) {
		if _, err := wire.VerifyRequest(r, gwID.PublicKey(), time.Now(), nonces); err != nil {
			http.Error(w, `{"error":"`+err.Error()+`"}`, http.StatusUnauthorized)
			return
		}
		if _, err := wire.VerifyToken(r.Header.Get(wire.HeaderGatewayToken), "7", time.Now(), keys); err != nil {
			http.Error(w, `{"error":"`+err.Error()+`"}`, http.StatusUnauthorized)
			return
		}
		if !serving.Load() {
			http.Error(w, `{"error":"not yet"}`, http.StatusServiceUnavailable)
			return
		}
		pulls.Add(1)
		body, _ := json.Marshal(wire.GatewayConfig{Version: 1, GatewayID: "7", Name: "gw", Segment: "office"})
		w.Header().Set(wire.HeaderConfigSignature, wire.SignConfig(portalID, "7", body))
		w.Write(body)
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{Certificates: []tls.Certificate{*cert.Load()}}, nil
	}}
	srv.StartTLS()
	defer srv.Close()

	file := wire.GatewayFile{GatewayID: "7", Name: "gw", Segment: "office", PortalURL: srv.URL, PortalKey: portalID.PublicKeyString(),
		PortalTLSKeySHA256: hex.EncodeToString(keySum[:]), StateDir: filepath.Join(dir, "state"), PullIntervalSecs: 1,
		Listen: map[string]string{"ssh": "127.0.0.1:0", "management": "127.0.0.1:0", "metrics": "127.0.0.1:0"}}
	raw, _ := json.Marshal(file)
	config := filepath.Join(dir, "gateway.json")
	os.WriteFile(config, raw, 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	var log syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"run", "--config", config}, io.Discard, &log) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway run: %v", err)
		}
	}()

	waitFor(t, "the gateway to listen", func() bool { _, _, ok := listening(&log); return ok }, &log)
	ssh, mgmt, _ := listening(&log)
	status := func() (int, string) {
		tr := &http.Transport{TLSClientConfig: wire.ClientTLSConfig(portalID, gwID.PublicKey()), DisableKeepAlives: true}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + mgmt + "/status")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, "the management listener", func() bool { code, _ := status(); return code != 0 }, &log)
	if code, body := status(); code != http.StatusServiceUnavailable || !strings.Contains(body, "signed config") {
		t.Fatalf("status before the first config: %d %s", code, body)
	}
	c, err := tls.Dial("tcp", ssh, wire.ClientTLSConfig(portalID, gwID.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	wire.WriteRequest(c, &wire.Request{Kind: wire.KindSession, Protocol: wire.ProtocolSSH, SessionID: "s1", User: "u", Resource: "r",
		Target: wire.Target{Host: "127.0.0.1", Port: 22}, Terminal: &wire.Terminal{Term: "xterm", Cols: 80, Rows: 24}})
	resp, err := wire.ReadResponse(c)
	c.Close()
	if err != nil || resp.OK || !strings.Contains(resp.Message, "signed config") {
		t.Fatalf("session before the first config: %+v %v", resp, err)
	}
	// The refusal is counted on /metrics (listen.metrics), and the
	// metrics listener's readiness probe says why it is not ready.
	m := regexp.MustCompile(`msg="serving metrics".* addr=(\S+)`).FindStringSubmatch(log.String())
	if m == nil {
		t.Fatalf("no metrics listener in the log:\n%s", log.String())
	}
	metricsURL := "http://" + m[1]
	fams := metricstest.Scrape(t, nil, metricsURL)
	if v := fams.Value("keyway_gateway_sessions_started_total", "protocol", "ssh", "outcome", "gateway_unreachable"); v != 1 {
		t.Errorf("refused sessions counted: %v, want 1", v)
	}
	if v := fams.Value("keyway_gateway_spool_free_bytes"); v <= 0 {
		t.Errorf("spool free bytes: %v", v)
	}
	if v := fams.Value("keyway_gateway_recordings_pending"); v != 0 {
		t.Errorf("recordings pending: %v", v)
	}
	if v := fams.Value("go_goroutines"); v <= 0 {
		t.Errorf("no Go runtime metrics: %v", v)
	}
	probe := func(path string) int {
		resp, err := http.Get(metricsURL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if live, ready := probe("/livez"), probe("/readyz"); live != 200 || ready != 503 {
		t.Errorf("probes before the first config: livez %d, readyz %d", live, ready)
	}

	serving.Store(true)
	waitFor(t, "the first config", func() bool { code, _ := status(); return code == http.StatusOK }, &log)
	if ready := probe("/readyz"); ready != 200 {
		t.Errorf("readyz after the first config: %d", ready)
	}

	// The portal renews its certificate, keeping its key.
	renewed := selfSigned(t, tlsKey)
	cert.Store(&renewed)
	srv.CloseClientConnections() // the next pull makes a new handshake
	n, before := pulls.Load(), len(log.String())
	waitFor(t, "two config pulls after the renewal", func() bool { return pulls.Load() >= n+2 }, &log)
	if strings.Contains(log.String()[before:], "config pull failed") {
		t.Fatalf("a config pull failed across the renewal:\n%s", log.String())
	}
}

func ed25519Key() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}
