// Package control keeps a remote gateway's configuration in step with the
// portal: it pulls the config on an interval, authenticated with the
// gateway's key, serves from memory while the portal is unreachable, and
// keeps a backup on disk so the gateway can restart while disconnected.
package control

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/keyway-dev/keyway/gateway/metrics"
	"github.com/keyway-dev/keyway/gateway/tlsconf"
	"github.com/keyway-dev/keyway/gateway/wire"
)

// maxConfig bounds a pulled config.
const maxConfig = 1 << 20

// Puller pulls a gateway's config from the portal. A config counts only
// with the portal's signature (made with the key the config file pins), so
// neither a certificate the gateway was made to trust nor a file on its
// disk can widen what the gateway may reach.
type Puller struct {
	url       string
	gatewayID string
	identity  *wire.Identity
	tokens    *Tokens
	portalKey ed25519.PublicKey
	backup    string
	client    *http.Client
	logger    *slog.Logger
	now       func() time.Time

	mu       sync.Mutex
	current  wire.GatewayConfig
	networks []netip.Prefix
	loaded   bool
	failing  bool
}

// errNoConfig is why a gateway without a signed config takes no sessions.
var errNoConfig = errors.New("it has no signed config from the portal yet (waiting for the first config pull to succeed)")

// backupFile is the config backup on disk: the config as the portal sent
// it, and the portal's signature of it.
type backupFile struct {
	Config    json.RawMessage `json:"config"`
	Signature string          `json:"signature"`
}

// Options configure a Puller.
type Options struct {
	PortalURL string
	GatewayID string
	Identity  *wire.Identity
	// BackupPath is where the last good config is kept.
	BackupPath string
	// PortalKey is the portal's Ed25519 key (the config file's
	// portal_key): configs must carry its signature.
	PortalKey ed25519.PublicKey
	// PortalCertSHA256 pins the portal's exact HTTPS certificate (config
	// files of earlier versions) and PortalTLSKeySHA256 the key in it (a
	// self-signed one keeps its key across renewals); with either set, the
	// keys announced in the signed config (LearnedKeys) are accepted too.
	// With neither, the system's CAs decide.
	PortalCertSHA256   string
	PortalTLSKeySHA256 string
	// TokenPath is where the gateway's access token is kept (NewTokens);
	// Tokens is the keeper Puller and Uploads send it with.
	TokenPath string
	Tokens    *Tokens
	// LearnedKeys returns the portal TLS key digests of the config in use
	// (Puller.PortalTLSKeys); the Puller fills it in for itself.
	LearnedKeys func() []string
	Logger      *slog.Logger
	// Metrics counts token renewals; nil counts nothing.
	Metrics *metrics.Gateway
	// TLS is the lowest TLS version and the client cipher suites for
	// reaching the portal; the zero value is TLS 1.2 with Go's suites.
	TLS tlsconf.Settings
}

// New returns a Puller.
func New(o Options) *Puller {
	p := &Puller{
		url: strings.TrimRight(o.PortalURL, "/") + "/gateway-api/v1/config", gatewayID: o.GatewayID,
		identity: o.Identity, tokens: o.Tokens, portalKey: o.PortalKey, backup: o.BackupPath, logger: o.Logger, now: time.Now,
	}
	o.LearnedKeys = p.PortalTLSKeys
	p.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: portalTLS(o)}}
	return p
}

// portalTLS is the TLS config for reaching the portal: pinned when o pins
// the portal's certificate or key (accepting the exact certificate, the
// pinned key, or a key the signed config announced), the system's CAs
// otherwise.
func portalTLS(o Options) *tls.Config {
	tlsConf := o.TLS.Client(&tls.Config{MinVersion: tls.VersionTLS12})
	certPin, keyPin := normalizeFingerprint(o.PortalCertSHA256), normalizeFingerprint(o.PortalTLSKeySHA256)
	if certPin == "" && keyPin == "" {
		return tlsConf
	}
	tlsConf.InsecureSkipVerify = true // replaced by the pin check
	tlsConf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("portal sent no certificate")
		}
		sum := sha256.Sum256(raw[0])
		if hex.EncodeToString(sum[:]) == certPin {
			return nil
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return fmt.Errorf("portal certificate: %w", err)
		}
		ksum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
		got := hex.EncodeToString(ksum[:])
		if got == keyPin {
			return nil
		}
		if o.LearnedKeys != nil {
			for _, k := range o.LearnedKeys() {
				if normalizeFingerprint(k) == got {
					return nil
				}
			}
		}
		return fmt.Errorf("the portal's certificate (SHA-256 %s) holds a key (SHA-256 %s) that neither the gateway's config file nor the portal's signed config names; "+
			"if the portal's certificate was replaced with a new key, download the gateway's config file again", hex.EncodeToString(sum[:]), got)
	}
	return tlsConf
}

// PortalTLSKeys returns the digests of the portal's HTTPS keys announced
// in the config in use.
func (p *Puller) PortalTLSKeys() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current.PortalTLSKeys
}

// RelayAddresses returns the session listeners of the enrolled gateways,
// the only addresses the gateway may relay to.
func (p *Puller) RelayAddresses() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current.RelayAddresses
}

