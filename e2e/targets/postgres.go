package targets

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// postgresGlob finds Debian's PostgreSQL server binaries (package
// postgresql, which depends on the versioned postgresql-NN).
const postgresGlob = "/usr/lib/postgresql/*/bin/postgres"

// postgresSystemUser runs the server: postgres refuses to run as root, and
// Debian's package creates this account.
const postgresSystemUser = "postgres"

// postgresStartTimeout bounds initdb plus the first accepted connection on
// a loaded machine.
const postgresStartTimeout = 60 * time.Second

// PostgresUser is the database role the tests sign in as, by password over
// TCP; its database has the same name.
const PostgresUser = "keyway"

// Postgres is a running PostgreSQL server on 127.0.0.1 with its data and
// unix sockets in a private directory, removed when it stops.
type Postgres struct {
	Host     string
	Port     int
	User     string
	Password string
	Database string

	bin    string // the directory of postgres, initdb, pg_isready
	dir    string
	cmd    *exec.Cmd
	done   <-chan struct{}
	stderr *bytes.Buffer
}

// DSN returns the URL of the test database, password included:
// postgres://user:password@host:port/database?sslmode=disable.
func (p *Postgres) DSN() string { return p.DatabaseDSN(p.Database) }

// DatabaseDSN returns the URL of another database on this server, as the
// test role (which may create databases).
func (p *Postgres) DatabaseDSN(database string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(p.User, p.Password), Host: p.Addr(),
		Path: "/" + database, RawQuery: "sslmode=disable"}
	return u.String()
}

// Addr returns host:port.
func (p *Postgres) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// Env returns the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD,
// PGDATABASE) for psql against host:port, e.g. a tunnel's local end.
func (p *Postgres) Env(host string, port int) []string {
	return []string{"PGHOST=" + host, "PGPORT=" + strconv.Itoa(port), "PGUSER=" + p.User,
		"PGPASSWORD=" + p.Password, "PGDATABASE=" + p.Database, "PGCONNECT_TIMEOUT=20"}
}

// StartPostgres creates a database cluster in a new directory under the
// system's temporary directory (owned by the postgres account, which must
// be able to reach it, unlike a test's 0700 TempDir) and starts postgres on
// a free loopback port. Password authentication over TCP, trust on the
// private unix socket.
func StartPostgres(ctx context.Context) (*Postgres, error) {
	bins, _ := filepath.Glob(postgresGlob)
	if len(bins) == 0 {
		return nil, errors.New("PostgreSQL not found: apt-get install postgresql")
	}
	slices.Sort(bins) // the newest major version last (two digits since 10)
	u, err := user.Lookup(postgresSystemUser)
	if err != nil {
		return nil, fmt.Errorf("system user %s (made by Debian's postgresql package): %w", postgresSystemUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "keyway-postgres-")
	if err != nil {
		return nil, err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("give %s to %s (the tests run as root): %w", dir, postgresSystemUser, err)
	}
	p := &Postgres{Host: "127.0.0.1", User: PostgresUser, Password: "pg-" + rand.Text()[:16],
		Database: PostgresUser, bin: filepath.Dir(bins[len(bins)-1]), dir: dir}
	cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if err := p.initdb(ctx, cred); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A port picked free may be taken before postgres binds it; try again then.
	for attempt := 0; ; attempt++ {
		if p.Port, err = freePort(); err != nil {
			break
		}
		if err = p.start(ctx, cred); err == nil || attempt == 4 {
			break
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := p.createRole(ctx); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

func (p *Postgres) initdb(ctx context.Context, cred *syscall.SysProcAttr) error {
	// initdb reads the superuser's password from a file it can open.
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "initdb"), "-D", filepath.Join(p.dir, "data"),
		"-U", postgresSystemUser, "--auth-local=trust", "--auth-host=scram-sha-256",
		"-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	cmd.SysProcAttr = cred
	cmd.Dir = p.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v: %s", err, out)
	}
	return nil
}

func (p *Postgres) start(ctx context.Context, cred *syscall.SysProcAttr) error {
	p.stderr = &bytes.Buffer{}
	p.cmd = exec.Command(filepath.Join(p.bin, "postgres"), "-D", filepath.Join(p.dir, "data"),
		"-h", p.Host, "-p", strconv.Itoa(p.Port), "-k", p.dir,
		"-c", "fsync=off", "-c", "max_connections=200", "-c", "logging_collector=off")
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred.Credential}
	p.cmd.Dir = p.dir
	p.cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	p.cmd.Stderr = p.stderr
	var err error
	if p.done, err = startChild(p.cmd); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	if err := p.waitReady(ctx); err != nil {
		p.stop()
		return fmt.Errorf("postgres on %s: %w: %s", p.Addr(), err, strings.TrimSpace(p.stderr.String()))
	}
	return nil
}

// waitReady asks pg_isready (over the unix socket: no password needed)
// until the server accepts connections, it exits, or the time runs out.
func (p *Postgres) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, postgresStartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		// pg_isready exits 0 once connections are accepted, 1 while the
		// server is starting, 2 while nothing answers.
		if exec.CommandContext(ctx, filepath.Join(p.bin, "pg_isready"), "-q", "-h", p.dir, "-p", strconv.Itoa(p.Port), "-t", "2").Run() == nil {
			return nil
		}
		select {
		case <-p.done:
			return errors.New("server exited before accepting connections")
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections after %s", postgresStartTimeout)
		case <-tick.C:
		}
	}
}

// createRole makes the test role and its database, as the superuser over
// the unix socket.
func (p *Postgres) createRole(ctx context.Context) error {
	// Separate -c commands: CREATE DATABASE cannot share a transaction.
	cmd := exec.CommandContext(ctx, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", p.dir, "-p", strconv.Itoa(p.Port),
		"-U", postgresSystemUser, "-d", "postgres",
		// CREATEDB: tests give each test a database of its own.
		"-c", fmt.Sprintf("CREATE ROLE %s LOGIN CREATEDB PASSWORD '%s'", p.User, p.Password),
		"-c", fmt.Sprintf("CREATE DATABASE %s OWNER %s", p.Database, p.User))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("create role %s (psql is in postgresql-client): %v: %s", p.User, err, out)
	}
	return nil
}

// stop ends the server with a fast shutdown (SIGINT: clients are
// disconnected) and waits for it.
func (p *Postgres) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	signalAndWait(p.cmd, p.done, syscall.SIGINT, 10*time.Second)
}

// Stop ends the server and removes its directory.
func (p *Postgres) Stop() error {
	p.stop()
	return os.RemoveAll(p.dir)
}

// NewPostgres starts PostgreSQL for a test and stops it when the test ends.
func NewPostgres(t testing.TB) *Postgres {
	t.Helper()
	p, err := StartPostgres(context.Background())
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { p.Stop() })
	return p
}
