package httpui

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/clientinfo"
	"github.com/keyway-dev/keyway/portal/hook"
	"github.com/keyway-dev/keyway/portal/store"
)

// Settings keys: the hook as JSON (its secret sealed inside), and the
// trusted proxies' networks one per line.
const (
	hookSetting    = "hook"
	proxiesSetting = "trusted_proxies"
)

// Bounds of the hook settings an admin may give.
const (
	maxHookURL      = 2048
	maxCABundle     = 256 << 10
	minHookSecret   = 16
	maxHookSecret   = 1024
	maxHookInFlight = 10000
)

// hookSettings is the hook as stored in the settings table.
type hookSettings struct {
	Enabled      bool   `json:"enabled"`
	URL          string `json:"url"`
	CABundle     string `json:"ca_bundle,omitempty"`
	MaxInFlight  int    `json:"max_in_flight"`
	SealedSecret string `json:"secret_sealed,omitempty"`
}

// LoadSettings applies the stored hook and trusted proxies; cmd/portal
// calls it at start. A stored hook that no longer loads is an error: the
// portal must not quietly connect everyone without the hook.
func (s *Server) LoadSettings(ctx context.Context) error {
	text, err := s.Store.GetSetting(ctx, proxiesSetting)
	if err != nil {
		return err
	}
	proxies, err := clientinfo.ParseTrusted(text)
	if err != nil {
		return fmt.Errorf("load the trusted proxies: %w", err)
	}
	s.ClientInfo.SetTrusted(proxies)

	raw, err := s.Store.GetSetting(ctx, hookSetting)
	if err != nil || raw == "" {
		return err
	}
	var hs hookSettings
	if err := json.Unmarshal([]byte(raw), &hs); err != nil {
		return fmt.Errorf("load the hook settings: %w", err)
	}
	secret, err := s.Store.OpenSetting(hookSetting, hs.SealedSecret)
	if err != nil {
		return fmt.Errorf("load the hook settings: %w", err)
	}
	cfg := hook.Config{Enabled: hs.Enabled, URL: hs.URL, CABundle: hs.CABundle, Secret: secret, MaxInFlight: hs.MaxInFlight}
	if err := s.Hook.Configure(cfg); err != nil {
		return fmt.Errorf("load the hook settings: %w", err)
	}
	return nil
}

// SyncSettings applies the stored hook and trusted proxies again when
// they changed since it last looked: a replica of a cluster calls it
// every few seconds to take up what an admin saved on another.
func (s *Server) SyncSettings(ctx context.Context) error {
	var raw [2]string
	for i, name := range []string{proxiesSetting, hookSetting} {
		v, err := s.Store.GetSetting(ctx, name)
		if err != nil {
			return err
		}
		raw[i] = v
	}
	s.settingsMu.Lock()
	defer s.settingsMu.Unlock()
	if s.syncedSettings != nil && *s.syncedSettings == raw {
		return nil
	}
	if err := s.LoadSettings(ctx); err != nil {
		return err
	}
	s.syncedSettings = &raw
	return nil
}

// hookInput is a change of the hook. Nil fields keep their value; the
// secret is kept unless Secret is given, GenerateSecret or ClearSecret.
type hookInput struct {
	Enabled        *bool
	URL            *string
	CABundle       *string
	MaxInFlight    *string // as typed; "" for the default
	Secret         string
	GenerateSecret bool
	ClearSecret    bool
}

