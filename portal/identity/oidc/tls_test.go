package oidc

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/idp/oidcop/opserver"
	"github.com/keyway-dev/keyway/gateway/tlsconf"
)

// TestDiscoverTLSSettings: discovery, directly and through the Cache,
// uses the portal's client TLS settings against a provider that speaks
// only TLS 1.2.
func TestDiscoverTLSSettings(t *testing.T) {
	t.Parallel()
	hs := httptest.NewUnstartedServer(nil)
	hs.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
	hs.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv, err := opserver.New(opserver.Config{Issuer: "https://" + hs.Listener.Addr().String(),
		UsersFile: filepath.Join(t.TempDir(), "users.json"), ClientID: testClient, ClientSecret: testSecret, RedirectURIs: []string{testRedirect}})
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = srv
	hs.StartTLS()
	t.Cleanup(hs.Close)
	cfg := Config{IssuerURL: hs.URL, ClientID: testClient, ClientSecret: testSecret,
		CABundle: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}))}.withDefaults()

	if _, err := Discover(context.Background(), cfg); err != nil {
		t.Fatalf("default settings: %v", err)
	}
	strict := cfg
	strict.TLS = tlsconf.Settings{MinVersion: tls.VersionTLS13}
	if _, err := Discover(context.Background(), strict); err == nil {
		t.Fatal("a 1.3 minimum reached a TLS 1.2 provider")
	}
	c := NewCache(time.Now, tlsconf.Settings{MinVersion: tls.VersionTLS13})
	if _, err := c.Get(context.Background(), 1, time.Now(), cfg); err == nil {
		t.Fatal("the cache's 1.3 minimum reached a TLS 1.2 provider")
	}
	if _, err := NewCache(time.Now, tlsconf.Default()).Get(context.Background(), 1, time.Now(), cfg); err != nil {
		t.Fatalf("cache with the defaults: %v", err)
	}
}
