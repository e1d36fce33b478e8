package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/hook"
)

const secret = "0123456789abcdef-test-secret"

func TestRunServesTheHook(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	type started struct {
		addr string
		pem  []byte
	}
	up := make(chan started, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, slog.New(slog.DiscardHandler), []string{"-listen", "127.0.0.1:0", "-secret", secret,
			"-allow-users", "alice", "-allow-networks", "127.0.0.0/8", "-posture", "managed-device"},
			func(addr string, pem []byte) { up <- started{addr, pem} })
	}()
	var s started
	select {
	case s = <-up:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the hook did not start")
	}

	h := hook.New()
	t.Cleanup(h.Close)
	if err := h.Configure(hook.Config{Enabled: true, URL: "https://" + s.addr + "/", CABundle: string(s.pem), Secret: secret}); err != nil {
		t.Fatal(err)
	}
	req := hook.Request{ConnectionID: "c-1", Username: "alice", PublicIP: "127.0.0.1", Protocol: "ssh"}
	if res := h.Authorize(t.Context(), req); !res.Allowed || len(res.Posture) != 1 || res.Posture[0] != "managed-device" {
		t.Fatalf("alice: %+v", res)
	}
	req.Username = "bob"
	if res := h.Authorize(t.Context(), req); res.Allowed || res.Reason != hook.ReasonDenied {
		t.Fatalf("bob: %+v", res)
	}
	h.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after its context ended: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-secret", "short"}, "at least 16 bytes"},
		{[]string{"-secret", secret, "-allow-networks", "10.0.0.0/33"}, "-allow-networks"},
		{[]string{"-secret", secret, "-cert", "/nonexistent.pem", "-key", "/nonexistent.key"}, "load certificate"},
		{[]string{"-secret", secret, "-listen", "127.0.0.1:bad"}, "listen"},
	} {
		err := run(t.Context(), slog.New(slog.DiscardHandler), tc.args, func(string, []byte) { t.Error("started") })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}
