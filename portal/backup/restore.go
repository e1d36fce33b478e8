package backup

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
)

// RestoreOptions says what Restore reads and where it puts it.
type RestoreOptions struct {
	// From is the backup file.
	From string
	// DataDir is the target data directory; Database and Checkpoints
	// the files in it that are written; SecretsKey the key file the
	// target portal will use, which must be the one the backup was made
	// with.
	DataDir, Database, Checkpoints, SecretsKey string
	// Force restores into a data directory that holds more than the
	// secrets key, replacing its database and audit checkpoints.
	Force bool
	// AllowUnverifiedAudit restores a backup whose audit log does not
	// verify (Restored.AuditProblem says why): when it is the only copy
	// left, losing everything is worse.
	AllowUnverifiedAudit bool
}

// Restored is what Restore put in place.
type Restored struct {
	Manifest Manifest
	// Audit is what verifying the restored audit log found.
	Audit audit.Report
	// AuditProblem is why the audit log did not verify, if it did not
	// (only with AllowUnverifiedAudit).
	AuditProblem string
}

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ReadManifest reads the manifest, the first entry of a backup file, and
// checks it is one this package can restore from. It returns the archive
// positioned after it.
func ReadManifest(r io.Reader) (*tar.Reader, Manifest, error) {
	var m Manifest
	tr := tar.NewReader(r)
	h, err := tr.Next()
	if err != nil || h.Name != manifestName {
		return nil, m, errors.New("not a Keyway backup: it does not start with a manifest")
	}
	if h.Size > maxManifestSize || h.Size < 0 {
		return nil, m, fmt.Errorf("not a Keyway backup: its manifest has %d bytes, more than %d", h.Size, maxManifestSize)
	}
	b, err := io.ReadAll(io.LimitReader(tr, maxManifestSize))
	if err != nil {
		return nil, m, fmt.Errorf("read the manifest: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, m, fmt.Errorf("the backup's manifest is damaged: %w", err)
	}
	switch {
	case m.Format > Format:
		return nil, m, fmt.Errorf("the backup has format %d; this portal reads format %d: restore it with the portal version that made it (%s) or newer", m.Format, Format, m.PortalVersion)
	case m.Format != Format:
		return nil, m, fmt.Errorf("the backup's manifest is damaged: format %d", m.Format)
	case !hexSHA256.MatchString(m.SecretsKeySHA256):
		return nil, m, errors.New("the backup's manifest is damaged: no secrets key fingerprint")
	case m.Database.Name != databaseName || m.Database.Size <= 0 || !hexSHA256.MatchString(m.Database.SHA256):
		return nil, m, errors.New("the backup's manifest is damaged: it does not describe the database")
	case m.Checkpoints != nil && (m.Checkpoints.Name != checkpointsName || m.Checkpoints.Size < 0 || !hexSHA256.MatchString(m.Checkpoints.SHA256)):
		return nil, m, errors.New("the backup's manifest is damaged: it does not describe the audit checkpoints")
	case m.Schema <= 0:
		return nil, m, errors.New("the backup's manifest is damaged: no schema version")
	}
	return tr, m, nil
}

// Restore checks the backup at o.From against the target and puts its
// database and audit checkpoints in place. It refuses: a data directory
// holding anything but the secrets key (unless o.Force); a backup made
// with another secrets key than the one at o.SecretsKey, or with none
// there; a schema newer than this binary's; a file whose database or
// checkpoints do not match the manifest's SHA-256; a database that fails
// PRAGMA integrity_check; and an audit log that does not verify. Nothing
// in the target changes until every check has passed.
func Restore(ctx context.Context, o RestoreOptions) (Restored, error) {
	var res Restored
	if err := checkTarget(o); err != nil {
		return res, err
	}
	f, err := os.Open(o.From)
	if err != nil {
		return res, fmt.Errorf("open the backup: %w", err)
	}
	defer f.Close()
	tr, m, err := ReadManifest(f)
	if err != nil {
		return res, fmt.Errorf("%s: %w", o.From, err)
	}
	res.Manifest = m
	if m.Schema > store.SchemaVersion() {
		return res, fmt.Errorf("%s was made by a newer portal (%s, database schema %d); this portal knows schema %d: restore it with that version or newer",
			o.From, m.PortalVersion, m.Schema, store.SchemaVersion())
	}
	key, err := os.ReadFile(o.SecretsKey)
	if errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("no secrets key at %s: copy the secrets key of the portal the backup was made on (its secrets.key, 32 bytes, whose SHA-256 is %s) there, mode 0600, or name it with --secrets-key; without it the stored credentials and the audit chain cannot be read",
			o.SecretsKey, m.SecretsKeySHA256)
	}
	if err != nil {
		return res, fmt.Errorf("read the secrets key: %w", err)
	}
	if got := KeySHA256(key); got != m.SecretsKeySHA256 {
		return res, fmt.Errorf("the secrets key at %s (SHA-256 %s) is not the one the backup was made with: put the key whose SHA-256 is %s (the old portal's secrets.key; check with sha256sum) at %s, or name it with --secrets-key",
			o.SecretsKey, got, m.SecretsKeySHA256, o.SecretsKey)
	}

	// Extract beside the targets, so the final renames stay on one disk.
	dbTmp, cpTmp, err := extract(tr, m, o)
	defer func() {
		for _, p := range []string{dbTmp, cpTmp} {
			if p != "" {
				os.Remove(p)
			}
		}
	}()
	if err != nil {
		return res, diskError(err, o.DataDir)
	}
	st, err := store.OpenReadOnly(ctx, dbTmp, nil)
	if err != nil {
		return res, err
	}
	schema, err := st.Check(ctx)
	if err == nil && schema != m.Schema {
		err = fmt.Errorf("the database has schema %d but the manifest says %d: the file was altered", schema, m.Schema)
	}
	if err == nil {
		var rep auditReport
		rep, err = verifyAudit(ctx, st, key, cpTmp, cpTmp != "")
		res.Audit = rep.Report
		if err != nil && o.AllowUnverifiedAudit {
			res.AuditProblem, err = err.Error(), nil
		} else if err != nil {
			err = fmt.Errorf("%w (if this backup is the only copy left, --allow-unverified-audit restores it anyway)", err)
		}
	}
	st.Close()
	if err != nil {
		return res, fmt.Errorf("%s: %w; nothing was restored", o.From, err)
	}

	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if err := os.Remove(o.Database + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return res, fmt.Errorf("remove the old %s: %w", o.Database+suffix, err)
		}
	}
	if err := os.Rename(dbTmp, o.Database); err != nil {
		return res, fmt.Errorf("put the database in place: %w", err)
	}
	dbTmp = ""
	if cpTmp != "" {
		if err := os.Rename(cpTmp, o.Checkpoints); err != nil {
			return res, fmt.Errorf("put the audit checkpoints in place: %w", err)
		}
		cpTmp = ""
	} else if err := os.Remove(o.Checkpoints); err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("remove the old audit checkpoints (they name events of another log): %w", err)
	}
	return res, syncDir(o.DataDir)
}