// saveHook validates in, stores it and makes it the hook for new
// connections; running sessions are not affected. It returns the new
// configuration and, when one was generated, the new secret (shown once).
func (s *Server) saveHook(r *http.Request, actor store.User, in hookInput) (hook.Config, string, error) {
	s.settingsMu.Lock()
	defer s.settingsMu.Unlock()
	old := s.Hook.Config()
	cfg := old
	if in.Enabled != nil {
		cfg.Enabled = *in.Enabled
	}
	if in.URL != nil {
		cfg.URL = strings.TrimSpace(*in.URL)
	}
	if in.CABundle != nil {
		cfg.CABundle = strings.TrimSpace(*in.CABundle)
	}
	errs := fieldErrors{}
	if in.MaxInFlight != nil {
		switch v := strings.TrimSpace(*in.MaxInFlight); v {
		case "":
			cfg.MaxInFlight = hook.DefaultMaxInFlight
		default:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxHookInFlight {
				errs["max_in_flight"] = fmt.Sprintf("Give a whole number from 1 to %d.", maxHookInFlight)
			}
			cfg.MaxInFlight = n
		}
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = hook.DefaultMaxInFlight
	}
	secretChange, generated := "unchanged", ""
	switch {
	case in.GenerateSecret:
		cfg.Secret, secretChange = newHookSecret(), "generated"
		generated = cfg.Secret
	case in.Secret != "":
		if n := len(in.Secret); n < minHookSecret || n > maxHookSecret {
			errs["secret"] = fmt.Sprintf("The shared secret must be %d to %d characters long; a generated one has 52.", minHookSecret, maxHookSecret)
		}
		cfg.Secret, secretChange = in.Secret, "changed"
	case in.ClearSecret:
		cfg.Secret, secretChange = "", "removed"
	}
	if msg := checkHookURL(cfg.URL); msg != "" {
		errs["url"] = msg
	}
	if msg := checkCABundle(cfg.CABundle); msg != "" {
		errs["ca_bundle"] = msg
	}
	if cfg.Enabled {
		if cfg.URL == "" && errs["url"] == "" {
			errs["url"] = "Enter the hook's HTTPS URL to enable it."
		}
		if cfg.Secret == "" && errs["secret"] == "" {
			errs["secret"] = "Set a shared secret to enable the hook: every request is signed with it."
		}
	}
	if len(errs) > 0 {
		return old, "", errs
	}
	// The hook package has the last word; a scratch hook checks cfg
	// without touching the running one.
	if err := hook.New(hook.WithTLS(s.ClientTLS)).Configure(cfg); err != nil {
		return old, "", fieldErrors{"hook": sentence(err.Error())}
	}
	sealed, err := s.Store.SealSetting(hookSetting, cfg.Secret)
	if err != nil {
		return old, "", err
	}
	raw, err := json.Marshal(hookSettings{Enabled: cfg.Enabled, URL: cfg.URL, CABundle: cfg.CABundle, MaxInFlight: cfg.MaxInFlight, SealedSecret: sealed})
	if err != nil {
		return old, "", err
	}
	if err := s.Store.SetSetting(r.Context(), hookSetting, string(raw)); err != nil {
		return old, "", err
	}
	if err := s.Hook.Configure(cfg); err != nil {
		return old, "", err
	}
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionSettingsHook, Target: "connection authorization hook", Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"enabled": strconv.FormatBool(cfg.Enabled), "url": cfg.URL, "max_in_flight": strconv.Itoa(cfg.MaxInFlight),
			"ca_bundle": caBundleDetail(cfg.CABundle), "secret": secretChange}})
	return s.Hook.Config(), generated, nil
}

// newHookSecret returns a random shared secret: 256 bits in 52 base32
// characters.
func newHookSecret() string { return rand.Text() + rand.Text() }

// checkHookURL says what is wrong with a hook URL, in words for the admin.
func checkHookURL(raw string) string {
	if raw == "" {
		return ""
	}
	if len(raw) > maxHookURL {
		return fmt.Sprintf("The URL must be at most %d characters.", maxHookURL)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "This is not a URL."
	case u.Scheme != "https":
		return "The URL must start with https://: requests carry user names and addresses."
	case u.Hostname() == "":
		return "The URL has no host name."
	case u.User != nil:
		return "The URL must not hold a user name or password: the shared secret authenticates the portal."
	case u.Fragment != "":
		return "The URL must not hold a #fragment."
	}
	return ""
}

