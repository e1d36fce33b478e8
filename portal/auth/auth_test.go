package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"

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
	// Attempts in flight count: the 21st concurrent attempt from one
	// address is refused before any password is checked.
	var res []*Reservation
	for i := range maxIPFails {
		r, _, ok := l.Reserve("1.1.1.1")
		if !ok {
			t.Fatalf("attempt %d refused", i+1)
		}
		res = append(res, r)
	}
	if _, wait, ok := l.Reserve("1.1.1.1"); ok || wait <= 0 || wait > limitWindow {
		t.Fatalf("21st attempt in flight: ok=%v wait=%v", ok, wait)
	}
	if !res[0].Clean() {
		t.Fatal("attempts in flight made the address unclean")
	}
	// A cancelled attempt gives its slot back; a failed one keeps it.
	res[0].Cancel()
	if _, _, ok := l.Reserve("1.1.1.1"); !ok {
		t.Fatal("a cancelled slot was not given back")
	}
	res[1].Fail()
	if res[2].Clean() {
		t.Fatal("address with a failure is clean")
	}
	if _, _, ok := l.Reserve("1.1.1.1"); ok {
		t.Fatal("over the limit after a failure")
	}
	for _, r := range res[2:] {
		r.Fail()
	}
	// Other addresses are not affected; one IPv6 /64 counts as one.
	if _, _, ok := l.Reserve("2.2.2.2"); !ok {
		t.Fatal("another address refused")
	}
	for i := range maxIPFails {
		r, _, ok := l.Reserve(fmt.Sprintf("2001:db8::%x", i+1))
		if !ok {
			t.Fatalf("IPv6 attempt %d refused", i+1)
		}
		r.Fail()
	}
	if _, _, ok := l.Reserve("2001:db8::ffff:1"); ok {
		t.Fatal("another address of the same /64 not refused")
	}
	if _, _, ok := l.Reserve("2001:db8:0:1::1"); !ok {
		t.Fatal("another /64 refused")
	}
	now = now.Add(limitWindow)
	if _, _, ok := l.Reserve("1.1.1.1"); !ok {
		t.Fatal("still refused after the window")
	}

	// Made-up names lock like accounts.
	for range maxUserFails {
		if !l.NameLocked("ghost").IsZero() {
			t.Fatal("locked too early")
		}
		l.FailName("Ghost")
	}
	if until := l.NameLocked("GHOST"); !until.After(now) {
		t.Fatal("name not locked after 5 failures")
	}
}

