package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/keyway-dev/keyway/portal/audit"
)

// auditVerify checks the audit log's chain: every event present, in order,
// each naming the chain value of the one before and matching it (HMAC under
// the key derived from the secrets key; plain SHA-256 for events written
// before the portal chained with a key), and the signed checkpoints in the
// checkpoint file, so that rows removed from the end are detected. A row
// changed or removed is reported by id.
func auditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg serveConfig
	fs := flag.NewFlagSet("portal audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs, serveDataDir, serveListen)
	cpPath := fs.String("checkpoints", "", "file of signed audit checkpoints to check against, such as a copy shipped elsewhere (default DATA/audit-checkpoints)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	if *cpPath == "" {
		*cpPath = checkpointsPath(cfg)
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	log, err := newAuditLog(cfg, st, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	var checkpoints []audit.Checkpoint
	f, err := os.Open(*cpPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("open audit checkpoints: %w", err)
	default:
		checkpoints, err = log.ReadCheckpoints(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", *cpPath, err)
		}
	}
	rep, err := log.Verify(ctx, checkpoints)
	if err != nil {
		return fmt.Errorf("the audit log does not verify after %d events: %w", rep.Events, err)
	}
	fmt.Fprintf(stdout, "audit log verified: %d events, chain intact\n", rep.Events)
	switch {
	case rep.HMACFrom == 0:
		fmt.Fprintln(stdout, "no event is chained with the key yet: older events have plain SHA-256 hashes only")
	case rep.HMACFrom == 1:
		fmt.Fprintln(stdout, "every event is chained with HMAC-SHA256 under the key derived from the secrets key")
	default:
		fmt.Fprintf(stdout, "events 1 to %d were written before keyed chaining (plain SHA-256, anchored by event %d); the HMAC chain starts at event %d\n",
			rep.HMACFrom-1, rep.HMACFrom, rep.HMACFrom)
	}
	if c := rep.Checkpoint; c != nil {
		fmt.Fprintf(stdout, "latest checkpoint: %s; %d events after it are covered by the chain only\n", c, int64(rep.Events)-c.Event)
	} else {
		fmt.Fprintf(stdout, "no checkpoint in %s: removing the newest events would not be detected\n", *cpPath)
	}
	return nil
}
