package store

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/keyway-dev/keyway/portal/store/dbtest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"
)

// TestMain stops the PostgreSQL server the tests share. Their databases
// start migrated: a copy of one migrated once.
func TestMain(m *testing.M) {
	// The PostgreSQL subtests mostly wait for the server: more of them at
	// once than go test's default (GOMAXPROCS) takes a third off the run
	// on two cores. An explicit -parallel still wins.
	if !slices.ContainsFunc(os.Args, func(a string) bool { return strings.HasPrefix(a, "-test.parallel") }) {
		flag.Set("test.parallel", strconv.Itoa(max(runtime.GOMAXPROCS(0), storeTestParallel)))
	}
	dbtest.MainWithTemplate(m, migrateTemplate)
}

// storeTestParallel is how many of the store's tests run at once by
// default.
const storeTestParallel = 8

// migrateTemplate brings the database at url to the current schema.
func migrateTemplate(ctx context.Context, url string) error {
	key := make([]byte, 32)
	sealer, err := NewSealer(key)
	if err != nil {
		return err
	}
	st, err := Open(ctx, url, sealer)
	if err != nil {
		return err
	}
	return st.Close()
}

// openTest opens a new store of that kind, with a secrets key beside the
// SQLite file (in a temporary directory for PostgreSQL); it returns where
// the database is, for opening it again.
func openTest(t testing.TB, kind dbtest.Kind) (*Store, string) {
	t.Helper()
	location := dbtest.NewDatabase(t, kind)
	st, err := Open(context.Background(), location, newTestSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, location
}

func newTestSealer(t testing.TB) *Sealer {
	t.Helper()
	key, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return sealer
}

func TestUsersAndGroups(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		ops, err := st.CreateGroup(ctx, Group{Name: "ops"})
		if err != nil {
			t.Fatal(err)
		}
		u, err := st.CreateUser(ctx, User{Name: "alice", Role: RoleUser, Groups: []string{"ops"}}, "hash1")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(u.Groups, []string{"ops"}) {
			t.Fatalf("groups %v", u.Groups)
		}
		if _, err := st.CreateUser(ctx, User{Name: "ALICE", Role: RoleUser}, "h"); !errors.Is(err, ErrConflict) {
			t.Fatalf("duplicate name (other case): %v", err)
		}
		if _, err := st.CreateUser(ctx, User{Name: "bob", Role: RoleUser, Groups: []string{"nope"}}, "h"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown group: %v", err)
		}
		if _, err := st.UserByName(ctx, "bob"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("failed create left a user behind: %v", err)
		}
		u.Role, u.Groups, u.Disabled = RoleAuditor, nil, true
		if err := st.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		got, _ := st.UserByID(ctx, u.ID)
		if got.Role != RoleAuditor || len(got.Groups) != 0 || !got.Disabled {
			t.Fatalf("update not saved: %+v", got)
		}
		if h, _ := st.PasswordHash(ctx, u.ID); h != "hash1" {
			t.Fatalf("hash %q", h)
		}
		g, _ := st.GroupByID(ctx, ops.ID)
		if g.Members != 0 {
			t.Fatalf("members %d", g.Members)
		}
		if err := st.DeleteUser(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		if err := st.DeleteUser(ctx, u.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
	})
}

func TestGrantsThroughGroups(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		g, _ := st.CreateGroup(ctx, Group{Name: "ops"})
		alice, _ := st.CreateUser(ctx, User{Name: "alice", Role: RoleUser, Groups: []string{"ops"}}, "h")
		bob, _ := st.CreateUser(ctx, User{Name: "bob", Role: RoleUser}, "h")
		web, _ := st.CreateResource(ctx, Resource{Name: "web", Protocol: "ssh", Host: "h", Port: 22}, &Secrets{Password: "p"})
		db, _ := st.CreateResource(ctx, Resource{Name: "db", Protocol: "ssh", Host: "h", Port: 22}, &Secrets{Password: "p"})
		if _, err := st.CreateGrant(ctx, web.ID, "group", g.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateGrant(ctx, web.ID, "group", g.ID); !errors.Is(err, ErrConflict) {
			t.Fatalf("duplicate grant: %v", err)
		}
		if _, err := st.CreateGrant(ctx, db.ID, "user", bob.ID); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			user, res int64
			want      bool
		}{{alice.ID, web.ID, true}, {alice.ID, db.ID, false}, {bob.ID, db.ID, true}, {bob.ID, web.ID, false}} {
			if ok, err := st.CanUse(ctx, tc.user, tc.res); err != nil || ok != tc.want {
				t.Errorf("CanUse(%d, %d) = %v, %v; want %v", tc.user, tc.res, ok, err, tc.want)
			}
		}
		rs, _ := st.ResourcesForUser(ctx, alice.ID)
		if len(rs) != 1 || rs[0].Name != "web" {
			t.Fatalf("alice sees %v", rs)
		}
		alice.Disabled = true
		alice.Groups = []string{"ops"}
		st.UpdateUser(ctx, alice)
		if ok, _ := st.CanUse(ctx, alice.ID, web.ID); ok {
			t.Fatal("disabled user may still connect")
		}
		st.DeleteGroup(ctx, g.ID)
		if gs, _ := st.GrantsForResource(ctx, web.ID); len(gs) != 0 {
			t.Fatalf("grants of a deleted group remain: %v", gs)
		}
	})
}