// TestLimiterBounded floods the limiter with long made-up names from many
// addresses: it stays within its bounds of entries and bytes.
func TestLimiterBounded(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	l := NewLimiter(func() time.Time { return now })
	name := strings.Repeat("n", maxUsername-8)
	for i := range maxTracked + 1000 {
		l.FailName(fmt.Sprintf("%s%08d", name, i))
		if i%4096 == 0 {
			l.mu.Lock()
			b, n := l.bytes, len(l.fails)
			l.mu.Unlock()
			if b > maxTrackedBytes || n > maxTracked {
				t.Fatalf("after %d names: %d bytes, %d keys", i+1, b, n)
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	want := 0
	for k, f := range l.fails {
		want += len(k) + len(f)*entryBytes
	}
	if l.bytes != want || l.bytes > maxTrackedBytes || len(l.fails) > maxTracked {
		t.Fatalf("counted %d bytes, really %d, in %d keys", l.bytes, want, len(l.fails))
	}
}

func TestValidUsername(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{
		"alice":                    true,
		"":                         true, // no account has it; the lookup says so
		strings.Repeat("a", 64):    true,
		strings.Repeat("a", 65):    false,
		strings.Repeat("é", 33):    false, // 66 bytes
		"al\x00ice":                false,
		"al\tice":                  false,
		"alice\n":                  false,
		"al\u0085ice":              false,
		"al\x7fice":                false,
		"\xff\xfe":                 false,
		strings.Repeat("a", 1<<20): false,
	} {
		if (ValidUsername(name) == nil) != ok {
			t.Errorf("ValidUsername(%.20q, %d bytes) = %v, want ok=%v", name, len(name), ValidUsername(name), ok)
		}
	}
}

// cheapHash hashes pw with argon2id at 1 MiB: the stored hash carries its
// parameters, so checking it is as cheap, which keeps tests of the
// sign-in logic fast under the race detector.
func cheapHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := argon2id.CreateHash(pw, &argon2id.Params{Memory: 1024, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func newTestAuth(t *testing.T, now *time.Time) (*Authenticator, *store.Store) {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	h := cheapHash(t, "alice-password")
	st.CreateUser(ctx, store.User{Name: "alice", Role: store.RoleUser}, h)
	st.CreateUser(ctx, store.User{Name: "carol", Role: store.RoleUser, Disabled: true}, h)
	clock := time.Now
	if now != nil {
		clock = func() time.Time { return *now }
	}
	a := New(st, NewLimiter(clock), slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.dummyHash = cheapHash(t, "dummy")
	return a, st
}

func TestSignIn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newTestAuth(t, nil)

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
	// Made-up names answer like accounts.
	for range maxUserFails {
		a.SignIn(ctx, "nobody2", "wrong", "ip3")
	}
	if _, err := a.SignIn(ctx, "nobody2", "wrong", "ip3"); !errors.As(err, &rl) {
		t.Fatalf("made-up name not rate limited: %v", err)
	}
}

// TestSignInLockSparesOwner: five failures lock an account, persisted, but
// the right password from an address without recent failures still signs
// in; the locking addresses stay refused, also after a restart.
func TestSignInLockSparesOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Unix(2_000_000_000, 0)
	a, st := newTestAuth(t, &now)
	alice, _ := st.UserByName(ctx, "alice")
	for i := range maxUserFails {
		if _, err := a.SignIn(ctx, "alice", "wrong", fmt.Sprintf("10.0.0.%d", i+1)); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	l, err := st.SignInLock(ctx, alice.ID)
	if err != nil || !l.Locked(now) || l.Failures != maxUserFails || l.LastAddr != "10.0.0.5" {
		t.Fatalf("lock not stored: %+v %v", l, err)
	}
	var rl *RateLimitedError
	if _, err := a.SignIn(ctx, "alice", "alice-password", "10.0.0.1"); !errors.As(err, &rl) {
		t.Fatalf("right password from a failing address: %v", err)
	}
	// A restart forgets addresses, not the lock: the last failing address
	// stays refused.
	a2 := New(st, NewLimiter(func() time.Time { return now }), a.logger)
	a2.dummyHash = a.dummyHash
	if _, err := a2.SignIn(ctx, "alice", "alice-password", "10.0.0.5"); !errors.As(err, &rl) {
		t.Fatalf("right password from the last failing address after a restart: %v", err)
	}
	// A wrong password from a clean address is checked, and counts.
	if _, err := a.SignIn(ctx, "alice", "wrong", "10.0.0.9"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("wrong password from a clean address: %v", err)
	}
	if _, err := a.SignIn(ctx, "alice", "alice-password", "10.0.0.9"); !errors.As(err, &rl) {
		t.Fatalf("that address, now failing: %v", err)
	}
	if u, err := a.SignIn(ctx, "alice", "alice-password", "192.0.2.7"); err != nil || u.ID != alice.ID {
		t.Fatalf("owner from a clean address: %v", err)
	}
	if l, _ := st.SignInLock(ctx, alice.ID); l.Failures != 0 || l.Locked(now) {
		t.Fatalf("a good sign-in left %+v", l)
	}
	// The window passes: a lock ends by itself.
	for i := range maxUserFails {
		a.SignIn(ctx, "alice", "wrong", fmt.Sprintf("10.0.1.%d", i+1))
	}
	now = now.Add(limitWindow)
	if _, err := a.SignIn(ctx, "alice", "alice-password", "10.0.1.1"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

// TestSignInBadInput: names no account can have are refused before the
// database or the hash, and still count against the address.
func TestSignInBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newTestAuth(t, nil)
	for _, name := range []string{strings.Repeat("x", 65), "ali\nce", strings.Repeat("y", 1<<20)} {
		if _, err := a.SignIn(ctx, name, "whatever", "10.9.9.9"); !errors.Is(err, ErrInvalidUsername) {
			t.Fatalf("%d-byte name: %v", len(name), err)
		}
	}
	a.limiter.mu.Lock()
	keys, b := len(a.limiter.fails), a.limiter.bytes
	a.limiter.mu.Unlock()
	if keys != 1 || b > 200 {
		t.Fatalf("limiter keeps %d keys, %d bytes after bad names", keys, b)
	}
	if _, err := a.SignIn(ctx, "alice", strings.Repeat("p", maxPassword+1), "10.9.9.9"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("long password: %v", err)
	}
}

// TestSignInBusy: when every hash slot is taken for longer than the wait,
// sign-in answers busy, and the attempt does not count as a failure.
func TestSignInBusy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _ := newTestAuth(t, nil)
	a.hashes = newHashGate(1, 20*time.Millisecond)
	release, err := a.hashes.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range maxIPFails + 1 {
		if _, err := a.SignIn(ctx, "alice", "alice-password", "10.8.8.8"); !errors.Is(err, ErrBusy) {
			t.Fatalf("all slots taken: %v", err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.SignIn(cctx, "alice", "alice-password", "10.8.8.8"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while waiting: %v", err)
	}
	release()
	if _, err := a.SignIn(ctx, "alice", "alice-password", "10.8.8.8"); err != nil {
		t.Fatalf("busy answers were counted as failures: %v", err)
	}
}

// TestSignInLocalPasswordsRefused: a provider's user cannot use a password
// kept here, and with local passwords off only the break-glass admin can;
// each refusal answers like a wrong password and counts as a failure.
func TestSignInLocalPasswordsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Unix(2_000_000_000, 0)
	a, st := newTestAuth(t, &now)
	h := cheapHash(t, "alice-password")
	// An SSO user who somehow has a password hash (made local, given a
	// password, then moved to a provider) still cannot use it.
	if _, err := st.CreateUser(ctx, store.User{Name: "sso", Role: store.RoleUser, Source: "oidc:corp"}, h); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateUser(ctx, store.User{Name: "root", Role: store.RoleAdmin}, h); err != nil {
		t.Fatal(err)
	}
	// A JIT user has no password hash at all.
	if _, err := st.CreateUser(ctx, store.User{Name: "jit", Role: store.RoleUser, Source: "saml:okta"}, ""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sso", "jit"} {
		if _, err := a.SignIn(ctx, name, "alice-password", "10.1.0.1"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("%s with a local password: %v", name, err)
		}
	}
	if err := st.SetLocalPasswordSettings(ctx, store.LocalPasswords{Enabled: false, BreakGlassUser: "root"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SignIn(ctx, "alice", "alice-password", "10.2.0.1"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("local user with passwords off: %v", err)
	}
	if u, err := a.SignIn(ctx, "root", "alice-password", "10.2.0.1"); err != nil || u.Name != "root" {
		t.Fatalf("break-glass admin: %v", err)
	}
	// The refusals count: the account locks as after wrong passwords.
	for i := 1; i < maxUserFails; i++ {
		a.SignIn(ctx, "alice", "alice-password", fmt.Sprintf("10.3.0.%d", i))
	}
	alice, _ := st.UserByName(ctx, "alice")
	if l, _ := st.SignInLock(ctx, alice.ID); !l.Locked(now) {
		t.Fatalf("refusals did not count: %+v", l)
	}
	var rl *RateLimitedError
	if _, err := a.SignIn(ctx, "alice", "alice-password", "10.3.0.1"); !errors.As(err, &rl) {
		t.Fatalf("refused address not rate limited: %v", err)
	}
	if err := st.SetLocalPasswordSettings(ctx, store.LocalPasswords{Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SignIn(ctx, "alice", "alice-password", "192.0.2.9"); err != nil {
		t.Fatalf("passwords back on: %v", err)
	}
	if _, err := a.SignIn(ctx, "sso", "alice-password", "192.0.2.9"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("sso with passwords on: %v", err)
	}
}
