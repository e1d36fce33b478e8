// Package tlsconf parses the TLS settings an operator may give the portal
// and the gateway (the lowest TLS version, and the TLS 1.2 cipher suites
// allowed on the server side and on the client side) and applies them to
// tls.Configs.
//
// Go negotiates the highest version both sides support, so TLS 1.3 is
// preferred whenever the peer has it. Go does not let TLS 1.3 suites be
// chosen (all three are always on and all are secure), so the suite lists
// restrict TLS 1.2 only.
package tlsconf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// maxListLen bounds a suite list before it is split: the longest valid
// list (every allowed name once, with spaces) is far shorter.
const maxListLen = 4096

// Settings are the TLS settings of one process. The zero value is not
// valid; start from Default.
type Settings struct {
	// MinVersion is tls.VersionTLS12 or tls.VersionTLS13.
	MinVersion uint16
	// ServerSuites and ClientSuites are the TLS 1.2 cipher suites allowed
	// on listeners and on outgoing connections; nil keeps Go's defaults.
	ServerSuites []uint16
	ClientSuites []uint16
}

// Default is TLS 1.2 at least (1.3 preferred) with Go's default suites.
func Default() Settings { return Settings{MinVersion: tls.VersionTLS12} }

// ParseVersion parses "1.2" or "1.3" ("TLS1.2", "tls 1.3" too); empty
// means 1.2.
func ParseVersion(s string) (uint16, error) {
	v := strings.ToLower(strings.Join(strings.Fields(s), ""))
	v = strings.TrimPrefix(v, "tls")
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	case "1.0", "1.1":
		return 0, fmt.Errorf("TLS %s is insecure and not supported; use 1.2 or 1.3", v)
	}
	return 0, fmt.Errorf("TLS version %q is unknown; use 1.2 or 1.3", s)
}

// allowed reports whether suite is one we accept: TLS 1.2 suites with
// forward secrecy (ECDHE) and an AEAD cipher (GCM or ChaCha20-Poly1305).
// Everything else Go knows is refused: RC4, 3DES, CBC with SHA-1 or
// SHA-256 MACs, and RSA key exchange without forward secrecy.
func allowed(s *tls.CipherSuite) bool {
	return !s.Insecure && slices.Contains(s.SupportedVersions, tls.VersionTLS12) &&
		strings.HasPrefix(s.Name, "TLS_ECDHE_") &&
		(strings.Contains(s.Name, "_GCM_") || strings.Contains(s.Name, "_CHACHA20_POLY1305"))
}

// AllowedSuites lists the names a suite list may hold.
func AllowedSuites() []string {
	var names []string
	for _, s := range tls.CipherSuites() {
		if allowed(s) {
			names = append(names, s.Name)
		}
	}
	return names
}

func lookup(name string) (*tls.CipherSuite, bool) {
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		// Go's constants name ChaCha20 suites without the _SHA256 that
		// IANA's names carry; accept both.
		if s.Name == name || strings.TrimSuffix(s.Name, "_SHA256") == name && strings.Contains(name, "CHACHA20") {
			return s, true
		}
	}
	return nil, false
}

// ParseSuites parses a comma-separated list of cipher suite names (IANA's,
// as Go spells them: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256). Empty means
// Go's defaults (nil). Unknown and insecure names are refused with an error
// naming the entry and listing the allowed names; a repeated name counts
// once.
func ParseSuites(list string) ([]uint16, error) {
	if len(list) > maxListLen {
		return nil, fmt.Errorf("cipher suite list is %d bytes, more than %d", len(list), maxListLen)
	}
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	hint := "allowed: " + strings.Join(AllowedSuites(), ", ")
	var ids []uint16
	for i, raw := range strings.Split(list, ",") {
		name := strings.ToUpper(strings.TrimSpace(raw))
		if name == "" {
			return nil, fmt.Errorf("cipher suite list entry %d is empty; %s", i+1, hint)
		}
		s, ok := lookup(name)
		switch {
		case !ok:
			return nil, fmt.Errorf("cipher suite %q is unknown; %s", name, hint)
		case !slices.Contains(s.SupportedVersions, tls.VersionTLS12):
			return nil, fmt.Errorf("cipher suite %q is a TLS 1.3 suite: Go always enables all TLS 1.3 suites and they cannot be chosen; list TLS 1.2 suites only (%s)", name, hint)
		case !allowed(s):
			return nil, fmt.Errorf("cipher suite %q is insecure (no forward secrecy, or RC4, 3DES or CBC); %s", name, hint)
		}
		if !slices.Contains(ids, s.ID) {
			ids = append(ids, s.ID)
		}
	}
	return ids, nil
}