// Ready returns nil once the gateway has a signed config, and otherwise
// why it must not take sessions.
func (p *Puller) Ready() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loaded {
		return errNoConfig
	}
	return nil
}

func normalizeFingerprint(s string) string {
	return strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(s))
}

// Networks returns the allowed networks of the config in use.
func (p *Puller) Networks() []netip.Prefix {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.networks
}

// Version returns the version of the config in use.
func (p *Puller) Version() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current.Version
}

// Current returns the config in use and whether there is one.
func (p *Puller) Current() (wire.GatewayConfig, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current, p.loaded
}

// LoadBackup starts from the config kept on disk, if any. A backup
// without the portal's signature (written by an earlier version) is
// refused: the gateway then waits for its first pull.
func (p *Puller) LoadBackup() error {
	raw, err := os.ReadFile(p.backup)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read config backup: %w", err)
	}
	var b backupFile
	if err := json.Unmarshal(raw, &b); err != nil {
		return fmt.Errorf("config backup %s is damaged: %w", p.backup, err)
	}
	c, err := p.verify(b.Config, b.Signature)
	if err != nil {
		return fmt.Errorf("config backup %s: %w", p.backup, err)
	}
	if err := p.apply(c); err != nil {
		return fmt.Errorf("config backup %s: %w", p.backup, err)
	}
	p.logger.Info("started from the config backup", "version", c.Version)
	return nil
}

func (p *Puller) apply(c wire.GatewayConfig) error {
	var nets []netip.Prefix
	for _, n := range c.AllowedNetworks {
		pre, err := netip.ParsePrefix(n)
		if err != nil {
			return fmt.Errorf("allowed network %q: %w", n, err)
		}
		nets = append(nets, pre)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current, p.networks, p.loaded = c, nets, true
	return nil
}

// Pull fetches the config once, applies it and writes the backup.
func (p *Puller) Pull(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return err
	}
	if p.tokens != nil {
		// A gateway just enrolled gets its first token before its first
		// pull.
		if err := p.tokens.Ensure(ctx); err != nil {
			return fmt.Errorf("get an access token: %w", err)
		}
	}
	sent := p.tokens.attach(req)
	wire.SignRequest(req, p.identity, p.gatewayID, p.now(), wire.EmptyBody)
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("reach portal: %w", err)
	}
	defer resp.Body.Close()
	p.tokens.answered(resp, sent)
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxConfig))
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(body, &e)
		return fmt.Errorf("portal refused the config pull (HTTP %d): %s", resp.StatusCode, e.Error)
	}
	sig := resp.Header.Get(wire.HeaderConfigSignature)
	c, err := p.verify(body, sig)
	if err != nil {
		return err
	}
	old, _ := p.Current()
	if c.Version < old.Version {
		return fmt.Errorf("portal sent config version %d, older than the %d in use: refused", c.Version, old.Version)
	}
	if err := p.apply(c); err != nil {
		return err
	}
	p.logger.Debug("config pulled", "version", c.Version)
	if c.Version != old.Version {
		p.logger.Info("config updated", "version", c.Version, "segment", c.Segment, "allowed_networks", strings.Join(c.AllowedNetworks, ","),
			"relay_addresses", len(c.RelayAddresses))
	}
	backup, err := json.Marshal(backupFile{Config: body, Signature: sig})
	if err != nil {
		return fmt.Errorf("encode config backup: %w", err)
	}
	return writeAtomic(p.backup, backup)
}

// verify checks the portal's signature of a config and decodes it.
func (p *Puller) verify(body []byte, sig string) (wire.GatewayConfig, error) {
	var c wire.GatewayConfig
	if err := wire.VerifyConfig(p.portalKey, p.gatewayID, body, sig); err != nil {
		return c, err
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return c, fmt.Errorf("decode config: %w", err)
	}
	if c.GatewayID != p.gatewayID {
		return c, fmt.Errorf("portal sent the config of gateway %q, not %q", c.GatewayID, p.gatewayID)
	}
	return c, nil
}

// writeAtomic replaces the config backup at path with data.
func writeAtomic(path string, data []byte) error {
	if err := writeFileAtomic(path, data, ".config-*.tmp"); err != nil {
		return fmt.Errorf("write config backup: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with data (mode 0600) so a crash never
// leaves half a file; the temporary file is named after pattern.
func writeFileAtomic(path string, data []byte, pattern string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), pattern)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := errors.Join(tmp.Sync(), tmp.Close()); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Run pulls every interval until ctx ends. Failures are logged when they
// start and when they stop; meanwhile the gateway serves with what it has.
func (p *Puller) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := p.Pull(ctx)
		p.mu.Lock()
		was := p.failing
		p.failing = err != nil
		p.mu.Unlock()
		switch {
		case err != nil && !was && ctx.Err() == nil && p.Ready() != nil:
			p.logger.Warn("config pull failed: no sessions until one succeeds", "err", err)
		case err != nil && !was && ctx.Err() == nil:
			p.logger.Warn("config pull failed: serving with the config in memory", "err", err)
		case err == nil && was:
			p.logger.Info("config pull works again; config caught up")
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
