package hook_test

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/keyway-dev/keyway/e2e/hookexample/examplehook"
	"github.com/keyway-dev/keyway/gateway/tlsconf"
	"github.com/keyway-dev/keyway/portal/hook"
)

// TestHookTLSSettings: calls use the TLS settings given with WithTLS
// against a hook that speaks only TLS 1.2 with AES-256-GCM.
func TestHookTLSSettings(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(examplehook.New(examplehook.Config{Secret: secret, Users: []string{"alice"},
		Log: slog.New(slog.DiscardHandler)}))
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	suites := func(list string) []uint16 {
		ids, err := tlsconf.ParseSuites(list)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	for _, tc := range []struct {
		name    string
		s       tlsconf.Settings
		allowed bool
	}{
		{"defaults", tlsconf.Default(), true},
		{"minimum 1.3", tlsconf.Settings{MinVersion: tls.VersionTLS13}, false},
		{"the hook's suite", tlsconf.Settings{MinVersion: tls.VersionTLS12,
			ClientSuites: suites("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")}, true},
		{"other suites", tlsconf.Settings{MinVersion: tls.VersionTLS12,
			ClientSuites: suites("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")}, false},
	} {
		h := hookFor(t, srv, 0, hook.WithTLS(tc.s))
		req := sample()
		req.ConnectionID = "c-" + tc.name // the example hook refuses a replay
		res := h.Authorize(context.Background(), req)
		if res.Allowed != tc.allowed || !tc.allowed && res.Reason != hook.ReasonServiceError && res.Reason != hook.ReasonOther {
			t.Errorf("%s: allowed %v, reason %q, err %v; want allowed %v", tc.name, res.Allowed, res.Reason, res.Err, tc.allowed)
		}
	}
}
