package sessions

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/e2e/hookexample/examplehook"
	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/hook"
	"github.com/keyway-dev/keyway/portal/store"
)

const hookSecret = "a-secret-of-some-length"

// withHook gives the fixture's manager a hook served by h on a loopback
// TLS server, and returns the requests it receives.
func (f *fixture) withHook(t *testing.T, h http.Handler) *hookLog {
	t.Helper()
	log := &hookLog{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var req examplehook.Request
		json.Unmarshal(body, &req)
		log.add(req)
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	f.m.Hook = hook.New()
	t.Cleanup(func() { f.m.Hook.Close() })
	if err := f.m.Hook.Configure(hook.Config{Enabled: true, URL: srv.URL, CABundle: string(ca), Secret: hookSecret}); err != nil {
		t.Fatal(err)
	}
	f.m.EndpointID = "keyway-test"
	return log
}

type hookLog struct {
	mu   sync.Mutex
	reqs []examplehook.Request
}

func (l *hookLog) add(r examplehook.Request) { l.mu.Lock(); l.reqs = append(l.reqs, r); l.mu.Unlock() }
func (l *hookLog) reset()                    { l.mu.Lock(); l.reqs = nil; l.mu.Unlock() }
func (l *hookLog) all() []examplehook.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]examplehook.Request(nil), l.reqs...)
}

func exampleHook(cfg examplehook.Config) http.Handler {
	cfg.Secret = hookSecret
	cfg.Log = slog.New(slog.DiscardHandler)
	return examplehook.New(cfg)
}

// TestHookComesFirst: the hook decides before the grants: a user it
// refuses hears its message even for a resource they have no grant for,
// and one it allows gets the grant's answer. The hook is asked with every
// field, and its refusal is audited with its reason.
func TestHookComesFirst(t *testing.T) {
	f := newFixture(t)
	calls := f.withHook(t, exampleHook(examplehook.Config{Users: []string{"someone-else"}}))
	f.st.UpdateUser(context.Background(), f.user)

	// A resource that does not exist gets the same answer.
	if ref := f.admit(KindTerminal, 987654); ref == nil || ref.Code != "hook" || ref.Message != "User ann may not connect through Keyway." {
		t.Fatalf("refused by the hook, no such resource: %+v", ref)
	}
	if got := calls.all(); len(got) != 1 || got[0].Resource != "" {
		t.Fatalf("the hook was asked about no resource as %+v", got)
	}
	calls.reset()
	evs0, _ := f.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionConnect})

	ref := f.admit(KindFiles, f.ungranted.ID)
	if ref == nil || ref.Code != "hook" || ref.Reason != string(hook.ReasonDenied) || ref.Message != "User ann may not connect through Keyway." {
		t.Fatalf("refused by the hook: %+v", ref)
	}
	got := calls.all()
	if len(got) != 1 {
		t.Fatalf("%d hook calls, want 1", len(got))
	}
	r := got[0]
	if r.Username != "ann" || r.Resource != f.ungranted.Name || r.Protocol != "sftp" || r.PublicIP != "192.0.2.7" ||
		r.EndpointID != "keyway-test" || r.SchemaVersion != "v1" || r.ConnectionID == "" || r.Groups == nil || r.ResourceTags == nil {
		t.Fatalf("the hook was asked %+v", r)
	}
	evs, _ := f.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionConnect})
	if len(evs) != len(evs0)+1 || evs[0].Reason != string(hook.ReasonDenied) || evs[0].Outcome != audit.OutcomeDenied || evs[0].Details["session"] != r.ConnectionID {
		t.Fatalf("the refusal was audited as %+v", evs)
	}

	// Allowed by the hook: now the grant decides.
	f.withHook(t, exampleHook(examplehook.Config{Posture: "disk-encrypted"}))
	if ref := f.admit(KindTerminal, f.ungranted.ID); ref == nil || ref.Code != "no_grant" {
		t.Fatalf("allowed by the hook, no grant: %+v", ref)
	}
	if ref := f.admit(KindTerminal, f.ssh.ID); ref == nil || ref.Code != "no_gateway" {
		t.Fatalf("allowed by the hook, granted: %+v", ref)
	}
	evs, _ = f.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionConnect})
	if evs[0].Details["posture"] != "disk-encrypted" {
		t.Fatalf("the posture status is not on the audit event: %+v", evs[0])
	}
}

// TestHookFailsClosed: a hook that fails denies with the generic words
// and its reason, whatever the kind of session.
func TestHookFailsClosed(t *testing.T) {
	f := newFixture(t)
	f.withHook(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }))
	for _, kind := range []Kind{KindTerminal, KindDesktop, KindFiles} {
		id := f.ssh.ID
		if kind == KindDesktop {
			id = f.vnc.ID
		}
		ref := f.admit(kind, id)
		if ref == nil || ref.Code != "hook" || ref.Reason != string(hook.ReasonOther) || ref.Message != hook.GenericDenial {
			t.Errorf("%s with a failing hook: %+v", kind, ref)
		}
	}
}

// TestHookCallsConcurrent: 100 connections against a hook that takes a
// second are decided together, not one after another.
func TestHookCallsConcurrent(t *testing.T) {
	f := newFixture(t)
	inner := exampleHook(examplehook.Config{})
	f.withHook(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done():
		}
		inner.ServeHTTP(w, r)
	}))
	if err := f.m.Hook.Configure(func() hook.Config { c := f.m.Hook.Config(); c.MaxInFlight = 200; return c }()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	refs := make([]*Refusal, 100)
	for i := range refs {
		wg.Go(func() { refs[i] = f.admit(KindTerminal, f.ssh.ID) })
	}
	wg.Wait()
	took := time.Since(start)
	for i, ref := range refs {
		if ref == nil || ref.Code != "no_gateway" {
			t.Fatalf("connection %d: %+v, want allowed by the hook", i, ref)
		}
	}
	// Serial calls would take 100 s; 20 s leaves room for a loaded
	// machine.
	if took > 20*time.Second {
		t.Fatalf("100 connections took %s", took)
	}
	t.Logf("100 connections against a 1 s hook: %s", took)
}

// TestHookAbandoned: a connection whose browser leaves stops waiting for
// the hook at once.
func TestHookAbandoned(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	defer close(release)
	asked := make(chan struct{}, 1)
	f.withHook(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := f.m.Admit(ctx, Request{User: f.user, ResourceID: f.ssh.ID, Kind: KindTerminal})
		done <- err
	}()
	<-asked
	cancel()
	select {
	case err := <-done:
		if ref, ok := err.(*Refusal); !ok || ref.Code != "hook" || !strings.HasPrefix(ref.Reason, "client-connect-handler-") {
			t.Fatalf("abandoned: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the abandoned connection still waits for the hook")
	}
}
