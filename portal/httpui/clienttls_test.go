package httpui

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keyway-dev/keyway/gateway/tlsconf"
)

// TestClientTransportTLS: SAML metadata is fetched with the portal's client
// TLS settings: a 1.3 minimum refuses a server that speaks only TLS 1.2.
func TestClientTransportTLS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	get := func(s tlsconf.Settings) error {
		tr := clientTransport(s)
		tr.TLSClientConfig.RootCAs = roots
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(tlsconf.Default()); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if err := get(tlsconf.Settings{MinVersion: tls.VersionTLS13}); err == nil {
		t.Fatal("a 1.3 minimum fetched from a TLS 1.2 server")
	}
}
