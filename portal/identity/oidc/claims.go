package oidc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Limits on the claims taken from a provider.
const (
	maxClaims     = 256  // claims kept from the ID token and userinfo
	maxClaimValue = 1024 // bytes of a subject, name or e-mail
	// MaxGroups bounds the groups taken from the groups claim; more is
	// refused rather than cut, since a cut list would drop grants at
	// random.
	MaxGroups = 500
	maxGroup  = 256 // bytes of one group value
)

// Identity is the user a provider vouches for.
type Identity struct {
	Subject     string
	Username    string
	DisplayName string
	Email       string
	Groups      []string
}

// extract reads the user from the claims per the provider's configuration.
func extract(claims map[string]json.RawMessage, c Config) (Identity, error) {
	var id Identity
	var err error
	if id.Subject, err = stringClaim(claims, "sub", true); err != nil {
		return id, refuse(ReasonClaims, err)
	}
	if id.Username, err = stringClaim(claims, c.UsernameClaim, true); err != nil {
		return id, refuse(ReasonClaims, err)
	}
	if id.DisplayName, err = stringClaim(claims, "name", false); err != nil {
		return id, refuse(ReasonClaims, err)
	}
	if id.Email, err = stringClaim(claims, "email", false); err != nil {
		return id, refuse(ReasonClaims, err)
	}
	if id.Groups, err = ParseGroups(claims[c.GroupsClaim]); err != nil {
		return id, refuse(ReasonClaims, fmt.Errorf("claim %q: %w", c.GroupsClaim, err))
	}
	if len(c.AllowedEmailDomains) > 0 {
		var verified *bool
		if v, ok := claims["email_verified"]; ok {
			var b bool
			if json.Unmarshal(v, &b) == nil {
				verified = &b
			}
		}
		if id.Email == "" || (verified != nil && !*verified) || !c.EmailAllowed(id.Email) {
			return id, refuse(ReasonEmailDomain, fmt.Errorf("e-mail %q is not verified in an allowed domain", trunc(id.Email)))
		}
	}
	return id, nil
}

// stringClaim reads a string claim, bounded and printable.
func stringClaim(claims map[string]json.RawMessage, name string, required bool) (string, error) {
	raw, ok := claims[name]
	if !ok || string(raw) == "null" {
		if required {
			return "", fmt.Errorf("the provider sent no %q claim", name)
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("claim %q is not a string", name)
	}
	if err := boundedText(s, maxClaimValue); err != nil {
		return "", fmt.Errorf("claim %q: %w", name, err)
	}
	if required && s == "" {
		return "", fmt.Errorf("claim %q is empty", name)
	}
	return s, nil
}

func boundedText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("longer than %d bytes", max)
	}
	if !utf8.ValidString(s) || !printable(s) {
		return errors.New("holds control characters or invalid UTF-8")
	}
	return nil
}

// ParseGroups reads a groups claim: absent or null (no groups), a string
// (one group, as some providers send a single one) or an array of strings.
// Empty values are dropped, duplicates kept once.
func ParseGroups(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var list []string
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, errors.New("not a string or a list of strings")
		}
		list = []string{s}
	case '[':
		// Count before decoding the values: a huge list is refused
		// without allocating each value.
		d := json.NewDecoder(bytes.NewReader(raw))
		if _, err := d.Token(); err != nil {
			return nil, errors.New("not a string or a list of strings")
		}
		for d.More() {
			if len(list) >= MaxGroups {
				return nil, fmt.Errorf("more than %d groups", MaxGroups)
			}
			var s string
			if err := d.Decode(&s); err != nil {
				return nil, errors.New("a group is not a string")
			}
			list = append(list, s)
		}
		if _, err := d.Token(); err != nil {
			return nil, errors.New("not a list of strings")
		}
	default:
		return nil, errors.New("not a string or a list of strings")
	}
	seen := make(map[string]bool, len(list))
	out := list[:0]
	for _, g := range list {
		g = strings.TrimSpace(g)
		if g == "" || seen[g] {
			continue
		}
		if err := boundedText(g, maxGroup); err != nil {
			return nil, fmt.Errorf("group %q: %w", trunc(g), err)
		}
		seen[g] = true
		out = append(out, g)
	}
	return out, nil
}

// Claim is one claim as the Test page shows it.
type Claim struct {
	Name  string
	Value string
}

// maxShownClaim bounds a claim's value on the Test page.
const maxShownClaim = 512

// ShowClaims lists claims by name, values as compact JSON, long ones cut.
func ShowClaims(claims map[string]json.RawMessage) []Claim {
	out := make([]Claim, 0, len(claims))
	for k, v := range claims {
		var b bytes.Buffer
		if json.Compact(&b, v) != nil {
			b.Reset()
			b.Write(v)
		}
		s := b.String()
		if len(s) > maxShownClaim {
			s = strings.ToValidUTF8(s[:maxShownClaim], "") + "…"
		}
		out = append(out, Claim{Name: trunc(k), Value: s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
