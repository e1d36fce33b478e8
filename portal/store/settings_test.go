package store

import (
	"context"
	"github.com/keyway-dev/keyway/portal/store/dbtest"
	"strings"
	"testing"
)

func TestSealedSetting(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, path := openTest(t, kind)
		if err := st.SetSealedSetting(ctx, "hook.secret", "s3cret-value-0123456789"); err != nil {
			t.Fatal(err)
		}
		raw, _ := st.GetSetting(ctx, "hook.secret")
		if raw == "" || strings.Contains(raw, "s3cret") {
			t.Fatalf("stored in the clear: %q", raw)
		}
		// A sealed value moved to another key does not open.
		if err := st.SetSetting(ctx, "other", raw); err != nil {
			t.Fatal(err)
		}
		if _, err := st.SealedSetting(ctx, "other"); err == nil {
			t.Fatal("a sealed value opened under another key")
		}
		if _, err := st.OpenSetting("x", "not base64!"); err == nil {
			t.Fatal("garbage opened")
		}
		// Across a restart with the same key file.
		st.Close()
		st2, err := Open(ctx, path, st.sealer)
		if err != nil {
			t.Fatal(err)
		}
		defer st2.Close()
		if v, err := st2.SealedSetting(ctx, "hook.secret"); err != nil || v != "s3cret-value-0123456789" {
			t.Fatalf("after reopen: %q, %v", v, err)
		}
		if v, err := st2.SealedSetting(ctx, "absent"); err != nil || v != "" {
			t.Fatalf("absent: %q, %v", v, err)
		}
		if err := st2.SetSealedSetting(ctx, "hook.secret", ""); err != nil {
			t.Fatal(err)
		}
		if raw, _ := st2.GetSetting(ctx, "hook.secret"); raw != "" {
			t.Fatalf("not deleted: %q", raw)
		}
	})
}
