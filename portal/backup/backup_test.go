package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// source is a portal's data directory with some audit events and a
// checkpoint, as a running portal leaves it.
type source struct {
	dir, db, checkpoints string
	key                  []byte
	st                   *store.Store
}

func newSource(t *testing.T) source {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	s := source{dir: dir, db: filepath.Join(dir, "keyway.db"), checkpoints: filepath.Join(dir, "audit-checkpoints")}
	var err error
	if s.key, err = store.LoadOrCreateKey(filepath.Join(dir, "secrets.key")); err != nil {
		t.Fatal(err)
	}
	sealer, _ := store.NewSealer(s.key)
	if s.st, err = store.Open(ctx, s.db, sealer); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.st.Close() })
	log, err := audit.New(s.st, s.key, slog.New(slog.DiscardHandler), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := log.Record(ctx, audit.Event{Actor: "test", Action: audit.ActionSignIn, Outcome: audit.OutcomeSuccess, Target: strings.Repeat("t", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := log.WriteCheckpoint(ctx, s.checkpoints); err != nil {
		t.Fatal(err)
	}
	// A half-written line, as the portal might be appending one.
	f, _ := os.OpenFile(s.checkpoints, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"time":"2026-`)
	f.Close()
	return s
}

func (s source) options(to string) Options {
	return Options{Database: s.db, Checkpoints: s.checkpoints, SecretsKey: s.key, To: to, PortalVersion: "test"}
}

// target is an empty data directory holding key as its secrets key.
func target(t *testing.T, key []byte) RestoreOptions {
	dir := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(dir, 0o700)
	if key != nil {
		os.WriteFile(filepath.Join(dir, "secrets.key"), key, 0o600)
	}
	return RestoreOptions{DataDir: dir, Database: filepath.Join(dir, "keyway.db"), Checkpoints: filepath.Join(dir, "audit-checkpoints"),
		SecretsKey: filepath.Join(dir, "secrets.key")}
}

func TestCreateRestore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSource(t)
	to := filepath.Join(t.TempDir(), "backup.tar")
	m, err := Create(ctx, s.options(to))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(to)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(to), ".keyway-backup-*")); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
	if !m.Audit.Verified || m.Audit.Events != 5 || m.Audit.Checkpoints != 1 || m.Counts.AuditEvents != 5 || m.Schema != store.SchemaVersion() ||
		m.SecretsKeySHA256 != KeySHA256(s.key) || m.Checkpoints == nil {
		t.Fatalf("manifest: %+v", m)
	}
	raw, _ := os.ReadFile(to)
	if bytes.Contains(raw, s.key) {
		t.Fatal("the backup holds the secrets key")
	}

	o := target(t, s.key)
	o.From = to
	res, err := Restore(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Audit.Events != 5 || res.Audit.Checkpoint == nil || res.Manifest.Database.SHA256 != m.Database.SHA256 {
		t.Fatalf("restored: %+v", res)
	}
	if left, _ := filepath.Glob(filepath.Join(o.DataDir, ".restore-*")); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
	cps, _ := os.ReadFile(o.Checkpoints)
	if bytes.Count(cps, []byte("\n")) != 1 || !bytes.HasSuffix(cps, []byte("}\n")) {
		t.Fatalf("restored checkpoints: %q", cps)
	}
	// The restored database opens as a portal's, and is not empty.
	sealer, _ := store.NewSealer(s.key)
	st, err := store.Open(ctx, o.Database, sealer)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := st.Count(ctx)
	st.Close()
	if c.AuditEvents != 5 {
		t.Fatalf("restored counts: %+v", c)
	}

	// A second restore into the same directory needs --force.
	if _, err := Restore(ctx, o); err == nil || !strings.Contains(err.Error(), "is not empty (it holds audit-checkpoints, keyway.db") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("non-empty target: %v", err)
	}
	o.Force = true
	if _, err := Restore(ctx, o); err != nil {
		t.Fatalf("forced: %v", err)
	}
}

// TestRestoreRefuses: each bad backup or target is refused with words
// saying what is wrong, and the target is left as it was.
func TestRestoreRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSource(t)
	to := filepath.Join(t.TempDir(), "backup.tar")
	m, err := Create(ctx, s.options(to))
	if err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(to)
	otherKey := bytes.Repeat([]byte{7}, 32)
	// rewrite rebuilds the archive with the manifest changed by fm and
	// the database bytes by fdb.
	rewrite := func(fm func(*Manifest), fdb func([]byte) []byte) []byte {
		tr := tar.NewReader(bytes.NewReader(good))
		var out bytes.Buffer
		tw := tar.NewWriter(&out)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			b, _ := io.ReadAll(tr)
			switch h.Name {
			case manifestName:
				mm := m
				if fm != nil {
					fm(&mm)
				}
				b, _ = json.Marshal(mm)
			case databaseName:
				if fdb != nil {
					b = fdb(b)
				}
			}
			h.Size = int64(len(b))
			tw.WriteHeader(h)
			tw.Write(b)
		}
		tw.Close()
		return out.Bytes()
	}
	// garble overwrites the third page (a table's) with garbage.
	garble := func(b []byte) []byte {
		b = bytes.Clone(b)
		copy(b[2*4096:3*4096], bytes.Repeat([]byte{0x5a}, 4096))
		return b
	}
	for _, tc := range []struct {
		name string
		file []byte
		key  []byte
		want string
	}{
		{"wrong key", good, otherKey, "is not the one the backup was made with: put the key whose SHA-256 is " + m.SecretsKeySHA256},
		{"no key", good, nil, "no secrets key at "},
		{"flipped byte in the database", bytes.Replace(good, []byte("SQLite format 3"), []byte("SQLite format 4"), 1), s.key, "keyway.db is damaged: its SHA-256 is"},
		{"cut short", good[:len(good)/2], s.key, "keyway.db is cut short"},
		{"not a backup", []byte("hello"), s.key, "not a Keyway backup"},
		{"newer schema", rewrite(func(m *Manifest) { m.Schema = store.SchemaVersion() + 1; m.PortalVersion = "v9" }, nil), s.key,
			"was made by a newer portal (v9, database schema"},
		{"newer format", rewrite(func(m *Manifest) { m.Format = Format + 1 }, nil), s.key, "this portal reads format 1"},
		// A damaged database whose manifest was rewritten to match: the
		// integrity check or the audit chain catches it.
		{"damaged database, manifest matching", func() []byte {
			var db []byte
			tr := tar.NewReader(bytes.NewReader(good))
			for h, err := tr.Next(); err == nil; h, err = tr.Next() {
				if h.Name == databaseName {
					db, _ = io.ReadAll(tr)
				}
			}
			bad := garble(db)
			sum, _ := describeBytes(bad)
			return rewrite(func(m *Manifest) { m.Database.SHA256 = sum }, func([]byte) []byte { return bad })
		}(), s.key, "the database is damaged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := target(t, tc.key)
			o.From = filepath.Join(t.TempDir(), "b.tar")
			os.WriteFile(o.From, tc.file, 0o600)
			_, err := Restore(ctx, o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			entries, _ := os.ReadDir(o.DataDir)
			if len(entries) > 1 || (len(entries) == 1 && entries[0].Name() != "secrets.key") {
				t.Fatalf("the target changed: %v", entries)
			}
		})
	}
}

