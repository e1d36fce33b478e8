package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/gateway/wire"
)

// TestTLSSettings: the config file's TLS keys apply, flags win over them,
// and a bad value is refused naming where it came from.
func TestTLSSettings(t *testing.T) {
	t.Parallel()
	const gcm = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
	for _, tc := range []struct {
		name  string
		file  wire.GatewayFile
		flags tlsOverrides
		min   uint16
		n     int
		err   string
	}{
		{"defaults", wire.GatewayFile{}, tlsOverrides{}, tls.VersionTLS12, 0, ""},
		{"file", wire.GatewayFile{TLSMinVersion: "1.2", TLSClientCiphers: gcm}, tlsOverrides{}, tls.VersionTLS12, 1, ""},
		{"flag wins", wire.GatewayFile{TLSMinVersion: "1.2", TLSClientCiphers: gcm}, tlsOverrides{minVersion: "1.3", clientCiphers: ""}, 0, 0, "TLS 1.2 only"},
		{"flag 1.3", wire.GatewayFile{TLSMinVersion: "1.2"}, tlsOverrides{minVersion: "1.3"}, tls.VersionTLS13, 0, ""},
		{"bad file key", wire.GatewayFile{TLSClientCiphers: "TLS_RSA_WITH_RC4_128_SHA"}, tlsOverrides{}, 0, 0, `config tls_client_ciphers: cipher suite "TLS_RSA_WITH_RC4_128_SHA" is insecure`},
		{"bad flag", wire.GatewayFile{}, tlsOverrides{clientCiphers: "TLS_NOPE"}, 0, 0, `--tls-client-ciphers: cipher suite "TLS_NOPE" is unknown; allowed: `},
		{"bad version", wire.GatewayFile{TLSMinVersion: "1.1"}, tlsOverrides{}, 0, 0, "config tls_min_version: TLS 1.1 is insecure"},
	} {
		s, err := tlsSettings(tc.file, tc.flags)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want error with %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || s.MinVersion != tc.min || len(s.ClientSuites) != tc.n {
			t.Errorf("%s: %+v, %v", tc.name, s, err)
		}
	}
}

// TestRunRefusesInsecureSuite: gateway run stops at start, before it makes
// a key or listens, when a cipher suite is insecure.
func TestRunRefusesInsecureSuite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := wire.GatewayFile{GatewayID: "1", PortalURL: "https://127.0.0.1:1", PortalKey: "x", StateDir: filepath.Join(dir, "state"),
		Listen: map[string]string{"ssh": "127.0.0.1:0"}, TLSClientCiphers: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"}
	raw, _ := json.Marshal(f)
	path := filepath.Join(dir, "gateway.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"run", "--config", path}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA" is insecure`) ||
		!strings.Contains(err.Error(), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256") {
		t.Fatalf("run: %v", err)
	}
	if entries, _ := os.ReadDir(dir); !slices.ContainsFunc(entries, func(e os.DirEntry) bool { return e.Name() == "gateway.json" }) || len(entries) != 1 {
		t.Fatalf("run left %v behind", entries)
	}
}