func TestSecretsSealed(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, path := openTest(t, kind)
		const pw = "very-secret-target-password"
		r, err := st.CreateResource(ctx, Resource{Name: "web", Protocol: "ssh", Host: "h", Port: 22, Tags: []string{"a"}}, &Secrets{Password: pw, PrivateKey: "KEY"})
		if err != nil {
			t.Fatal(err)
		}
		if !r.HasPassword || !r.HasPrivateKey {
			t.Fatalf("flags %+v", r)
		}
		sec, err := st.ResourceSecrets(ctx, r.ID)
		if err != nil || sec.Password != pw || sec.PrivateKey != "KEY" {
			t.Fatalf("secrets %v, %v", sec.Password == pw, err)
		}
		if kind == dbtest.SQLite {
			st.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
			for _, f := range []string{path, path + "-wal"} {
				b, _ := os.ReadFile(f)
				if bytes.Contains(b, []byte(pw)) {
					t.Fatalf("%s holds the password in clear", f)
				}
			}
		}
		var raw []byte
		if err := st.db.QueryRow(`SELECT secrets FROM resources WHERE id = ?`, r.ID).Scan(&raw); err != nil || bytes.Contains(raw, []byte(pw)) {
			t.Fatalf("the secrets column holds the password in clear (%v)", err)
		}
		// A sealed value moved to another row does not open there.
		r2, _ := st.CreateResource(ctx, Resource{Name: "db", Protocol: "ssh", Host: "h", Port: 22}, &Secrets{Password: "x"})
		if _, err := st.db.Exec(`UPDATE resources SET secrets = (SELECT secrets FROM resources WHERE id = ?) WHERE id = ?`, r.ID, r2.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := st.ResourceSecrets(ctx, r2.ID); err == nil {
			t.Fatal("swapped secrets decrypted")
		}
		// nil secrets keep what is stored.
		r.Description = "changed"
		if err := st.UpdateResource(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
		if sec, _ := st.ResourceSecrets(ctx, r.ID); sec.Password != pw {
			t.Fatal("update without secrets lost them")
		}
	})
}

func TestHostKeyPinning(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		r, _ := st.CreateResource(ctx, Resource{Name: "web", Protocol: "ssh", Host: "h", Port: 22}, nil)
		st.PinHostKey(ctx, r.ID, "key-1")
		st.PinHostKey(ctx, r.ID, "key-2") // already pinned: ignored
		got, _ := st.ResourceByID(ctx, r.ID)
		if got.HostKey != "key-1" || got.HostKeyPinnedAt.IsZero() {
			t.Fatalf("pinned %q", got.HostKey)
		}
		st.ReplaceHostKey(ctx, r.ID, "key-2")
		got, _ = st.ResourceByID(ctx, r.ID)
		if got.HostKey != "key-2" {
			t.Fatalf("replace: %q", got.HostKey)
		}
		st.ForgetHostKey(ctx, r.ID)
		got, _ = st.ResourceByID(ctx, r.ID)
		if got.HostKey != "" {
			t.Fatalf("forget: %q", got.HostKey)
		}
	})
}

