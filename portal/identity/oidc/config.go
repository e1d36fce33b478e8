// Package oidc signs users in through an OpenID Connect provider: the
// provider's configuration, discovery, the authorization code flow with
// PKCE, and the checks of the ID token it returns. Everything the provider
// sends is bounded before it is kept.
package oidc

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strings"

	"github.com/keyway-dev/keyway/gateway/tlsconf"
)

// Limits on a provider's configuration.
const (
	maxConfigSize  = 64 << 10
	maxIssuerURL   = 2048
	maxClientID    = 512
	maxSecret      = 2048
	maxScopes      = 32
	maxScope       = 128
	maxClaimName   = 128
	maxDomains     = 100
	maxDomain      = 253
	maxCABundle    = 32 << 10
	defaultNameKey = "preferred_username"
	defaultGroups  = "groups"
)

// Config is a provider's settings, kept as JSON in the store.
type Config struct {
	// IssuerURL is the provider's issuer; discovery reads
	// IssuerURL/.well-known/openid-configuration.
	IssuerURL    string `json:"issuer_url"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	// Scopes asked for besides "openid" (default: profile, email, groups).
	Scopes []string `json:"scopes,omitempty"`
	// UsernameClaim names the claim whose value is the Keyway user name
	// (default preferred_username).
	UsernameClaim string `json:"username_claim,omitempty"`
	// GroupsClaim names the claim holding the user's groups, a string or an
	// array of strings (default groups).
	GroupsClaim string `json:"groups_claim,omitempty"`
	// AllowedEmailDomains, when not empty, admits only users whose e-mail
	// address is in one of these domains.
	AllowedEmailDomains []string `json:"allowed_email_domains,omitempty"`
	// CABundle holds PEM certificates to trust for the issuer's TLS
	// besides the system's.
	CABundle string `json:"ca_bundle,omitempty"`
	// TLS is the portal's client TLS settings (--tls-min-version,
	// --tls-client-ciphers), not stored with the provider.
	TLS tlsconf.Settings `json:"-"`
}

// LogValue implements slog.LogValuer: the client secret is never logged.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("issuer_url", c.IssuerURL), slog.String("client_id", c.ClientID))
}

// FieldError is a configuration error about one field of the form.
type FieldError struct {
	Field string // the JSON name
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// ParseConfig decodes and checks a provider's configuration, filling in
// defaults.
func ParseConfig(b []byte) (Config, error) {
	if len(b) > maxConfigSize {
		return Config{}, fmt.Errorf("provider configuration is %d bytes, more than %d", len(b), maxConfigSize)
	}
	var c Config
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("read provider configuration: %w", err)
	}
	c = c.withDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Marshal is the configuration as the store keeps it.
func (c Config) Marshal() []byte {
	b, _ := json.Marshal(c) // a struct of strings cannot fail
	return b
}

func (c Config) withDefaults() Config {
	if c.UsernameClaim == "" {
		c.UsernameClaim = defaultNameKey
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = defaultGroups
	}
	if len(c.Scopes) == 0 {
		c.Scopes = []string{"profile", "email", "groups"}
	}
	for i, d := range c.AllowedEmailDomains {
		c.AllowedEmailDomains[i] = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@"))
	}
	return c
}

var (
	scopeRE  = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]+$`) // RFC 6749 scope-token
	claimRE  = regexp.MustCompile(`^[A-Za-z0-9_.:/-]+$`)
	domainRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
)

// Validate checks every field, returning a *FieldError for the first
// that is wrong.
func (c Config) Validate() error {
	if err := validIssuer(c.IssuerURL); err != nil {
		return &FieldError{"issuer_url", err.Error()}
	}
	switch {
	case c.ClientID == "":
		return &FieldError{"client_id", "enter the client ID registered at the provider"}
	case len(c.ClientID) > maxClientID || !printable(c.ClientID):
		return &FieldError{"client_id", fmt.Sprintf("must be at most %d printable characters", maxClientID)}
	case len(c.ClientSecret) > maxSecret || !printable(c.ClientSecret):
		return &FieldError{"client_secret", fmt.Sprintf("must be at most %d printable characters", maxSecret)}
	case len(c.Scopes) > maxScopes:
		return &FieldError{"scopes", fmt.Sprintf("at most %d scopes", maxScopes)}
	}
	for _, s := range c.Scopes {
		if len(s) > maxScope || !scopeRE.MatchString(s) {
			return &FieldError{"scopes", fmt.Sprintf("%q is not a valid scope", trunc(s))}
		}
	}
	for f, v := range map[string]string{"username_claim": c.UsernameClaim, "groups_claim": c.GroupsClaim} {
		if v == "" || len(v) > maxClaimName || !claimRE.MatchString(v) {
			return &FieldError{f, fmt.Sprintf("a claim name is 1 to %d letters, digits or _.:/-", maxClaimName)}
		}
	}
	if len(c.AllowedEmailDomains) > maxDomains {
		return &FieldError{"allowed_email_domains", fmt.Sprintf("at most %d domains", maxDomains)}
	}
	for _, d := range c.AllowedEmailDomains {
		if len(d) > maxDomain || !domainRE.MatchString(d) {
			return &FieldError{"allowed_email_domains", fmt.Sprintf("%q is not a domain name", trunc(d))}
		}
	}
	if c.CABundle != "" {
		if len(c.CABundle) > maxCABundle {
			return &FieldError{"ca_bundle", fmt.Sprintf("at most %d bytes", maxCABundle)}
		}
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(c.CABundle)) {
			return &FieldError{"ca_bundle", "no PEM certificate found"}
		}
	}
	return nil
}

// validIssuer accepts an https URL, or http on a loopback address (for a
// provider on the same machine, as in tests), without query or fragment.
func validIssuer(s string) error {
	if s == "" {
		return errors.New("enter the provider's issuer URL, e.g. https://login.example.com")
	}
	if len(s) > maxIssuerURL {
		return fmt.Errorf("must be at most %d characters", maxIssuerURL)
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must be a URL like https://login.example.com, without user, query or fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopback(u.Hostname()) {
			return errors.New("must use https (http only for a provider on this machine)")
		}
	default:
		return errors.New("must start with https://")
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// EmailAllowed reports whether the provider's users with this e-mail
// address may sign in.
func (c Config) EmailAllowed(email string) bool {
	if len(c.AllowedEmailDomains) == 0 {
		return true
	}
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return false
	}
	dom := strings.ToLower(email[at+1:])
	for _, d := range c.AllowedEmailDomains {
		if dom == d {
			return true
		}
	}
	return false
}
