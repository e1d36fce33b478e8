// Package control keeps a remote gateway's configuration in step with the
// portal: it pulls the config on an interval, authenticated with the
// gateway's key, serves from memory while the portal is unreachable, and
// keeps a backup on disk so the gateway can restart while disconnected.
package control

import (
	"context"
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

	"github.com/keyway-dev/keyway/gateway/wire"
)

// maxConfig bounds a pulled config.
const maxConfig = 1 << 20

// Puller pulls a gateway's config from the portal.
type Puller struct {
	url       string
	gatewayID string
	identity  *wire.Identity
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

// Options configure a Puller.
type Options struct {
	PortalURL string
	GatewayID string
	Identity  *wire.Identity
	// BackupPath is where the last good config is kept.
	BackupPath string
	// PortalCertSHA256, if set, pins the portal's HTTPS certificate (for a
	// portal with a self-signed one); otherwise the system's CAs decide.
	PortalCertSHA256 string
	Logger           *slog.Logger
}

// New returns a Puller.
func New(o Options) *Puller {
	return &Puller{
		url: strings.TrimRight(o.PortalURL, "/") + "/gateway-api/v1/config", gatewayID: o.GatewayID,
		identity: o.Identity, backup: o.BackupPath, logger: o.Logger, now: time.Now,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: portalTLS(o.PortalCertSHA256)}},
	}
}

// portalTLS is the TLS config for reaching the portal: its certificate
// pinned by SHA-256 when pin is set, the system's CAs otherwise.
func portalTLS(pinned string) *tls.Config {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if pin := normalizeFingerprint(pinned); pin != "" {
		tlsConf.InsecureSkipVerify = true // replaced by the pin check
		tlsConf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("portal sent no certificate")
			}
			sum := sha256.Sum256(raw[0])
			if got := hex.EncodeToString(sum[:]); got != pin {
				return fmt.Errorf("portal certificate SHA-256 %s does not match the pinned %s", got, pin)
			}
			return nil
		}
	}
	return tlsConf
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

// LoadBackup starts from the config kept on disk, if any.
func (p *Puller) LoadBackup() error {
	raw, err := os.ReadFile(p.backup)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read config backup: %w", err)
	}
	var c wire.GatewayConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("config backup %s is damaged: %w", p.backup, err)
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
	wire.SignRequest(req, p.identity, p.gatewayID, p.now())
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("reach portal: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxConfig))
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(body, &e)
		return fmt.Errorf("portal refused the config pull (HTTP %d): %s", resp.StatusCode, e.Error)
	}
	var c wire.GatewayConfig
	if err := json.Unmarshal(body, &c); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	if c.GatewayID != p.gatewayID {
		return fmt.Errorf("portal sent the config of gateway %q, not %q", c.GatewayID, p.gatewayID)
	}
	old, _ := p.Current()
	if err := p.apply(c); err != nil {
		return err
	}
	if c.Version != old.Version {
		p.logger.Info("config updated", "version", c.Version, "segment", c.Segment, "allowed_networks", strings.Join(c.AllowedNetworks, ","))
	}
	return writeAtomic(p.backup, body)
}

// writeAtomic replaces path with data so a crash never leaves half a file.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.tmp")
	if err != nil {
		return fmt.Errorf("write config backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write config backup: %w", err)
	}
	if err := errors.Join(tmp.Sync(), tmp.Close()); err != nil {
		return fmt.Errorf("write config backup: %w", err)
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
