// Package retention deletes session recordings older than the retention
// period (its video export, the file, then its metadata, each deletion an
// audit event) and the connection log's attempts older than the same
// period (one audit event per sweep).
package retention

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/keyway-dev/keyway/portal/audit"
	"github.com/keyway-dev/keyway/portal/store"
	"github.com/keyway-dev/keyway/recordings/storage"
)

// batch is how many recordings one query reads.
const batch = 500

// Job deletes expired recordings and connection log rows.
type Job struct {
	Store *store.Store
	// Recordings holds the recording files.
	Recordings storage.Store
	Audit      *audit.Log
	// Period is how long recordings and connection attempts are kept,
	// counted from their start; zero keeps them forever.
	Period time.Duration
	Logger *slog.Logger
	Now    func() time.Time
	// Exports, if set, holds the recordings' video exports, which go
	// with their recordings.
	Exports Exports
}

// Exports deletes the video export of a recording (portal/exports).
type Exports interface {
	Remove(store.Recording) error
}

// Sweep deletes every recording that started more than Period ago and
// returns how many it deleted.
func (j *Job) Sweep(ctx context.Context) (int, error) {
	if j.Period <= 0 {
		return 0, nil
	}
	cutoff := j.Now().Add(-j.Period)
	n := 0
	for {
		recs, err := j.Store.RecordingsStartedBefore(ctx, cutoff, batch)
		if err != nil {
			return n, err
		}
		for _, r := range recs {
			if err := j.delete(ctx, r); err != nil {
				return n, err
			}
			n++
		}
		if len(recs) < batch {
			return n, nil
		}
	}
}

// delete removes the video export and the file first: a row without its
// file would still be listed, and is retried at the next sweep.
func (j *Job) delete(ctx context.Context, r store.Recording) error {
	if j.Exports != nil {
		if err := j.Exports.Remove(r); err != nil {
			return fmt.Errorf("delete recording %s: %w", r.SessionID, err)
		}
	}
	if err := j.Recordings.Remove(ctx, r.Path); err != nil {
		return fmt.Errorf("delete recording %s: %w", r.SessionID, err)
	}
	if err := j.Store.DeleteRecording(ctx, r.ID); err != nil {
		return err
	}
	return j.Audit.Record(ctx, audit.Event{Actor: "retention", Action: audit.ActionRecordingDelete, Target: r.SessionID,
		Outcome: audit.OutcomeSuccess, Reason: fmt.Sprintf("older than the retention period of %s", days(j.Period)),
		Details: map[string]string{"user": r.User, "resource": r.Resource, "protocol": r.Protocol,
			"start": r.Start.Format(time.RFC3339), "size": fmt.Sprint(r.Size), "sha256": r.SHA256}})
}

// SweepConnections deletes the connection attempts that started more
// than Period ago and returns how many it deleted; a sweep that deleted
// some is an audit event.
func (j *Job) SweepConnections(ctx context.Context) (int64, error) {
	if j.Period <= 0 {
		return 0, nil
	}
	cutoff := j.Now().Add(-j.Period)
	n, err := j.Store.PruneConnections(ctx, cutoff)
	if n > 0 {
		// Rows deleted before an error are gone too: say so either way.
		if aerr := j.Audit.Record(ctx, audit.Event{Actor: "retention", Action: audit.ActionConnectionPrune, Target: "connection log",
			Outcome: audit.OutcomeSuccess, Reason: fmt.Sprintf("older than the retention period of %s", days(j.Period)),
			Details: map[string]string{"deleted": fmt.Sprint(n), "before": cutoff.UTC().Format(time.RFC3339)}}); aerr != nil && err == nil {
			err = aerr
		}
	}
	return n, err
}

// Run sweeps at once and then every interval until ctx is done; the
// caller owns it and waits for it to return.
func (j *Job) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := j.Sweep(ctx); err != nil {
			j.Logger.Error("recording retention", "err", err, "deleted", n)
		} else if n > 0 {
			j.Logger.Info("recording retention deleted expired recordings", "count", n, "period", days(j.Period))
		}
		if n, err := j.SweepConnections(ctx); err != nil {
			j.Logger.Error("connection log retention", "err", err, "deleted", n)
		} else if n > 0 {
			j.Logger.Info("connection log retention deleted old attempts", "count", n, "period", days(j.Period))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}
