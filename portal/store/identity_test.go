package store

import (
	"bytes"
	"context"
	"errors"
	"github.com/keyway-dev/keyway/portal/store/dbtest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidProviderName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"corp", true},
		{"a", true},
		{"okta-eu-1", true},
		{strings.Repeat("a", 32), true},
		{strings.Repeat("a", 33), false},
		{"", false},
		{"Corp", false},
		{"corp_1", false},
		{"co rp", false},
		{"corp/x", false},
		{"é", false},
	} {
		if err := ValidProviderName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidProviderName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestUserSource(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		u, err := st.CreateUser(ctx, User{Name: "alice", Role: RoleUser}, "h")
		if err != nil {
			t.Fatal(err)
		}
		if u.Source != SourceLocal {
			t.Fatalf("default source %q", u.Source)
		}
		b, err := st.CreateUser(ctx, User{Name: "bob", Role: RoleUser, Source: "oidc:corp"}, "")
		if err != nil || b.Source != "oidc:corp" {
			t.Fatalf("source %q, %v", b.Source, err)
		}
		u.Source = "ldap:ad"
		if err := st.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if got, _ := st.UserByID(ctx, u.ID); got.Source != "ldap:ad" {
			t.Fatalf("updated source %q", got.Source)
		}
		// An update that does not say the source keeps it.
		u.Source, u.DisplayName = "", "Alice"
		if err := st.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if got, _ := st.UserByName(ctx, "alice"); got.Source != "ldap:ad" || got.DisplayName != "Alice" {
			t.Fatalf("after update without source: %+v", got)
		}
		counts, err := st.CountUsersBySource(ctx)
		if err != nil || counts["ldap:ad"] != 1 || counts["oidc:corp"] != 1 || counts[SourceLocal] != 0 {
			t.Fatalf("counts %v, %v", counts, err)
		}
	})
}

