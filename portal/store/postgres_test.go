package store

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/keyway-dev/keyway/portal/store/dbtest"
)

// TestMigrationsMatch checks that every SQLite migration has its
// PostgreSQL twin with the same version and name, and no more: a
// migration added to one directory only would leave the databases
// apart.
func TestMigrationsMatch(t *testing.T) {
	t.Parallel()
	names := func(dir string) []string {
		files, err := migrationFiles(migrations, dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range files {
			out = append(out, path.Base(f.name))
		}
		return out
	}
	lite, pg := names(sqliteMigrations), names(postgresMigrations)
	if !slices.Equal(lite, pg) {
		t.Fatalf("migrations differ:\nSQLite:     %v\nPostgreSQL: %v", lite, pg)
	}
	// The rebinder would turn a ? in a migration into a placeholder.
	for _, name := range pg {
		body, _ := fs.ReadFile(migrations, postgresMigrations+"/"+name)
		if strings.Contains(string(body), "?") {
			t.Errorf("%s has a ?: write it otherwise", name)
		}
	}
}

// TestConcurrentMigration opens one new database from several portals at
// once: each migration runs once, under the lock, and every portal ends
// up with the whole schema.
func TestConcurrentMigration(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		location := dbtest.NewBareDatabase(t, kind)
		sealer := newTestSealer(t)
		const portals = 4
		var wg sync.WaitGroup
		errs := make([]error, portals)
		for i := range portals {
			wg.Go(func() {
				st, err := Open(ctx, location, sealer)
				if err == nil {
					_, err = st.CreateGroup(ctx, Group{Name: "g" + string(rune('a'+i))})
					st.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("portal %d: %v", i, err)
			}
		}
		st, err := Open(ctx, location, sealer)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var n, newest int
		if err := st.db.QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &newest); err != nil {
			t.Fatal(err)
		}
		if newest != SchemaVersion() || n != SchemaVersion() {
			t.Fatalf("%d migrations applied, newest %d; want %d", n, newest, SchemaVersion())
		}
	})
}

