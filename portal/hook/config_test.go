package hook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"
)

const testSecret = "0123456789abcdef-test-secret"

func testCAPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestConfigureValidates(t *testing.T) {
	t.Parallel()
	ca := testCAPEM(t)
	ok := Config{Enabled: true, URL: "https://hook.example.com/connect", Secret: testSecret, MaxInFlight: 5}
	with := func(edit func(*Config)) Config { c := ok; edit(&c); return c }
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" for accepted
	}{
		{"valid", ok, ""},
		{"with CA bundle", with(func(c *Config) { c.CABundle = ca }), ""},
		{"two CAs and blank lines", with(func(c *Config) { c.CABundle = "\n" + ca + "\n" + ca + "\n" }), ""},
		{"port", with(func(c *Config) { c.URL = "https://127.0.0.1:8443/" }), ""},
		{"IPv6 host", with(func(c *Config) { c.URL = "https://[::1]:8443/hook?x=1" }), ""},
		{"disabled, nothing set", Config{}, ""},
		{"disabled, URL without secret", Config{URL: "https://hook.example.com/"}, ""},
		{"max in flight at top", with(func(c *Config) { c.MaxInFlight = MaxInFlightLimit }), ""},
		{"max in flight 1", with(func(c *Config) { c.MaxInFlight = 1 }), ""},
		{"secret at minimum", with(func(c *Config) { c.Secret = strings.Repeat("s", MinSecret) }), ""},
		{"http", with(func(c *Config) { c.URL = "http://hook.example.com/" }), "must start with https://"},
		{"no scheme", with(func(c *Config) { c.URL = "hook.example.com/x" }), "must start with https://"},
		{"no host", with(func(c *Config) { c.URL = "https:///path" }), "no host"},
		{"user info", with(func(c *Config) { c.URL = "https://u:p@hook.example.com/" }), "user name or password"},
		{"fragment", with(func(c *Config) { c.URL = "https://hook.example.com/#x" }), "fragment"},
		{"bad port", with(func(c *Config) { c.URL = "https://hook.example.com:99999/" }), "not a port number"},
		{"unparsable", with(func(c *Config) { c.URL = "https://[::1/" }), "not a valid URL"},
		{"long URL", with(func(c *Config) { c.URL = "https://h/" + strings.Repeat("a", maxURL) }), "at most"},
		{"enabled without URL", with(func(c *Config) { c.URL = "" }), "HTTPS URL"},
		{"enabled without secret", with(func(c *Config) { c.Secret = "" }), "shared secret"},
		{"short secret", with(func(c *Config) { c.Secret = strings.Repeat("s", MinSecret-1) }), "at least 16 bytes"},
		{"short secret, disabled", Config{URL: "https://h/", Secret: "short"}, "at least 16 bytes"},
		{"long secret", with(func(c *Config) { c.Secret = strings.Repeat("s", maxSecret+1) }), "at most"},
		{"max in flight negative", with(func(c *Config) { c.MaxInFlight = -1 }), "between 1 and 10000"},
		{"max in flight over", with(func(c *Config) { c.MaxInFlight = MaxInFlightLimit + 1 }), "between 1 and 10000"},
		{"CA bundle garbage", with(func(c *Config) { c.CABundle = "not a certificate" }), "not a PEM certificate"},
		{"CA bundle trailing garbage", with(func(c *Config) { c.CABundle = ca + "junk" }), "not a PEM certificate"},
		{"CA bundle private key", with(func(c *Config) {
			c.CABundle = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
		}), `"PRIVATE KEY" block`},
		{"CA bundle bad DER", with(func(c *Config) {
			c.CABundle = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
		}), "certificate 1 of the CA bundle cannot be read"},
	} {
		h := New()
		err := h.Configure(tc.cfg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		case tc.want != "" && h.Config() != (Config{MaxInFlight: 0}):
			t.Errorf("%s: a refused configuration was applied: %v", tc.name, h.Config())
		}
	}
}

func TestConfigureDefaults(t *testing.T) {
	t.Parallel()
	h := New()
	if h.Enabled() {
		t.Fatal("a new Hook is enabled")
	}
	if err := h.Configure(Config{Enabled: true, URL: " https://h.example/ ", Secret: testSecret}); err != nil {
		t.Fatal(err)
	}
	got := h.Config()
	if got.MaxInFlight != DefaultMaxInFlight || got.URL != "https://h.example/" || !h.Enabled() {
		t.Fatalf("config %v: want max in flight %d and the URL trimmed", got, DefaultMaxInFlight)
	}
}

func TestConfigNeverShowsSecret(t *testing.T) {
	t.Parallel()
	cfg := Config{Enabled: true, URL: "https://h/", Secret: testSecret}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("hook", "cfg", cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%v %+v %s", cfg, cfg, cfg), b.String()} {
		if strings.Contains(s, testSecret) || !strings.Contains(s, "secret=set") {
			t.Errorf("printed config %q shows the secret or hides that it is set", s)
		}
	}
}
