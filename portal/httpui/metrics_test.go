package httpui

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyway-dev/keyway/gateway/metrics"
)

// TestSignInsCounted checks keyway_portal_sign_ins_total by method and
// outcome: a password sign-in, a wrong password, and an OpenID Connect
// callback refused for its state.
func TestSignInsCounted(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	f := newFixtureWith(t, nil, func(d *Deps) { d.Metrics = metrics.NewPortal(reg) })
	matrixOIDCProvider(t, f)

	f.client("user")
	anon := f.client("")
	resp := f.do(anon, "POST", "/signin", url.Values{"username": {"user1"}, "password": {"not-the-password"}}, nil)
	resp.Body.Close()
	if resp.StatusCode == http.StatusSeeOther {
		t.Fatal("a wrong password signed in")
	}
	resp = f.do(anon, "GET", "/signin/oidc/matrix/callback?state=x&code=y", nil, nil)
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Fatalf("OIDC callback with a made-up state: %d", resp.StatusCode)
	}

	want := `
# HELP keyway_portal_sign_ins_total Sign-in attempts, by method (password, ldap, oidc, saml; a second factor counts under the first) and outcome (ok, failed).
# TYPE keyway_portal_sign_ins_total counter
keyway_portal_sign_ins_total{method="oidc",outcome="failed"} 1
keyway_portal_sign_ins_total{method="password",outcome="failed"} 1
keyway_portal_sign_ins_total{method="password",outcome="ok"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "keyway_portal_sign_ins_total"); err != nil {
		t.Error(err)
	}
}
