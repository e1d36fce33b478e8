// Package saml signs users in through a SAML 2.0 identity provider: the
// portal is the service provider (SP). It keeps each provider's settings
// (Config), makes the SP's key pair, fetches and checks the IdP's
// metadata, starts sign-ins with the HTTP-Redirect binding and checks the
// IdP's answer at the assertion consumer service (ACS): signed assertion,
// audience, destination, validity window, InResponseTo matched against
// the requests this portal made (single use) and assertion replay.
package saml

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on a provider's settings.
const (
	maxMetadataURL   = 2048
	MaxMetadataXML   = 512 << 10 // uploaded or fetched IdP metadata (fits in a form post)
	maxAttributeName = 256
	maxDomains       = 64
	maxDomain        = 253
	spKeyBits        = 2048
	spCertValidity   = 10 * 365 * 24 * time.Hour
)

// Config is a SAML provider's settings, the JSON kept (sealed) in
// store.IdentityProvider.Config.
type Config struct {
	// MetadataURL is where the IdP publishes its metadata; MetadataXML
	// the metadata itself, uploaded. Exactly one is set.
	MetadataURL string `json:"metadata_url,omitempty"`
	MetadataXML string `json:"metadata_xml,omitempty"`
	// UsernameAttribute names the attribute (Name or FriendlyName) that
	// holds the Keyway user name; "" takes the NameID.
	UsernameAttribute string `json:"username_attribute,omitempty"`
	// DisplayNameAttribute, EmailAttribute and GroupsAttribute name the
	// attributes holding the display name, e-mail address and groups;
	// "" for none.
	DisplayNameAttribute string `json:"display_name_attribute,omitempty"`
	EmailAttribute       string `json:"email_attribute,omitempty"`
	GroupsAttribute      string `json:"groups_attribute,omitempty"`
	// AllowedDomains, if any, are the e-mail domains whose users may sign
	// in; a user without an e-mail address in one is refused.
	AllowedDomains []string `json:"allowed_email_domains,omitempty"`
	// SPKey and SPCertificate are the SP's RSA key (PKCS #8 PEM) and
	// self-signed certificate (PEM), made by NewKeyPair when the provider
	// is created; the IdP gets the certificate in the SP metadata.
	SPKey         string `json:"sp_key"`
	SPCertificate string `json:"sp_certificate"`
}

// ParseConfig reads and checks a provider's settings.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("read SAML settings: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// JSON is c as the store keeps it.
func (c Config) JSON() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // only strings: cannot fail
	}
	return b
}

// FieldError says which setting is wrong: Field is "metadata",
// "attributes" or "allowed_domains".
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Validate says, in words for the admin, what is wrong with c.
func (c Config) Validate() error {
	if err := c.ValidateSettings(); err != nil {
		return err
	}
	if _, _, err := c.keyPair(); err != nil {
		return err
	}
	return nil
}

// ValidateSettings checks what the admin sets (not the SP key); its
// errors are *FieldError.
func (c Config) ValidateSettings() error {
	if err := c.validateMetadata(); err != nil {
		return &FieldError{Field: "metadata", Err: err}
	}
	for label, a := range map[string]string{"user name": c.UsernameAttribute, "display name": c.DisplayNameAttribute,
		"e-mail": c.EmailAttribute, "groups": c.GroupsAttribute} {
		if len(a) > maxAttributeName || !printable(a) || strings.TrimSpace(a) != a {
			return &FieldError{Field: "attributes", Err: fmt.Errorf("the %s attribute must be an attribute name of at most %d printable characters", label, maxAttributeName)}
		}
	}
	if len(c.AllowedDomains) > maxDomains {
		return &FieldError{Field: "allowed_domains", Err: fmt.Errorf("list at most %d allowed e-mail domains", maxDomains)}
	}
	for _, d := range c.AllowedDomains {
		if !validDomain(d) {
			return &FieldError{Field: "allowed_domains", Err: fmt.Errorf("%q is not an e-mail domain such as example.com", d)}
		}
	}
	return nil
}

func (c Config) validateMetadata() error {
	switch {
	case c.MetadataURL == "" && c.MetadataXML == "":
		return errors.New("give the identity provider's metadata URL, or upload its metadata file")
	case c.MetadataURL != "" && c.MetadataXML != "":
		return errors.New("give either a metadata URL or a metadata file, not both")
	case len(c.MetadataXML) > MaxMetadataXML:
		return fmt.Errorf("the metadata file is larger than %d KiB", MaxMetadataXML>>10)
	}
	if c.MetadataURL != "" {
		return checkMetadataURL(c.MetadataURL)
	}
	return nil
}

func checkMetadataURL(s string) error {
	if len(s) > maxMetadataURL {
		return fmt.Errorf("the metadata URL is longer than %d characters", maxMetadataURL)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return errors.New("the metadata URL must be an http or https URL such as https://idp.example.com/metadata")
	}
	return nil
}

// validDomain accepts a lower-case DNS name such as example.com.
func validDomain(d string) bool {
	if d == "" || len(d) > maxDomain || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") || strings.Contains(d, "..") {
		return false
	}
	for _, r := range d {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) })
}

// ParseDomains reads a list of e-mail domains separated by commas, spaces
// or new lines, lower-cased.
func ParseDomains(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
		out = append(out, strings.TrimPrefix(f, "@"))
	}
	return out
}

// NewKeyPair makes a new SP key and self-signed certificate into c, for
// the SP whose entity id is entityID.
func (c *Config) NewKeyPair(entityID string, now time.Time) error {
	key, err := rsa.GenerateKey(rand.Reader, spKeyBits)
	if err != nil {
		return fmt.Errorf("make SAML service provider key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("make SAML service provider certificate: %w", err)
	}
	cn := entityID
	if u, err := url.Parse(entityID); err == nil && u.Host != "" {
		cn = u.Hostname()
	}
	if len(cn) > 64 {
		cn = cn[:64]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Keyway"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(spCertValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("make SAML service provider certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode SAML service provider key: %w", err)
	}
	c.SPKey = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}))
	c.SPCertificate = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return nil
}

// keyPair parses the SP's key and certificate.
func (c Config) keyPair() (*rsa.PrivateKey, *x509.Certificate, error) {
	errMissing := errors.New("the provider has no service provider key: create it again")
	kb, _ := pem.Decode([]byte(c.SPKey))
	cb, _ := pem.Decode([]byte(c.SPCertificate))
	if kb == nil || cb == nil {
		return nil, nil, errMissing
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("read the service provider key: %w", err)
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("the service provider key is not an RSA key")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("read the service provider certificate: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("the service provider certificate is not for its key")
	}
	return key, cert, nil
}

// Certificate is the SP's certificate, for the admin page.
func (c Config) Certificate() (*x509.Certificate, error) {
	_, cert, err := c.keyPair()
	return cert, err
}
