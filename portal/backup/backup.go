// Package backup makes and restores a backup of a portal's state: one
// file (a tar archive) holding a manifest, a consistent copy of the SQLite
// database taken while the portal runs, and the audit checkpoint file.
// The secrets key is never in it, only its SHA-256, so that a restore can
// say which key it needs; recordings are not in it either.
package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// Format is the version of the backup file's layout this package writes
// and reads.
const Format = 1

// Names of the entries of a backup file, in the order they are written.
const (
	manifestName    = "manifest.json"
	databaseName    = "keyway.db"
	checkpointsName = "audit-checkpoints"
)

// maxManifestSize bounds the manifest read from a backup file.
const maxManifestSize = 64 << 10

// Manifest describes a backup: it is the first entry of the file.
type Manifest struct {
	Format  int       `json:"format"`
	Created time.Time `json:"created"`
	// PortalVersion is the version of the portal that made it.
	PortalVersion string `json:"portal_version,omitempty"`
	// Schema is the database's schema version (its newest migration).
	Schema int `json:"schema"`
	// SecretsKeySHA256 is the SHA-256 of the secrets key the database's
	// credentials are sealed with and the audit chain is keyed by (as
	// sha256sum prints it); the key itself is never in a backup.
	SecretsKeySHA256 string       `json:"secrets_key_sha256"`
	Database         File         `json:"database"`
	Checkpoints      *File        `json:"audit_checkpoints,omitempty"`
	Audit            AuditFacts   `json:"audit"`
	Counts           store.Counts `json:"counts"`
}

// File is an entry of a backup file.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// AuditFacts is what the audit log looked like in the copy.
type AuditFacts struct {
	Events    int    `json:"events"`
	HeadEvent int64  `json:"head_event"`
	HeadHash  string `json:"head_hash"`
	HMACFrom  int64  `json:"hmac_from"`
	// Checkpoints is how many signed checkpoints the file holds.
	Checkpoints int `json:"checkpoints"`
	// Verified says the chain and the checkpoints verified when the
	// backup was made; Problem says why not.
	Verified bool   `json:"verified"`
	Problem  string `json:"problem,omitempty"`
}

// KeySHA256 is the fingerprint of a secrets key a manifest names.
func KeySHA256(key []byte) string {
	h := sha256.Sum256(key)
	return hex.EncodeToString(h[:])
}

// tempFile is what Create writes the backup to before renaming it.
type tempFile interface {
	io.Writer
	Name() string
	Sync() error
	Close() error
}

// Options says what Create copies and where it writes.
type Options struct {
	// Database is the portal's database file, Checkpoints its audit
	// checkpoint file (which need not exist).
	Database, Checkpoints string
	// SecretsKey is the portal's secrets key: for its fingerprint and
	// to verify the audit chain of the copy.
	SecretsKey []byte
	// To is the backup file written.
	To            string
	PortalVersion string
	Now           func() time.Time
	Logger        *slog.Logger

	// createTemp makes the file the backup is written to (os.CreateTemp;
	// tests fail its writes).
	createTemp func(dir, pattern string) (tempFile, error)
}

// Create writes a backup of a portal that may be running to o.To: the
// audit checkpoints as they are now, then a snapshot of the database
// (which has every event the checkpoints name), into a temporary file
// beside o.To that is renamed over it once complete and synced; a failure
// leaves nothing behind. It needs free space for about twice the
// database beside o.To while it runs.
func Create(ctx context.Context, o Options) (Manifest, error) {
	m := Manifest{Format: Format, PortalVersion: o.PortalVersion, SecretsKeySHA256: KeySHA256(o.SecretsKey)}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.createTemp == nil {
		o.createTemp = func(dir, pattern string) (tempFile, error) { return os.CreateTemp(dir, pattern) }
	}
	if fi, err := os.Stat(o.To); err == nil && fi.IsDir() {
		return m, fmt.Errorf("%s is a directory: give a file name, such as %s", o.To, filepath.Join(o.To, "keyway-backup.tar"))
	}
	if _, err := os.Stat(o.Database); err != nil {
		return m, fmt.Errorf("no database to back up at %s: is --data the portal's data directory? (%w)", o.Database, err)
	}
	dir := filepath.Dir(o.To)
	work, err := os.MkdirTemp(dir, ".keyway-backup-")
	if err != nil {
		return m, diskError(fmt.Errorf("make a work directory beside %s: %w", o.To, err), dir)
	}
	defer os.RemoveAll(work)

	// Checkpoints first: every event they name is then in the snapshot.
	cpPath := filepath.Join(work, checkpointsName)
	hasCP, err := copyCheckpoints(o.Checkpoints, cpPath)
	if err != nil {
		return m, diskError(err, dir)
	}
	dbPath := filepath.Join(work, databaseName)
	m.Created = o.Now().UTC()
	stats, err := store.Backup(ctx, o.Database, dbPath, nil)
	if err != nil {
		return m, diskError(err, dir)
	}
	o.Logger.Info("database copied", "pages", stats.Pages, "steps", stats.Steps)
	if err := inspect(ctx, &m, dbPath, cpPath, hasCP, o.SecretsKey); err != nil {
		return m, fmt.Errorf("check the copy: %w", err)
	}
	if m.Database, err = describe(dbPath, databaseName); err != nil {
		return m, err
	}
	files := []string{dbPath}
	if hasCP {
		cp, err := describe(cpPath, checkpointsName)
		if err != nil {
			return m, err
		}
		m.Checkpoints = &cp
		files = append(files, cpPath)
	}
	if err := writeArchive(o, m, files); err != nil {
		return m, diskError(err, dir)
	}
	return m, nil
}