func TestTokens(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		now := time.Now()
		st.now = func() time.Time { return now }
		u, _ := st.CreateUser(ctx, User{Name: "alice", Role: RoleAdmin}, "h")
		plain, tok, err := st.CreateToken(ctx, u.ID, "ci", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if got, _, err := st.TokenUser(ctx, plain); err != nil || got.ID != u.ID {
			t.Fatalf("valid token: %v", err)
		}
		for _, bad := range []string{"", "kw_nope", plain + "x", "Bearer " + plain} {
			if _, _, err := st.TokenUser(ctx, bad); !errors.Is(err, ErrNotFound) {
				t.Errorf("%q: %v", bad, err)
			}
		}
		now = now.Add(2 * time.Hour)
		if _, _, err := st.TokenUser(ctx, plain); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired token accepted: %v", err)
		}
		plain2, tok2, _ := st.CreateToken(ctx, u.ID, "ci2", time.Hour)
		if err := st.RevokeToken(ctx, u.ID+1, tok2.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revoked someone else's token: %v", err)
		}
		st.RevokeToken(ctx, u.ID, tok2.ID)
		if _, _, err := st.TokenUser(ctx, plain2); !errors.Is(err, ErrNotFound) {
			t.Fatal("revoked token accepted")
		}
		ts, _ := st.ListTokens(ctx, u.ID)
		if len(ts) != 2 || ts[1].ID != tok.ID {
			t.Fatalf("tokens %+v", ts)
		}
	})
}

func TestReopenKeepsSchema(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		sealer := newTestSealer(t)
		path := dbtest.NewBareDatabase(t, kind)
		for i := range 3 {
			st, err := Open(ctx, path, sealer)
			if err != nil {
				t.Fatalf("open %d: %v", i, err)
			}
			if _, err := st.CreateGroup(ctx, Group{Name: "g" + string(rune('a'+i))}); err != nil {
				t.Fatal(err)
			}
			st.Close()
		}
	})
}

func TestKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	a, err := LoadOrCreateKey(path)
	if err != nil || len(a) != 32 {
		t.Fatal(err)
	}
	b, _ := LoadOrCreateKey(path)
	if !bytes.Equal(a, b) {
		t.Fatal("key changed on reload")
	}
	os.Chmod(path, 0o644)
	if _, err := LoadOrCreateKey(path); err == nil {
		t.Fatal("world-readable key accepted")
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("short"), 0o600)
	if _, err := LoadOrCreateKey(path); err == nil {
		t.Fatal("short key accepted")
	}
}

func TestAuditAppendOnlyAndConcurrent(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := st.AppendAudit(ctx, func(prev string, id int64) (AuditEvent, error) {
					return AuditEvent{ID: id, Time: time.Now(), Actor: "a", Action: "x", PrevHash: prev, Hash: prev + "+" + string(rune('a'+i))}, nil
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		prev := ""
		n := 0
		st.AuditChain(ctx, func(e AuditEvent) error {
			if e.PrevHash != prev {
				t.Errorf("event %d does not chain", e.ID)
			}
			prev = e.Hash
			n++
			return nil
		})
		if n != 20 {
			t.Fatalf("%d events", n)
		}
		if _, err := st.db.Exec(`UPDATE audit_events SET actor = 'x'`); err == nil {
			t.Fatal("audit row updated")
		}
		if _, err := st.db.Exec(`DELETE FROM audit_events`); err == nil {
			t.Fatal("audit row deleted")
		}
		evs, _ := st.SearchAudit(ctx, AuditFilter{Limit: 5})
		if len(evs) != 5 || evs[0].ID != 20 {
			t.Fatalf("search: %d events, first %d", len(evs), evs[0].ID)
		}
		older, _ := st.SearchAudit(ctx, AuditFilter{BeforeID: evs[4].ID, Limit: 100})
		if len(older) != 15 {
			t.Fatalf("paging: %d", len(older))
		}
	})
}

