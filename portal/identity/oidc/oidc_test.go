package oidc

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/idp/oidcop/opserver"
	"github.com/keyway-dev/keyway/gateway/tlsconf"
)

const (
	testClient   = "keyway"
	testSecret   = "s3cret"
	testRedirect = "http://127.0.0.1:1/signin/oidc/corp/callback"
)

// testOP is a real OpenID provider on loopback; rewrite, when set,
// changes the ID token the token endpoint returns (a tampering proxy in
// front of it), re-signing it with the key it returns.
type testOP struct {
	srv     *opserver.Server
	hs      *httptest.Server
	users   string
	rewrite func(claims map[string]any) *rsa.PrivateKey
	// requests counts the requests the provider got.
	requests atomic.Int64
}

func startOP(t testing.TB) *testOP {
	t.Helper()
	op := &testOP{users: filepath.Join(t.TempDir(), "users.json")}
	op.setUsers(t, []opserver.User{{ID: "u-alice", Username: "alice", Password: "pw", Name: "Alice A", Email: "alice@example.com", Groups: []string{"ops", "dev"}}})
	op.hs = httptest.NewUnstartedServer(nil)
	srv, err := opserver.New(opserver.Config{Issuer: "http://" + op.hs.Listener.Addr().String(), UsersFile: op.users,
		ClientID: testClient, ClientSecret: testSecret, RedirectURIs: []string{testRedirect}})
	if err != nil {
		t.Fatal(err)
	}
	op.srv = srv
	op.hs.Config.Handler = http.HandlerFunc(op.serve)
	op.hs.Start()
	t.Cleanup(op.hs.Close)
	return op
}

func (op *testOP) issuer() string { return op.hs.URL }

func (op *testOP) setUsers(t testing.TB, us []opserver.User) {
	t.Helper()
	b, _ := json.Marshal(us)
	if err := os.WriteFile(op.users, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (op *testOP) serve(w http.ResponseWriter, r *http.Request) {
	op.requests.Add(1)
	if op.rewrite == nil {
		op.srv.ServeHTTP(w, r)
		return
	}
	op.srv.RewriteIDTokens(op.rewrite).ServeHTTP(w, r)
}

func (op *testOP) config() Config {
	return Config{IssuerURL: op.issuer(), ClientID: testClient, ClientSecret: testSecret}.withDefaults()
}

func noRedirects() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// signIn runs a whole sign-in: Begin, the browser at the provider, Finish.
func signIn(t *testing.T, p *Provider, user, pw string) (Result, error) {
	t.Helper()
	now := time.Now()
	authURL, pend := p.Begin("corp", testRedirect, "/", false, now)
	back, err := opserver.Login(noRedirects(), authURL, user, pw)
	if err != nil {
		t.Fatalf("sign in at the provider: %v", err)
	}
	q := back.Query()
	if q.Get("state") != pend.State {
		t.Fatalf("state = %q, want %q", q.Get("state"), pend.State)
	}
	return p.Finish(context.Background(), testRedirect, pend, q.Get("code"), now)
}

func TestSignIn(t *testing.T) {
	t.Parallel()
	op := startOP(t)
	p, err := Discover(context.Background(), op.config())
	if err != nil {
		t.Fatal(err)
	}
	if e := p.Endpoints(); e.EndSession == "" || !strings.HasPrefix(e.Token, op.issuer()) {
		t.Errorf("endpoints = %+v", e)
	}
	res, err := signIn(t, p, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{Subject: "u-alice", Username: "alice", DisplayName: "Alice A", Email: "alice@example.com", Groups: []string{"ops", "dev"}}
	if got := res.Identity; got.Subject != want.Subject || got.Username != want.Username || got.DisplayName != want.DisplayName ||
		got.Email != want.Email || strings.Join(got.Groups, ",") != strings.Join(want.Groups, ",") {
		t.Errorf("identity = %+v, want %+v", got, want)
	}
	if res.RawIDToken == "" || len(ShowClaims(res.Claims)) == 0 {
		t.Error("no ID token or claims kept")
	}
	// The provider changes the user's groups: the next sign-in sees it.
	op.setUsers(t, []opserver.User{{ID: "u-alice", Username: "alice", Password: "pw", Email: "alice@example.com", Groups: []string{"audit"}}})
	res, err = signIn(t, p, "alice", "pw")
	if err != nil || strings.Join(res.Identity.Groups, ",") != "audit" {
		t.Errorf("after the change: groups %q, %v", res.Identity.Groups, err)
	}
}

func TestTamperedTokensRefused(t *testing.T) {
	t.Parallel()
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		edit   func(c map[string]any)
		forged bool // signed with another key
		reason string
	}{
		{"wrong signature", func(c map[string]any) {}, true, ReasonBadSignature},
		{"wrong audience", func(c map[string]any) { c["aud"] = []string{"someone-else"} }, false, ReasonWrongAudience},
		{"wrong issuer", func(c map[string]any) { c["iss"] = "http://127.0.0.1:9/other" }, false, ReasonWrongIssuer},
		{"expired", func(c map[string]any) {
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
		}, false, ReasonExpired},
		{"nonce mismatch", func(c map[string]any) { c["nonce"] = "not-the-one" }, false, ReasonNonce},
		{"groups not strings", func(c map[string]any) { c["groups"] = []any{1, 2} }, false, ReasonClaims},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			op := startOP(t)
			opKey, _ := op.srv.SigningKey()
			op.rewrite = func(c map[string]any) *rsa.PrivateKey {
				tc.edit(c)
				if tc.forged {
					return other
				}
				return opKey
			}
			p, err := Discover(context.Background(), op.config())
			if err != nil {
				t.Fatal(err)
			}
			_, err = signIn(t, p, "alice", "pw")
			var ref *Refusal
			if !errors.As(err, &ref) || ref.Reason != tc.reason {
				t.Fatalf("err = %v, want a refusal for %q", err, tc.reason)
			}
		})
	}
}

