// Package dbtest makes empty databases for the store's tests: SQLite
// file paths in a test's temporary directory, and PostgreSQL databases on
// one server per test binary (Debian's postgresql, started on loopback on
// first use). It does not import the store, so the store's own tests use
// it too; storetest opens stores on it.
//
// A package that makes PostgreSQL databases calls Main from its TestMain,
// so that the server stops when its tests end:
//
//	func TestMain(m *testing.M) { dbtest.Main(m) }
package dbtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/keyway-dev/keyway/e2e/targets"
)

// Kind is a database the store runs on.
type Kind string

// The kinds of database.
const (
	SQLite   Kind = "sqlite"
	Postgres Kind = "postgres"
)

// Kinds lists every database the store's tests run on.
var Kinds = []Kind{SQLite, Postgres}

// Each runs fn as one parallel subtest per kind of database, named after
// the kind.
func Each(t *testing.T, fn func(t *testing.T, kind Kind)) {
	t.Helper()
	for _, kind := range Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			fn(t, kind)
		})
	}
}

// NewDatabase returns where a new, empty database is, for the store's Open: a
// SQLite file path in a temporary directory, or the URL of a new
// PostgreSQL database, dropped when the test ends.
func NewDatabase(t testing.TB, kind Kind) string {
	t.Helper()
	switch kind {
	case SQLite:
		return filepath.Join(t.TempDir(), "keyway.db")
	case Postgres:
		return server.newDatabase(t, true)
	}
	t.Fatalf("unknown kind of database %q", kind)
	return ""
}

// NewBareDatabase is NewDatabase without the template: a PostgreSQL
// database as CREATE DATABASE makes it, for tests of migrating.
func NewBareDatabase(t testing.TB, kind Kind) string {
	t.Helper()
	if kind == Postgres {
		return server.newDatabase(t, false)
	}
	return NewDatabase(t, kind)
}

// PostgresServer returns the test binary's PostgreSQL server, starting it
// on first use.
func PostgresServer(t testing.TB) *targets.Postgres {
	t.Helper()
	if err := server.start(); err != nil {
		t.Fatal(err)
	}
	return server.pg
}

// Main runs the tests of a package and then stops the PostgreSQL server
// they started, if any.
func Main(m *testing.M) { MainWithTemplate(m, nil) }

// MainWithTemplate is Main where every new PostgreSQL database is a copy
// of one that prepare (given its URL) filled once, typically by migrating
// it: a copy takes milliseconds, fifteen migrations most of a second.
// prepare must close its connections before it returns.
func MainWithTemplate(m *testing.M, prepare func(ctx context.Context, url string) error) {
	server.mainRuns.Store(true)
	server.prepare = prepare
	code := m.Run()
	server.stop()
	os.Exit(code)
}

// server is the test binary's one PostgreSQL server: starting one costs
// about a second, a database on it a few milliseconds. It is shared state
// by design, owned by Main, which stops it.
var server pgServer

// spareDatabases is how many copies of the template are made ahead of the
// tests that take them: a copy takes a few hundred milliseconds on a
// loaded machine, which the tests would otherwise wait for one by one.
const spareDatabases = 4

// maxDropQueue bounds the databases waiting to be dropped; past it they
// are left to go with the server's directory.
const maxDropQueue = 1024

type pgServer struct {
	mainRuns atomic.Bool
	once     sync.Once
	err      error
	pg       *targets.Postgres
	admin    *sql.DB // to the role's own database, for CREATE DATABASE
	prepare  func(ctx context.Context, url string) error
	template string // "" for template1
	next     atomic.Int64

	spares   chan spare  // template copies made ahead, when there is a template
	drops    chan string // databases tests are done with
	stopping chan struct{}
	wg       sync.WaitGroup // makeSpares and dropUsed
}

// spare is a database made ahead, or why it could not be.
type spare struct {
	name string
	err  error
}

func (s *pgServer) start() error {
	s.once.Do(func() {
		if !s.mainRuns.Load() {
			s.err = fmt.Errorf("dbtest: PostgreSQL databases need func TestMain(m *testing.M) { dbtest.Main(m) } (or storetest.Main) in the test package, which stops the server")
			return
		}
		if s.pg, s.err = targets.StartPostgres(context.Background()); s.err != nil {
			s.err = fmt.Errorf("start PostgreSQL for the store tests: %w", s.err)
			return
		}
		cfg, err := pgx.ParseConfig(s.pg.DSN())
		if err != nil {
			s.err = err
			return
		}
		s.admin = stdlib.OpenDB(*cfg)
		s.drops = make(chan string, maxDropQueue)
		s.stopping = make(chan struct{})
		s.wg.Add(1)
		go s.dropUsed()
		if s.prepare != nil {
			s.template = "kw_template"
			if _, s.err = s.admin.Exec(`CREATE DATABASE ` + s.template); s.err != nil {
				return
			}
			if s.err = s.prepare(context.Background(), s.pg.DatabaseDSN(s.template)); s.err != nil {
				s.err = fmt.Errorf("prepare the template database: %w", s.err)
				return
			}
			s.spares = make(chan spare, spareDatabases)
			s.wg.Add(1)
			go s.makeSpares()
		}
	})
	return s.err
}

// newName returns a database name made here, never by a test: CREATE
// DATABASE takes no parameters.
func (s *pgServer) newName() string { return fmt.Sprintf("kw_test_%d", s.next.Add(1)) }

// makeSpares keeps s.spares full of template copies until the server
// stops.
func (s *pgServer) makeSpares() {
	defer s.wg.Done()
	for {
		name := s.newName()
		_, err := s.admin.Exec(`CREATE DATABASE ` + name + ` TEMPLATE ` + s.template)
		select {
		case s.spares <- spare{name, err}:
		case <-s.stopping:
			return // the databases go with the server's directory
		}
	}
}

// dropUsed drops the databases tests are done with, until the server
// stops.
func (s *pgServer) dropUsed() {
	defer s.wg.Done()
	for {
		select {
		case name := <-s.drops:
			// FORCE ends connections a failed test left open. A database
			// not dropped only takes disk until the server stops.
			s.admin.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`)
		case <-s.stopping:
			return
		}
	}
}

func (s *pgServer) newDatabase(t testing.TB, fromTemplate bool) string {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	var name string
	if fromTemplate && s.spares != nil {
		sp := <-s.spares
		if sp.err != nil {
			t.Fatalf("create database %s: %v", sp.name, sp.err)
		}
		name = sp.name
	} else {
		name = s.newName()
		if _, err := s.admin.Exec(`CREATE DATABASE ` + name); err != nil {
			t.Fatalf("create database %s: %v", name, err)
		}
	}
	t.Cleanup(func() {
		select {
		case s.drops <- name:
		default:
		}
	})
	return s.pg.DatabaseDSN(name)
}

func (s *pgServer) stop() {
	if s.stopping != nil {
		close(s.stopping)
		s.wg.Wait()
	}
	if s.admin != nil {
		s.admin.Close()
	}
	if s.pg != nil {
		s.pg.Stop()
	}
}
