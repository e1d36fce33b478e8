package wire

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParseNetRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, text, want string // want: the rules' String
	}{
		{"one rule", "10.20.0.0/16 tcp/5432,6379", "10.20.0.0/16 tcp/5432,6379"},
		{"several networks and a range", "10.20.0.0/16,10.30.0.5 TCP/5432,8000-8099", "10.20.0.0/16,10.30.0.5 tcp/5432,8000-8099"},
		{"host bits are masked", "10.20.3.4/16 tcp/22", "10.20.0.0/16 tcp/22"},
		{"a /32 is an address", "10.0.0.5/32 tcp/22", "10.0.0.5 tcp/22"},
		{"IPv6", "2001:db8::/32,::1 tcp/443", "2001:db8::/32,::1 tcp/443"},
		{"mapped IPv4 is IPv4", "::ffff:10.0.0.0/104,::ffff:10.1.2.3 tcp/22", "10.0.0.0/8,10.1.2.3 tcp/22"},
		{"blank lines, comments, CRLF and ;", "# databases\r\n\r\n10.0.0.0/8 tcp/5432; 192.168.1.0/24 tcp/1-1024\r\n", "10.0.0.0/8 tcp/5432\n192.168.1.0/24 tcp/1-1024"},
		{"comment after a rule", "10.0.0.0/8 tcp/22 # bastions; not a rule", "10.0.0.0/8 tcp/22"},
		{"empty", "  \n# nothing\n", ""},
		{"one-port range", "10.0.0.1 tcp/22-22", "10.0.0.1 tcp/22"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rs, err := ParseNetRules(tc.text)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if got := rs.String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
			if err := rs.validate(); err != nil {
				t.Fatalf("parsed rules fail validation: %v", err)
			}
		})
	}
}

