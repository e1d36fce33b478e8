package bench

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/identity/ldap"
)

// provisioningPath is where adding a provider leads.
var provisioningPath = regexp.MustCompile(`^/admin/identity/providers/\d+/provisioning$`)

// ldapRounds alternates the two paths; each round times ldapSignIns
// sign-ins of each.
const (
	ldapRounds  = 4
	ldapSignIns = 10
)

// BenchmarkLDAPSignIn measures an LDAP sign-in through the portal (POST
// /signin with a directory user's password until the 303 that starts the
// session) against the directory's own time for the same work done
// directly with go-ldap (connect, StartTLS, service bind, user search,
// user bind, service bind, nested group searches): the difference is what
// the portal adds (form, limiter, provider lookup and unsealing,
// provisioning with group mappings, session, audit). Both paths alternate
// in rounds against one slapd so they see the same machine state.
func BenchmarkLDAPSignIn(b *testing.B) {
	dir := b.TempDir()
	info, _ := startDemoIn(b, dir)
	s := targets.NewSlapd(b)
	cfg := ldap.Config{URL: s.URL, StartTLS: true, CAPEM: string(s.CAPEM), BindDN: targets.SlapdServiceDN, BindPassword: s.ServicePassword,
		UserBase: targets.SlapdPeople, GroupBase: targets.SlapdGroups, Nested: ldap.NestedSearch}
	cfg.Defaults()
	direct, err := ldap.New(cfg)
	if err != nil {
		b.Fatal(err)
	}

	admin := signIn(b, info, info.Admin)
	resp, err := admin.PostForm(info.URL+"/admin/identity/ldap", url.Values{"name": {"corp"}, "enabled": {"on"},
		"url": {s.URL}, "start_tls": {"on"}, "ca_pem": {string(s.CAPEM)}, "bind_dn": {targets.SlapdServiceDN},
		"bind_password": {s.ServicePassword}, "user_base": {targets.SlapdPeople}, "group_base": {targets.SlapdGroups},
		"nested_groups": {"search"}})
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	// Users are made at first sign-in: set on the provisioning page the
	// directory form leads to, as an admin does.
	prov := resp.Request.URL
	if !provisioningPath.MatchString(prov.Path) {
		b.Fatalf("the directory form did not lead to provisioning: status %d at %s", resp.StatusCode, prov)
	}
	resp, err = admin.PostForm(prov.String(), url.Values{"jit_create": {"on"}, "jit_role": {"user"}, "rows": {"0"}})
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != prov.Path {
		b.Fatalf("save provisioning: status %d at %s", resp.StatusCode, resp.Request.URL)
	}

	// No cookie jar: every POST is a fresh sign-in.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := url.Values{"username": {targets.SlapdAlice.UID}, "password": {targets.SlapdAlice.Password}}
	portalSignIn := func() time.Duration {
		start := time.Now()
		resp, err := c.PostForm(info.URL+"/signin", form)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) == 0 {
			b.Fatalf("portal LDAP sign-in: status %d", resp.StatusCode)
		}
		return took
	}
	directSignIn := func() time.Duration {
		start := time.Now()
		id, err := direct.Authenticate(context.Background(), targets.SlapdAlice.UID, targets.SlapdAlice.Password)
		took := time.Since(start)
		if err != nil || len(id.Groups) != 2 {
			b.Fatalf("direct LDAP sign-in: %+v, %v", id, err)
		}
		return took
	}
	// Warm up both: the first sign-in creates the user; TLS sessions and
	// connections to the portal are open.
	portalSignIn()
	directSignIn()
	var portal, dirTimes []time.Duration
	b.ResetTimer()
	for range b.N {
		for range ldapRounds {
			for range ldapSignIns {
				dirTimes = append(dirTimes, directSignIn())
			}
			for range ldapSignIns {
				portal = append(portal, portalSignIn())
			}
		}
	}
	b.StopTimer()
	for _, q := range []struct {
		name string
		p    float64
	}{{"p50", 0.5}, {"p90", 0.9}} {
		dp, pp := percentile(dirTimes, q.p), percentile(portal, q.p)
		b.ReportMetric(float64(dp.Microseconds())/1000, "directory-"+q.name+"-ms")
		b.ReportMetric(float64(pp.Microseconds())/1000, "portal-"+q.name+"-ms")
		b.ReportMetric(float64((pp-dp).Microseconds())/1000, "added-"+q.name+"-ms")
	}
}