func describeBytes(b []byte) (string, error) {
	p := filepath.Join(os.TempDir(), "keyway-describe-"+KeySHA256(b))
	defer os.Remove(p)
	os.WriteFile(p, b, 0o600)
	f, err := describe(p, databaseName)
	return f.SHA256, err
}

// failingFile fails its writes with ENOSPC after limit bytes, as a full
// disk does.
type failingFile struct {
	*os.File
	limit int
}

func (f *failingFile) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n, _ := f.File.Write(p[:f.limit])
		f.limit = 0
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	f.limit -= len(p)
	return f.File.Write(p)
}

// TestCreateFullDisk: a backup whose writes fail as on a full disk says
// so, and leaves neither a partial file nor the previous backup changed.
func TestCreateFullDisk(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSource(t)
	to := filepath.Join(t.TempDir(), "backup.tar")
	os.WriteFile(to, []byte("the previous backup"), 0o600)
	o := s.options(to)
	o.createTemp = func(dir, pattern string) (tempFile, error) {
		f, err := os.CreateTemp(dir, pattern)
		return &failingFile{File: f, limit: 10000}, err
	}
	_, err := Create(ctx, o)
	if err == nil || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "is full; nothing was written: free space there") {
		t.Fatalf("full disk: %v", err)
	}
	if b, _ := os.ReadFile(to); string(b) != "the previous backup" {
		t.Fatalf("the previous backup changed: %q", b)
	}
	entries, _ := os.ReadDir(filepath.Dir(to))
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}

// FuzzReadManifest: any bytes are refused or read, never a panic, and a
// manifest read has passed the checks.
func FuzzReadManifest(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mb, _ := json.Marshal(Manifest{Format: 1, Schema: 3, SecretsKeySHA256: strings.Repeat("a", 64),
		Database: File{Name: databaseName, Size: 10, SHA256: strings.Repeat("b", 64)}})
	tw.WriteHeader(&tar.Header{Name: manifestName, Size: int64(len(mb)), Mode: 0o600})
	tw.Write(mb)
	tw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, m, err := ReadManifest(bytes.NewReader(b))
		if err == nil && (m.Format != Format || m.Database.Size <= 0 || m.Schema <= 0) {
			t.Fatalf("accepted %+v", m)
		}
	})
}

// TestTamperedAudit: a backup of an audit log someone rewrote is still
// written, and says so; restoring it is refused unless asked for, and
// then says so too.
func TestTamperedAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSource(t)
	if _, err := s.st.DB().Exec(`DROP TRIGGER audit_no_update; UPDATE audit_events SET actor = 'someone-else' WHERE id = 2`); err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), "backup.tar")
	m, err := Create(ctx, s.options(to))
	if err != nil {
		t.Fatal(err)
	}
	if m.Audit.Verified || !strings.Contains(m.Audit.Problem, "audit event 2 was altered") {
		t.Fatalf("audit facts of a tampered log: %+v", m.Audit)
	}
	o := target(t, s.key)
	o.From = to
	if _, err := Restore(ctx, o); err == nil || !strings.Contains(err.Error(), "audit event 2 was altered") ||
		!strings.Contains(err.Error(), "nothing was restored") || !strings.Contains(err.Error(), "--allow-unverified-audit") {
		t.Fatalf("restore a tampered log: %v", err)
	}
	o.AllowUnverifiedAudit = true
	res, err := Restore(ctx, o)
	if err != nil || !strings.Contains(res.AuditProblem, "audit event 2 was altered") {
		t.Fatalf("restore a tampered log, allowed: %+v %v", res, err)
	}
	if _, err := os.Stat(o.Database); err != nil {
		t.Fatal(err)
	}
}
