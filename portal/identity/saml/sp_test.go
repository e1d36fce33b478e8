package saml

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	gosaml "github.com/crewjam/saml"

	"github.com/keyway-dev/keyway/portal/identity/saml/samltest"
)

type fixture struct {
	idp *samltest.IdP
	svc *Service
	p   Provider
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	idp, err := samltest.New("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	cfg := Config{MetadataURL: idp.MetadataURL, UsernameAttribute: "uid", EmailAttribute: "mail",
		DisplayNameAttribute: "cn", GroupsAttribute: "eduPersonAffiliation"}
	p := Provider{Name: "corp", Base: "https://portal.test"}
	if err := cfg.NewKeyPair(p.EntityID(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p.Config = cfg
	svc := NewService(nil, nil)
	md, err := svc.SPMetadata(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := idp.RegisterSP(md); err != nil {
		t.Fatal(err)
	}
	idp.SetUser(samltest.User{Name: "alice", Email: "alice@example.com", DisplayName: "Alice Liddell", Groups: []string{"ops", "dev"}})
	idp.SignInAs("alice")
	return &fixture{idp: idp, svc: svc, p: p}
}

// answer starts a sign-in and returns the IdP's form.
func (f *fixture) answer(t *testing.T, next string) samltest.Form {
	t.Helper()
	u, err := f.svc.Start(context.Background(), f.p, next, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("IdP answered %s", resp.Status)
	}
	return f.idp.Last()
}

func TestSignIn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	form := f.answer(t, "/files/3")
	if form.URL != "https://portal.test/saml/corp/acs" {
		t.Errorf("form posts to %q", form.URL)
	}
	in, next, err := f.svc.Finish(context.Background(), f.p, form.SAMLResponse, form.RelayState)
	if err != nil {
		t.Fatal(err)
	}
	if next != "/files/3" {
		t.Errorf("next = %q", next)
	}
	if in.Subject != "alice" || in.Username != "alice" || in.Email != "alice@example.com" ||
		in.DisplayName != "Alice Liddell" || !slices.Equal(in.Groups, []string{"ops", "dev"}) {
		t.Errorf("login = %+v", in)
	}
	// The same answer again: its request is used up.
	_, _, err = f.svc.Finish(context.Background(), f.p, form.SAMLResponse, form.RelayState)
	wantReason(t, err, "unknown request")
}

func wantReason(t *testing.T, err error, reason string) {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) {
		t.Fatalf("err = %v, want a refusal %q", err, reason)
	}
	if r.Reason != reason {
		t.Fatalf("reason = %q (%v), want %q", r.Reason, r.Err, reason)
	}
	if r.Message == "" {
		t.Error("refusal without a message")
	}
}

func TestTamperedRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode   samltest.Mode
		reason string
	}{
		{samltest.WrongKey, "bad signature"},
		{samltest.WrongAudience, "wrong audience"},
		{samltest.Expired, "expired"},
		{samltest.UnsignedAssertion, "unsigned assertion"},
		{samltest.WrongDestination, "wrong destination"},
		{samltest.WrongIssuer, "wrong issuer"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.idp.SetMode(tc.mode)
			form := f.answer(t, "/")
			_, _, err := f.svc.Finish(context.Background(), f.p, form.SAMLResponse, form.RelayState)
			wantReason(t, err, tc.reason)
		})
	}
}

// TestCrewjamAcceptsUnsignedAssertion shows why Finish checks the
// assertion's signature itself: crewjam accepts an unsigned assertion
// inside a signed response. If it ever stops, the check is still right.
func TestCrewjamAcceptsUnsignedAssertion(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.idp.SetMode(samltest.UnsignedAssertion)
	form := f.answer(t, "/")
	doc, id, err := decodeResponse(form.SAMLResponse)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := f.svc.idpMetadata(context.Background(), f.p.Config)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := f.svc.serviceProvider(f.p, ed)
	if err != nil {
		t.Fatal(err)
	}
	a, err := sp.ParseXMLResponse(doc, []string{id}, sp.AcsURL)
	if err != nil {
		t.Skipf("crewjam now refuses it itself: %v", err)
	}
	if a.Signature != nil {
		t.Fatal("the assertion carries a signature")
	}
}

func TestAssertionReplayRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	form := f.answer(t, "/")
	if _, _, err := f.svc.Finish(context.Background(), f.p, form.SAMLResponse, form.RelayState); err != nil {
		t.Fatal(err)
	}
	// Even were its request outstanding again, the assertion is spent.
	if err := f.svc.requests.add(form.RelayState, f.p.Name, "/", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.svc.Finish(context.Background(), f.p, form.SAMLResponse, form.RelayState)
	wantReason(t, err, "replayed assertion")
}