// checkCABundle says what is wrong with a PEM bundle of CA certificates.
func checkCABundle(b string) string {
	if b == "" {
		return ""
	}
	if len(b) > maxCABundle {
		return fmt.Sprintf("The CA bundle must be at most %d KiB.", maxCABundle>>10)
	}
	rest, n := []byte(b), 0
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		rest, n = r, n+1
		if block.Type != "CERTIFICATE" {
			return fmt.Sprintf("Certificate %d of the CA bundle is a %q block; give only CERTIFICATE blocks (never a private key).", n, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Sprintf("Certificate %d of the CA bundle does not parse: %v.", n, err)
		}
	}
	switch {
	case n == 0:
		return "The CA bundle must be PEM certificates, starting with -----BEGIN CERTIFICATE-----."
	case strings.TrimSpace(string(rest)) != "":
		return "The CA bundle has text after its last certificate that is not a certificate."
	}
	return ""
}

func caBundleDetail(b string) string {
	if b == "" {
		return "none"
	}
	return "set"
}

// sentence capitalises msg and ends it with a full stop.
func sentence(msg string) string {
	if msg == "" {
		return msg
	}
	r, n := utf8.DecodeRuneInString(msg)
	msg = string(unicode.ToUpper(r)) + msg[n:]
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}

// saveProxies replaces the trusted proxies with the networks in text.
func (s *Server) saveProxies(r *http.Request, actor store.User, text string) ([]netip.Prefix, error) {
	s.settingsMu.Lock()
	defer s.settingsMu.Unlock()
	p, err := clientinfo.ParseTrusted(text)
	if err != nil {
		return nil, fieldErrors{"networks": sentence(err.Error())}
	}
	old := clientinfo.FormatTrusted(s.ClientInfo.Trusted())
	formatted := clientinfo.FormatTrusted(p)
	if err := s.Store.SetSetting(r.Context(), proxiesSetting, formatted); err != nil {
		return nil, err
	}
	s.ClientInfo.SetTrusted(p)
	s.record(r, audit.Event{Actor: actor.Name, Action: audit.ActionSettingsProxies, Target: "trusted proxies", Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"networks": strings.ReplaceAll(formatted, "\n", " "), "previous": strings.ReplaceAll(old, "\n", " ")}})
	return p, nil
}

// testHook sends a sample request, made of the admin's own user and
// browser, to the hook as saved (even when it is disabled).
func (s *Server) testHook(r *http.Request, actor store.User) hook.Exchange {
	info := s.ClientInfo.Info(r)
	groups := actor.Groups
	if groups == nil {
		groups = []string{}
	}
	req := hook.Request{
		ConnectionID: "test-" + rand.Text()[:16], EndpointID: s.endpointID(), CommonName: info.CommonName,
		Username: actor.Name, Groups: groups, Platform: info.Platform, PlatformVersion: info.PlatformVersion,
		PublicIP: info.Addr, ClientVersion: info.ClientVersion, Resource: "settings-test", ResourceTags: []string{},
		Protocol: "ssh", SchemaVersion: hook.SchemaVersion,
	}
	x := s.Hook.Test(r.Context(), req)
	ev := audit.Event{Actor: actor.Name, Action: audit.ActionSettingsHookTest, Target: "connection authorization hook", Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"url": s.Hook.Config().URL, "elapsed_ms": strconv.FormatInt(x.Elapsed.Milliseconds(), 10)}}
	if !x.Result.Allowed {
		ev.Outcome, ev.Reason = audit.OutcomeFailure, string(x.Result.Reason)
	}
	s.record(r, ev)
	return x
}

// forwardingHeaders returns the forwarding headers of r as received,
// shortened, for the admin to compare with the address the portal sees.
func forwardingHeaders(r *http.Request) string {
	var parts []string
	for _, h := range []string{"X-Forwarded-For", "Forwarded"} {
		if v := r.Header.Values(h); len(v) > 0 {
			parts = append(parts, h+": "+strings.Join(v, ", "))
		}
	}
	out := strings.Join(parts, "\n")
	if len(out) > 500 {
		out = strings.ToValidUTF8(out[:500], "") + "…"
	}
	return out
}

// elapsedText shows a duration to the millisecond.
func elapsedText(d time.Duration) string {
	if d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}
