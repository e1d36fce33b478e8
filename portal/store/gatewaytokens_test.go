package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/portal/store/storetest"
)

func TestGatewayCredentials(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, kind storetest.Kind) {
		ctx := context.Background()
		st := storetest.OpenKind(t, kind)
		seg, err := st.SegmentByName(ctx, store.DefaultSegment)
		if err != nil {
			t.Fatal(err)
		}
		g, err := st.CreateGateway(ctx, store.Gateway{Name: "g1", SegmentID: seg.ID, Host: "127.0.0.1", SSHPort: 1, ManagementPort: 2})
		if err != nil {
			t.Fatal(err)
		}
		c, err := st.GatewayCredentials(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Primary.Secret) != 32 || len(c.Secondary.Secret) != 32 || bytes.Equal(c.Primary.Secret, c.Secondary.Secret) ||
			c.Primary.Generation != 1 || c.ActiveSlot != store.SlotPrimary || c.Bootstrap {
			t.Fatalf("new credentials: %+v", c)
		}
		// A pending gateway gets no first token; pinning its key allows one.
		if err := st.TakeGatewayBootstrap(ctx, g.ID); !errors.Is(err, store.ErrNoBootstrap) {
			t.Fatalf("bootstrap of a pending gateway: %v", err)
		}
		if err := st.SetGatewayKey(ctx, g.ID, "ed25519:x"); err != nil {
			t.Fatal(err)
		}
		if err := st.TakeGatewayBootstrap(ctx, g.ID); err != nil {
			t.Fatalf("first token after pinning: %v", err)
		}
		if err := st.TakeGatewayBootstrap(ctx, g.ID); !errors.Is(err, store.ErrNoBootstrap) {
			t.Fatalf("second first token: %v", err)
		}
		k, err := st.RegenerateGatewayKey(ctx, g.ID, store.SlotPrimary)
		if err != nil {
			t.Fatal(err)
		}
		if k.Generation != 2 || bytes.Equal(k.Secret, c.Primary.Secret) {
			t.Fatalf("regenerated key: generation %d, same secret %v", k.Generation, bytes.Equal(k.Secret, c.Primary.Secret))
		}
		if _, err := st.RegenerateGatewayKey(ctx, g.ID, "primary_key = x, primary"); err == nil {
			t.Fatal("a made-up slot was accepted")
		}
		if err := st.SetGatewayTokenSlot(ctx, g.ID, store.SlotSecondary); err != nil {
			t.Fatal(err)
		}
		exp := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli()).UTC()
		if err := st.SetGatewayRenewError(ctx, g.ID, "portal unreachable", time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := st.RecordGatewayToken(ctx, g.ID, store.SlotSecondary, time.Now(), exp); err != nil {
			t.Fatal(err)
		}
		c2, err := st.GatewayCredentials(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if c2.ActiveSlot != store.SlotSecondary || !c2.TokenExpiresAt.Equal(exp) || c2.TokenSlot != store.SlotSecondary || c2.RenewError != "" ||
			!bytes.Equal(c2.Secondary.Secret, c.Secondary.Secret) || !bytes.Equal(c2.Primary.Secret, k.Secret) {
			t.Fatalf("after renewal: %+v", c2)
		}
		// Deleting the gateway deletes its keys.
		if err := st.DeleteGateway(ctx, g.ID); err != nil {
			t.Fatal(err)
		}
		var n int
		st.DB().QueryRowContext(ctx, `SELECT count(*) FROM gateway_credentials`).Scan(&n)
		if n != 0 {
			t.Fatalf("%d credentials left after delete", n)
		}
	})
}