// TestGrantModes checks that grants of a user and of their groups add up,
// and that grants made before modes existed allow sessions only.
func TestGrantModes(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		ops, _ := st.CreateGroup(ctx, Group{Name: "ops"})
		alice, _ := st.CreateUser(ctx, User{Name: "alice", Role: RoleUser, Groups: []string{"ops"}}, "h")
		res := map[string]Resource{}
		for _, name := range []string{"terminal", "files", "both", "user-and-group", "legacy", "none"} {
			res[name], _ = st.CreateResource(ctx, Resource{Name: name, Protocol: "ssh", Host: "h", Port: 22}, nil)
		}
		for _, g := range []struct {
			res, kind string
			mode      GrantMode
		}{
			{"terminal", "user", GrantTerminal}, {"files", "group", GrantFiles}, {"both", "user", GrantBoth},
			{"user-and-group", "user", GrantTerminal}, {"user-and-group", "group", GrantFiles},
		} {
			subject := alice.ID
			if g.kind == "group" {
				subject = ops.ID
			}
			if _, err := st.CreateGrantMode(ctx, res[g.res].ID, g.kind, subject, g.mode); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.CreateGrant(ctx, res["legacy"].ID, "user", alice.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateGrantMode(ctx, res["none"].ID, "user", alice.ID, "admin"); err == nil {
			t.Error("a grant of an unknown mode was accepted")
		}
		all, err := st.AccessByResource(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			res  string
			want Access
		}{
			{"terminal", Access{Terminal: true}}, {"files", Access{Files: true}}, {"both", Access{Terminal: true, Files: true}},
			{"user-and-group", Access{Terminal: true, Files: true}}, {"legacy", Access{Terminal: true}}, {"none", Access{}},
		} {
			got, err := st.AccessTo(ctx, alice.ID, res[tc.res].ID)
			if err != nil || got != tc.want || all[res[tc.res].ID] != tc.want {
				t.Errorf("access to %s = %+v (all: %+v), %v; want %+v", tc.res, got, all[res[tc.res].ID], err, tc.want)
			}
			one, err := st.ResourceAccess(ctx, alice.ID, res[tc.res].ID)
			if want := (AccessState{UserExists: true, ResourceExists: true, UserCreated: alice.CreatedAt, ResourceCreated: res[tc.res].CreatedAt, Access: tc.want}); err != nil || one != want {
				t.Errorf("ResourceAccess of %s = %+v, %v; want %+v", tc.res, one, err, want)
			}
		}
		// A deleted resource or user reads as missing, not as a grant
		// removed; a disabled user has no access.
		if err := st.DeleteResource(ctx, res["both"].ID); err != nil {
			t.Fatal(err)
		}
		if got, err := st.ResourceAccess(ctx, alice.ID, res["both"].ID); err != nil || got != (AccessState{UserExists: true, UserCreated: alice.CreatedAt}) {
			t.Errorf("ResourceAccess of a deleted resource = %+v, %v", got, err)
		}
		alice.Disabled = true
		if err := st.UpdateUser(ctx, alice); err != nil {
			t.Fatal(err)
		}
		if got, err := st.ResourceAccess(ctx, alice.ID, res["terminal"].ID); err != nil || got != (AccessState{UserExists: true, UserDisabled: true, ResourceExists: true,
			UserCreated: alice.CreatedAt, ResourceCreated: res["terminal"].CreatedAt}) {
			t.Errorf("ResourceAccess of a disabled user = %+v, %v", got, err)
		}
		if err := st.DeleteUser(ctx, alice.ID); err != nil {
			t.Fatal(err)
		}
		if got, err := st.ResourceAccess(ctx, alice.ID, res["terminal"].ID); err != nil || got != (AccessState{ResourceExists: true, ResourceCreated: res["terminal"].CreatedAt}) {
			t.Errorf("ResourceAccess of a deleted user = %+v, %v", got, err)
		}
		// SQLite gives the deleted (newest) user's id to the next one: the
		// new row tells itself apart by its creation time and starts at
		// another session epoch, so the old user's sessions do not carry over.
		st.now = func() time.Time { return alice.CreatedAt.Add(time.Second) }
		bob, err := st.CreateUser(ctx, User{Name: "bob", Role: RoleUser}, "h")
		if err != nil {
			t.Fatal(err)
		}
		// PostgreSQL never gives an id twice; the rest holds there too.
		if bob.ID != alice.ID && kind == dbtest.SQLite {
			t.Fatalf("bob got id %d, not alice's %d: the id-reuse case is not exercised", bob.ID, alice.ID)
		}
		if got, _ := st.ResourceAccess(ctx, bob.ID, res["terminal"].ID); got.UserCreated.Equal(alice.CreatedAt) || bob.SessionEpoch == alice.SessionEpoch {
			t.Errorf("bob, on alice's old id, reads as alice: %+v, epochs %d and %d", got, bob.SessionEpoch, alice.SessionEpoch)
		}
		gs, _ := st.GrantsForResource(ctx, res["files"].ID)
		if len(gs) != 1 || gs[0].Mode != GrantFiles {
			t.Errorf("grants of files = %+v", gs)
		}
	})
}

