package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
)

// SchemaVersion is the newest migration this binary knows: the schema
// version of every database it opened. A database with a newer one was
// written by a newer portal.
func SchemaVersion() int {
	names, _ := fs.Glob(migrations, "migrations/*.sql")
	v := 0
	for _, name := range names {
		n, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(name, "migrations/"), "_", 2)[0])
		if err == nil && n > v {
			v = n
		}
	}
	return v
}

// backupPagesPerStep is how many pages one backup step copies (4 MiB of
// 4 KiB pages): between steps the copy yields, and a cancelled context
// stops it.
const backupPagesPerStep = 1024

// backupBusyWait is how long a step that found the database locked waits
// before trying again.
const backupBusyWait = 50 * time.Millisecond

// BackupStats is what Backup did.
type BackupStats struct {
	// Pages is the size of the copy in pages, Steps how many steps
	// copied them.
	Pages, Steps int
}

// Backup copies the database file at src, which a running portal may be
// writing, into a new file at dst (created 0600; it must not exist), with
// SQLite's online backup API in steps of backupPagesPerStep pages. The
// copy is one snapshot: a read transaction held on src for the whole copy
// fixes what it sees, so writers (never blocked by a reader in WAL mode)
// neither restart the copy nor tear it. The copy is a single
// self-contained file (rollback journal mode); src is only read.
// onStep, if not nil, is called after each step with the pages copied so
// far and the total.
func Backup(ctx context.Context, src, dst string, onStep func(copied, total int)) (BackupStats, error) {
	var stats BackupStats
	if IsPostgres(src) {
		return stats, ErrSQLiteOnly
	}
	if _, err := os.Stat(src); err != nil {
		return stats, fmt.Errorf("database %s: %w", src, err)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, dbFileMode)
	if err != nil {
		return stats, fmt.Errorf("create database copy: %w", err)
	}
	f.Close()
	srcDB, err := sql.Open("sqlite3", "file:"+src+"?"+url.Values{"_busy_timeout": {"10000"}}.Encode())
	if err != nil {
		return stats, fmt.Errorf("open %s: %w", src, err)
	}
	defer srcDB.Close()
	dstDB, err := sql.Open("sqlite3", "file:"+dst)
	if err != nil {
		return stats, fmt.Errorf("open %s: %w", dst, err)
	}
	defer dstDB.Close()
	srcConn, err := srcDB.Conn(ctx)
	if err != nil {
		return stats, fmt.Errorf("open %s: %w", src, err)
	}
	defer srcConn.Close()
	dstConn, err := dstDB.Conn(ctx)
	if err != nil {
		return stats, fmt.Errorf("open %s: %w", dst, err)
	}
	defer dstConn.Close()
	// The snapshot: a read transaction begun now and held to the end.
	if _, err := srcConn.ExecContext(ctx, `BEGIN`); err != nil {
		return stats, fmt.Errorf("begin reading %s: %w", src, err)
	}
	defer srcConn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
	var n int
	if err := srcConn.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master`).Scan(&n); err != nil {
		return stats, fmt.Errorf("read %s: %w", src, err)
	}
	err = dstConn.Raw(func(dc any) error {
		return srcConn.Raw(func(sc any) error {
			b, err := dc.(*sqlite3.SQLiteConn).Backup("main", sc.(*sqlite3.SQLiteConn), "main")
			if err != nil {
				return err
			}
			defer b.Close()
			for {
				before := b.Remaining()
				done, err := b.Step(backupPagesPerStep)
				stats.Steps++
				if err != nil {
					return err
				}
				if done {
					stats.Pages = b.PageCount()
					return b.Close()
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				if onStep != nil {
					onStep(b.PageCount()-b.Remaining(), b.PageCount())
				}
				if b.Remaining() == before {
					// Busy or locked: wait, do not spin.
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(backupBusyWait):
					}
				}
			}
		})
	})
	if err != nil {
		return stats, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if _, err := dstConn.ExecContext(ctx, `PRAGMA journal_mode=DELETE`); err != nil {
		return stats, fmt.Errorf("finish the copy: %w", err)
	}
	if err := dstConn.Close(); err != nil {
		return stats, err
	}
	if err := dstDB.Close(); err != nil {
		return stats, fmt.Errorf("close the copy: %w", err)
	}
	return stats, nil
}

// OpenReadOnly opens an existing database file read-only, without
// migrating it: for checking a copy (a backup) as it is.
func OpenReadOnly(ctx context.Context, path string, sealer *Sealer) (*Store, error) {
	if IsPostgres(path) {
		return nil, ErrSQLiteOnly
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?"+url.Values{"mode": {"ro"}, "_busy_timeout": {"10000"}}.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		if isDamaged(err) {
			return nil, fmt.Errorf("%s: %w, or the database is damaged: SQLite says %v", path, ErrNotDatabase, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &Store{db: db, sealer: sealer, now: time.Now}, nil
}

// maxIntegrityProblems bounds the problems IntegrityCheck reports.
const maxIntegrityProblems = 10

// ErrNotDatabase is returned by Check for a file that is not a Keyway
// database.
var ErrNotDatabase = errors.New("not a Keyway database")

// Check runs PRAGMA integrity_check and returns the schema version (the
// newest migration applied). A damaged database is an error listing the
// first problems SQLite found.
func (s *Store) Check(ctx context.Context) (schema int, err error) {
	if s.pg {
		return 0, ErrSQLiteOnly
	}
	problems, err := s.integrityCheck(ctx)
	if isDamaged(err) {
		return 0, fmt.Errorf("%w, or the database is damaged: SQLite says %v", ErrNotDatabase, err)
	}
	if err != nil {
		return 0, fmt.Errorf("integrity check: %w", err)
	}
	if len(problems) > 0 {
		return 0, fmt.Errorf("the database is damaged: %s", strings.Join(problems, "; "))
	}
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&schema); err != nil {
		return 0, fmt.Errorf("%w: no schema version (%v)", ErrNotDatabase, err)
	}
	return schema, nil
}

// isDamaged reports whether err is SQLite finding a file no database or
// a damaged one.
func isDamaged(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrNotADB || se.Code == sqlite3.ErrCorrupt)
}

// integrityCheck returns what PRAGMA integrity_check found wrong.
func (s *Store) integrityCheck(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `PRAGMA integrity_check(`+strconv.Itoa(maxIntegrityProblems)+`)`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		if p != "ok" {
			problems = append(problems, p)
		}
	}
	return problems, rows.Err()
}

// Counts is how many rows the main tables hold, for telling an operator
// what a backup holds.
type Counts struct {
	Users, Resources, Gateways, Recordings, AuditEvents int64
}

// Count returns the Counts.
func (s *Store) Count(ctx context.Context) (Counts, error) {
	var c Counts
	err := s.db.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM resources),
		(SELECT COUNT(*) FROM gateways), (SELECT COUNT(*) FROM recordings), (SELECT COUNT(*) FROM audit_events)`).
		Scan(&c.Users, &c.Resources, &c.Gateways, &c.Recordings, &c.AuditEvents)
	if err != nil {
		return c, fmt.Errorf("count rows: %w", err)
	}
	return c, nil
}

// IsDiskFull reports whether err is SQLite's "database or disk is full".
func IsDiskFull(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrFull
}
