package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/keyway-dev/keyway/portal/store/dbtest"
	"strings"
	"testing"
	"time"
)

func newDeviceKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func TestUserCodes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"BCDF-GHJK":             "BCDFGHJK",
		"bcdfghjk":              "BCDFGHJK",
		" bcdf ghjk ":           "BCDFGHJK",
		"BCDF-GHJ":              "", // short
		"BCDF-GHJKL":            "", // long
		"BCDF-GHJ0":             "", // ambiguous characters are not in codes
		"ABCD-EFGH":             "", // vowels are not either
		strings.Repeat("B", 40): "",
	} {
		if got := NormalizeUserCode(in); got != want {
			t.Errorf("NormalizeUserCode(%q) = %q, want %q", in, got, want)
		}
	}
	for range 100 {
		c := newUserCode()
		if NormalizeUserCode(FormatUserCode(c)) != c {
			t.Fatalf("code %q does not read back", c)
		}
	}
}

func TestDeviceSignIn(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		st.now = func() time.Time { return now }
		alice, err := st.CreateUser(ctx, User{Name: "alice", Role: RoleUser}, "h")
		if err != nil {
			t.Fatal(err)
		}
		bob, _ := st.CreateUser(ctx, User{Name: "bob", Role: RoleUser}, "h")
		pub, priv := newDeviceKey(t)
		_, otherPriv := newDeviceKey(t)

		code, req, err := st.CreateDeviceRequest(ctx, DeviceRequest{PublicKey: pub, Name: "laptop", OS: "linux", Arch: "amd64", Version: "1.0", ClientAddr: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		sign := func(p ed25519.PrivateKey, c string) []byte { return ed25519.Sign(p, DeviceTokenMessage(c)) }
		ttl := 12 * time.Hour

		// Before approval: pending, then slow_down when polled at once again.
		if _, _, err := st.ExchangeDeviceCode(ctx, code, sign(priv, code), ttl); !errors.Is(err, ErrAuthorizationPending) {
			t.Fatalf("first poll: %v", err)
		}
		if _, _, err := st.ExchangeDeviceCode(ctx, code, sign(priv, code), ttl); !errors.Is(err, ErrSlowDown) {
			t.Fatalf("fast poll: %v", err)
		}
		now = now.Add(DevicePollInterval)
		// A wrong key or unknown code learns nothing.
		if _, _, err := st.ExchangeDeviceCode(ctx, code, sign(otherPriv, code), ttl); !errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("other key: %v", err)
		}
		if _, _, err := st.ExchangeDeviceCode(ctx, code+"x", sign(priv, code+"x"), ttl); !errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("unknown code: %v", err)
		}

		got, err := st.PendingDeviceRequest(ctx, strings.ToLower(FormatUserCode(req.UserCode)))
		if err != nil || got.ID != req.ID || got.Name != "laptop" || got.ClientAddr != "192.0.2.1" || !got.PublicKey.Equal(pub) {
			t.Fatalf("lookup by user code: %+v, %v", got, err)
		}
		d, err := st.ApproveDeviceRequest(ctx, req.UserCode, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.PendingDeviceRequest(ctx, req.UserCode); !errors.Is(err, ErrNotFound) {
			t.Fatalf("an approved request is still pending: %v", err)
		}
		if _, err := st.ApproveDeviceRequest(ctx, req.UserCode, bob.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("approved twice: %v", err)
		}
		// Approved but not yet exchanged: no credential, so not usable.
		if err := st.DeviceUsable(ctx, d.ID); !errors.Is(err, ErrDeviceExpired) {
			t.Fatalf("device before exchange: %v", err)
		}

		cred, dev, err := st.ExchangeDeviceCode(ctx, code, sign(priv, code), ttl)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(cred, fmt.Sprintf("kwd_%d_", d.ID)) || dev.ID != d.ID || dev.UserID != alice.ID || !dev.ExpiresAt.Equal(now.Add(ttl)) {
			t.Fatalf("credential %q device %+v", cred, dev)
		}
		if _, _, err := st.ExchangeDeviceCode(ctx, code, sign(priv, code), ttl); !errors.Is(err, ErrInvalidGrant) {
			t.Fatalf("second exchange: %v", err)
		}

		v, err := st.VerifyDeviceCredential(ctx, cred)
		if err != nil || v.ID != d.ID || !v.PublicKey.Equal(pub) {
			t.Fatalf("verify: %+v %v", v, err)
		}
		// The last character changed (to another one: rand.Text may have
		// ended the credential with an A already).
		changed := cred[:len(cred)-1] + map[bool]string{true: "B", false: "A"}[strings.HasSuffix(cred, "A")]
		for _, bad := range []string{cred + "x", changed, "kwd_", "kwd_x_y", fmt.Sprintf("kwd_%d", d.ID), "kwd_999_" + strings.Repeat("A", 52), "kw_abc", strings.Repeat("k", 200)} {
			if _, err := st.VerifyDeviceCredential(ctx, bad); !errors.Is(err, ErrNotFound) {
				t.Errorf("credential %q: %v", bad, err)
			}
		}
		if err := st.DeviceUsable(ctx, d.ID); err != nil {
			t.Fatal(err)
		}
		if err := st.DeviceUsable(ctx, d.ID+100); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown device: %v", err)
		}

		// Use is recorded, but not at every request.
		if err := st.TouchDevice(ctx, v, "192.0.2.7"); err != nil {
			t.Fatal(err)
		}
		v, _ = st.DeviceByID(ctx, d.ID)
		if v.LastAddr != "192.0.2.7" || !v.LastUsedAt.Equal(now) {
			t.Fatalf("touch: %+v", v)
		}
		now = now.Add(time.Second)
		st.TouchDevice(ctx, v, "192.0.2.7")
		if v2, _ := st.DeviceByID(ctx, d.ID); !v2.LastUsedAt.Equal(v.LastUsedAt) {
			t.Fatalf("touched again within a minute: %v", v2.LastUsedAt)
		}

		// Only its owner revokes it; then its credential says revoked.
		if _, err := st.RevokeDevice(ctx, bob.ID, d.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("bob revoked alice's device: %v", err)
		}
		list, err := st.ListDevices(ctx, alice.ID)
		if err != nil || len(list) != 1 || list[0].Revoked() {
			t.Fatalf("list: %+v %v", list, err)
		}
		if _, err := st.RevokeDevice(ctx, alice.ID, d.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := st.RevokeDevice(ctx, alice.ID, d.ID); err != nil {
			t.Fatalf("second revoke: %v", err)
		}
		if _, err := st.VerifyDeviceCredential(ctx, cred); !errors.Is(err, ErrDeviceRevoked) {
			t.Fatalf("revoked credential: %v", err)
		}
		if err := st.DeviceUsable(ctx, d.ID); !errors.Is(err, ErrDeviceRevoked) {
			t.Fatalf("revoked device usable: %v", err)
		}
		if list, _ := st.ListDevices(ctx, alice.ID); len(list) != 1 || !list[0].Revoked() {
			t.Fatalf("revoked device in list: %+v", list)
		}

		// Deleting the user deletes the devices.
		if err := st.DeleteUser(ctx, alice.ID); err != nil {
			t.Fatal(err)
		}
		if err := st.DeviceUsable(ctx, d.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("device of a deleted user: %v", err)
		}
	})
}