// TestSchemaNewerRefused: a database a newer portal migrated is not
// opened by this one, which would not know its columns.
func TestSchemaNewerRefused(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		st, location := openTest(t, kind)
		if _, err := st.db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)`, SchemaVersion()+1); err != nil {
			t.Fatal(err)
		}
		st.Close()
		_, err := Open(ctx, location, st.sealer)
		if !errors.Is(err, errSchemaNewer) || !strings.Contains(err.Error(), "newer portal") {
			t.Fatalf("open a newer schema: %v", err)
		}
	})
}

// TestPostgresUnreachable: a server that does not answer is an error
// naming where, never the password.
func TestPostgresUnreachable(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback: nothing listens there, the dial is refused at once.
	_, err := Open(context.Background(), "postgres://portal:s3cret-pw@127.0.0.1:1/keyway?sslmode=disable", newTestSealer(t))
	if err == nil {
		t.Fatal("opened a database nobody serves")
	}
	msg := err.Error()
	if !strings.Contains(msg, "cannot reach PostgreSQL at 127.0.0.1:1") || !strings.Contains(msg, "database keyway") {
		t.Errorf("error does not say where: %v", msg)
	}
	if strings.Contains(msg, "s3cret-pw") {
		t.Errorf("error shows the password: %v", msg)
	}
}

func TestPostgresURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, wantErr string
		pool         int
	}{
		{"postgres://u:pw@db.example:5432/keyway", "", defaultPoolSize},
		{"postgresql://u:pw@db.example/keyway?pool_max_conns=5&sslmode=require", "", 5},
		{"postgres://u:pw@db.example/keyway?pool_max_conns=0", "pool_max_conns must be a number from 1", 0},
		{"postgres://u:pw@db.example/keyway?pool_max_conns=many", "pool_max_conns must be a number from 1", 0},
		{"postgres://u:pw@db.example:notaport/keyway", "does not parse", 0},
	} {
		cfg, pool, err := parsePostgres(tc.url)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), ":pw@") {
				t.Errorf("%s: error %v, want %q without the password", tc.url, err, tc.wantErr)
			}
			continue
		}
		if err != nil || pool != tc.pool || cfg.Database != "keyway" || cfg.Password != "pw" {
			t.Errorf("%s: pool %d, %+v, %v", tc.url, pool, cfg, err)
		}
		// pgx would send pool_max_conns to the server, which refuses it.
		if _, ok := cfg.RuntimeParams[poolSizeParam]; ok {
			t.Errorf("%s: %s left for the server", tc.url, poolSizeParam)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/var/lib/keyway/keyway.db":                         "/var/lib/keyway/keyway.db",
		"postgres://keyway:s3cret@db:5432/keyway":           "postgres://keyway:xxxxx@db:5432/keyway",
		"postgresql://keyway@db/keyway?password=s3cret":     "postgresql://keyway@db/keyway?password=xxxxx",
		"postgres://keyway:s3cret@db:port/keyway":           "postgres://(a URL that does not parse)",
		"postgres://db/keyway?sslmode=verify-full&x=s3cret": "postgres://db/keyway?sslmode=verify-full&x=s3cret",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRebind(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`SELECT 1`:                              `SELECT 1`,
		`a = ? AND b = ?`:                       `a = $1 AND b = $2`,
		`id = ?2 OR x = ?1 OR y = ?2 OR z = ?`:  `id = $2 OR x = $1 OR y = $2 OR z = $3`,
		`x = '?' AND y = ?`:                     `x = '?' AND y = $1`,
		`x = 'it''s ?' AND y = ?`:               `x = 'it''s ?' AND y = $1`,
		`"we?ird" = ? -- why?` + "\n" + `AND ?`: `"we?ird" = $1 -- why?` + "\n" + `AND $2`,
		`/* ? */ ?`:                             `/* ? */ $1`,
		`$$ ? $$ ?`:                             `$$ ? $$ $1`,
		`unterminated '?`:                       `unterminated '?`,
		`? /* unterminated ?`:                   `$1 /* unterminated ?`,
		`? $$ unterminated ?`:                   `$1 $$ unterminated ?`,
		`x LIKE ? ESCAPE '\'`:                   `x LIKE $1 ESCAPE '\'`,
	} {
		if got := rebind(in); got != want {
			t.Errorf("rebind(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSQLiteOnlyRefused: what needs the SQLite file says so on
// PostgreSQL, pointing to pg_dump.
func TestSQLiteOnlyRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, location := openTest(t, dbtest.Postgres)
	if _, err := Backup(ctx, location, t.TempDir()+"/copy.db", nil); !errors.Is(err, ErrSQLiteOnly) {
		t.Errorf("Backup: %v", err)
	}
	if _, err := OpenReadOnly(ctx, location, st.sealer); !errors.Is(err, ErrSQLiteOnly) {
		t.Errorf("OpenReadOnly: %v", err)
	}
	if _, err := st.Check(ctx); !errors.Is(err, ErrSQLiteOnly) {
		t.Errorf("Check: %v", err)
	}
	if !strings.Contains(ErrSQLiteOnly.Error(), "pg_dump") {
		t.Errorf("the message does not point to pg_dump: %v", ErrSQLiteOnly)
	}
}

// TestTextSearchWords: PostgreSQL's words are FTS4's (letters and digits,
// lower case), bounded.
func TestTextSearchWords(t *testing.T) {
	t.Parallel()
	if got := searchWords("$ ssh Root@db-1.example:22 -- DÉJÀ vu"); got != "ssh root db 1 example 22 deja vu" {
		t.Errorf("words %q", got)
	}
	if got := tsQuery(`kw-42-ok "login" echo* !!! Éa`); got != "('kw' <-> '42' <-> 'ok') & ('login') & ('echo':*) & ('ea')" {
		t.Errorf("query %q", got)
	}
	long := strings.Repeat("same ", tsMaxPositions) + strings.Repeat("other ", 10) + strings.Repeat("x", 100)
	if got := searchWords(long); !strings.HasSuffix(got, "same other "+strings.Repeat("x", 100)) {
		t.Errorf("past the positions a tsvector keeps, repeated words are not dropped: ...%q", got[len(got)-120:])
	}
	var huge strings.Builder
	huge.WriteString(strings.Repeat("abcdefghij0123456789 ", 1<<16)) // 1.3 MiB
	// and 64 Ki different words
	for i := range 1 << 16 {
		huge.WriteString("w" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26)) + string(rune('a'+i/17576%26)) + " ")
	}
	if got := searchWords(huge.String()); len(got) > tsMaxWords {
		t.Errorf("%d bytes of words, more than %d", len(got), tsMaxWords)
	}
}

// TestSchemasMatch migrates both databases and compares what they hold:
// the same tables, the same columns in each, the same named indexes. A
// migration written for one database only, or a column spelt otherwise,
// fails here. Known differences are listed.
func TestSchemasMatch(t *testing.T) {
	t.Parallel()
	lite, _ := openTest(t, dbtest.SQLite)
	pg, _ := openTest(t, dbtest.Postgres)
	list := func(st *Store, q string, args ...any) []string {
		t.Helper()
		rows, err := st.db.Query(q, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		slices.Sort(out)
		return out
	}
	// SQLite's FTS4 keeps recordings_text's rows in shadow tables.
	liteTables := slices.DeleteFunc(list(lite, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`),
		func(n string) bool { return strings.HasPrefix(n, "recordings_text_") })
	pgTables := list(pg, `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)
	if len(liteTables) < 20 {
		t.Fatalf("only tables %v: the query finds nothing", liteTables)
	}
	if !slices.Equal(liteTables, pgTables) {
		t.Fatalf("tables differ:\nSQLite:     %v\nPostgreSQL: %v", liteTables, pgTables)
	}
	for _, table := range liteTables {
		liteCols := list(lite, `SELECT name FROM pragma_table_info(?)`, table)
		pgCols := list(pg, `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ?`, table)
		if table == "recordings_text" {
			// PostgreSQL keeps the words as well (a tsvector); SQLite's
			// FTS4 table indexes its text column itself.
			pgCols = slices.DeleteFunc(pgCols, func(c string) bool { return c == "words" || c == "docid" })
		}
		if !slices.Equal(liteCols, pgCols) {
			t.Errorf("columns of %s differ:\nSQLite:     %v\nPostgreSQL: %v", table, liteCols, pgCols)
		}
	}
	// Named indexes; those behind primary keys and UNIQUE are named by
	// each database its own way.
	liteIdx := list(lite, `SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex_%'`)
	pgIdx := slices.DeleteFunc(list(pg, `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()`), func(n string) bool {
		return strings.HasSuffix(n, "_pkey") || strings.HasSuffix(n, "_key") || n == "recordings_text_words"
	})
	if !slices.Equal(liteIdx, pgIdx) {
		t.Errorf("indexes differ:\nSQLite:     %v\nPostgreSQL: %v", liteIdx, pgIdx)
	}
}
