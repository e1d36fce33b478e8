package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/targets"
	"github.com/keyway-dev/keyway/portal/identity/ldap"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/portal/store/storetest"
)

// directoryConfig is the JSON configuration of the test directory.
func directoryConfig(t *testing.T, s *targets.Slapd) []byte {
	t.Helper()
	b, err := json.Marshal(ldap.Config{URL: s.URL, StartTLS: true, CAPEM: string(s.CAPEM),
		BindDN: targets.SlapdServiceDN, BindPassword: s.ServicePassword,
		UserBase: targets.SlapdPeople, GroupBase: targets.SlapdGroups, Nested: ldap.NestedSearch})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newDirectoryAuth is an Authenticator with a local admin (root) and the
// LDAP directory corp (the test slapd), which creates users and maps its
// group staff (by name) to staffers and dev (by DN) to developers.
func newDirectoryAuth(t *testing.T, s *targets.Slapd, jit bool) (*Authenticator, *store.Store) {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	if _, err := st.CreateUser(ctx, store.User{Name: "root", Role: store.RoleAdmin, Source: store.SourceLocal}, cheapHash(t, "root-password")); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"staffers", "developers", "local-only"} {
		if _, err := st.CreateGroup(ctx, store.Group{Name: g}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := st.CreateIdentityProvider(ctx, store.IdentityProvider{Kind: store.KindLDAP, Name: "corp", DisplayName: "Corp directory",
		Enabled: true, Config: directoryConfig(t, s), JITCreate: jit, JITRole: store.RoleUser,
		Mappings: []store.GroupMapping{{ClaimValue: "staff", Group: "staffers"}, {ClaimValue: targets.SlapdGroupDN("dev"), Group: "developers"}}})
	if err != nil {
		t.Fatal(err)
	}
	a := New(st, NewLimiter(time.Now), slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.dummyHash = cheapHash(t, "dummy")
	return a, st
}

func userGroups(t *testing.T, st *store.Store, name string) []string {
	t.Helper()
	u, err := st.UserByName(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	g := slices.Clone(u.Groups)
	slices.Sort(g)
	return g
}

// TestDirectorySignIn: a directory user signs in with the password form,
// is created at first sign-in with the mapped groups (nested included),
// and the mappings follow a change in the directory.
func TestDirectorySignIn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := targets.NewSlapd(t)
	a, st := newDirectoryAuth(t, s, true)

	r, err := a.SignInPassword(ctx, "alice", targets.SlapdAlice.Password, "10.0.0.1")
	if err != nil {
		t.Fatalf("alice: %v", err)
	}
	if r.Directory != "corp" || r.Provision == nil || !r.Provision.Created || r.User.Source != "ldap:corp" || r.User.Name != "alice" {
		t.Fatalf("alice's sign-in: %+v", r)
	}
	if g := userGroups(t, st, "alice"); !slices.Equal(g, []string{"staffers"}) {
		t.Fatalf("alice's groups %v, want [staffers] (staff through ops)", g)
	}
	// A local-only membership stays; the directory's follow it: staff
	// now has dev, not ops.
	alice, _ := st.UserByName(ctx, "alice")
	alice.Groups = append(alice.Groups, "local-only")
	if err := st.UpdateUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	ldif := "dn: " + targets.SlapdGroupDN("staff") + "\nchangetype: modify\ndelete: member\nmember: " + targets.SlapdGroupDN("ops") +
		"\n-\nadd: member\nmember: " + targets.SlapdGroupDN("dev") + "\n"
	if err := s.Modify(ctx, ldif); err != nil {
		t.Fatal(err)
	}
	r, err = a.SignInPassword(ctx, "alice", targets.SlapdAlice.Password, "10.0.0.1")
	if err != nil || r.Provision.Created || !slices.Equal(r.Provision.Removed, []string{"staffers"}) {
		t.Fatalf("alice again: %+v, %v", r.Provision, err)
	}
	if g := userGroups(t, st, "alice"); !slices.Equal(g, []string{"local-only"}) {
		t.Fatalf("alice's groups after the change %v, want [local-only]", g)
	}
	if _, err := a.SignIn(ctx, "bob", targets.SlapdBob.Password, "10.0.0.1"); err != nil {
		t.Fatalf("bob: %v", err)
	}
	if g := userGroups(t, st, "bob"); !slices.Equal(g, []string{"developers", "staffers"}) {
		t.Fatalf("bob's groups %v", g)
	}
	// The local admin still signs in with the password kept here.
	if u, err := a.SignIn(ctx, "root", "root-password", "10.0.0.1"); err != nil || u.Name != "root" {
		t.Fatalf("root: %v", err)
	}
}

// TestDirectorySignInRefusals: wrong passwords, unknown names and names
// made to inject into the filter are refused as a wrong password; a
// directory that does not create users refuses unknown names.
func TestDirectorySignInRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := targets.NewSlapd(t)
	a, st := newDirectoryAuth(t, s, true)
	if _, err := a.SignIn(ctx, "alice", targets.SlapdAlice.Password, "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct{ name, user, pw string }{
		{"known user, wrong password", "alice", "wrong-password"},
		{"new user, wrong password", "bob", "wrong-password"},
		{"unknown user", "mallory", "whatever-password"},
		{"empty password", "alice", ""},
		{"filter wildcard", "*", targets.SlapdAlice.Password},
		{"filter injection", "alice)(uid=*", targets.SlapdAlice.Password},
		{"filter injection, or", "*)(|(uid=*", targets.SlapdBob.Password},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, err := a.SignIn(ctx, c.user, c.pw, fmt.Sprintf("10.1.0.%d", i))
			if !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("SignIn(%q) = %+v, %v; want a wrong password", c.user, u, err)
			}
		})
	}
	if _, err := st.UserByName(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob was made by a wrong password: %v", err)
	}
	// Without JIT, a directory user with no account is not let in.
	a2, _ := newDirectoryAuth(t, s, false)
	if _, err := a2.SignIn(ctx, "bob", targets.SlapdBob.Password, "10.2.0.1"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("bob without JIT: %v", err)
	}
}