func TestCodeWorksOnce(t *testing.T) {
	t.Parallel()
	op := startOP(t)
	p, err := Discover(context.Background(), op.config())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	authURL, pend := p.Begin("corp", testRedirect, "/", false, now)
	back, err := opserver.Login(noRedirects(), authURL, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	code := back.Query().Get("code")
	if _, err := p.Finish(context.Background(), testRedirect, pend, code, now); err != nil {
		t.Fatal(err)
	}
	_, err = p.Finish(context.Background(), testRedirect, pend, code, now)
	var ref *Refusal
	if !errors.As(err, &ref) || ref.Reason != ReasonCodeRefused {
		t.Fatalf("second use of the code: %v", err)
	}
	// The wrong PKCE verifier is refused by the provider too.
	authURL, pend = p.Begin("corp", testRedirect, "/", false, now)
	back, err = opserver.Login(noRedirects(), authURL, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	pend.Verifier = "x" + pend.Verifier[1:]
	if _, err = p.Finish(context.Background(), testRedirect, pend, back.Query().Get("code"), now); !errors.As(err, &ref) || ref.Reason != ReasonCodeRefused {
		t.Fatalf("wrong verifier: %v", err)
	}
}

func TestProviderDown(t *testing.T) {
	t.Parallel()
	_, err := Discover(context.Background(), Config{IssuerURL: "http://" + deadAddr(t), ClientID: "c"}.withDefaults())
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("discover a closed port: %v", err)
	}

	// Down between the redirect and the callback.
	op := startOP(t)
	p, err := Discover(context.Background(), op.config())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	authURL, pend := p.Begin("corp", testRedirect, "/", false, now)
	back, err := opserver.Login(noRedirects(), authURL, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	op.hs.Close()
	_, err = p.Finish(context.Background(), testRedirect, pend, back.Query().Get("code"), now)
	var ref *Refusal
	if !errors.As(err, &ref) || ref.Reason != ReasonUnreachable {
		t.Fatalf("finish with the provider down: %v", err)
	}
}

func TestHugeResponsesRefused(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// No Content-Length: the limit must hold on a streamed body.
		w.Write([]byte(`{"issuer":"`))
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		for range 64 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(hs.Close)
	_, err := Discover(context.Background(), Config{IssuerURL: hs.URL, ClientID: "c"}.withDefaults())
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("discover a 4 MiB document: %v", err)
	}
}

func TestLimitedBody(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, maxResponse - 1, maxResponse} {
		b := &limitedBody{rc: io.NopCloser(bytes.NewReader(make([]byte, n))), left: maxResponse}
		if got, err := io.ReadAll(b); err != nil || len(got) != n {
			t.Errorf("%d bytes: read %d, %v", n, len(got), err)
		}
	}
	b := &limitedBody{rc: io.NopCloser(bytes.NewReader(make([]byte, maxResponse+1))), left: maxResponse}
	if _, err := io.ReadAll(b); !errors.Is(err, errTooLarge) {
		t.Errorf("one byte over: %v", err)
	}
}

func TestCacheRemembersFailureBriefly(t *testing.T) {
	t.Parallel()
	op := startOP(t)
	now := time.Unix(1_000_000, 0)
	c := NewCache(func() time.Time { return now }, tlsconf.Default())
	bad := op.config()
	bad.IssuerURL += "/wrong" // discovery answers 404
	for range 3 {
		if _, err := c.Get(context.Background(), 1, now, bad); err == nil {
			t.Fatal("discovery of a wrong issuer succeeded")
		}
	}
	if n := op.requests.Load(); n != 1 {
		t.Errorf("%d discovery requests while the failure is remembered, want 1", n)
	}
	now = now.Add(failureTTL)
	c.Get(context.Background(), 1, now, bad)
	if n := op.requests.Load(); n != 2 {
		t.Errorf("%d discovery requests after failureTTL, want 2", n)
	}
	// A changed provider (new version) is discovered at once, then cached.
	for range 3 {
		if _, err := c.Get(context.Background(), 1, now.Add(time.Second), op.config()); err != nil {
			t.Fatal(err)
		}
	}
	if n := op.requests.Load(); n != 3 {
		t.Errorf("%d discovery requests, want 3", n)
	}
}

func TestCABundle(t *testing.T) {
	t.Parallel()
	users := filepath.Join(t.TempDir(), "users.json")
	os.WriteFile(users, []byte(`[]`), 0o600)
	hs := httptest.NewUnstartedServer(nil)
	hs.StartTLS()
	t.Cleanup(hs.Close)
	srv, err := opserver.New(opserver.Config{Issuer: hs.URL, UsersFile: users, ClientID: testClient, ClientSecret: testSecret, RedirectURIs: []string{testRedirect}})
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = srv
	cfg := Config{IssuerURL: hs.URL, ClientID: testClient}.withDefaults()
	if _, err := Discover(context.Background(), cfg); err == nil {
		t.Fatal("a provider with an unknown CA was trusted")
	}
	cfg.CABundle = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}))
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := Discover(context.Background(), cfg); err != nil {
		t.Fatalf("with the CA bundle: %v", err)
	}
}

// deadAddr is a loopback address that refuses connections: a socket
// bound there but not listening, held until the test ends so that no
// other test's server gets the port meanwhile.
func deadAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