// inspect fills in the schema, counts and audit facts of the copy; a
// chain that does not verify is recorded, not an error: a backup of a
// tampered log is still a backup.
func inspect(ctx context.Context, m *Manifest, dbPath, cpPath string, hasCP bool, key []byte) error {
	st, err := store.OpenReadOnly(ctx, dbPath, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	if m.Schema, err = st.Check(ctx); err != nil {
		return err
	}
	if m.Counts, err = st.Count(ctx); err != nil {
		return err
	}
	if m.Audit.HeadEvent, m.Audit.HeadHash, err = st.AuditHead(ctx); err != nil {
		return err
	}
	rep, err := verifyAudit(ctx, st, key, cpPath, hasCP)
	m.Audit.Events, m.Audit.HMACFrom = rep.Events, rep.HMACFrom
	m.Audit.Checkpoints = rep.checkpoints
	if err != nil {
		m.Audit.Problem = err.Error()
	} else {
		m.Audit.Verified = true
	}
	return nil
}

// auditReport is audit.Report with the number of checkpoints read.
type auditReport struct {
	audit.Report
	checkpoints int
}

func verifyAudit(ctx context.Context, st *store.Store, key []byte, cpPath string, hasCP bool) (auditReport, error) {
	var rep auditReport
	log, err := audit.New(st, key, slog.New(slog.DiscardHandler), time.Now)
	if err != nil {
		return rep, err
	}
	var cps []audit.Checkpoint
	if hasCP {
		f, err := os.Open(cpPath)
		if err != nil {
			return rep, err
		}
		cps, err = log.ReadCheckpoints(f)
		f.Close()
		if err != nil {
			return rep, fmt.Errorf("audit checkpoints: %w", err)
		}
	}
	rep.checkpoints = len(cps)
	rep.Report, err = log.Verify(ctx, cps)
	if err != nil {
		return rep, fmt.Errorf("the audit log does not verify after %d events: %w", rep.Events, err)
	}
	return rep, nil
}

// copyCheckpoints copies the checkpoint file at src, up to its last
// complete line (the portal may be appending one), to dst. A missing
// file is no error: it reports false.
func copyCheckpoints(src, dst string) (bool, error) {
	in, err := os.Open(src)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open audit checkpoints: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("copy audit checkpoints: %w", err)
	}
	defer out.Close()
	n, err := io.Copy(out, in)
	if err != nil {
		return false, fmt.Errorf("copy audit checkpoints: %w", err)
	}
	// Lines are at most a few hundred bytes: the last newline is in the
	// tail.
	tail := make([]byte, min(n, 4096))
	if _, err := out.ReadAt(tail, n-int64(len(tail))); err != nil {
		return false, fmt.Errorf("copy audit checkpoints: %w", err)
	}
	if i := bytes.LastIndexByte(tail, '\n'); i+1 != len(tail) {
		if err := out.Truncate(n - int64(len(tail)) + int64(i+1)); err != nil {
			return false, fmt.Errorf("copy audit checkpoints: %w", err)
		}
	}
	return true, out.Close()
}

// describe hashes a file for the manifest.
func describe(path, name string) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("hash %s: %w", name, err)
	}
	return File{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// writeArchive writes the manifest and files as a tar archive to a
// temporary file beside o.To, syncs it and renames it to o.To.
func writeArchive(o Options, m Manifest, files []string) (err error) {
	dir := filepath.Dir(o.To)
	f, err := o.createTemp(dir, ".keyway-backup-*.tmp")
	if err != nil {
		return fmt.Errorf("create %s: %w", o.To, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Size: size, Mode: 0o600, ModTime: m.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr(manifestName, int64(len(manifest)))); err != nil {
		return fmt.Errorf("write %s: %w", o.To, err)
	}
	if _, err := tw.Write(manifest); err != nil {
		return fmt.Errorf("write %s: %w", o.To, err)
	}
	for _, path := range files {
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		fi, err := in.Stat()
		if err == nil {
			err = tw.WriteHeader(hdr(filepath.Base(path), fi.Size()))
		}
		if err == nil {
			_, err = io.Copy(tw, in)
		}
		in.Close()
		if err != nil {
			return fmt.Errorf("write %s: %w", o.To, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write %s: %w", o.To, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", o.To, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", o.To, err)
	}
	if err := os.Chmod(f.Name(), 0o600); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), o.To); err != nil {
		return fmt.Errorf("rename the finished backup to %s: %w", o.To, err)
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// diskError adds what to do to an error of a full disk (or quota).
func diskError(err error, dir string) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || store.IsDiskFull(err) {
		return fmt.Errorf("%w: the disk holding %s is full; nothing was written: free space there (the backup needs about twice the database's size while it runs) or choose another place", err, dir)
	}
	return err
}
