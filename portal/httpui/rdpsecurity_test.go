package httpui

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/keyway-dev/keyway/portal/store"
)

// TestResourcePageWarnsOfStandardRDPSecurity: a resource set to standard
// RDP security, which verifies no server, says so on its page, and says
// that a pinned certificate keeps it from connecting.
func TestResourcePageWarnsOfStandardRDPSecurity(t *testing.T) {
	f := newFixture(t)
	admin := f.client("admin")
	ctx := context.Background()
	for _, c := range []struct {
		security string
		pinned   bool
		warn     bool
	}{
		{"any", false, false},
		{"nla", true, false},
		{"rdp", false, true},
		{"rdp", true, true},
	} {
		name := fmt.Sprintf("rdp-%s-%v", c.security, c.pinned)
		res, err := f.store.CreateResource(ctx, store.Resource{Name: name, Protocol: "rdp", Host: "10.0.0.7", Port: 3389,
			Options: store.Options{Security: c.security}}, &store.Secrets{Password: "p"})
		if err != nil {
			t.Fatal(err)
		}
		if c.pinned {
			if err := f.store.PinHostKey(ctx, res.ID, "tls-cert SHA256:"+strings.Repeat("B", 43)); err != nil {
				t.Fatal(err)
			}
		}
		body := readBody(f.do(admin, "GET", fmt.Sprintf("/admin/resources/%d", res.ID), nil, nil))
		if got := strings.Contains(body, "Standard RDP security is chosen."); got != c.warn {
			t.Errorf("%s: warning shown %v, want %v", name, got, c.warn)
		}
		if got := strings.Contains(body, "Connections are refused while a certificate is pinned"); got != (c.warn && c.pinned) {
			t.Errorf("%s: pinned-certificate refusal shown %v", name, got)
		}
	}
}
