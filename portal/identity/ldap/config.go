// Package ldap signs users in against an LDAP directory or Active
// Directory: it finds the user's entry, binds as the user with their
// password, and reads their groups (nested ones too, where asked).
package ldap

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/keyway-dev/keyway/gateway/tlsconf"
)

// Nested group modes.
const (
	// NestedNone reads the groups that list the user directly.
	NestedNone = "none"
	// NestedSearch follows groups that are members of groups, breadth
	// first, within maxNestDepth and MaxGroups.
	NestedSearch = "search"
	// NestedAD asks Active Directory for the transitive membership in one
	// search (LDAP_MATCHING_RULE_IN_CHAIN).
	NestedAD = "ad"
)

// matchingRuleInChain is Active Directory's LDAP_MATCHING_RULE_IN_CHAIN:
// member:1.2.840.113556.1.4.1941:=DN matches groups the DN is in through
// any chain of groups.
const matchingRuleInChain = "1.2.840.113556.1.4.1941"

// Limits of a configuration, checked by ParseConfig.
const (
	// maxConfig bounds the configuration JSON.
	maxConfig = 256 << 10
	// maxField bounds each text field (DNs, filters, attribute names).
	maxField = 1024
	// maxCABundle bounds the CA bundle PEM.
	maxCABundle = 128 << 10
	// maxTimeout bounds the connect and operation timeouts.
	maxTimeout = 60
	// maxGroupsLimit bounds MaxGroups; maxNestDepth bounds how many levels
	// of groups in groups a NestedSearch follows.
	maxGroupsLimit = 1000
	maxNestDepth   = 8
)

// Defaults of a configuration.
const (
	defaultUserFilter     = "(uid={username})"
	defaultUsernameAttr   = "uid"
	defaultDisplayAttr    = "displayName"
	defaultMailAttr       = "mail"
	defaultGroupFilter    = "(objectClass=groupOfNames)"
	defaultGroupMember    = "member"
	defaultGroupNameAttr  = "cn"
	defaultConnectTimeout = 5
	defaultTimeout        = 10
	defaultMaxGroups      = 200
)

// Config is a directory's configuration, kept as JSON (sealed at rest by
// the store: it holds the service account's password).
type Config struct {
	// URL is ldap://host[:port] or ldaps://host[:port].
	URL string `json:"url"`
	// StartTLS upgrades an ldap:// connection before anything is sent.
	// ldap:// without it is refused: passwords would cross in clear.
	StartTLS bool `json:"start_tls"`
	// TLS is the portal's client TLS settings (--tls-min-version,
	// --tls-client-ciphers), not stored with the directory.
	TLS tlsconf.Settings `json:"-"`
	// CAPEM are the certificates (PEM) that may sign the directory's;
	// empty trusts the system's.
	CAPEM string `json:"ca_pem,omitempty"`
	// BindDN and BindPassword are a service account that searches for
	// users and groups; without one, the user's own bind does (and a
	// UserDNTemplate is needed to find who to bind as).
	BindDN       string `json:"bind_dn,omitempty"`
	BindPassword string `json:"bind_password,omitempty"`
	// UserDNTemplate binds as the user without a search first, e.g.
	// uid={username},ou=people,dc=example,dc=com or {username}@corp.example
	// (Active Directory). {username} is escaped for a DN.
	UserDNTemplate string `json:"user_dn_template,omitempty"`
	// UserBase and UserFilter find the user's entry; {username} in the
	// filter is escaped for a filter.
	UserBase   string `json:"user_base"`
	UserFilter string `json:"user_filter"`
	// UsernameAttr is the Keyway user name (uid, sAMAccountName);
	// DisplayNameAttr and MailAttr fill the profile.
	UsernameAttr    string `json:"username_attr"`
	DisplayNameAttr string `json:"display_name_attr"`
	MailAttr        string `json:"mail_attr"`
	// GroupBase ("" = no groups), GroupFilter (which entries are groups),
	// GroupMemberAttr (holds member DNs) and GroupNameAttr find the user's
	// groups: (&GroupFilter(GroupMemberAttr=userDN)).
	GroupBase       string `json:"group_base,omitempty"`
	GroupFilter     string `json:"group_filter,omitempty"`
	GroupMemberAttr string `json:"group_member_attr,omitempty"`
	GroupNameAttr   string `json:"group_name_attr,omitempty"`
	// Nested is NestedNone, NestedSearch or NestedAD.
	Nested string `json:"nested_groups,omitempty"`
	// MaxGroups refuses users in more groups (a search answers at most
	// this many).
	MaxGroups int `json:"max_groups,omitempty"`
	// ConnectTimeout and Timeout (seconds) bound the connection with its
	// TLS handshake, and each operation.
	ConnectTimeout int `json:"connect_timeout,omitempty"`
	Timeout        int `json:"timeout,omitempty"`
}