// TestDirectorySignInAccountRules: a directory user whose directory is
// turned off is refused; a directory entry whose name is a local
// account's is never signed in as that account.
func TestDirectorySignInAccountRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := targets.NewSlapd(t)
	a, st := newDirectoryAuth(t, s, true)
	if _, err := a.SignIn(ctx, "alice", targets.SlapdAlice.Password, "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	// Users may type their mail; the account is the entry's uid.
	p, err := st.IdentityProviderByName(ctx, store.KindLDAP, "corp")
	if err != nil {
		t.Fatal(err)
	}
	var cfg ldap.Config
	if err := json.Unmarshal(p.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.UserFilter = "(|(uid={username})(mail={username}))"
	p.Config, _ = json.Marshal(cfg)
	if err := st.UpdateIdentityProvider(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateUser(ctx, store.User{Name: "bob", Role: store.RoleAdmin, Source: store.SourceLocal}, cheapHash(t, "local-bob-password")); err != nil {
		t.Fatal(err)
	}
	if u, err := a.SignIn(ctx, targets.SlapdBob.Mail, targets.SlapdBob.Password, "10.0.0.2"); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("directory bob onto local bob: %+v, %v", u, err)
	}
	if r, err := a.SignInPassword(ctx, targets.SlapdCarol.Mail, targets.SlapdCarol.Password, "10.0.0.2"); err != nil || r.User.Name != "carol" {
		t.Fatalf("carol by mail: %+v, %v", r, err)
	}
	// A user name attribute whose values no Keyway user may have (a cn
	// with a space) creates nobody, and says so.
	cfg.UsernameAttr = "cn"
	p.Config, _ = json.Marshal(cfg)
	if err := st.UpdateIdentityProvider(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SignIn(ctx, targets.SlapdBob.Mail, targets.SlapdBob.Password, "10.0.0.2"); !errors.Is(err, ErrNoAccount) || !strings.Contains(err.Error(), "Bob Builder") {
		t.Fatalf("bob named by his cn: %v", err)
	}
	p.Enabled = false
	if err := st.UpdateIdentityProvider(ctx, p); err != nil {
		t.Fatal(err)
	}
	_, err = a.SignIn(ctx, "alice", targets.SlapdAlice.Password, "10.0.0.3")
	if !errors.Is(err, ErrInvalidCredentials) || !strings.Contains(err.Error(), "off or deleted") {
		t.Fatalf("alice with her directory off: %v", err)
	}
}

// TestDirectorySignInLock: a directory user's failures lock the account as
// a local user's do, sparing addresses without failures.
func TestDirectorySignInLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := targets.NewSlapd(t)
	a, st := newDirectoryAuth(t, s, true)
	alice, err := a.SignIn(ctx, "alice", targets.SlapdAlice.Password, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxUserFails {
		if _, err := a.SignIn(ctx, "alice", "wrong-password", fmt.Sprintf("10.0.1.%d", i+1)); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	if l, err := st.SignInLock(ctx, alice.ID); err != nil || l.Failures != maxUserFails || !l.Locked(time.Now()) {
		t.Fatalf("lock after %d failures: %+v, %v", maxUserFails, l, err)
	}
	var rl *RateLimitedError
	if _, err := a.SignIn(ctx, "alice", targets.SlapdAlice.Password, "10.0.1.5"); !errors.As(err, &rl) {
		t.Fatalf("right password from the locking address: %v", err)
	}
	if _, err := a.SignIn(ctx, "alice", targets.SlapdAlice.Password, "192.0.2.9"); err != nil {
		t.Fatalf("owner from a clean address: %v", err)
	}
	// Made-up names lock too, before any directory is asked.
	for range maxUserFails {
		a.SignIn(ctx, "nobody", "wrong-password", "10.0.2.1")
	}
	if _, err := a.SignIn(ctx, "nobody", "wrong-password", "10.0.2.1"); !errors.As(err, &rl) {
		t.Fatalf("made-up name: %v", err)
	}
}

// TestDirectorySignInNoArgon2: a directory sign-in does not wait for a
// password hash slot (it checks no hash here): with every slot taken, a
// local sign-in is busy and a directory one goes through.
func TestDirectorySignInNoArgon2(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := targets.NewSlapd(t)
	a, _ := newDirectoryAuth(t, s, true)
	a.hashes = newHashGate(1, 0)
	release, err := a.hashes.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := a.SignIn(ctx, "root", "root-password", "10.0.0.1"); !errors.Is(err, ErrBusy) {
		t.Fatalf("local sign-in with no hash slot: %v", err)
	}
	if _, err := a.SignIn(ctx, "alice", targets.SlapdAlice.Password, "10.0.0.1"); err != nil {
		t.Fatalf("directory sign-in with no hash slot: %v", err)
	}
}

// TestDirectoryDown: a directory that does not answer is named in a clear
// error, costs the address no failure, and the local admin still signs
// in.
func TestDirectoryDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := targets.NewSlapd(t)
	a, _ := newDirectoryAuth(t, s, true)
	if _, err := a.SignIn(ctx, "alice", targets.SlapdAlice.Password, "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	for _, name := range []string{"alice", "bob"} {
		_, err := a.SignIn(ctx, name, "some-password", "10.0.0.2")
		var de *DirectoryError
		if !errors.As(err, &de) || !de.Unreachable || de.Error() != "the directory corp is not answering; try again or ask an administrator" ||
			!strings.Contains(de.Reason(), "connect") {
			t.Fatalf("%s with the directory down: %v", name, err)
		}
	}
	if u, err := a.SignIn(ctx, "root", "root-password", "10.0.0.2"); err != nil || u.Name != "root" {
		t.Fatalf("local admin with the directory down: %v", err)
	}
	// The failed attempts were not the client's fault: its address is clean.
	res, _, ok := a.limiter.Reserve("10.0.0.2")
	if !ok || !res.Clean() {
		t.Fatal("directory outages counted against the address")
	}
	res.Cancel()
}