func TestDeviceCredentialExpiry(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		now := time.Now()
		st.now = func() time.Time { return now }
		u, _ := st.CreateUser(ctx, User{Name: "alice", Role: RoleUser}, "h")
		pub, priv := newDeviceKey(t)
		code, req, err := st.CreateDeviceRequest(ctx, DeviceRequest{PublicKey: pub, Name: "n", ClientAddr: "a"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.ApproveDeviceRequest(ctx, FormatUserCode(req.UserCode), u.ID); err != nil {
			t.Fatal(err)
		}
		cred, d, err := st.ExchangeDeviceCode(ctx, code, ed25519.Sign(priv, DeviceTokenMessage(code)), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Hour)
		if _, err := st.VerifyDeviceCredential(ctx, cred); !errors.Is(err, ErrDeviceExpired) {
			t.Fatalf("expired credential: %v", err)
		}
		if err := st.DeviceUsable(ctx, d.ID); !errors.Is(err, ErrDeviceExpired) {
			t.Fatalf("expired device: %v", err)
		}
	})
}

func TestDeviceRequestDenyExpireAndBounds(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		now := time.Now()
		st.now = func() time.Time { return now }
		u, _ := st.CreateUser(ctx, User{Name: "alice", Role: RoleUser}, "h")
		pub, priv := newDeviceKey(t)
		mk := func(addr string) (string, DeviceRequest, error) {
			return st.CreateDeviceRequest(ctx, DeviceRequest{PublicKey: pub, Name: "n", ClientAddr: addr})
		}
		if _, _, err := st.CreateDeviceRequest(ctx, DeviceRequest{PublicKey: pub[:10], ClientAddr: "a"}); err == nil {
			t.Fatal("a short key was taken")
		}

		code, req, err := mk("a")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.DenyDeviceRequest(ctx, req.UserCode, u.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.ExchangeDeviceCode(ctx, code, ed25519.Sign(priv, DeviceTokenMessage(code)), time.Hour); !errors.Is(err, ErrAccessDenied) {
			t.Fatalf("denied: %v", err)
		}

		code, req, _ = mk("a")
		now = now.Add(DeviceRequestTTL)
		if _, err := st.PendingDeviceRequest(ctx, req.UserCode); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired request found: %v", err)
		}
		if _, err := st.ApproveDeviceRequest(ctx, req.UserCode, u.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired request approved: %v", err)
		}
		if _, _, err := st.ExchangeDeviceCode(ctx, code, ed25519.Sign(priv, DeviceTokenMessage(code)), time.Hour); !errors.Is(err, ErrExpiredToken) {
			t.Fatalf("expired exchange: %v", err)
		}

		// Per address, then in all; expired ones do not count and are swept.
		for i := range maxPendingPerAddr {
			if _, _, err := mk("b"); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
		if _, _, err := mk("b"); !errors.Is(err, ErrTooManyDeviceRequests) {
			t.Fatalf("past the per-address bound: %v", err)
		}
		for i := 0; i < maxPendingRequests-maxPendingPerAddr; i++ {
			if _, _, err := mk(fmt.Sprint("c", i)); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
		if _, _, err := mk("d"); !errors.Is(err, ErrTooManyDeviceRequests) {
			t.Fatalf("past the total bound: %v", err)
		}
		now = now.Add(DeviceRequestTTL)
		if _, _, err := mk("d"); err != nil {
			t.Fatalf("after expiry: %v", err)
		}
		now = now.Add(DeviceRequestTTL + requestKeep + time.Minute)
		if _, _, err := mk("d"); err != nil {
			t.Fatal(err)
		}
		var n int
		st.db.QueryRow(`SELECT COUNT(*) FROM device_requests`).Scan(&n)
		if n != 1 {
			t.Fatalf("%d requests kept after the sweep, want 1", n)
		}
	})
}