func TestWrongProviderOrRelayState(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	form := f.answer(t, "/")
	other := f.p
	other.Name = "other"
	_, _, err := f.svc.Finish(context.Background(), other, form.SAMLResponse, form.RelayState)
	wantReason(t, err, "unknown request")
	_, _, err = f.svc.Finish(context.Background(), f.p, form.SAMLResponse, "id-forged")
	wantReason(t, err, "unknown request")
	// The real answer still works afterwards.
	if _, _, err := f.svc.Finish(context.Background(), f.p, form.SAMLResponse, form.RelayState); err != nil {
		t.Fatal(err)
	}
}

func TestAllowedDomains(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.p.Config.AllowedDomains = []string{"corp.example"}
	form := f.answer(t, "/")
	_, _, err := f.svc.Finish(context.Background(), f.p, form.SAMLResponse, form.RelayState)
	wantReason(t, err, "e-mail domain not allowed")
}

func TestIdPDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	f := newFixture(t)
	f.p.Config.MetadataURL = "http://" + addr + "/metadata"
	_, err = f.svc.Start(context.Background(), f.p, "/", "127.0.0.1")
	wantReason(t, err, "provider unreachable")
}

// TestKeyRollover: a response signed by a key the cached IdP metadata
// does not have yet refetches it, once it is over 30 s old.
func TestKeyRollover(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var skew atomic.Int64
	f.svc = NewService(nil, func() time.Time { return time.Now().Add(time.Duration(skew.Load())) })
	f.answer(t, "/") // caches the metadata
	if err := f.idp.RotateKey(); err != nil {
		t.Fatal(err)
	}
	form := f.answer(t, "/")
	_, _, err := f.svc.Finish(context.Background(), f.p, form.SAMLResponse, form.RelayState)
	wantReason(t, err, "bad signature") // fetched moments ago: not again
	skew.Store(int64(minMetadataAge))
	form = f.answer(t, "/")
	if _, _, err := f.svc.Finish(context.Background(), f.p, form.SAMLResponse, form.RelayState); err != nil {
		t.Fatalf("after the rollover: %v", err)
	}
}

func TestMetadataCached(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	form := f.answer(t, "/")
	f.idp.Close() // the IdP's metadata was fetched at Start
	if _, _, err := f.svc.Finish(context.Background(), f.p, form.SAMLResponse, form.RelayState); err != nil {
		t.Fatal(err)
	}
}

func TestPendingBounded(t *testing.T) {
	t.Parallel()
	now := time.Unix(1e9, 0)
	r := newRequests(func() time.Time { return now })
	for i := range maxPending {
		if err := r.add(fmt.Sprint("id-", i), "p", "/", fmt.Sprint("client-", i/maxPendingPerClient)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.add("one-more", "p", "/", "someone else"); !errors.Is(err, ErrBusy) {
		t.Fatalf("add past the bound: %v", err)
	}
	// A client past its own bound displaces its oldest request only.
	if err := r.add("again", "p", "/", "client-0"); err != nil {
		t.Fatal(err)
	}
	if r.outstanding("id-0", "p") || !r.outstanding("id-1", "p") || !r.outstanding("again", "p") {
		t.Fatal("the client's oldest request was not the one dropped")
	}
	now = now.Add(pendingTTL)
	if err := r.add("one-more", "p", "/", "someone else"); err != nil {
		t.Fatalf("add once the others expired: %v", err)
	}
	if _, ok := r.take("one-more", "p"); !ok {
		t.Fatal("take")
	}
	if _, ok := r.take("one-more", "p"); ok {
		t.Fatal("taken twice")
	}
}

// TestPendingPerClient: one address flooding the sign-in button keeps
// only its newest requests and leaves the others' alone.
func TestPendingPerClient(t *testing.T) {
	t.Parallel()
	r := newRequests(time.Now)
	if err := r.add("victim", "p", "/next", "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	for i := range 10 * maxPendingPerClient {
		if err := r.add(fmt.Sprint("flood-", i), "p", "/", "10.0.0.66"); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.m) != maxPendingPerClient+1 || len(r.byClient["10.0.0.66"]) != maxPendingPerClient {
		t.Fatalf("%d pending, %d of the flooder's", len(r.m), len(r.byClient["10.0.0.66"]))
	}
	if next, ok := r.take("victim", "p"); !ok || next != "/next" {
		t.Fatal("the victim's request was dropped")
	}
	if _, ok := r.byClient["10.0.0.1"]; ok {
		t.Fatal("a taken request stays indexed")
	}
}

func TestReplayCache(t *testing.T) {
	t.Parallel()
	now := time.Unix(1e9, 0)
	c := newReplayCache(func() time.Time { return now })
	if err := c.Consume("a", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := c.Consume("a", now.Add(time.Minute)); !errors.Is(err, gosaml.ErrAssertionReplayed) {
		t.Fatalf("second consume: %v", err)
	}
	now = now.Add(time.Minute)
	if err := c.Consume("a", now.Add(time.Minute)); err != nil {
		t.Fatalf("consume after expiry: %v", err)
	}
}
