package wire

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// NetRule allows TCP connections to the addresses of Prefixes on the ports
// of Ports. Network resources are lists of them; the gateway checks a tcp
// session's resolved address against the rules its request carries, so a
// name resolved in the target's segment cannot lead elsewhere.
type NetRule struct {
	Prefixes []netip.Prefix `json:"prefixes"`
	Ports    []PortRange    `json:"ports"`
}

// PortRange is an inclusive range of TCP ports.
type PortRange struct {
	From uint16 `json:"from"`
	To   uint16 `json:"to"`
}

// Limits of network rules, checked before anything is kept.
const (
	MaxNetRules       = 64
	MaxRulePrefixes   = 64
	MaxRulePortRanges = 64
	maxNetRulesText   = 16 << 10
)

// Allows reports whether r allows port on addr.
func (r NetRule) Allows(addr netip.Addr, port int) bool {
	addr = addr.Unmap()
	inPorts := false
	for _, p := range r.Ports {
		if port >= int(p.From) && port <= int(p.To) {
			inPorts = true
			break
		}
	}
	if !inPorts {
		return false
	}
	for _, p := range r.Prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// AllowsPort reports whether r allows port on some address.
func (r NetRule) AllowsPort(port int) bool {
	for _, p := range r.Ports {
		if port >= int(p.From) && port <= int(p.To) {
			return true
		}
	}
	return false
}

// NetRules is a list of rules; an address is allowed when one rule allows
// it.
type NetRules []NetRule

// Allows reports whether one of the rules allows port on addr.
func (rs NetRules) Allows(addr netip.Addr, port int) bool {
	for _, r := range rs {
		if r.Allows(addr, port) {
			return true
		}
	}
	return false
}

// AllowsPort reports whether one of the rules allows port on some address.
func (rs NetRules) AllowsPort(port int) bool {
	for _, r := range rs {
		if r.AllowsPort(port) {
			return true
		}
	}
	return false
}

// String writes the rules back in the form ParseNetRules reads, one per
// line, a single address without its /32 or /128: never longer than the
// text the rules were parsed from, so it parses again within the limit.
func (rs NetRules) String() string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteByte('\n')
		}
		for j, p := range r.Prefixes {
			if j > 0 {
				b.WriteByte(',')
			}
			if p.IsSingleIP() {
				b.WriteString(p.Addr().String())
			} else {
				b.WriteString(p.String())
			}
		}
		b.WriteString(" tcp/")
		for j, p := range r.Ports {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(int(p.From)))
			if p.To != p.From {
				b.WriteByte('-')
				b.WriteString(strconv.Itoa(int(p.To)))
			}
		}
	}
	return b.String()
}

// ParseNetRules reads rules written one per line (or separated by ";"),
// each a comma-separated list of CIDRs or addresses, a space, and
// "tcp/" with comma-separated ports and ranges:
//
//	10.20.0.0/16,10.30.0.5 tcp/5432,8000-8099
//
// A # starts a comment to the end of the line; blank lines are skipped.
// An error names the line and what is wrong with it, in words for the
// admin who wrote it.
func ParseNetRules(text string) (NetRules, error) {
	if len(text) > maxNetRulesText {
		return nil, fmt.Errorf("the rules are longer than %d bytes", maxNetRulesText)
	}
	var rules NetRules
	for i, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		for _, rule := range strings.Split(line, ";") {
			rule = strings.TrimSpace(rule)
			if rule == "" {
				continue
			}
			r, err := parseNetRule(rule)
			if err != nil {
				return nil, fmt.Errorf("line %d (%q): %w", i+1, rule, err)
			}
			if len(rules) == MaxNetRules {
				return nil, fmt.Errorf("more than %d rules", MaxNetRules)
			}
			rules = append(rules, r)
		}
	}
	return rules, nil
}

func parseNetRule(line string) (NetRule, error) {
	fields := strings.Fields(line)
	if len(fields) != 2 {
		return NetRule{}, errors.New(`write the networks, a space, then the ports, like "10.20.0.0/16 tcp/5432,6379"`)
	}
	var r NetRule
	for _, s := range strings.Split(fields[0], ",") {
		if s == "" {
			continue
		}
		p, err := parsePrefix(s)
		if err != nil {
			return NetRule{}, err
		}
		if len(r.Prefixes) == MaxRulePrefixes {
			return NetRule{}, fmt.Errorf("more than %d networks in one rule", MaxRulePrefixes)
		}
		r.Prefixes = append(r.Prefixes, p)
	}
	if len(r.Prefixes) == 0 {
		return NetRule{}, errors.New("no network given")
	}
	ports, ok := strings.CutPrefix(strings.ToLower(fields[1]), "tcp/")
	if !ok {
		return NetRule{}, errors.New(`the ports must start with "tcp/", like tcp/5432 or tcp/8000-8099`)
	}
	for _, s := range strings.Split(ports, ",") {
		if s == "" {
			continue
		}
		pr, err := parsePortRange(s)
		if err != nil {
			return NetRule{}, err
		}
		if len(r.Ports) == MaxRulePortRanges {
			return NetRule{}, fmt.Errorf("more than %d port ranges in one rule", MaxRulePortRanges)
		}
		r.Ports = append(r.Ports, pr)
	}
	if len(r.Ports) == 0 {
		return NetRule{}, errors.New("no port given")
	}
	return r, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network in CIDR form (like 10.20.0.0/16)", s)
		}
		if !p.Addr().Is4In6() {
			return p.Masked(), nil
		}
		// Addresses are checked unmapped, so IPv4-mapped networks are
		// kept as the IPv4 networks they are; a shorter one would also
		// hold IPv6 addresses that are not IPv4.
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%q mixes IPv4-mapped and other IPv6 addresses: write IPv4 networks as IPv4, or a mapped one as /96 or longer", s)
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is neither an address nor a network in CIDR form", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parsePortRange(s string) (PortRange, error) {
	from, to, isRange := strings.Cut(s, "-")
	f, err := parsePort(from)
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		return PortRange{From: f, To: f}, nil
	}
	t, err := parsePort(to)
	if err != nil {
		return PortRange{}, err
	}
	if t < f {
		return PortRange{}, fmt.Errorf("the port range %s ends before it starts", s)
	}
	return PortRange{From: f, To: t}, nil
}

func parsePort(s string) (uint16, error) {
	// Digits only: Atoi alone would take "+22".
	n, err := strconv.Atoi(s)
	if err != nil || strings.TrimLeft(s, "0123456789") != "" || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port between 1 and 65535", s)
	}
	return uint16(n), nil
}

// validate checks rules that came over the wire, where they were not
// parsed from text.
func (rs NetRules) validate() error {
	if len(rs) > MaxNetRules {
		return fmt.Errorf("more than %d network rules", MaxNetRules)
	}
	for _, r := range rs {
		if len(r.Prefixes) == 0 || len(r.Prefixes) > MaxRulePrefixes || len(r.Ports) == 0 || len(r.Ports) > MaxRulePortRanges {
			return errors.New("a network rule without networks or ports, or with too many")
		}
		for _, p := range r.Ports {
			if p.From == 0 || p.To < p.From {
				return fmt.Errorf("bad port range %d-%d", p.From, p.To)
			}
		}
		for _, p := range r.Prefixes {
			if !p.IsValid() {
				return errors.New("an invalid network in a rule")
			}
		}
	}
	return nil
}