func TestClientLimits(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		l, err := st.ClientLimits(ctx)
		if err != nil || l != DefaultClientLimits {
			t.Fatalf("defaults: %+v %v", l, err)
		}
		want := ClientLimits{CredentialHours: 720, StreamsPerDevice: 1, StreamsPerUser: 20000}
		if err := st.SetClientLimits(ctx, want); err != nil {
			t.Fatal(err)
		}
		if l, _ := st.ClientLimits(ctx); l != want {
			t.Fatalf("read back %+v", l)
		}
		for _, bad := range []ClientLimits{
			{CredentialHours: 0, StreamsPerDevice: 1, StreamsPerUser: 1},
			{CredentialHours: 721, StreamsPerDevice: 1, StreamsPerUser: 1},
			{CredentialHours: 1, StreamsPerDevice: 1001, StreamsPerUser: 1},
			{CredentialHours: 1, StreamsPerDevice: 1, StreamsPerUser: 0},
		} {
			if err := st.SetClientLimits(ctx, bad); err == nil {
				t.Errorf("%+v was stored", bad)
			}
		}
		// A value out of bounds in the table (an edit by hand) takes the default.
		st.SetSetting(ctx, SettingClientCredentialHours, "99999")
		if l, _ := st.ClientLimits(ctx); l.CredentialHours != DefaultClientLimits.CredentialHours {
			t.Fatalf("out-of-bounds stored value read as %d", l.CredentialHours)
		}
	})
}

// TestDeviceMFAAt: every read of a device carries when its user last
// passed an MFA check for it, which the tunnel's step-up checks.
func TestDeviceMFAAt(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
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
		if got, _ := st.DeviceByID(ctx, d.ID); !got.MFAAt.IsZero() {
			t.Fatalf("a new device has MFAAt %v", got.MFAAt)
		}
		at := time.UnixMilli(1_700_000_000_123)
		if err := st.SetDeviceMFA(ctx, d.ID, at); err != nil {
			t.Fatal(err)
		}
		if got, err := st.DeviceByID(ctx, d.ID); err != nil || !got.MFAAt.Equal(at) {
			t.Fatalf("DeviceByID: MFAAt %v (%v), want %v", got.MFAAt, err, at)
		}
		if ds, err := st.ListDevices(ctx, u.ID); err != nil || len(ds) != 1 || !ds[0].MFAAt.Equal(at) {
			t.Fatalf("ListDevices: %+v (%v)", ds, err)
		}
	})
}