func TestParseNetRulesErrors(t *testing.T) {
	t.Parallel()
	many := func(n int, line string) string { return strings.Repeat(line+"\n", n) }
	list := func(n int, item string) string { return strings.TrimSuffix(strings.Repeat(item+",", n), ",") }
	for _, tc := range []struct {
		name, text, want string // want: words the error must hold
	}{
		{"no ports", "10.0.0.0/8", `like "10.20.0.0/16 tcp/5432,6379"`},
		{"three fields", "10.0.0.0/8 tcp/22 udp/53", `like "10.20.0.0/16 tcp/5432,6379"`},
		{"udp", "10.0.0.0/8 udp/53", `must start with "tcp/"`},
		{"bad network", "10.0.0.0/33 tcp/22", `"10.0.0.0/33" is not a network`},
		{"a name", "db.internal tcp/22", `"db.internal" is neither an address nor a network`},
		{"zone", "fe80::1%eth0 tcp/22", "neither an address"},
		{"short mapped network", "::ffff:0.0.0.0/80 tcp/22", "/96"},
		{"port 0", "10.0.0.1 tcp/0", `"0" is not a port between 1 and 65535`},
		{"port too big", "10.0.0.1 tcp/65536", "between 1 and 65535"},
		{"signed port", "10.0.0.1 tcp/+22", `"+22" is not a port`},
		{"backwards range", "10.0.0.1 tcp/100-10", "ends before it starts"},
		{"open range", "10.0.0.1 tcp/100-", `"" is not a port`},
		{"no network", ", tcp/22", "no network"},
		{"no port", "10.0.0.1 tcp/,", "no port"},
		{"names the line", "10.0.0.0/8 tcp/22\n\n# x\n10.0.0.0/8 tcp/x", "line 4"},
		{"too long", strings.Repeat("#", maxNetRulesText+1), "longer than"},
		{"too many rules", many(MaxNetRules+1, "10.0.0.1 tcp/22"), "more than 64 rules"},
		{"too many networks", list(MaxRulePrefixes+1, "10.0.0.1") + " tcp/22", "more than 64 networks"},
		{"too many port ranges", "10.0.0.1 tcp/" + list(MaxRulePortRanges+1, "22"), "more than 64 port ranges"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rs, err := ParseNetRules(tc.text)
			if err == nil {
				t.Fatalf("accepted as %q", rs.String())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestNetRulesAllows(t *testing.T) {
	t.Parallel()
	rs, err := ParseNetRules("10.20.0.0/16 tcp/5432,8000-8099\n2001:db8::/32,192.168.1.7 tcp/22")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr string
		port int
		want bool
	}{
		{"10.20.1.2", 5432, true},
		{"10.20.1.2", 5433, false},
		{"10.21.0.1", 5432, false},
		{"10.20.255.255", 8000, true},
		{"10.20.0.0", 8099, true},
		{"10.20.0.1", 8100, false},
		{"10.20.0.1", 7999, false},
		{"::ffff:10.20.1.2", 5432, true}, // mapped: the IPv4 address
		{"::ffff:192.168.1.7", 22, true},
		{"192.168.1.8", 22, false},
		{"2001:db8::1", 22, true},
		{"2001:db8::1", 5432, false},
		{"2001:db9::1", 22, false},
		{"::a14:102", 5432, false}, // IPv4-compatible is not IPv4
		{"fe80::1%eth0", 22, false},
	} {
		addr := netip.MustParseAddr(tc.addr)
		if got := rs.Allows(addr, tc.port); got != tc.want {
			t.Errorf("Allows(%s, %d) = %v, want %v", tc.addr, tc.port, got, tc.want)
		}
	}
	for port, want := range map[int]bool{5432: true, 22: true, 8050: true, 23: false, 0: false, 65536: false} {
		if got := rs.AllowsPort(port); got != want {
			t.Errorf("AllowsPort(%d) = %v, want %v", port, got, want)
		}
	}
	if (NetRules{}).Allows(netip.MustParseAddr("10.0.0.1"), 22) {
		t.Error("no rules allowed an address")
	}
}

// TestValidateAllow checks the rules a tcp request carries, which come over
// the wire rather than from the parser.
func TestValidateAllow(t *testing.T) {
	t.Parallel()
	rule := func() NetRule {
		return NetRule{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Ports: []PortRange{{From: 22, To: 22}}}
	}
	for _, tc := range []struct {
		name  string
		allow func() NetRules
		ok    bool
	}{
		{"none", func() NetRules { return nil }, true},
		{"one rule", func() NetRules { return NetRules{rule()} }, true},
		{"no networks", func() NetRules { r := rule(); r.Prefixes = nil; return NetRules{r} }, false},
		{"no ports", func() NetRules { r := rule(); r.Ports = nil; return NetRules{r} }, false},
		{"port 0", func() NetRules { r := rule(); r.Ports[0].From = 0; return NetRules{r} }, false},
		{"backwards range", func() NetRules { r := rule(); r.Ports[0] = PortRange{From: 30, To: 22}; return NetRules{r} }, false},
		{"invalid network", func() NetRules { r := rule(); r.Prefixes = append(r.Prefixes, netip.Prefix{}); return NetRules{r} }, false},
		{"too many rules", func() NetRules { return make(NetRules, MaxNetRules+1) }, false},
		{"too many networks", func() NetRules {
			r := rule()
			for range MaxRulePrefixes {
				r.Prefixes = append(r.Prefixes, r.Prefixes[0])
			}
			return NetRules{r}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := Request{Kind: KindSession, Protocol: ProtocolTCP, Target: Target{Host: "db.internal", Port: 5432}, Allow: tc.allow()}
			if err := req.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
	// A request's rules survive the wire.
	req := &Request{Kind: KindSession, Protocol: ProtocolTCP, Target: Target{Host: "db", Port: 5432}, Allow: NetRules{rule()}}
	var buf strings.Builder
	if err := WriteRequest(&buf, req); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRequest(strings.NewReader(buf.String()))
	if err != nil || !reflect.DeepEqual(got.Allow, req.Allow) {
		t.Fatalf("round trip: %v, %+v", err, got)
	}
}

func FuzzParseNetRules(f *testing.F) {
	for _, s := range []string{
		"10.20.0.0/16 tcp/5432,6379",
		"10.20.0.0/16,10.30.0.5 tcp/5432,8000-8099\n2001:db8::/32 tcp/22",
		"# c\n::ffff:10.0.0.0/104 TCP/1-65535; 10.0.0.1/32 tcp/22 # x",
		"1.2.3.4 tcp/+22", "::ffff:0.0.0.0/80 tcp/1", ", tcp/,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		rs, err := ParseNetRules(text)
		if err != nil {
			return
		}
		if len(rs) > MaxNetRules {
			t.Fatalf("%d rules", len(rs))
		}
		for _, r := range rs {
			if len(r.Prefixes) == 0 || len(r.Prefixes) > MaxRulePrefixes || len(r.Ports) == 0 || len(r.Ports) > MaxRulePortRanges {
				t.Fatalf("rule out of limits: %+v", r)
			}
			for _, p := range r.Prefixes {
				if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() {
					t.Fatalf("prefix %v not valid, masked and unmapped", p)
				}
			}
		}
		if err := rs.validate(); err != nil {
			t.Fatalf("parsed rules fail the wire's validation: %v", err)
		}
		s := rs.String()
		again, err := ParseNetRules(s)
		if err != nil {
			t.Fatalf("String() %q does not parse: %v", s, err)
		}
		if !reflect.DeepEqual(again, rs) && !(len(again) == 0 && len(rs) == 0) {
			t.Fatalf("round trip changed the rules:\n%q\n%q", s, again.String())
		}
		if again.String() != s {
			t.Fatalf("String() not stable: %q then %q", s, again.String())
		}
	})
}

// TestNetRulesStringWithinLimit checks that rules parsed from the longest
// text allowed are written back as text that parses again: addresses are
// written without a /128 that would push it over the limit.
func TestNetRulesStringWithinLimit(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := 0; ; i++ {
		line := ""
		for j := range MaxRulePrefixes {
			if j > 0 {
				line += ","
			}
			line += "2001:db8:1111:2222:3333:4444:" + strings.Repeat("5", 4) + ":" + fourHex(0x8000|(i*MaxRulePrefixes+j))
		}
		line += " tcp/1\n"
		if b.Len()+len(line) > maxNetRulesText {
			break
		}
		b.WriteString(line)
	}
	rs, err := ParseNetRules(b.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseNetRules(rs.String()); err != nil {
		t.Fatalf("the rules' text does not parse again: %v", err)
	}
}

func fourHex(n int) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[n>>12&15], digits[n>>8&15], digits[n>>4&15], digits[n&15]})
}