// checkTarget refuses a data directory holding anything but the secrets
// key, unless o.Force; it creates a missing one.
func checkTarget(o RestoreOptions) error {
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("create the data directory: %w", err)
	}
	entries, err := os.ReadDir(o.DataDir)
	if err != nil {
		return fmt.Errorf("read the data directory: %w", err)
	}
	var other []string
	for _, e := range entries {
		if filepath.Join(o.DataDir, e.Name()) != filepath.Clean(o.SecretsKey) {
			other = append(other, e.Name())
		}
	}
	if len(other) > 0 && !o.Force {
		slices.Sort(other)
		if len(other) > 5 {
			other = append(other[:5], "…")
		}
		return fmt.Errorf("the data directory %s is not empty (it holds %s): restore into a new directory holding only the secrets key, or pass --force to replace its database and audit checkpoints (its other files are kept); stop any portal using it first",
			o.DataDir, strings.Join(other, ", "))
	}
	return nil
}

// extract writes the database and checkpoints of the archive to
// temporary files in o.DataDir, checking each against the manifest.
func extract(tr *tar.Reader, m Manifest, o RestoreOptions) (dbTmp, cpTmp string, err error) {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return dbTmp, cpTmp, fmt.Errorf("%s is damaged: %w", o.From, err)
		}
		var want File
		var dst *string
		switch {
		case h.Name == databaseName && dbTmp == "":
			want, dst = m.Database, &dbTmp
		case h.Name == checkpointsName && cpTmp == "" && m.Checkpoints != nil:
			want, dst = *m.Checkpoints, &cpTmp
		default:
			return dbTmp, cpTmp, fmt.Errorf("%s is damaged: unexpected entry %q", o.From, h.Name)
		}
		if h.Typeflag != tar.TypeReg || h.Size != want.Size {
			return dbTmp, cpTmp, fmt.Errorf("%s is damaged: %s has %d bytes, the manifest says %d", o.From, h.Name, h.Size, want.Size)
		}
		if *dst, err = extractOne(tr, want, o.DataDir); err != nil {
			return dbTmp, cpTmp, fmt.Errorf("%s: %w", o.From, err)
		}
	}
	if dbTmp == "" {
		return dbTmp, cpTmp, fmt.Errorf("%s is damaged: it has no database (the file is cut short?)", o.From)
	}
	if m.Checkpoints != nil && cpTmp == "" {
		return dbTmp, cpTmp, fmt.Errorf("%s is damaged: it has no audit checkpoints though the manifest names them (the file is cut short?)", o.From)
	}
	return dbTmp, cpTmp, nil
}

func extractOne(r io.Reader, want File, dir string) (string, error) {
	f, err := os.CreateTemp(dir, ".restore-"+want.Name+"-*")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, want.Size))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("%s is cut short: the backup file is incomplete", want.Name)
	case err != nil:
		err = fmt.Errorf("extract %s: %w", want.Name, err)
	case n != want.Size:
		err = fmt.Errorf("%s is cut short: %d of %d bytes", want.Name, n, want.Size)
	case hex.EncodeToString(h.Sum(nil)) != want.SHA256:
		err = fmt.Errorf("%s is damaged: its SHA-256 is %x, the manifest says %s", want.Name, h.Sum(nil), want.SHA256)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
