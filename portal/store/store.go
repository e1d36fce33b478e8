// Package store keeps the portal's state in SQLite (the default) or
// PostgreSQL: users, groups, resources with their sealed credentials,
// grants, API tokens, settings and the audit log. It is the only package
// with SQL. Queries are written once, with ? placeholders and SQL both
// databases accept; the few places that differ ask s.pg.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
)

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a name is already taken.
var ErrConflict = errors.New("already exists")

//go:embed migrations/*.sql migrations/postgres/*.sql
var migrations embed.FS

// Migration directories in migrations: the same versions and names in
// each, one per database.
const (
	sqliteMigrations   = "migrations"
	postgresMigrations = "migrations/postgres"
)

// Store is the portal's database.
type Store struct {
	db     *sql.DB
	sealer *Sealer
	now    func() time.Time
	// pg is true on PostgreSQL.
	pg bool
}

// Open opens the database at location and brings its schema up to date:
// a postgres:// or postgresql:// URL is a PostgreSQL database (which must
// exist); anything else is the path of a SQLite file, created if missing.
func Open(ctx context.Context, location string, sealer *Sealer) (*Store, error) {
	if IsPostgres(location) {
		return openPostgres(ctx, location, sealer)
	}
	return openSQLite(ctx, location, sealer)
}

func openSQLite(ctx context.Context, path string, sealer *Sealer) (*Store, error) {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_foreign_keys", "on")
	q.Set("_busy_timeout", "10000")
	q.Set("_synchronous", "NORMAL")
	// Writers take the lock when their transaction starts, so concurrent
	// writers wait (busy_timeout) instead of failing on upgrade.
	q.Set("_txlock", "immediate")
	if err := restrictFiles(path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{db: db, sealer: sealer, now: time.Now}
	if err := s.migrate(ctx, migrations, sqliteMigrations); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// dbFileMode is the mode of the database and its WAL and shared-memory
// files: they hold password hashes, sealed credentials and the audit log.
const dbFileMode = 0o600

// restrictFiles creates the database file owner-only if it is missing
// (SQLite would create it with the process umask, often 0644, and gives
// its -wal and -shm files the database file's mode), and takes group and
// other access away from a database an older portal created.
func restrictFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, dbFileMode)
	if err != nil {
		return fmt.Errorf("create database file %s: %w", path, err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("check the mode of %s: %w", p, err)
		}
		if fi.Mode().Perm()&^dbFileMode != 0 {
			if err := os.Chmod(p, dbFileMode); err != nil {
				return fmt.Errorf("make %s readable by its owner only: %w", p, err)
			}
		}
	}
	return nil
}

// DB returns the underlying database, for the web session store.
func (s *Store) DB() *sql.DB { return s.db }

// Postgres reports whether the database is PostgreSQL.
func (s *Store) Postgres() bool { return s.pg }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// errSchemaNewer is returned by Open for a database migrated past what
// this build knows.
var errSchemaNewer = errors.New("the database was migrated by a newer portal")

// migrate applies the migrations in fsys (dir/NNNN_name.sql) that the
// database has not seen yet, in order, each in its own transaction. It
// refuses a database whose schema is newer than the newest migration in
// fsys: this build would not know what the newer columns mean.
func (s *Store) migrate(ctx context.Context, fsys fs.FS, dir string) error {
	if err := s.inMigrationTx(ctx, func(tx *sql.Tx) error {
		// The same table in both; SQLite's as it always was.
		q := `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`
		if s.pg {
			q = `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)`
		}
		_, err := tx.ExecContext(ctx, q)
		return err
	}); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	files, err := migrationFiles(fsys, dir)
	if err != nil {
		return err
	}
	var newest int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("read the schema version: %w", err)
	}
	if known := files[len(files)-1].version; newest > known {
		return fmt.Errorf("%w: its schema is version %d and this portal knows up to version %d; run the newer portal (or restore a backup made with this one)", errSchemaNewer, newest, known)
	}
	for _, f := range files {
		if err := s.applyMigration(ctx, fsys, f.version, f.name); err != nil {
			return fmt.Errorf("migration %s: %w", path.Base(f.name), err)
		}
	}
	return nil
}

// migrationFile is one NNNN_name.sql.
type migrationFile struct {
	version int
	name    string // the path in its fs.FS
}

// migrationFiles lists dir/NNNN_name.sql in version order.
func migrationFiles(fsys fs.FS, dir string) ([]migrationFile, error) {
	names, err := fs.Glob(fsys, dir+"/*.sql")
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no migrations in %s", dir)
	}
	sort.Strings(names)
	// Two files with one version number would apply only the first, and
	// silently; branches that both add "the next" migration do that.
	seen := map[int]string{}
	var out []migrationFile
	for _, name := range names {
		base := path.Base(name)
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number", base)
		}
		if other, ok := seen[version]; ok {
			return nil, fmt.Errorf("migrations %s and %s have the same version %d: renumber one", other, base, version)
		}
		seen[version] = base
		out = append(out, migrationFile{version, name})
	}
	return out, nil
}

func (s *Store) applyMigration(ctx context.Context, fsys fs.FS, version int, name string) error {
	return s.inMigrationTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, version, s.now().Unix())
		return err
	})
}

// migrationLock is the PostgreSQL advisory lock key every migration
// transaction takes first, so that portals starting at once on one
// database migrate one after the other; the next finds the work done.
// SQLite's write lock (_txlock=immediate) does the same there.
const migrationLock = 0x6b657977_6d696772 // "keywmigr"

// inMigrationTx runs fn in a transaction holding the migration lock.
func (s *Store) inMigrationTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if s.pg {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(migrationLock)); err != nil {
				return fmt.Errorf("wait for the migration lock: %w", err)
			}
		}
		return fn(tx)
	})
}

// writeLock is the PostgreSQL advisory lock key every write transaction
// (inTx) takes first.
const writeLock = 0x6b657977_77726974 // "keywwrit"

// inTx runs fn in a write transaction. Write transactions run one at a
// time on both databases, as the store's read-then-write transactions
// (the audit hash chain, request bounds, counters) expect: SQLite takes
// its write lock at BEGIN (_txlock=immediate), PostgreSQL an advisory
// lock held until the transaction ends.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if s.pg {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(writeLock)); err != nil {
			return fmt.Errorf("wait for the write lock: %w", err)
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// isUnique reports whether err is a UNIQUE (or primary key) constraint
// violation, from either database.
func isUnique(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == pgUniqueViolation
}

// ConflictError says in words which name is taken; it matches ErrConflict.
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// conflict turns a unique violation into a *ConflictError saying what.
func conflict(err error, what string) error {
	if isUnique(err) {
		return &ConflictError{Msg: what}
	}
	return err
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// GetSetting returns a setting's value, or "" when it is not set.
func (s *Store) GetSetting(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read setting %s: %w", key, err)
	}
	return v, nil
}

// SetSetting sets a setting; an empty value deletes it.
func (s *Store) SetSetting(ctx context.Context, key, value string) error {
	var err error
	if value == "" {
		_, err = s.db.ExecContext(ctx, `DELETE FROM settings WHERE key = ?`, key)
	} else {
		_, err = s.db.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	}
	if err != nil {
		return fmt.Errorf("write setting %s: %w", key, err)
	}
	return nil
}
