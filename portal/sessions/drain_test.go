package sessions

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// noticeLog collects the notices a session's page was sent.
type noticeLog struct {
	mu  sync.Mutex
	got []Notice
}

func (l *noticeLog) add(n Notice) { l.mu.Lock(); l.got = append(l.got, n); l.mu.Unlock() }

func (l *noticeLog) all() []Notice {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Notice(nil), l.got...)
}

func (f *fixture) running(t *testing.T, id string) *Session {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return f.m.AddForTest(id, f.user, f.ssh, KindTerminal, a)
}

// TestDrain: once draining, every kind of new session is refused in
// words (and audited), running sessions are told when they close — also
// one whose page subscribes only after the drain began — and WaitIdle
// returns when the last one ends.
func TestDrain(t *testing.T) {
	f := newFixture(t)
	early, late := f.running(t, "EARLY"), f.running(t, "LATE")
	var earlyLog, lateLog noticeLog
	early.OnNotice(earlyLog.add)
	if _, ok := f.m.Draining(); ok {
		t.Fatal("draining before Drain")
	}
	deadline := time.Now().Add(time.Hour)
	if !f.m.Drain(deadline) || f.m.Drain(deadline.Add(time.Hour)) {
		t.Fatal("Drain must start once")
	}
	if d, ok := f.m.Draining(); !ok || !d.Equal(deadline) {
		t.Fatalf("Draining = %v, %v", d, ok)
	}
	for _, kind := range []Kind{KindTerminal, KindDesktop, KindFiles, KindTCP, KindTest} {
		ref := f.admit(kind, f.ssh.ID)
		if ref == nil || ref.Code != CodeDraining || ref.Status != http.StatusServiceUnavailable || ref.Message != "This portal is restarting; reconnect in a moment." {
			t.Fatalf("%s while draining: %+v", kind, ref)
		}
	}
	evs, _ := f.audit.Search(context.Background(), store.AuditFilter{Action: audit.ActionConnect, Text: CodeDraining})
	if len(evs) != 4 { // and the test as a resource test
		t.Fatalf("%d refusals audited, want 4", len(evs))
	}
	if got := earlyLog.all(); len(got) != 1 || got[0].Code != CodeDraining || !got[0].Deadline.Equal(deadline) ||
		!strings.Contains(got[0].Message, "This portal is restarting") {
		t.Fatalf("the running session was told %+v", got)
	}
	late.OnNotice(lateLog.add)
	if got := lateLog.all(); len(got) != 1 || got[0].Code != CodeDraining {
		t.Fatalf("a page subscribing during the drain was told %+v", got)
	}

	done := make(chan error, 1)
	go func() { done <- f.m.WaitIdle(context.Background()) }()
	early.End("test", "")
	select {
	case <-done:
		t.Fatal("WaitIdle returned with a session running")
	default:
	}
	late.End("test", "")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f.m.Running() != 0 {
		t.Fatalf("%d running", f.m.Running())
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.running(t, "STUCK")
	cancel()
	if err := f.m.WaitIdle(ctx); err == nil {
		t.Fatal("WaitIdle ignored its context")
	}
}

// TestGatewayDraining: only the sessions through the draining gateway are
// told, once per deadline, and a deadline further than a day is not
// believed; their end words are the gateway's restart.
func TestGatewayDraining(t *testing.T) {
	f := newFixture(t)
	on, off := f.running(t, "ON"), f.running(t, "OFF")
	on.Gateway.ID, off.Gateway.ID = "7", "8"
	var onLog, offLog noticeLog
	on.OnNotice(onLog.add)
	off.OnNotice(offLog.add)
	deadline := time.Now().Add(10 * time.Minute)
	f.m.GatewayDraining("7", deadline)
	f.m.GatewayDraining("7", deadline) // the next health check
	if got := onLog.all(); len(got) != 1 || got[0].Code != CodeGatewayDraining || !got[0].Deadline.Equal(deadline) {
		t.Fatalf("the session through the gateway was told %+v", got)
	}
	if got := offLog.all(); len(got) != 0 {
		t.Fatalf("a session through another gateway was told %+v", got)
	}
	if on.NoticeCode() != CodeGatewayDraining || off.NoticeCode() != "" {
		t.Fatalf("notice codes %q, %q", on.NoticeCode(), off.NoticeCode())
	}
	f.m.GatewayDraining("7", time.Now().Add(100*365*24*time.Hour))
	got := onLog.all()
	if len(got) != 2 || time.Until(got[1].Deadline) > maxGatewayDrain {
		t.Fatalf("a deadline a century away was told as %+v", got)
	}
}

func TestCountdown(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{-time.Second, "now"}, {0, "now"}, {time.Second, "in 1 second"}, {45 * time.Second, "in 45 seconds"}, {119 * time.Second, "in 119 seconds"},
		{30 * time.Minute, "in 30 minutes"}} {
		if got := Countdown(now, now.Add(tc.d)); got != tc.want {
			t.Errorf("Countdown(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