// Validate checks that the settings make sense together: suite lists only
// with a TLS 1.2 minimum, since with 1.3 they would change nothing.
func (s Settings) Validate() error {
	switch s.MinVersion {
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		return fmt.Errorf("TLS minimum version %#x is not 1.2 or 1.3", s.MinVersion)
	}
	if s.MinVersion == tls.VersionTLS13 && (len(s.ServerSuites) > 0 || len(s.ClientSuites) > 0) {
		return errors.New("cipher suites apply to TLS 1.2 only, which a TLS 1.3 minimum turns off; leave the suite lists empty or set the minimum to 1.2")
	}
	return nil
}

// Server applies the settings to a listener's c (a new config if nil) and
// returns it. A higher minimum already in c is kept.
func (s Settings) Server(c *tls.Config) *tls.Config { return s.apply(c, s.ServerSuites) }

// Client applies the settings to an outgoing connection's c (a new config
// if nil) and returns it. A higher minimum already in c is kept.
func (s Settings) Client(c *tls.Config) *tls.Config { return s.apply(c, s.ClientSuites) }

func (s Settings) apply(c *tls.Config, suites []uint16) *tls.Config {
	if c == nil {
		c = &tls.Config{}
	}
	c.MinVersion = max(c.MinVersion, s.MinVersion, tls.VersionTLS12)
	if len(suites) > 0 {
		c.CipherSuites = slices.Clone(suites)
	}
	return c
}

// CheckServerKey reports an error when TLS 1.2 is allowed, the server suites
// are restricted, and none of them can be used with a certificate holding
// pub: TLS 1.2 clients could then never connect. A server that speaks
// HTTP/2 (http2) also needs the AES-128-GCM suite for its key, which HTTP/2
// requires (RFC 9113, section 9.2.2) and Go's server refuses to start
// without. Key types it does not know pass.
func (s Settings) CheckServerKey(pub crypto.PublicKey, http2 bool) error {
	if s.MinVersion >= tls.VersionTLS13 || len(s.ServerSuites) == 0 {
		return nil
	}
	var kind, prefix string
	switch pub.(type) {
	case *ecdsa.PublicKey:
		kind, prefix = "ECDSA", "TLS_ECDHE_ECDSA_"
	case ed25519.PublicKey:
		kind, prefix = "Ed25519", "TLS_ECDHE_ECDSA_"
	case *rsa.PublicKey:
		kind, prefix = "RSA", "TLS_ECDHE_RSA_"
	default:
		return nil
	}
	fits := func(name string) bool {
		return strings.HasPrefix(name, prefix) && (!http2 || strings.HasSuffix(name, "_AES_128_GCM_SHA256"))
	}
	for _, id := range s.ServerSuites {
		if fits(tls.CipherSuiteName(id)) {
			return nil
		}
	}
	var fit []string
	for _, n := range AllowedSuites() {
		if fits(n) {
			fit = append(fit, n)
		}
	}
	if http2 {
		return fmt.Errorf("HTTP/2 over TLS 1.2 requires the AES-128-GCM suite for the certificate's %s key; add %s, or set the minimum to 1.3",
			kind, strings.Join(fit, ", "))
	}
	return fmt.Errorf("no server cipher suite fits the certificate's %s key, so TLS 1.2 clients could not connect; add one of %s, or set the minimum to 1.3",
		kind, strings.Join(fit, ", "))
}