// TestMigrationVersionsUnique: two migration files with one number (two
// branches each adding "the next" one) must stop the portal, not skip one.
func TestMigrationVersionsUnique(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		st, _ := openTest(t, kind)
		fsys := fstest.MapFS{
			"migrations/0100_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER);")},
			"migrations/0100_b.sql": {Data: []byte("CREATE TABLE b (x INTEGER);")},
		}
		err := st.migrate(context.Background(), fsys, "migrations")
		if err == nil || !strings.Contains(err.Error(), "same version 100") {
			t.Fatalf("duplicate versions: %v", err)
		}
	})
}

func TestFavouritesAndRecent(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		alice, _ := st.CreateUser(ctx, User{Name: "alice", Role: RoleUser}, "h")
		web, _ := st.CreateResource(ctx, Resource{Name: "web", Protocol: "ssh", Host: "h", Port: 22}, nil)
		db, _ := st.CreateResource(ctx, Resource{Name: "db", Protocol: "ssh", Host: "h", Port: 22}, nil)
		for _, step := range []struct {
			id int64
			on bool
		}{{web.ID, true}, {web.ID, true}, {db.ID, true}, {db.ID, false}, {db.ID, false}} {
			if err := st.SetFavourite(ctx, alice.ID, step.id, step.on); err != nil {
				t.Fatal(err)
			}
		}
		favs, err := st.Favourites(ctx, alice.ID)
		if err != nil || len(favs) != 1 || !favs[web.ID] {
			t.Fatalf("favourites %v, %v", favs, err)
		}
		if err := st.DeleteResource(ctx, web.ID); err != nil {
			t.Fatal(err)
		}
		if favs, _ := st.Favourites(ctx, alice.ID); len(favs) != 0 {
			t.Fatalf("favourite of a deleted resource kept: %v", favs)
		}

		var prev string
		for i, ev := range []struct{ actor, action, target, outcome string }{
			{"alice", "connect", "web", "success"}, {"alice", "connect", "DB", "success"}, {"alice", "connect", "gone", "failure"},
			{"bob", "connect", "bob-box", "success"}, {"alice", "file.list", "files-box", "success"}, {"alice", "connect", "web", "success"},
		} {
			if _, err := st.AppendAudit(ctx, func(p string, id int64) (AuditEvent, error) {
				prev = p
				return AuditEvent{ID: id, Time: time.Unix(int64(i), 0), Actor: ev.actor, Action: ev.action, Target: ev.target,
					Outcome: ev.outcome, PrevHash: prev, Hash: fmt.Sprint(id)}, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := st.RecentTargets(ctx, "alice", "connect", 5)
		if err != nil || !slices.Equal(got, []string{"web", "db"}) {
			t.Fatalf("recent = %v, %v; want [web db]", got, err)
		}
		if got, _ := st.RecentTargets(ctx, "alice", "connect", 1); !slices.Equal(got, []string{"web"}) {
			t.Fatalf("recent with limit 1 = %v", got)
		}
	})
}

func TestSetGrantMode(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, _ := openTest(t, kind)
		alice, _ := st.CreateUser(ctx, User{Name: "alice", Role: RoleUser}, "h")
		res, _ := st.CreateResource(ctx, Resource{Name: "web", Protocol: "ssh", Host: "h", Port: 22}, nil)
		g, _ := st.CreateGrant(ctx, res.ID, "user", alice.ID)
		got, err := st.SetGrantMode(ctx, g.ID, GrantBoth)
		if err != nil || got.Mode != GrantBoth || got.SubjectName != "alice" {
			t.Fatalf("set mode: %+v, %v", got, err)
		}
		if a, _ := st.AccessTo(ctx, alice.ID, res.ID); a != (Access{Terminal: true, Files: true}) {
			t.Fatalf("access after change: %+v", a)
		}
		if _, err := st.SetGrantMode(ctx, g.ID, "root"); err == nil {
			t.Error("an unknown mode was accepted")
		}
		if _, err := st.SetGrantMode(ctx, 99999, GrantFiles); !errors.Is(err, ErrNotFound) {
			t.Errorf("missing grant: %v", err)
		}
	})
}
