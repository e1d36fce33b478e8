package ldap

import (
	"testing"

	goldap "github.com/go-ldap/ldap/v3"
)

// TestGroupFilter: the group searches' filters, for Active Directory's
// in-chain rule and a batch of a breadth-first expansion, with DNs that
// hold filter syntax.
func TestGroupFilter(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, filter, member string
		dns                  []string
		want                 string
	}{
		{"direct", "(objectClass=groupOfNames)", "member", []string{"uid=a,dc=x"}, `(&(objectClass=groupOfNames)(member=uid=a,dc=x))`},
		{"ad in chain", "(objectClass=group)", "member:" + matchingRuleInChain + ":", []string{"CN=A (x),DC=corp"},
			`(&(objectClass=group)(member:1.2.840.113556.1.4.1941:=CN=A \28x\29,DC=corp))`},
		{"batch", "(objectClass=groupOfNames)", "member", []string{"cn=a,dc=x", `cn=b*\,dc=x`},
			`(&(objectClass=groupOfNames)(|(member=cn=a,dc=x)(member=cn=b\2a\5c,dc=x)))`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := groupFilter(c.filter, c.member, c.dns)
			if got != c.want {
				t.Fatalf("groupFilter = %s, want %s", got, c.want)
			}
			if _, err := goldap.CompileFilter(got); err != nil {
				t.Fatalf("%s does not compile: %v", got, err)
			}
		})
	}
}

// FuzzFilterValues: whatever a user types or a directory names a DN, the
// filters built from it compile, and the value stays one value: an
// equality match on exactly those bytes (no wildcard, no extra clause).
func FuzzFilterValues(f *testing.F) {
	for _, s := range []string{"alice", "*", "alice)(uid=*", "*)(|(uid=*", `\`, "\x00", "cn=a,dc=x", "é(ü)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, filter := range []string{userFilter("(uid={username})", v), groupFilter("(objectClass=x)", "member", []string{v})} {
			p, err := goldap.CompileFilter(filter)
			if err != nil {
				t.Fatalf("%q makes %q, which does not compile: %v", v, filter, err)
			}
			// The equality match is the filter itself, or the last
			// clause of the AND.
			if p.Tag == goldap.FilterAnd {
				if len(p.Children) != 2 {
					t.Fatalf("%q makes %d clauses", v, len(p.Children))
				}
				p = p.Children[1]
			}
			if p.Tag != goldap.FilterEqualityMatch || len(p.Children) != 2 {
				t.Fatalf("%q makes a filter of tag %d, not an equality match", v, p.Tag)
			}
			if got := string(p.Children[1].Data.Bytes()); got != v {
				t.Fatalf("%q is matched as %q", v, got)
			}
		}
	})
}
