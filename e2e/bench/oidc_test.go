package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/keyway-dev/keyway/e2e/idp/oidcop/opserver"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/auth"
	"github.com/keyway-dev/keyway/portal/authz"
	"github.com/keyway-dev/keyway/portal/httpui"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/portal/store/storetest"
)

// oidcSignIns is how many sign-ins each path gets per iteration, in
// oidcRounds alternating rounds.
const (
	oidcSignIns = 48
	oidcRounds  = 4
)

// BenchmarkOIDCSignIn measures an OpenID Connect sign-in from the
// provider's redirect back to the portal until the portal answers with a
// session (the callback: code exchange, ID token checks, userinfo,
// provisioning with group mappings, session start), beside the
// provider's own time for the same requests made directly (token
// exchange, JWKS, userinfo), and reports the time the portal adds.
// The provider is the zitadel OP test program, in process, on loopback.
func BenchmarkOIDCSignIn(b *testing.B) {
	ctx := context.Background()
	logger := quietLogger()
	st := storetest.Open(b)
	sessions, stop := auth.NewSessions(st)
	b.Cleanup(stop)
	al, err := audit.New(st, make([]byte, 32), logger, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	ui := httpui.New(httpui.Deps{Store: st, Sessions: sessions, Auth: auth.New(st, auth.NewLimiter(time.Now), logger), Audit: al,
		Authz: authz.New(st), Assets: http.NotFoundHandler(), Logger: logger})
	portal := httptest.NewTLSServer(ui)
	b.Cleanup(func() { portal.Close(); ui.Close() })

	users := filepath.Join(b.TempDir(), "users.json")
	ub, _ := json.Marshal([]opserver.User{{ID: "sub-alice", Username: "alice", Password: "pw", Name: "Alice",
		Email: "alice@example.com", Groups: []string{"idp-ops", "idp-dev"}}})
	os.WriteFile(users, ub, 0o600)
	opHS := httptest.NewUnstartedServer(nil)
	redirect := portal.URL + "/signin/oidc/corp/callback"
	op, err := opserver.New(opserver.Config{Issuer: "http://" + opHS.Listener.Addr().String(), UsersFile: users,
		ClientID: "keyway", ClientSecret: "s3cret", RedirectURIs: []string{redirect}})
	if err != nil {
		b.Fatal(err)
	}
	opHS.Config.Handler = op
	opHS.Start()
	b.Cleanup(opHS.Close)

	for _, g := range []string{"ops", "dev"} {
		if _, err := st.CreateGroup(ctx, store.Group{Name: g}); err != nil {
			b.Fatal(err)
		}
	}
	cfg, _ := json.Marshal(map[string]string{"issuer_url": opHS.URL, "client_id": "keyway", "client_secret": "s3cret"})
	p, err := st.CreateIdentityProvider(ctx, store.IdentityProvider{Kind: store.KindOIDC, Name: "corp", DisplayName: "Corp",
		Enabled: true, Config: cfg, JITCreate: true, JITRole: store.RoleUser})
	if err != nil {
		b.Fatal(err)
	}
	if err := st.SetGroupMappings(ctx, p.ID, []store.GroupMapping{{ClaimValue: "idp-ops", Group: "ops"}, {ClaimValue: "idp-dev", Group: "dev"}}); err != nil {
		b.Fatal(err)
	}

	noFollow := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	opClient := &http.Client{CheckRedirect: noFollow}
	// portalSignIn signs in through the portal and times its callback.
	portalSignIn := func() time.Duration {
		jar, _ := cookiejar.New(nil)
		c := *portal.Client()
		c.Jar, c.CheckRedirect = jar, noFollow
		resp, err := c.Get(portal.URL + "/signin/oidc/corp")
		if err != nil {
			b.Fatal(err)
		}
		drain(resp)
		back, err := opserver.Login(opClient, resp.Header.Get("Location"), "alice", "pw")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		resp, err = c.Get(back.String())
		if err != nil {
			b.Fatal(err)
		}
		drain(resp)
		d := time.Since(start)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
			b.Fatalf("callback answered %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		return d
	}
	// direct makes the provider's requests of a sign-in itself, untimed
	// up to the code, then times token exchange, JWKS and userinfo.
	oc := &oauth2.Config{ClientID: "keyway", ClientSecret: "s3cret", RedirectURL: redirect, Scopes: []string{"openid", "profile", "email", "groups"},
		Endpoint: oauth2.Endpoint{AuthURL: opHS.URL + "/authorize", TokenURL: opHS.URL + "/oauth/token"}}
	direct := func() time.Duration {
		verifier := oauth2.GenerateVerifier()
		back, err := opserver.Login(opClient, oc.AuthCodeURL("state", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n")), "alice", "pw")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		tok, err := oc.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			b.Fatal(err)
		}
		resp, err := http.Get(opHS.URL + "/keys")
		if err != nil {
			b.Fatal(err)
		}
		drain(resp)
		req, _ := http.NewRequest(http.MethodGet, opHS.URL+"/userinfo", nil)
		tok.SetAuthHeader(req)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		drain(resp)
		d := time.Since(start)
		if resp.StatusCode != http.StatusOK || tok.Extra("id_token") == nil {
			b.Fatalf("userinfo answered %d", resp.StatusCode)
		}
		return d
	}
	portalSignIn() // discovery, JWKS and the user's creation are not what is measured
	direct()
	b.ResetTimer()
	for range b.N {
		var pl, dl []time.Duration
		for range oidcRounds {
			for range oidcSignIns / oidcRounds {
				pl = append(pl, portalSignIn())
			}
			for range oidcSignIns / oidcRounds {
				dl = append(dl, direct())
			}
		}
		pp, dp := percentile(pl, 0.5), percentile(dl, 0.5)
		b.ReportMetric(float64(pp.Microseconds()), "portal-callback-p50-µs")
		b.ReportMetric(float64(dp.Microseconds()), "provider-direct-p50-µs")
		b.ReportMetric(float64((pp - dp).Microseconds()), "added-p50-µs")
		b.ReportMetric(float64(percentile(pl, 0.9).Microseconds()), "portal-callback-p90-µs")
		b.ReportMetric(float64(pp)/float64(dp), "ratio")
		if testing.Verbose() {
			fmt.Printf("portal callback p50 %v, provider direct p50 %v, added %v\n", pp, dp, pp-dp)
		}
	}
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}
