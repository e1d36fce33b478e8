package auth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/portal/store/storetest"
)

func TestPasswordHash(t *testing.T) {
	t.Parallel()
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := CheckPassword(h, "correct horse battery"); !ok {
		t.Fatal("right password refused")
	}
	if ok, _ := CheckPassword(h, "wrong horse battery"); ok {
		t.Fatal("wrong password accepted")
	}
	for pw, ok := range map[string]bool{"short": false, "long enough pw": true, string(make([]byte, 300)): false} {
		if (ValidatePassword(pw) == nil) != ok {
			t.Errorf("ValidatePassword(%d chars) ok=%v", len(pw), !ok)
		}
	}
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	l := NewLimiter(func() time.Time { return now })
	for range maxUserFails {
		if _, ok := l.Check("alice", "1.1.1.1"); !ok {
			t.Fatal("paused too early")
		}
		l.Fail("alice", "1.1.1.1")
	}
	wait, ok := l.Check("Alice", "2.2.2.2")
	if ok || wait <= 0 || wait > limitWindow {
		t.Fatalf("user not paused: %v %v", wait, ok)
	}
	if _, ok := l.Check("bob", "1.1.1.1"); !ok {
		t.Fatal("other user from the same address paused after 5 failures")
	}
	now = now.Add(limitWindow)
	if _, ok := l.Check("alice", "1.1.1.1"); !ok {
		t.Fatal("still paused after the window")
	}
	for i := range maxIPFails {
		l.Fail("user"+string(rune('a'+i)), "3.3.3.3")
	}
	if _, ok := l.Check("zed", "3.3.3.3"); ok {
		t.Fatal("address not paused after many failures")
	}
}

func TestSignIn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.Open(t)
	h, _ := HashPassword("alice-password")
	st.CreateUser(ctx, store.User{Name: "alice", Role: store.RoleUser}, h)
	st.CreateUser(ctx, store.User{Name: "carol", Role: store.RoleUser, Disabled: true}, h)
	a := New(st, NewLimiter(time.Now), slog.New(slog.NewTextHandler(io.Discard, nil)))

	if u, err := a.SignIn(ctx, "alice", "alice-password", "ip"); err != nil || u.Name != "alice" {
		t.Fatalf("good sign-in: %v", err)
	}
	if _, err := a.SignIn(ctx, "nobody", "alice-password", "ip"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("unknown user: %v", err)
	}
	if _, err := a.SignIn(ctx, "carol", "alice-password", "ip"); !errors.Is(err, ErrDisabled) {
		t.Fatalf("disabled user: %v", err)
	}
	for range maxUserFails {
		a.SignIn(ctx, "alice", "wrong", "ip2")
	}
	var rl *RateLimitedError
	if _, err := a.SignIn(ctx, "alice", "alice-password", "ip2"); !errors.As(err, &rl) {
		t.Fatalf("not rate limited: %v", err)
	}
}
