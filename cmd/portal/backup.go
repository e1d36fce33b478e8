package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/keyway-dev/keyway/portal/backup"
	"github.com/keyway-dev/keyway/portal/store"
)

// backupCmd writes a backup of the portal's state while it may be running.
func backupCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg serveConfig
	fs := flag.NewFlagSet("portal backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs, serveDataDir, serveListen)
	to := fs.String("to", "", "backup file to write (required), e.g. /backups/keyway-$(date +%F).tar")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	if *to == "" {
		return errors.New("name the backup file: portal backup --to FILE")
	}
	if cfg.Database != "" {
		return fmt.Errorf("portal backup copies the SQLite database; for PostgreSQL (--database) use pg_dump: %w", store.ErrSQLiteOnly)
	}
	if err := cfg.resolvePaths(); err != nil {
		return err
	}
	// The key is read, never created: a backup names the key it needs.
	key, err := os.ReadFile(secretsKeyPath(cfg))
	if err != nil {
		return fmt.Errorf("read the secrets key (its SHA-256 goes into the backup): %w", err)
	}
	m, err := backup.Create(ctx, backup.Options{Database: filepath.Join(cfg.DataDir, "keyway.db"), Checkpoints: checkpointsPath(cfg),
		SecretsKey: key, To: *to, PortalVersion: version})
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(stdout, "backup written to %s: database %d bytes (schema %d, SHA-256 %s), %d users, %d resources, %d gateways, %d audit events\n",
		*to, m.Database.Size, m.Schema, m.Database.SHA256, m.Counts.Users, m.Counts.Resources, m.Counts.Gateways, m.Counts.AuditEvents)
	switch {
	case m.Audit.Verified && m.Checkpoints != nil:
		fmt.Fprintf(stdout, "audit log verified: %d events; signed checkpoints included: %d\n", m.Audit.Events, m.Audit.Checkpoints)
	case m.Audit.Verified:
		fmt.Fprintf(stdout, "audit log verified: %d events; no checkpoint file to include\n", m.Audit.Events)
	default:
		fmt.Fprintf(stdout, "WARNING: the audit log does not verify: %s (the backup is written as it is)\n", m.Audit.Problem)
	}
	fmt.Fprintf(stdout, "the secrets key is NOT in the backup (its SHA-256 is %s): keep a copy of %s elsewhere; a restore needs it\n",
		m.SecretsKeySHA256, secretsKeyPath(cfg))
	fmt.Fprintf(stdout, "recordings are NOT in the backup (%d listed): copy %s separately\n",
		m.Counts.Recordings, cfg.recordingsLocation())
	return nil
}

// restoreCmd restores a backup into a data directory no portal runs on.
func restoreCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg serveConfig
	fs := flag.NewFlagSet("portal restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs, serveDataDir, serveListen)
	from := fs.String("from", "", "backup file to restore (required)")
	force := fs.Bool("force", false, "restore into a data directory that holds more than the secrets key, replacing its database and audit checkpoints")
	unverified := fs.Bool("allow-unverified-audit", false, "restore even if the backup's audit log does not verify (when it is the only copy left)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	if *from == "" {
		return errors.New("name the backup file: portal restore --from FILE --data DIR")
	}
	if cfg.Database != "" {
		return fmt.Errorf("portal restore writes the SQLite database; for PostgreSQL (--database) use pg_restore: %w", store.ErrSQLiteOnly)
	}
	if err := cfg.resolvePaths(); err != nil {
		return err
	}
	keyPath, err := filepath.Abs(secretsKeyPath(cfg))
	if err != nil {
		return err
	}
	res, err := backup.Restore(ctx, backup.RestoreOptions{From: *from, DataDir: cfg.DataDir, Database: filepath.Join(cfg.DataDir, "keyway.db"),
		Checkpoints: checkpointsPath(cfg), SecretsKey: keyPath, Force: *force, AllowUnverifiedAudit: *unverified})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	m := res.Manifest
	fmt.Fprintf(stdout, "restored %s into %s: the database of %s (portal %s, schema %d), %d users, %d resources, %d gateways, %d audit events\n",
		*from, cfg.DataDir, m.Created.Local().Format(time.RFC3339), m.PortalVersion, m.Schema, m.Counts.Users, m.Counts.Resources, m.Counts.Gateways, m.Counts.AuditEvents)
	if m.Schema < store.SchemaVersion() {
		fmt.Fprintf(stdout, "the portal updates the database from schema %d to %d when it starts\n", m.Schema, store.SchemaVersion())
	}
	if res.AuditProblem != "" {
		fmt.Fprintf(stdout, "WARNING: restored although the audit log does not verify: %s\n", res.AuditProblem)
	} else if c := res.Audit.Checkpoint; c != nil {
		fmt.Fprintf(stdout, "audit log verified: %d events, chain intact; latest checkpoint: %s\n", res.Audit.Events, c)
	} else {
		fmt.Fprintf(stdout, "audit log verified: %d events, chain intact; the backup had no checkpoint\n", res.Audit.Events)
	}
	if cfg.Recordings != "" {
		fmt.Fprintf(stdout, "recordings are NOT in the backup (%d listed): the portal reads them from %s\n", m.Counts.Recordings, cfg.Recordings)
	} else {
		fmt.Fprintf(stdout, "recordings are NOT in the backup (%d listed): copy the old data directory's recordings/ to %s\n",
			m.Counts.Recordings, filepath.Join(cfg.DataDir, "recordings"))
	}
	fmt.Fprintln(stdout, "gateways pin the portal's key (portal-identity.pem) and TLS key (tls.crt and tls.key, or --tls-cert): copy them from the old data directory too, or gateways enrolled before must be enrolled again")
	return nil
}

// secretsKeyPath is the secrets key file of cfg.
// recordingsLocation is where the recordings are: the bucket of
// --recordings, or DATA/recordings.
func (c serveConfig) recordingsLocation() string {
	if c.Recordings != "" {
		return c.Recordings
	}
	return filepath.Join(c.DataDir, "recordings")
}

func secretsKeyPath(cfg serveConfig) string {
	if cfg.SecretsKey != "" {
		return cfg.SecretsKey
	}
	return filepath.Join(cfg.DataDir, "secrets.key")
}
