package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// defaultPoolSize is how many connections one portal opens to PostgreSQL
// at most, unless the URL's pool_max_conns says otherwise: every replica
// takes this many of the server's max_connections (100 by default).
const defaultPoolSize = 20

// maxPoolSize bounds pool_max_conns.
const maxPoolSize = 1000

// poolSizeParam is the URL parameter that sets the pool size; it is taken
// out of the URL before pgx sees it (pgx would send it to the server as a
// setting, which the server refuses).
const poolSizeParam = "pool_max_conns"

// pgConnectTimeout bounds reaching the server when the URL has no
// connect_timeout of its own.
const pgConnectTimeout = 15 * time.Second

// pgUniqueViolation is PostgreSQL's SQLSTATE for a unique violation.
const pgUniqueViolation = "23505"

// ErrSQLiteOnly is returned for what only a SQLite database can do (online
// backup, restore, read-only open, integrity check).
var ErrSQLiteOnly = errors.New("this works on the SQLite database only; back up PostgreSQL with pg_dump (see docs/backups.md)")

// IsPostgres reports whether location is a PostgreSQL URL rather than a
// SQLite file path.
func IsPostgres(location string) bool {
	return strings.HasPrefix(location, "postgres://") || strings.HasPrefix(location, "postgresql://")
}

// Redact returns location fit for a log line: a URL's password (in its
// user part or a password parameter) replaced by xxxxx. A path is
// returned as it is.
func Redact(location string) string {
	if !IsPostgres(location) {
		return location
	}
	u, err := url.Parse(location)
	if err != nil {
		// url.Parse's error quotes the URL, password and all.
		return "postgres://(a URL that does not parse)"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// openPostgres connects to the database at rawURL and migrates it.
func openPostgres(ctx context.Context, rawURL string, sealer *Sealer) (*Store, error) {
	cfg, poolSize, err := parsePostgres(rawURL)
	if err != nil {
		return nil, err
	}
	where := fmt.Sprintf("PostgreSQL at %s (database %s, user %s)", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), cfg.Database, cfg.User)
	db := sql.OpenDB(pgConnector{stdlib.GetConnector(*cfg), &rebinder{cache: map[string]string{}}})
	db.SetMaxOpenConns(poolSize)
	db.SetMaxIdleConns(poolSize)
	// Idle connections are closed after a while so that a quiet replica
	// gives its share of max_connections back.
	db.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, pgConnectTimeout)
	err = db.PingContext(pingCtx)
	cancel()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot reach %s: %w", where, err)
	}
	s := &Store{db: db, sealer: sealer, now: time.Now, pg: true}
	if err := s.migrate(ctx, migrations, postgresMigrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return s, nil
}

// parsePostgres parses a PostgreSQL URL and takes the pool size out of it.
func parsePostgres(rawURL string) (*pgx.ConnConfig, int, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, 0, fmt.Errorf("the database URL %s does not parse", Redact(rawURL))
	}
	poolSize := defaultPoolSize
	q := u.Query()
	if v := q.Get(poolSizeParam); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPoolSize {
			return nil, 0, fmt.Errorf("database URL: %s must be a number from 1 to %d, not %q", poolSizeParam, maxPoolSize, v)
		}
		poolSize = n
	}
	q.Del(poolSizeParam)
	u.RawQuery = q.Encode()
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		// pgx's message redacts the password.
		return nil, 0, fmt.Errorf("database URL: %w", err)
	}
	if !q.Has("connect_timeout") {
		cfg.ConnectTimeout = pgConnectTimeout
	}
	return cfg, poolSize, nil
}

// pgConnector makes pgConns.
type pgConnector struct {
	driver.Connector
	rb *rebinder
}

// Connect implements driver.Connector.
func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return pgConn{conn.(*stdlib.Conn), c.rb}, nil
}

// pgConn is pgx's database/sql connection taking the store's SQL: ?
// placeholders become $N, and bool arguments 1 or 0 as SQLite stores them
// (the columns are integers in both databases).
type pgConn struct {
	*stdlib.Conn
	rb *rebinder
}

// Prepare implements driver.Conn.
func (c pgConn) Prepare(query string) (driver.Stmt, error) {
	return c.Conn.Prepare(c.rb.rebind(query))
}

// PrepareContext implements driver.ConnPrepareContext.
func (c pgConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(ctx, c.rb.rebind(query))
}

// ExecContext implements driver.ExecerContext.
func (c pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, c.rb.rebind(query), args)
}

// QueryContext implements driver.QueryerContext.
func (c pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(ctx, c.rb.rebind(query), args)
}

// CheckNamedValue implements driver.NamedValueChecker.
func (c pgConn) CheckNamedValue(nv *driver.NamedValue) error {
	if b, ok := nv.Value.(bool); ok {
		nv.Value = int64(0)
		if b {
			nv.Value = int64(1)
		}
	}
	return c.Conn.CheckNamedValue(nv)
}

// maxRebindCache bounds the rebound statements kept; the store's queries
// are a fixed set (filters combine into a few hundred at most).
const maxRebindCache = 4096

// rebinder rewrites statements for PostgreSQL, each once.
type rebinder struct {
	mu    sync.Mutex
	cache map[string]string
}

func (r *rebinder) rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	r.mu.Lock()
	out, ok := r.cache[q]
	r.mu.Unlock()
	if ok {
		return out
	}
	out = rebind(q)
	r.mu.Lock()
	if len(r.cache) < maxRebindCache {
		r.cache[q] = out
	}
	r.mu.Unlock()
	return out
}

// rebind turns SQLite's ? and ?NNN placeholders into PostgreSQL's $N,
// outside quoted strings and identifiers, comments and $$-quoted bodies.
// A bare ? is numbered one past the largest number given before it, as
// SQLite numbers it.
func rebind(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	largest := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			// A doubled quote inside stands for one.
			j := i + 1
			for j < len(q) {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c {
						j += 2
						continue
					}
					break
				}
				j++
			}
			end := min(j+1, len(q))
			b.WriteString(q[i:end])
			i = end - 1
		case c == '-' && strings.HasPrefix(q[i:], "--"):
			end := strings.IndexByte(q[i:], '\n')
			if end < 0 {
				end = len(q) - i
			}
			b.WriteString(q[i : i+end])
			i += end - 1
		case strings.HasPrefix(q[i:], "/*") || strings.HasPrefix(q[i:], "$$"):
			// A block comment or a $$-quoted body runs to its closing
			// pair, or to the end.
			closing := "*/"
			if c == '$' {
				closing = "$$"
			}
			end := strings.Index(q[i+2:], closing)
			if end < 0 {
				end = len(q) - i
			} else {
				end += 4
			}
			b.WriteString(q[i : i+end])
			i += end - 1
		case c == '?':
			j := i + 1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			n := largest + 1
			if j > i+1 {
				n, _ = strconv.Atoi(q[i+1 : j])
			}
			largest = max(largest, n)
			b.WriteString("$" + strconv.Itoa(n))
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