// ParseConfig decodes and checks a configuration, filling in defaults.
func ParseConfig(b []byte) (Config, error) {
	if len(b) > maxConfig {
		return Config{}, fmt.Errorf("the directory configuration is over %d KiB", maxConfig>>10)
	}
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("read the directory configuration: %w", err)
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Defaults fills in the defaults of empty fields.
func (c *Config) Defaults() {
	def := func(s *string, d string) {
		*s = strings.TrimSpace(*s)
		if *s == "" {
			*s = d
		}
	}
	def(&c.URL, "")
	def(&c.BindDN, "")
	def(&c.UserDNTemplate, "")
	def(&c.UserBase, "")
	def(&c.UserFilter, defaultUserFilter)
	def(&c.UsernameAttr, defaultUsernameAttr)
	def(&c.DisplayNameAttr, defaultDisplayAttr)
	def(&c.MailAttr, defaultMailAttr)
	def(&c.GroupBase, "")
	def(&c.GroupFilter, defaultGroupFilter)
	def(&c.GroupMemberAttr, defaultGroupMember)
	def(&c.GroupNameAttr, defaultGroupNameAttr)
	def(&c.Nested, NestedNone)
	if c.MaxGroups == 0 {
		c.MaxGroups = defaultMaxGroups
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = defaultConnectTimeout
	}
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
}

// Validate checks a configuration whose defaults are filled in, with a
// message an admin can act on.
func (c Config) Validate() error {
	if _, _, err := c.endpoint(); err != nil {
		return err
	}
	fields := []struct{ field, name, v string }{
		{"bind_dn", "bind DN", c.BindDN}, {"bind_password", "bind password", c.BindPassword},
		{"user_dn_template", "user DN template", c.UserDNTemplate}, {"user_base", "user search base", c.UserBase},
		{"user_filter", "user filter", c.UserFilter}, {"username_attr", "user name attribute", c.UsernameAttr},
		{"display_name_attr", "display name attribute", c.DisplayNameAttr}, {"mail_attr", "mail attribute", c.MailAttr},
		{"group_base", "group search base", c.GroupBase}, {"group_filter", "group filter", c.GroupFilter},
		{"group_member_attr", "group member attribute", c.GroupMemberAttr}, {"group_name_attr", "group name attribute", c.GroupNameAttr},
	}
	for _, f := range fields {
		if len(f.v) > maxField || !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, unicode.IsControl) {
			return fieldError(f.field, "the %s must be text of at most %d bytes, without control characters", f.name, maxField)
		}
	}
	for _, f := range fields[5:] {
		if f.field == "group_base" || f.field == "group_filter" {
			continue
		}
		if !validAttr(f.v) {
			return fieldError(f.field, "the %s %q is not an attribute name (letters, digits and hyphens)", f.name, f.v)
		}
	}
	if (c.BindDN == "") != (c.BindPassword == "") {
		return fieldError("bind_password", "give both the bind DN and its password, or neither (then users search as themselves)")
	}
	if c.BindDN != "" {
		if _, err := goldap.ParseDN(c.BindDN); err != nil {
			return fieldError("bind_dn", "the bind DN %q is not a DN: %v", c.BindDN, err)
		}
	}
	if c.BindDN == "" && c.UserDNTemplate == "" {
		return fieldError("user_dn_template", "without a service account (bind DN), a user DN template is needed to know whom to bind as")
	}
	if c.UserDNTemplate != "" && !strings.Contains(c.UserDNTemplate, "{username}") {
		return fieldError("user_dn_template", "the user DN template must contain {username}")
	}
	if c.UserBase == "" {
		return fieldError("user_base", "the user search base is needed (e.g. ou=people,dc=example,dc=com)")
	}
	for _, b := range []struct{ field, name, v string }{{"user_base", "user search base", c.UserBase}, {"group_base", "group search base", c.GroupBase}} {
		if b.v == "" {
			continue
		}
		if _, err := goldap.ParseDN(b.v); err != nil {
			return fieldError(b.field, "the %s %q is not a DN: %v", b.name, b.v, err)
		}
	}
	if !strings.Contains(c.UserFilter, "{username}") {
		return fieldError("user_filter", "the user filter must contain {username}, e.g. (uid={username})")
	}
	if _, err := goldap.CompileFilter(strings.ReplaceAll(c.UserFilter, "{username}", "x")); err != nil {
		return fieldError("user_filter", "the user filter %q is not an LDAP filter: %v", c.UserFilter, err)
	}
	if _, err := goldap.CompileFilter(c.GroupFilter); err != nil {
		return fieldError("group_filter", "the group filter %q is not an LDAP filter: %v", c.GroupFilter, err)
	}
	switch c.Nested {
	case NestedNone, NestedSearch, NestedAD:
	default:
		return fieldError("nested_groups", "nested groups must be %q, %q or %q", NestedNone, NestedSearch, NestedAD)
	}
	if c.MaxGroups < 1 || c.MaxGroups > maxGroupsLimit {
		return fieldError("max_groups", "the group limit must be between 1 and %d", maxGroupsLimit)
	}
	if c.ConnectTimeout < 1 || c.ConnectTimeout > maxTimeout || c.Timeout < 1 || c.Timeout > maxTimeout {
		return fieldError("timeout", "timeouts must be between 1 and %d seconds", maxTimeout)
	}
	if len(c.CAPEM) > maxCABundle {
		return fieldError("ca_pem", "the CA bundle is over %d KiB", maxCABundle>>10)
	}
	if strings.TrimSpace(c.CAPEM) != "" {
		if _, err := c.certPool(); err != nil {
			return err
		}
	}
	return nil
}

