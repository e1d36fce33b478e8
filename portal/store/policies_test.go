package store

import (
	"context"
	"errors"
	"github.com/keyway-dev/keyway/portal/store/dbtest"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestPolicies(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, path := openTest(t, kind)
		ops, _ := st.CreateGroup(ctx, Group{Name: "ops"})
		web, _ := st.CreateResource(ctx, Resource{Name: "web", Protocol: "ssh", Host: "h", Port: 22}, nil)
		alice, _ := st.CreateUser(ctx, User{Name: "alice", Role: RoleUser, Groups: []string{"ops"}}, "h")
		bob, _ := st.CreateUser(ctx, User{Name: "bob", Role: RoleUser}, "h")

		office := Policy{Name: "office", Description: "office only", ScopeKind: ScopeGroup, ScopeID: ops.ID,
			Networks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
			Windows:  []PolicyWindow{{Days: []time.Weekday{1, 2, 3, 4, 5}, From: 540, To: 1020}}, TimeZone: "Europe/Paris",
			MaxSession: 90 * time.Minute, MaxSessionsPerUser: 2, StepUpMinutes: 15, Allow: PolicyAllow{Terminal: true, Download: true, ClipboardOut: true}, Enabled: true}
		p, err := st.CreatePolicy(ctx, office)
		if err != nil {
			t.Fatal(err)
		}
		if p.ID == 0 || p.ScopeName != "ops" || p.CreatedAt.IsZero() || !slices.Equal(p.Networks, office.Networks) ||
			len(p.Windows) != 1 || !slices.Equal(p.Windows[0].Days, office.Windows[0].Days) || p.Windows[0].To != 1020 ||
			p.MaxSession != office.MaxSession || p.MaxSessionsPerUser != 2 || p.StepUpMinutes != 15 || p.Allow != office.Allow || !p.Enabled || p.TimeZone != "Europe/Paris" {
			t.Fatalf("read back %+v", p)
		}
		if _, err := st.CreatePolicy(ctx, Policy{Name: "OFFICE", ScopeKind: ScopeEveryone, TimeZone: "UTC"}); !errors.Is(err, ErrConflict) {
			t.Fatalf("duplicate name: %v", err)
		}
		if _, err := st.CreatePolicy(ctx, Policy{Name: "x", ScopeKind: "planet", TimeZone: "UTC"}); err == nil {
			t.Fatal("unknown scope accepted")
		}
		if _, err := st.CreatePolicy(ctx, Policy{Name: "x", ScopeKind: ScopeResource, ScopeID: 999, TimeZone: "UTC"}); err == nil {
			t.Fatal("a policy for a missing resource was stored")
		}
		all, _ := st.CreatePolicy(ctx, Policy{Name: "all", ScopeKind: ScopeEveryone, TimeZone: "UTC", Allow: AllowAll, Enabled: true})
		if all.ScopeName != "" || all.ScopeID != 0 {
			t.Fatalf("everyone: %+v", all)
		}
		forWeb, _ := st.CreatePolicy(ctx, Policy{Name: "web-only", ScopeKind: ScopeResource, ScopeID: web.ID, TimeZone: "UTC", Enabled: true})
		if _, err := st.CreatePolicy(ctx, Policy{Name: "off", ScopeKind: ScopeEveryone, TimeZone: "UTC", Enabled: false}); err != nil {
			t.Fatal(err)
		}

		names := func(ps []Policy, err error) []string {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, p := range ps {
				out = append(out, p.Name)
			}
			return out
		}
		for _, tc := range []struct {
			user, resource int64
			want           []string
		}{
			{alice.ID, web.ID, []string{"all", "office", "web-only"}},
			{bob.ID, web.ID, []string{"all", "web-only"}},
			{alice.ID, 999, []string{"all", "office"}},
		} {
			if got := names(st.PoliciesFor(ctx, tc.user, tc.resource)); !slices.Equal(got, tc.want) {
				t.Errorf("user %d on %d: %v, want %v", tc.user, tc.resource, got, tc.want)
			}
		}
		if got := names(st.ListPolicies(ctx)); !slices.Equal(got, []string{"all", "off", "office", "web-only"}) {
			t.Errorf("list: %v", got)
		}

		p.Name, p.ScopeKind, p.ScopeID, p.Networks, p.Windows, p.Enabled, p.StepUpMinutes = "office-2", ScopeEveryone, 0, nil, nil, false, 5
		if err := st.UpdatePolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
		got, _ := st.PolicyByID(ctx, p.ID)
		if got.Name != "office-2" || got.ScopeKind != ScopeEveryone || len(got.Networks) != 0 || len(got.Windows) != 0 || got.Enabled || got.StepUpMinutes != 5 {
			t.Fatalf("after update %+v", got)
		}
		p.Name = "all"
		if err := st.UpdatePolicy(ctx, p); !errors.Is(err, ErrConflict) {
			t.Fatalf("rename onto another: %v", err)
		}
		if err := st.UpdatePolicy(ctx, Policy{ID: 999, Name: "z", ScopeKind: ScopeEveryone}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update missing: %v", err)
		}

		// A policy goes with its resource or group.
		if err := st.DeleteResource(ctx, web.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := st.PolicyByID(ctx, forWeb.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("policy of a deleted resource: %v", err)
		}
		if err := st.DeletePolicy(ctx, all.ID); err != nil {
			t.Fatal(err)
		}
		if err := st.DeletePolicy(ctx, all.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("delete twice: %v", err)
		}

		// Kept across a restart, in the file.
		st.Close()
		st2, err := Open(ctx, path, st.sealer)
		if err != nil {
			t.Fatal(err)
		}
		defer st2.Close()
		if got := names(st2.ListPolicies(ctx)); !slices.Equal(got, []string{"off", "office-2"}) {
			t.Errorf("after restart: %v", got)
		}
	})
}

// TestPolicyRowUnreadable: a row whose JSON was damaged stops the check
// with an error instead of reading as "no networks" (allow all).
func TestPolicyRowUnreadable(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		p, err := st.CreatePolicy(ctx, Policy{Name: "n", ScopeKind: ScopeEveryone, TimeZone: "UTC", Enabled: true,
			Networks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.db.ExecContext(ctx, `UPDATE policies SET networks = '["10.0.0.0/33"]' WHERE id = ?`, p.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := st.PoliciesFor(ctx, 1, 1); err == nil {
			t.Fatal("a damaged policy was read")
		}
	})
}
