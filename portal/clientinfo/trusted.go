package clientinfo

import (
	"fmt"
	"net/netip"
	"strings"
)

// MaxTrusted bounds the list of trusted proxy networks.
const MaxTrusted = 100

// ParseTrusted reads a list of networks (CIDR, or a single address), one
// per line or separated by commas or spaces, as an admin types it. The
// error says, in words for the admin, which entry is wrong.
func ParseTrusted(text string) ([]netip.Prefix, error) {
	fields := strings.FieldsFunc(text, func(r rune) bool {
		return r == '\n' || r == '\r' || r == ',' || r == ' ' || r == '\t'
	})
	if len(fields) > MaxTrusted {
		return nil, fmt.Errorf("give at most %d networks, not %d", MaxTrusted, len(fields))
	}
	out := make([]netip.Prefix, 0, len(fields))
	for _, f := range fields {
		p, err := parseNetwork(f)
		if err != nil {
			return nil, err
		}
		if p.Bits() == 0 {
			return nil, fmt.Errorf("%s would trust every address, so anyone could claim any address: list only your proxies' networks", p)
		}
		out = append(out, p)
	}
	return out, nil
}

func parseNetwork(f string) (netip.Prefix, error) {
	show := f
	if len(show) > 60 {
		show = show[:60] + "…"
	}
	p, err := netip.ParsePrefix(f)
	if err != nil {
		a, aerr := netip.ParseAddr(f)
		if aerr != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not a network such as 10.0.0.0/8 or an address such as 192.0.2.7", show)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		// 4-in-6 prefixes would never match: client addresses are
		// unmapped before they are compared.
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 network: write it as IPv4", show)
	}
	return p.Masked(), nil
}

// FormatTrusted writes networks one per line, as ParseTrusted reads them.
func FormatTrusted(p []netip.Prefix) string {
	s := make([]string, len(p))
	for i, n := range p {
		s[i] = n.String()
	}
	return strings.Join(s, "\n")
}