// FieldError is a configuration error in one field (named by its JSON
// key), in words an admin can act on.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Msg }

func fieldError(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// validAttr reports whether s is an attribute description: a name of
// letters, digits and hyphens, or a numeric OID.
func validAttr(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '.')) {
			return false
		}
	}
	return true
}

// endpoint returns the directory's host:port and whether it speaks TLS
// from the start (ldaps).
func (c Config) endpoint() (hostPort string, ldaps bool, err error) {
	if c.URL == "" {
		return "", false, fieldError("url", "the directory URL is needed, e.g. ldaps://dc1.corp.example")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return "", false, fieldError("url", "the directory URL %q is not a URL: %v", c.URL, err)
	}
	switch u.Scheme {
	case "ldap":
	case "ldaps":
		ldaps = true
	default:
		return "", false, fieldError("url", "the directory URL must start with ldap:// or ldaps://, not %q", c.URL)
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false, fieldError("url", "the directory URL is just ldap[s]://host[:port], not %q", c.URL)
	}
	port := u.Port()
	if port == "" {
		port = "389"
		if ldaps {
			port = "636"
		}
	}
	if ldaps && c.StartTLS {
		return "", false, fieldError("start_tls", "StartTLS is for ldap:// URLs; ldaps:// is TLS already")
	}
	if !ldaps && !c.StartTLS {
		return "", false, fieldError("start_tls", "use ldaps:// or turn StartTLS on: passwords must not cross the network in clear")
	}
	return net.JoinHostPort(u.Hostname(), port), ldaps, nil
}

// certPool returns the CA bundle's pool, nil for the system's.
func (c Config) certPool() (*x509.CertPool, error) {
	if strings.TrimSpace(c.CAPEM) == "" {
		return nil, nil
	}
	pool := x509.NewCertPool()
	rest := []byte(c.CAPEM)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fieldError("ca_pem", "a certificate of the CA bundle cannot be read: %v", err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fieldError("ca_pem", "the CA bundle has no PEM certificate (-----BEGIN CERTIFICATE-----)")
	}
	return pool, nil
}

func (c Config) connectTimeout() time.Duration { return time.Duration(c.ConnectTimeout) * time.Second }
func (c Config) timeout() time.Duration        { return time.Duration(c.Timeout) * time.Second }
