package oidc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/keyway-dev/keyway/gateway/tlsconf"
)

// Discovery limits.
const (
	// discoveryTimeout bounds fetching the discovery document.
	discoveryTimeout = 5 * time.Second
	// discoveryTTL is how long a discovered provider is reused: the
	// provider's keys are refetched by go-oidc when a token names a new
	// one, its endpoints rarely change.
	discoveryTTL = time.Hour
	// maxCached bounds the discovered providers kept.
	maxCached = 64
	// failureTTL is how long a failed discovery is remembered: while a
	// provider is down, sign-in attempts get the answer at once instead
	// of each waiting for (and sending) another request.
	failureTTL = 5 * time.Second
)

// ErrUnreachable wraps a failure to reach the provider or read its answer.
var ErrUnreachable = errors.New("the identity provider could not be reached")

// Endpoints are what discovery found, as the Test page shows them.
type Endpoints struct {
	Issuer        string `json:"issuer"`
	Authorization string `json:"authorization_endpoint"`
	Token         string `json:"token_endpoint"`
	UserInfo      string `json:"userinfo_endpoint"`
	JWKS          string `json:"jwks_uri"`
	EndSession    string `json:"end_session_endpoint"`
	// Algorithms are the ID token signing algorithms the provider names.
	Algorithms []string `json:"id_token_signing_alg_values_supported"`
	// CodeChallengeMethods are the PKCE methods it names.
	CodeChallengeMethods []string `json:"code_challenge_methods_supported"`
}

// Provider is a discovered provider, ready to sign users in.
type Provider struct {
	cfg       Config
	client    *http.Client
	op        *gooidc.Provider
	endpoints Endpoints
	fetched   time.Time
}

// Config returns the configuration the provider was discovered with.
func (p *Provider) Config() Config { return p.cfg }

// Endpoints returns what discovery found.
func (p *Provider) Endpoints() Endpoints { return p.endpoints }

// Discover fetches the provider's discovery document and checks it.
func Discover(ctx context.Context, c Config) (*Provider, error) {
	client, err := newHTTPClient(c)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	op, err := gooidc.NewProvider(gooidc.ClientContext(ctx, client), c.IssuerURL)
	if err != nil {
		var mis *gooidc.IssuerMismatchError
		if errors.As(err, &mis) {
			return nil, fmt.Errorf("discover %s: the provider calls itself %q; enter exactly that as the issuer URL", c.IssuerURL, trunc(mis.Discovered))
		}
		return nil, fmt.Errorf("discover %s: %w: %w", c.IssuerURL, ErrUnreachable, err)
	}
	var e Endpoints
	if err := op.Claims(&e); err != nil {
		return nil, fmt.Errorf("discover %s: %w", c.IssuerURL, err)
	}
	for name, v := range map[string]string{"authorization_endpoint": e.Authorization, "token_endpoint": e.Token, "jwks_uri": e.JWKS} {
		if v == "" {
			return nil, fmt.Errorf("discover %s: the provider names no %s", c.IssuerURL, name)
		}
	}
	for name, v := range map[string]string{"authorization_endpoint": e.Authorization, "token_endpoint": e.Token, "jwks_uri": e.JWKS,
		"userinfo_endpoint": e.UserInfo, "end_session_endpoint": e.EndSession} {
		if v == "" {
			continue
		}
		if err := endpointURL(c.IssuerURL, v); err != nil {
			return nil, fmt.Errorf("discover %s: %s %q: %w", c.IssuerURL, name, trunc(v), err)
		}
	}
	if len(e.Algorithms) > maxScopes {
		e.Algorithms = e.Algorithms[:maxScopes]
	}
	if len(e.CodeChallengeMethods) > maxScopes {
		e.CodeChallengeMethods = e.CodeChallengeMethods[:maxScopes]
	}
	return &Provider{cfg: c, client: client, op: op, endpoints: e}, nil
}

// endpointURL checks an endpoint the provider names: an https URL, or http
// only when the issuer itself is http on loopback.
func endpointURL(issuer, s string) error {
	if len(s) > maxIssuerURL {
		return fmt.Errorf("longer than %d characters", maxIssuerURL)
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil {
		return errors.New("not a URL")
	}
	iu, _ := url.Parse(issuer)
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && iu != nil && iu.Scheme == "http" && loopback(u.Hostname()):
	default:
		return errors.New("not an https URL")
	}
	return nil
}

// oauth2Config is the code flow's configuration for a redirect URL.
func (p *Provider) oauth2Config(redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.cfg.ClientID,
		ClientSecret: p.cfg.ClientSecret,
		Endpoint:     p.op.Endpoint(),
		RedirectURL:  redirectURL,
		Scopes:       append([]string{gooidc.ScopeOpenID}, p.cfg.Scopes...),
	}
}

// Cache keeps discovered providers, so a sign-in does not discover again.
// An entry is keyed by the provider's id and last change, so editing a
// provider discovers it afresh.
type Cache struct {
	now    func() time.Time
	tls    tlsconf.Settings
	mu     sync.Mutex
	m      map[cacheKey]*Provider
	failed map[cacheKey]failure
}

type failure struct {
	err error
	at  time.Time
}

type cacheKey struct {
	id      int64
	version time.Time
}

// NewCache makes an empty cache; now is the clock, and tlsSet the TLS
// settings of discovery and every later call to the providers.
func NewCache(now func() time.Time, tlsSet tlsconf.Settings) *Cache {
	return &Cache{now: now, tls: tlsSet, m: make(map[cacheKey]*Provider), failed: make(map[cacheKey]failure)}
}

// Get returns the provider id at version (its last change) with config
// c, discovering it when not cached or stale. A failed discovery is
// remembered for failureTTL only.
func (c *Cache) Get(ctx context.Context, id int64, version time.Time, cfg Config) (*Provider, error) {
	k := cacheKey{id, version}
	now := c.now()
	c.mu.Lock()
	p, ok := c.m[k]
	f, failed := c.failed[k]
	c.mu.Unlock()
	if ok && now.Sub(p.fetched) < discoveryTTL {
		return p, nil
	}
	if failed && now.Sub(f.at) < failureTTL {
		return nil, f.err
	}
	cfg.TLS = c.tls
	p, err := Discover(ctx, cfg)
	c.mu.Lock()
	defer c.mu.Unlock()
	for old, f := range c.failed {
		if old.id == id || now.Sub(f.at) >= failureTTL {
			delete(c.failed, old)
		}
	}
	if err != nil {
		if len(c.failed) < maxCached && ctx.Err() == nil {
			c.failed[k] = failure{err, now}
		}
		return nil, err
	}
	p.fetched = now
	for old := range c.m {
		if old.id == id || now.Sub(c.m[old].fetched) >= discoveryTTL {
			delete(c.m, old)
		}
	}
	if len(c.m) >= maxCached {
		for old := range c.m { // any one: rarely reached
			delete(c.m, old)
			break
		}
	}
	c.m[k] = p
	return p, nil
}