func TestIdentityProviders(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		if _, err := st.CreateGroup(ctx, Group{Name: "ops"}); err != nil {
			t.Fatal(err)
		}
		cfg := []byte(`{"client_secret":"s3cret-value"}`)
		p, err := st.CreateIdentityProvider(ctx, IdentityProvider{Kind: KindOIDC, Name: "corp", DisplayName: "Corp SSO", Enabled: true, Config: cfg,
			Mappings: []GroupMapping{{ClaimValue: "admins", Group: "ops"}}})
		if err != nil {
			t.Fatal(err)
		}
		if p.ID == 0 || !bytes.Equal(p.Config, cfg) || p.JITRole != RoleUser || len(p.Mappings) != 1 || p.Source() != "oidc:corp" {
			t.Fatalf("created %+v", p)
		}
		// The config is sealed: the secret is not in the database file.
		var raw []byte
		if err := st.db.QueryRowContext(ctx, `SELECT config FROM identity_providers WHERE id = ?`, p.ID).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte("s3cret")) {
			t.Fatal("config stored in the clear")
		}

		for _, tc := range []struct {
			what string
			p    IdentityProvider
			want error
		}{
			{"same name", IdentityProvider{Kind: KindSAML, Name: "corp"}, ErrConflict},
			{"same name other case", IdentityProvider{Kind: KindSAML, Name: "CORP"}, nil},
			{"bad kind", IdentityProvider{Kind: "kerberos", Name: "k"}, nil},
			{"bad role", IdentityProvider{Kind: KindLDAP, Name: "ad", JITRole: "root"}, nil},
			{"unknown group", IdentityProvider{Kind: KindLDAP, Name: "ad", Mappings: []GroupMapping{{ClaimValue: "x", Group: "nope"}}}, ErrNotFound},
			{"empty claim", IdentityProvider{Kind: KindLDAP, Name: "ad", Mappings: []GroupMapping{{ClaimValue: "", Group: "ops"}}}, nil},
		} {
			_, err := st.CreateIdentityProvider(ctx, tc.p)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", tc.what, err, tc.want)
			}
		}
		if ps, _ := st.ListIdentityProviders(ctx, ""); len(ps) != 1 {
			t.Fatalf("failed creates left %d providers", len(ps))
		}

		ad, err := st.CreateIdentityProvider(ctx, IdentityProvider{Kind: KindLDAP, Name: "ad", DisplayName: "Directory", Config: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		ps, err := st.ListIdentityProviders(ctx, "")
		if err != nil || len(ps) != 2 || ps[0].Name != "ad" || ps[1].Name != "corp" || len(ps[1].Mappings) != 1 {
			t.Fatalf("list %+v, %v", ps, err)
		}
		if ps, _ := st.ListIdentityProviders(ctx, KindOIDC); len(ps) != 1 || ps[0].Name != "corp" {
			t.Fatalf("list oidc %+v", ps)
		}
		if got, err := st.IdentityProviderByName(ctx, KindOIDC, "corp"); err != nil || got.ID != p.ID {
			t.Fatalf("by name %+v, %v", got, err)
		}
		if _, err := st.IdentityProviderByName(ctx, KindSAML, "corp"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("by name of another kind: %v", err)
		}

		// A sealed config cannot be moved to another provider's row.
		if _, err := st.db.ExecContext(ctx, `UPDATE identity_providers SET config = ? WHERE id = ?`, raw, ad.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := st.IdentityProviderByID(ctx, ad.ID); err == nil {
			t.Fatal("a config moved between rows was opened")
		}
		if err := st.UpdateIdentityProvider(ctx, IdentityProvider{ID: ad.ID, Kind: KindLDAP, Name: "ad", Config: []byte(`{"url":"ldaps://x"}`)}); err != nil {
			t.Fatal(err)
		}

		// Renaming moves the users' source along; the kind never changes.
		if _, err := st.CreateUser(ctx, User{Name: "carol", Role: RoleUser, Source: "oidc:corp"}, ""); err != nil {
			t.Fatal(err)
		}
		p.Name, p.DisplayName, p.Enabled, p.JITCreate, p.JITRole = "corp2", "Corp 2", false, true, RoleAuditor
		if err := st.UpdateIdentityProvider(ctx, p); err != nil {
			t.Fatal(err)
		}
		got, err := st.IdentityProviderByID(ctx, p.ID)
		if err != nil || got.Name != "corp2" || got.Enabled || !got.JITCreate || got.JITRole != RoleAuditor || len(got.Mappings) != 1 || !bytes.Equal(got.Config, cfg) {
			t.Fatalf("updated %+v, %v", got, err)
		}
		if u, _ := st.UserByName(ctx, "carol"); u.Source != "oidc:corp2" {
			t.Fatalf("carol's source after rename: %q", u.Source)
		}
		p.Kind = KindSAML
		if err := st.UpdateIdentityProvider(ctx, p); err == nil {
			t.Fatal("kind changed")
		}
		if err := st.UpdateIdentityProvider(ctx, IdentityProvider{ID: 999, Kind: KindOIDC, Name: "x"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update missing: %v", err)
		}

		if err := st.SetGroupMappings(ctx, p.ID, []GroupMapping{{ClaimValue: "a", Group: "ops"}, {ClaimValue: "b", Group: "missing"}}); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "missing") {
			t.Fatalf("unknown group mapping: %v", err)
		}
		if got, _ := st.IdentityProviderByID(ctx, p.ID); len(got.Mappings) != 1 || got.Mappings[0].ClaimValue != "admins" {
			t.Fatalf("failed mapping change kept %+v", got.Mappings)
		}
		if err := st.SetGroupMappings(ctx, 999, nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("mappings of missing provider: %v", err)
		}

		// Deleting the provider keeps its users, with their source.
		if err := st.DeleteIdentityProvider(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		if u, err := st.UserByName(ctx, "carol"); err != nil || u.Source != "oidc:corp2" {
			t.Fatalf("carol after delete: %+v, %v", u, err)
		}
		if err := st.DeleteIdentityProvider(ctx, p.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
	})
}

func TestProvision(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		for _, g := range []string{"ops", "dev", "local-only"} {
			if _, err := st.CreateGroup(ctx, Group{Name: g}); err != nil {
				t.Fatal(err)
			}
		}
		corp, err := st.CreateIdentityProvider(ctx, IdentityProvider{Kind: KindOIDC, Name: "corp", Enabled: true, JITCreate: true, JITRole: RoleAuditor,
			Mappings: []GroupMapping{{ClaimValue: "ops-team", Group: "ops"}, {ClaimValue: "developers", Group: "dev"}}})
		if err != nil {
			t.Fatal(err)
		}
		strict, err := st.CreateIdentityProvider(ctx, IdentityProvider{Kind: KindSAML, Name: "strict", Enabled: true})
		if err != nil {
			t.Fatal(err)
		}
		ad, err := st.CreateIdentityProvider(ctx, IdentityProvider{Kind: KindLDAP, Name: "ad", Enabled: true, JITCreate: true,
			Mappings: []GroupMapping{{ClaimValue: "CN=Ops,DC=example,DC=com", Group: "ops"}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateUser(ctx, User{Name: "root", Role: RoleAdmin}, "hash"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateUser(ctx, User{Name: "sam", Role: RoleUser, Source: strict.Source()}, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateUser(ctx, User{Name: "gone", Role: RoleUser, Source: strict.Source(), Disabled: true}, ""); err != nil {
			t.Fatal(err)
		}

		// JIT: created with the provider's role and source, no password, and
		// the mapped groups.
		r, err := st.ProvisionChanges(ctx, corp, ExternalLogin{Subject: "sub-1", Username: "dana", DisplayName: "Dana", Groups: []string{"ops-team", "other"}})
		if err != nil {
			t.Fatal(err)
		}
		u := r.User
		if !r.Created || u.Role != RoleAuditor || u.Source != "oidc:corp" || u.DisplayName != "Dana" || !slices.Equal(u.Groups, []string{"ops"}) || !slices.Equal(r.Added, []string{"ops"}) {
			t.Fatalf("JIT result %+v", r)
		}
		if h, _ := st.PasswordHash(ctx, u.ID); h != "" {
			t.Fatalf("JIT user has a password hash %q", h)
		}
		// An admin adds a membership the mappings do not manage: it stays.
		u.Groups = append(u.Groups, "local-only")
		if err := st.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}

		cases := []struct {
			what    string
			p       IdentityProvider
			in      ExternalLogin
			err     error
			user    string
			created bool
			groups  []string
		}{
			{"link found again; groups changed at the provider", corp, ExternalLogin{Subject: "sub-1", Username: "dana", Groups: []string{"developers"}}, nil, "dana", false, []string{"dev", "local-only"}},
			{"link wins over a renamed user name", corp, ExternalLogin{Subject: "sub-1", Username: "dana-renamed", Groups: []string{"developers", "ops-team"}}, nil, "dana", false, []string{"dev", "local-only", "ops"}},
			{"no groups removes the mapped ones", corp, ExternalLogin{Subject: "sub-1", Username: "dana"}, nil, "dana", false, []string{"local-only"}},
			{"a local user with the SSO name is never taken over", corp, ExternalLogin{Subject: "sub-9", Username: "root", Groups: []string{"ops-team"}}, ErrSourceMismatch, "", false, nil},
			{"local user, other case", corp, ExternalLogin{Subject: "sub-9", Username: "ROOT"}, ErrSourceMismatch, "", false, nil},
			{"another provider's user is not taken over", corp, ExternalLogin{Subject: "sub-8", Username: "sam"}, ErrSourceMismatch, "", false, nil},
			{"no JIT and no user", strict, ExternalLogin{Subject: "x", Username: "nobody"}, ErrNotProvisioned, "", false, nil},
			{"no JIT, user made for the provider, matched by name", strict, ExternalLogin{Subject: "sam-id", Username: "sam"}, nil, "sam", false, nil},
			{"linked to another subject: a second identity with the name is refused", strict, ExternalLogin{Subject: "impostor", Username: "sam"}, ErrSourceMismatch, "", false, nil},
			{"no user name and no link", corp, ExternalLogin{Subject: "sub-7"}, ErrNotProvisioned, "", false, nil},
			{"no subject", corp, ExternalLogin{Username: "eve"}, nil, "", false, nil},
			{"control character in name", corp, ExternalLogin{Subject: "s", Username: "ev\ne"}, nil, "", false, nil},
			{"name too long", corp, ExternalLogin{Subject: "s", Username: strings.Repeat("e", 65)}, nil, "", false, nil},
			{"subject too long", corp, ExternalLogin{Subject: strings.Repeat("s", 1025), Username: "eve"}, nil, "", false, nil},
			{"JIT name that no user may have", corp, ExternalLogin{Subject: "sp", Username: "two words"}, ErrInvalidUserName, "", false, nil},
			{"JIT name starting with a dot", corp, ExternalLogin{Subject: "sp", Username: ".x"}, ErrInvalidUserName, "", false, nil},
			{"JIT e-mail address as name", corp, ExternalLogin{Subject: "mail", Username: "mo@example.com"}, nil, "mo@example.com", true, nil},
			{"LDAP group DNs compare without case", ad, ExternalLogin{Subject: "CN=Lee,DC=example,DC=com", Username: "lee", Groups: []string{"cn=ops,dc=example,dc=com"}}, nil, "lee", true, []string{"ops"}},
		}
		for _, tc := range cases {
			u, created, err := st.Provision(ctx, tc.p, tc.in)
			if tc.user == "" {
				if err == nil || tc.err != nil && !errors.Is(err, tc.err) {
					t.Errorf("%s: %+v, %v; want error %v", tc.what, u, err, tc.err)
				}
				continue
			}
			if err != nil || u.Name != tc.user || created != tc.created || !slices.Equal(u.Groups, tc.groups) {
				t.Errorf("%s: %s created=%v groups=%v, %v", tc.what, u.Name, created, u.Groups, err)
			}
		}
		// The refused local user kept everything.
		if root, _ := st.UserByName(ctx, "root"); root.Source != SourceLocal || len(root.Groups) != 0 {
			t.Fatalf("root changed: %+v", root)
		}

		// Mappings changed by the admin are re-applied at the next sign-in.
		if err := st.SetGroupMappings(ctx, corp.ID, []GroupMapping{{ClaimValue: "ops-team", Group: "dev"}}); err != nil {
			t.Fatal(err)
		}
		r, err = st.ProvisionChanges(ctx, corp, ExternalLogin{Subject: "sub-1", Username: "dana", Groups: []string{"ops-team"}})
		if err != nil || !slices.Equal(r.User.Groups, []string{"dev", "local-only"}) || !slices.Equal(r.Added, []string{"dev"}) || len(r.Removed) != 0 {
			t.Fatalf("after mapping change: %+v, %v", r, err)
		}

		// A disabled user is returned as such, and nothing about them changes.
		if _, err := st.db.ExecContext(ctx, `INSERT INTO external_identities (provider_id, subject, user_id, created_at) SELECT ?, 'gone-id', id, 0 FROM users WHERE name = 'gone'`, strict.ID); err != nil {
			t.Fatal(err)
		}
		gone, _, err := st.Provision(ctx, strict, ExternalLogin{Subject: "gone-id", Username: "gone"})
		if err != nil || !gone.Disabled {
			t.Fatalf("disabled: %+v, %v", gone, err)
		}

		// A linked user an admin moved to local passwords is not signed in by
		// the old link.
		dana, _ := st.UserByName(ctx, "dana")
		dana.Source = SourceLocal
		if err := st.UpdateUser(ctx, dana); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.Provision(ctx, corp, ExternalLogin{Subject: "sub-1", Username: "dana"}); !errors.Is(err, ErrSourceMismatch) {
			t.Fatalf("link to a user now local: %v", err)
		}

		// Deleting the provider drops its links: a provider made again with
		// the same name does not sign the old subjects in by link.
		if err := st.DeleteIdentityProvider(ctx, strict.ID); err != nil {
			t.Fatal(err)
		}
		var links int
		st.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM external_identities WHERE provider_id = ?`, strict.ID).Scan(&links)
		if links != 0 {
			t.Fatalf("%d links left", links)
		}
	})
}

func TestLocalPasswordSettings(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		lp, err := st.LocalPasswordSettings(ctx)
		if err != nil || !lp.Enabled {
			t.Fatalf("default %+v, %v", lp, err)
		}
		mk := func(u User) User {
			t.Helper()
			u, err := st.CreateUser(ctx, u, "h")
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
		root := mk(User{Name: "root", Role: RoleAdmin})
		plain := mk(User{Name: "plain", Role: RoleUser})
		mk(User{Name: "ssoadmin", Role: RoleAdmin, Source: "oidc:corp"})
		mk(User{Name: "off", Role: RoleAdmin, Disabled: true})
		for _, tc := range []struct {
			lp   LocalPasswords
			want string
		}{
			{LocalPasswords{Enabled: false}, "Choose a break-glass admin"},
			{LocalPasswords{Enabled: false, BreakGlassUser: "nobody"}, "no user named nobody"},
			{LocalPasswords{Enabled: false, BreakGlassUser: "plain"}, "not an admin"},
			{LocalPasswords{Enabled: false, BreakGlassUser: "ssoadmin"}, "local password"},
			{LocalPasswords{Enabled: false, BreakGlassUser: "off"}, "disabled"},
		} {
			err := st.SetLocalPasswordSettings(ctx, tc.lp)
			var bg *BreakGlassError
			if !errors.As(err, &bg) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%+v: %v, want %q", tc.lp, err, tc.want)
			}
		}
		if lp, _ := st.LocalPasswordSettings(ctx); !lp.Enabled {
			t.Fatal("a refused change turned passwords off")
		}
		if err := st.SetLocalPasswordSettings(ctx, LocalPasswords{Enabled: false, BreakGlassUser: "ROOT"}); err != nil {
			t.Fatal(err)
		}
		lp, err = st.LocalPasswordSettings(ctx)
		if err != nil || lp.Enabled || lp.BreakGlassUser != "root" {
			t.Fatalf("saved %+v, %v", lp, err)
		}
		if !lp.Allows(root) || lp.Allows(plain) {
			t.Fatalf("off: root %v plain %v", lp.Allows(root), lp.Allows(plain))
		}
		sso := User{Name: "x", Role: RoleAdmin, Source: "oidc:corp"}
		if (LocalPasswords{Enabled: true}).Allows(sso) || !(LocalPasswords{Enabled: true}).Allows(plain) {
			t.Fatal("on: a provider's user may use a local password, or a local user may not")
		}
		if err := st.SetLocalPasswordSettings(ctx, LocalPasswords{Enabled: true}); err != nil {
			t.Fatal(err)
		}
		if lp, _ := st.LocalPasswordSettings(ctx); !lp.Enabled {
			t.Fatal("not turned back on")
		}
	})
}

func TestMFARequirement(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		if m, err := st.MFARequirementSettings(ctx); err != nil || m.Everyone || len(m.Roles)+len(m.Groups) != 0 {
			t.Fatalf("default %+v, %v", m, err)
		}
		if _, err := st.CreateGroup(ctx, Group{Name: "ops"}); err != nil {
			t.Fatal(err)
		}
		if err := st.SetMFARequirementSettings(ctx, MFARequirement{Groups: []string{"nope"}}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown group: %v", err)
		}
		if err := st.SetMFARequirementSettings(ctx, MFARequirement{Roles: []Role{"root"}}); err == nil {
			t.Fatal("unknown role accepted")
		}
		want := MFARequirement{Roles: []Role{RoleAdmin}, Groups: []string{"ops"}}
		if err := st.SetMFARequirementSettings(ctx, want); err != nil {
			t.Fatal(err)
		}
		if m, err := st.MFARequirementSettings(ctx); err != nil || !slices.Equal(m.Roles, want.Roles) || !slices.Equal(m.Groups, want.Groups) {
			t.Fatalf("saved %+v, %v", m, err)
		}
		for _, tc := range []struct {
			m    MFARequirement
			u    User
			want bool
		}{
			{MFARequirement{}, User{Role: RoleAdmin, Source: SourceLocal}, false},
			{MFARequirement{Everyone: true}, User{Role: RoleUser, Source: SourceLocal}, true},
			{MFARequirement{Everyone: true}, User{Role: RoleUser, Source: "ldap:ad"}, true},
			{MFARequirement{Everyone: true}, User{Role: RoleUser, Source: "oidc:corp"}, false},
			{MFARequirement{Everyone: true}, User{Role: RoleUser, Source: "saml:okta"}, false},
			{want, User{Role: RoleAdmin, Source: SourceLocal}, true},
			{want, User{Role: RoleUser, Source: SourceLocal}, false},
			{want, User{Role: RoleUser, Source: SourceLocal, Groups: []string{"dev", "OPS"}}, true},
		} {
			if got := tc.m.Requires(tc.u); got != tc.want {
				t.Errorf("%+v requires %+v = %v, want %v", tc.m, tc.u, got, tc.want)
			}
		}
	})
}

func TestMFAFactors(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		alice, err := st.CreateUser(ctx, User{Name: "alice", Role: RoleUser}, "h")
		if err != nil {
			t.Fatal(err)
		}
		bob, err := st.CreateUser(ctx, User{Name: "bob", Role: RoleUser}, "h")
		if err != nil {
			t.Fatal(err)
		}
		totp, err := st.AddMFAFactor(ctx, MFAFactor{UserID: alice.ID, Kind: FactorTOTP, Name: "Phone", Secret: "JBSWY3DPEHPK3PXP"})
		if err != nil {
			t.Fatal(err)
		}
		key, err := st.AddMFAFactor(ctx, MFAFactor{UserID: alice.ID, Kind: FactorWebAuthn, Name: "YubiKey", CredentialID: []byte{1, 2, 3}, Data: `{"sign_count":1}`})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []MFAFactor{
			{UserID: bob.ID, Kind: "sms", Name: "x", Secret: "a"},
			{UserID: bob.ID, Kind: FactorTOTP, Name: "", Secret: "a"},
			{UserID: bob.ID, Kind: FactorTOTP, Name: "x"},
			{UserID: bob.ID, Kind: FactorWebAuthn, Name: "x"},
		} {
			if _, err := st.AddMFAFactor(ctx, f); err == nil {
				t.Errorf("%+v accepted", f)
			}
		}
		if _, err := st.AddMFAFactor(ctx, MFAFactor{UserID: bob.ID, Kind: FactorWebAuthn, Name: "dup", CredentialID: []byte{1, 2, 3}}); !errors.Is(err, ErrConflict) {
			t.Fatalf("same credential twice: %v", err)
		}
		fs, err := st.MFAFactors(ctx, alice.ID)
		if err != nil || len(fs) != 2 || fs[0].Secret != "JBSWY3DPEHPK3PXP" || fs[1].Kind != FactorWebAuthn {
			t.Fatalf("factors %+v, %v", fs, err)
		}
		// The TOTP key is sealed, and bound to its row.
		var raw []byte
		st.db.QueryRowContext(ctx, `SELECT secret FROM mfa_factors WHERE id = ?`, totp.ID).Scan(&raw)
		if len(raw) == 0 || bytes.Contains(raw, []byte("JBSWY3DP")) {
			t.Fatalf("TOTP key stored in the clear: %q", raw)
		}
		moved, err := st.AddMFAFactor(ctx, MFAFactor{UserID: bob.ID, Kind: FactorTOTP, Name: "B", Secret: "OTHERKEY"})
		if err != nil {
			t.Fatal(err)
		}
		st.db.ExecContext(ctx, `UPDATE mfa_factors SET secret = ? WHERE id = ?`, raw, moved.ID)
		if _, err := st.MFAFactors(ctx, bob.ID); err == nil {
			t.Fatal("a TOTP key moved to another user's factor was opened")
		}
		kinds, err := st.MFAFactorKinds(ctx)
		if err != nil || !slices.Equal(kinds[alice.ID], []string{FactorTOTP, FactorWebAuthn}) {
			t.Fatalf("kinds %v, %v", kinds, err)
		}

		if f, err := st.MFAFactorByCredentialID(ctx, []byte{1, 2, 3}); err != nil || f.ID != key.ID || f.UserID != alice.ID {
			t.Fatalf("by credential %+v, %v", f, err)
		}
		if _, err := st.MFAFactorByCredentialID(ctx, []byte{9}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown credential: %v", err)
		}
		if err := st.UpdateWebAuthnFactor(ctx, key.ID, `{"sign_count":2}`); err != nil {
			t.Fatal(err)
		}
		if f, _ := st.MFAFactorByCredentialID(ctx, []byte{1, 2, 3}); f.Data != `{"sign_count":2}` || f.LastUsedAt.IsZero() {
			t.Fatalf("after update %+v", f)
		}
		if err := st.UpdateWebAuthnFactor(ctx, totp.ID, "x"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("webauthn update of a TOTP factor: %v", err)
		}

		// A TOTP code's time step is accepted once, and never an older one.
		for _, tc := range []struct {
			step int64
			want bool
		}{{100, true}, {100, false}, {99, false}, {101, true}, {101, false}} {
			ok, err := st.UseTOTPStep(ctx, totp.ID, tc.step)
			if err != nil || ok != tc.want {
				t.Errorf("step %d: %v, %v; want %v", tc.step, ok, err, tc.want)
			}
		}
		if _, err := st.UseTOTPStep(ctx, key.ID, 500); !errors.Is(err, ErrNotFound) {
			t.Fatalf("TOTP step on a WebAuthn factor: %v", err)
		}

		// Recovery codes: each works once.
		if err := st.SetRecoveryCodes(ctx, alice.ID, []string{"h1", "h2", "h3"}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			user int64
			hash string
			want bool
			left int
		}{{alice.ID, "h1", true, 2}, {alice.ID, "h1", false, 2}, {bob.ID, "h2", false, 2}, {alice.ID, "nope", false, 2}, {alice.ID, "h2", true, 1}} {
			ok, err := st.UseRecoveryCode(ctx, tc.user, tc.hash)
			left, _ := st.RecoveryCodesLeft(ctx, alice.ID)
			if err != nil || ok != tc.want || left != tc.left {
				t.Errorf("use %s by %d: %v left %d, %v; want %v left %d", tc.hash, tc.user, ok, left, err, tc.want, tc.left)
			}
		}
		if err := st.SetRecoveryCodes(ctx, alice.ID, []string{"n1", "n1"}); !errors.Is(err, ErrConflict) {
			t.Fatalf("duplicate codes: %v", err)
		}
		if left, _ := st.RecoveryCodesLeft(ctx, alice.ID); left != 1 {
			t.Fatalf("failed replace changed the codes: %d left", left)
		}
		if err := st.SetRecoveryCodes(ctx, alice.ID, []string{"n1", "n2"}); err != nil {
			t.Fatal(err)
		}
		if left, _ := st.RecoveryCodesLeft(ctx, alice.ID); left != 2 {
			t.Fatalf("replaced: %d left", left)
		}

		if err := st.DeleteMFAFactor(ctx, bob.ID, key.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("delete another user's factor: %v", err)
		}
		if err := st.DeleteMFAFactor(ctx, alice.ID, key.ID); err != nil {
			t.Fatal(err)
		}
		if err := st.ResetMFA(ctx, alice.ID); err != nil {
			t.Fatal(err)
		}
		fs, _ = st.MFAFactors(ctx, alice.ID)
		left, _ := st.RecoveryCodesLeft(ctx, alice.ID)
		if len(fs) != 0 || left != 0 {
			t.Fatalf("after reset: %d factors, %d codes", len(fs), left)
		}
	})
}

func TestSetDeviceMFA(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		if err := st.SetDeviceMFA(ctx, 42, time.Now()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown device: %v", err)
		}
		u, err := st.CreateUser(ctx, User{Name: "alice", Role: RoleUser}, "h")
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := newDeviceKey(t)
		_, req, err := st.CreateDeviceRequest(ctx, DeviceRequest{PublicKey: pub, Name: "laptop", OS: "linux", Arch: "amd64", Version: "1.0", ClientAddr: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		d, err := st.ApproveDeviceRequest(ctx, req.UserCode, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		at := time.UnixMilli(1_700_000_000_123)
		if err := st.SetDeviceMFA(ctx, d.ID, at); err != nil {
			t.Fatal(err)
		}
		var ms int64
		st.db.QueryRowContext(ctx, `SELECT mfa_at FROM devices WHERE id = ?`, d.ID).Scan(&ms)
		if ms != at.UnixMilli() {
			t.Fatalf("mfa_at %d", ms)
		}
	})
}

// TestProvisionConcurrent: sign-ins racing for a new identity make one
// user, linked once; every one of them gets it.
func TestProvisionConcurrent(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		p, err := st.CreateIdentityProvider(ctx, IdentityProvider{Kind: KindOIDC, Name: "corp", JITCreate: true})
		if err != nil {
			t.Fatal(err)
		}
		const n = 8
		ids := make(chan int64, n)
		created := make(chan bool, n)
		errs := make(chan error, n)
		for range n {
			go func() {
				u, c, err := st.Provision(ctx, p, ExternalLogin{Subject: "s", Username: "race"})
				ids <- u.ID
				created <- c
				errs <- err
			}()
		}
		var first int64
		made := 0
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			id := <-ids
			if first == 0 {
				first = id
			}
			if id != first {
				t.Fatalf("two users: %d and %d", first, id)
			}
			if <-created {
				made++
			}
		}
		if made != 1 {
			t.Fatalf("%d sign-ins said they created the user", made)
		}
	})
}

// FuzzProvision: whatever a provider sends, Provision never panics, never
// changes a local user, and returns only users whose source is the
// provider.
func FuzzProvision(f *testing.F) {
	f.Add("sub", "root", "Root", "ops")
	f.Add("sub", "ROOT", "", "")
	f.Add("", "x", "", "ops")
	f.Add("s\x00", "ali\x00ce", "\xff", "\xff")
	f.Add("CN=x,DC=y", "new-user", "New <User>", "ops\x1fdev")
	st, _ := openTest(f, dbtest.SQLite)
	ctx := context.Background()
	if _, err := st.CreateGroup(ctx, Group{Name: "ops"}); err != nil {
		f.Fatal(err)
	}
	root, err := st.CreateUser(ctx, User{Name: "root", Role: RoleAdmin}, "hash")
	if err != nil {
		f.Fatal(err)
	}
	p, err := st.CreateIdentityProvider(ctx, IdentityProvider{Kind: KindOIDC, Name: "corp", JITCreate: true, JITRole: RoleUser,
		Mappings: []GroupMapping{{ClaimValue: "ops", Group: "ops"}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, subject, username, display, groups string) {
		u, _, err := st.Provision(ctx, p, ExternalLogin{Subject: subject, Username: username, DisplayName: display, Groups: strings.Split(groups, "\x1f")})
		if err == nil && (u.Source != p.Source() || u.Role == RoleAdmin) {
			t.Fatalf("provisioned %+v", u)
		}
		got, err := st.UserByID(ctx, root.ID)
		if err != nil || got.Source != SourceLocal || got.Name != "root" || len(got.Groups) != 0 || got.DisplayName != "" {
			t.Fatalf("local user changed: %+v, %v", got, err)
		}
	})
}
