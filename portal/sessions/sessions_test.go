package sessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/gateway/wire"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/authz"
	"github.com/keyway-dev/keyway/portal/clientinfo"
	"github.com/keyway-dev/keyway/portal/gateways"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/portal/store/storetest"
)

// fixture is a Manager on a real SQLite store with no gateway, a user
// granted an SSH resource and a VNC one, and another SSH resource not
// granted.
type fixture struct {
	m                   *Manager
	st                  *store.Store
	audit               *audit.Log
	user                store.User
	ssh, vnc, ungranted store.Resource
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	logger := slog.New(slog.DiscardHandler)
	id, err := wire.LoadOrCreateIdentity(filepath.Join(t.TempDir(), "id.pem"))
	if err != nil {
		t.Fatal(err)
	}
	al, err := audit.New(st, make([]byte, 32), logger, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, audit: al}
	f.m = New(Deps{Store: st, Authz: authz.New(st), Gateways: gateways.New(id, logger, 5*time.Second), Audit: al, Logger: logger})
	if f.user, err = st.CreateUser(ctx, store.User{Name: "ann", Role: store.RoleUser}, "x"); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		res   *store.Resource
		proto string
		grant bool
	}{{&f.ssh, "ssh", true}, {&f.vnc, "vnc", true}, {&f.ungranted, "ssh", false}} {
		*r.res, err = st.CreateResource(ctx, store.Resource{Name: fmt.Sprintf("%s-%v", r.proto, r.grant), Protocol: r.proto, Host: "127.0.0.1", Port: 1}, &store.Secrets{})
		if err != nil {
			t.Fatal(err)
		}
		if r.grant {
			if _, err := st.CreateGrantMode(ctx, r.res.ID, "user", f.user.ID, store.GrantBoth); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

func (f *fixture) admit(kind Kind, resourceID int64) *Refusal {
	_, err := f.m.Admit(context.Background(), Request{User: f.user, ResourceID: resourceID, Kind: kind,
		Client: clientinfo.Info{Addr: "192.0.2.7"}})
	var ref *Refusal
	if err != nil && !errors.As(err, &ref) {
		panic(err)
	}
	return ref
}

// TestAdmitRefusals: each refusal has its code and words, a missing grant
// reads exactly like a missing resource, and every refusal is audited
// with the client's address.
func TestAdmitRefusals(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name     string
		kind     Kind
		resource int64
		code     string
		message  string
	}{
		{"no such resource", KindTerminal, 99999, "no_grant", msgNoAccess},
		{"no grant", KindTerminal, f.ungranted.ID, "no_grant", msgNoAccess},
		{"no files grant", KindFiles, f.ungranted.ID, "no_grant", msgNoFiles},
		{"files of a desktop", KindFiles, f.vnc.ID, "no_grant", msgNoFiles},
		{"terminal on a desktop", KindTerminal, f.vnc.ID, "wrong_kind", "This resource is not a terminal."},
		{"desktop on a terminal", KindDesktop, f.ssh.ID, "wrong_kind", "This resource is not a desktop."},
		{"test by a user", KindTest, f.ssh.ID, "no_grant", msgNoAccess},
		{"granted, but no gateway", KindTerminal, f.ssh.ID, "no_gateway", "No gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := f.admit(tc.kind, tc.resource)
			if ref == nil || ref.Code != tc.code || len(ref.Message) < len(tc.message) || ref.Message[:len(tc.message)] != tc.message {
				t.Fatalf("got %+v, want code %s and %q", ref, tc.code, tc.message)
			}
		})
	}
	evs, err := f.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionConnect})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 7 { // the test by a user is audited as a resource test
		t.Fatalf("%d connect events, want 7", len(evs))
	}
	for _, ev := range evs {
		if ev.ClientAddr != "192.0.2.7" || ev.Outcome == audit.OutcomeSuccess || ev.Details["code"] == "" {
			t.Errorf("refusal audited as %+v", ev)
		}
	}
}

// TestPerUserLimit: the MaxPerUser+1-th session of a user is refused
// before anything is dialled, others' are not, and a session that ends
// frees its place.
func TestPerUserLimit(t *testing.T) {
	f := newFixture(t)
	var running []*Session
	for i := range MaxPerUser {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		running = append(running, f.m.AddForTest(fmt.Sprint("S", i), f.user, f.ssh, KindTerminal, a))
	}
	if ref := f.admit(KindTerminal, f.ssh.ID); ref == nil || ref.Code != "too_many_sessions" {
		t.Fatalf("session %d: %+v, want too_many_sessions", MaxPerUser+1, ref)
	}
	running[0].End("test", "")
	if ref := f.admit(KindTerminal, f.ssh.ID); ref == nil || ref.Code != "no_gateway" {
		t.Fatalf("after one ended: %+v, want to reach gateway selection", ref)
	}
	if got := len(f.m.Live()); got != MaxPerUser-1 {
		t.Fatalf("%d running, want %d", got, MaxPerUser-1)
	}
}

// TestTerminateFilter: an empty filter ends nothing; a filter ends exactly
// the sessions it matches, each told why.
func TestTerminateFilter(t *testing.T) {
	f := newFixture(t)
	other, _ := f.st.CreateUser(context.Background(), store.User{Name: "bo", Role: store.RoleUser}, "x")
	mk := func(id string, u store.User, res store.Resource) *Session {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return f.m.AddForTest(id, u, res, KindTerminal, a)
	}
	mk("A", f.user, f.ssh)
	mk("B", f.user, f.vnc)
	mk("C", other, f.ssh)
	if got := f.m.Terminate("boss", Filter{}); len(got) != 0 {
		t.Fatalf("an empty filter ended %d sessions", len(got))
	}
	for _, tc := range []struct {
		f    Filter
		want int
	}{{Filter{User: "ANN", Resource: f.ssh.Name}, 1}, {Filter{Resource: f.ssh.Name}, 2}, {Filter{User: "nobody"}, 0}, {Filter{ID: "B"}, 1}} {
		if got := f.m.Terminate("boss", tc.f); len(got) != tc.want {
			t.Errorf("%+v ended %d, want %d", tc.f, len(got), tc.want)
		}
	}
}
