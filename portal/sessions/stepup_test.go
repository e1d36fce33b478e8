package sessions

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/clientinfo"
	"github.com/keyway-dev/keyway/portal/policy"
	"github.com/keyway-dev/keyway/portal/store"
)

func TestStepUpFresh(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		minutes int
		mfaAt   time.Time
		want    bool
	}{
		{"off, never checked", 0, time.Time{}, true},
		{"never checked", 5, time.Time{}, false},
		{"fresh", 5, now.Add(-time.Minute), true},
		{"last instant", 5, now.Add(-5 * time.Minute), true},
		{"stale", 5, now.Add(-5*time.Minute - time.Millisecond), false},
		{"a day", store.MaxStepUpMinutes, now.Add(-23 * time.Hour), true},
	} {
		if got := StepUpFresh(tc.minutes, tc.mfaAt, now); got != tc.want {
			t.Errorf("%s: fresh %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestAdmitStepUp: a session on a resource or under a policy asking for
// step-up starts only with an MFA check recent enough, for every kind but
// watching; the refusal is step_up, 403, audited as denied. "Allowed"
// here is reaching gateway selection (the fixture has no gateway).
func TestAdmitStepUp(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	f.m.Now = func() time.Time { return now }
	f.m.Policies = policy.New(f.st)
	tcp, err := f.st.CreateResource(ctx, store.Resource{Name: "db", Protocol: store.ProtocolTCP, Host: "127.0.0.1", Port: 5432}, &store.Secrets{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.CreateGrantMode(ctx, tcp.ID, "user", f.user.ID, store.GrantBoth); err != nil {
		t.Fatal(err)
	}
	setResource := func(res store.Resource, minutes int) {
		t.Helper()
		res.Options.StepUpMinutes = minutes
		if err := f.st.UpdateResource(ctx, res, nil); err != nil {
			t.Fatal(err)
		}
	}
	pol, err := f.st.CreatePolicy(ctx, store.Policy{Name: "mfa", ScopeKind: store.ScopeEveryone, TimeZone: "UTC", Allow: store.AllowAll})
	if err != nil {
		t.Fatal(err)
	}
	setPolicy := func(minutes int) {
		t.Helper()
		pol.StepUpMinutes, pol.Enabled = minutes, minutes > 0
		if err := f.st.UpdatePolicy(ctx, pol); err != nil {
			t.Fatal(err)
		}
	}
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, tc := range []struct {
		name             string
		resource, policy int
		mfaAt            time.Time
		want             string // refusal code
	}{
		{"off", 0, 0, time.Time{}, "no_gateway"},
		{"fresh", 10, 0, ago(9 * time.Minute), "no_gateway"},
		{"stale", 10, 0, ago(11 * time.Minute), CodeStepUp},
		{"zero", 10, 0, time.Time{}, CodeStepUp},
		{"policy only, stale", 0, 10, ago(11 * time.Minute), CodeStepUp},
		{"policy only, fresh", 0, 10, ago(time.Minute), "no_gateway"},
		{"policy stricter than resource", 30, 5, ago(10 * time.Minute), CodeStepUp},
		{"resource stricter than policy", 5, 30, ago(10 * time.Minute), CodeStepUp},
		{"both met", 30, 15, ago(10 * time.Minute), "no_gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setPolicy(tc.policy)
			for _, k := range []struct {
				kind Kind
				res  store.Resource
			}{{KindTerminal, f.ssh}, {KindFiles, f.ssh}, {KindDesktop, f.vnc}, {KindTCP, tcp}} {
				setResource(k.res, tc.resource)
				_, err := f.m.Admit(ctx, Request{User: f.user, ResourceID: k.res.ID, Kind: k.kind, MFAAt: tc.mfaAt,
					Client: clientinfo.Info{Addr: "192.0.2.7"}})
				var ref *Refusal
				if !errors.As(err, &ref) || ref.Code != tc.want {
					t.Fatalf("%s: %v, want refusal %s", k.kind, err, tc.want)
				}
				if ref.Code == CodeStepUp && (ref.Status != http.StatusForbidden || ref.Message[:len(MsgStepUp)] != MsgStepUp) {
					t.Fatalf("%s: refusal %+v", k.kind, ref)
				}
				if got, err := f.m.StepUpMinutes(ctx, f.user, mustResource(t, f.st, k.res.ID)); err != nil ||
					got != policy.StricterStepUp(tc.resource, tc.policy) {
					t.Fatalf("%s: StepUpMinutes %d (%v)", k.kind, got, err)
				}
			}
		})
	}
	evs, err := f.audit.Search(ctx, store.AuditFilter{Action: audit.ActionConnect})
	if err != nil {
		t.Fatal(err)
	}
	var denied int
	for _, ev := range evs {
		if ev.Details["code"] == CodeStepUp {
			denied++
			if ev.Outcome != audit.OutcomeDenied || ev.Details["step_up_minutes"] == "" {
				t.Errorf("step-up refusal audited as %+v", ev)
			}
		}
	}
	if denied != 5*4 {
		t.Errorf("%d step-up refusals audited, want 20", denied)
	}

	// Watching is exempt: an auditor's view does not reach the target as
	// the user.
	setPolicy(1)
	boss, _ := f.st.CreateUser(ctx, store.User{Name: "boss", Role: store.RoleAdmin}, "x")
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	s := f.m.AddForTest("W", f.user, f.ssh, KindTerminal, a)
	if s.Watchers == nil {
		t.Fatal("the terminal session cannot be watched")
	}
	if _, err := f.m.Admit(ctx, Request{User: boss, WatchID: "W", Kind: KindWatch}); err != nil {
		t.Fatalf("watching under a step-up policy: %v", err)
	}
}

func mustResource(t *testing.T, st *store.Store, id int64) store.Resource {
	t.Helper()
	res, err := st.ResourceByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
