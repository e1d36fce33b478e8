// Package audit records who did what in the portal, in an append-only log
// whose rows are chained by SHA-256 so that altering or removing one is
// detectable.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/keyway-dev/keyway/portal/store"
)

// Actions.
const (
	ActionSignIn         = "signin"
	ActionSignOut        = "signout"
	ActionSetup          = "setup"
	ActionConnect        = "connect"
	ActionSessionEnd     = "session.end"
	ActionAuthzDenied    = "authz.denied"
	ActionUserCreate     = "user.create"
	ActionUserUpdate     = "user.update"
	ActionUserDelete     = "user.delete"
	ActionPasswordChange = "user.password"
	ActionGroupCreate    = "group.create"
	ActionGroupDelete    = "group.delete"
	ActionResourceCreate = "resource.create"
	ActionResourceUpdate = "resource.update"
	ActionResourceDelete = "resource.delete"
	ActionHostKeyAccept  = "resource.hostkey.accept"
	ActionHostKeyForget  = "resource.hostkey.forget"
	ActionGrantCreate    = "grant.create"
	ActionGrantDelete    = "grant.delete"
	ActionGrantUpdate    = "grant.update"
	ActionTokenCreate    = "token.create"
	ActionTokenRevoke    = "token.revoke"
	ActionSegmentCreate  = "segment.create"
	ActionSegmentUpdate  = "segment.update"
	ActionSegmentDelete  = "segment.delete"
	ActionGatewayCreate  = "gateway.create"
	ActionGatewayKey     = "gateway.key"
	ActionGatewayRevoke  = "gateway.revoke"
	ActionGatewayDelete  = "gateway.delete"
	ActionTunnelMode     = "gateway.tunnel"
	ActionResourceTest   = "resource.test"
	// Recordings: a gateway's upload, an auditor playing one (view) or
	// fetching its file (download).
	ActionRecordingUpload   = "recording.upload"
	ActionRecordingView     = "recording.view"
	ActionAuditExport       = "audit.export"
	ActionRecordingDelete   = "recording.delete"
	ActionSessionTerminate  = "session.terminate"
	ActionSessionWatch      = "session.watch"
	ActionRecordingDownload = "recording.download"
	// Video exports of desktop recordings: an auditor asking for one
	// (made, or the one made before reused) and downloading it.
	ActionRecordingExport         = "recording.export"
	ActionRecordingExportDownload = "recording.export.download"
	// File browser (SFTP): one event per operation, with the path, the
	// size where there is one, and the target's refusal as the reason.
	ActionFileList     = "file.list"
	ActionFileDownload = "file.download"
	ActionFileUpload   = "file.upload"
	ActionFileMkdir    = "file.mkdir"
	ActionFileRename   = "file.rename"
	ActionFileDelete   = "file.delete"
	ActionFileChmod    = "file.chmod"
)

// Outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeDenied  = "denied"
)

// genesis is the previous hash of the first event.
var genesis = strings.Repeat("0", 64)

// Event is what callers record; the log adds time and chain.
type Event struct {
	Actor      string
	Action     string
	Target     string
	ClientAddr string
	Outcome    string
	Reason     string
	Details    map[string]string
}

// Log writes and reads audit events.
type Log struct {
	store  *store.Store
	logger *slog.Logger
	now    func() time.Time
}

// New returns a Log on st.
func New(st *store.Store, logger *slog.Logger, now func() time.Time) *Log {
	return &Log{store: st, logger: logger, now: now}
}

// Record appends ev to the log and mirrors it to the process log.
func (l *Log) Record(ctx context.Context, ev Event) error {
	row, err := l.store.AppendAudit(ctx, func(prev string, id int64) (store.AuditEvent, error) {
		if prev == "" {
			prev = genesis
		}
		r := store.AuditEvent{
			ID: id, Time: l.now().UTC().Truncate(time.Microsecond), Actor: ev.Actor, Action: ev.Action, Target: ev.Target,
			ClientAddr: ev.ClientAddr, Outcome: ev.Outcome, Reason: ev.Reason, Details: ev.Details, PrevHash: prev,
		}
		if r.Details == nil {
			r.Details = map[string]string{}
		}
		r.Hash = Hash(r)
		return r, nil
	})
	if err != nil {
		return err
	}
	l.logger.Info("audit", "id", row.ID, "actor", ev.Actor, "action", ev.Action, "target", ev.Target,
		"outcome", ev.Outcome, "reason", ev.Reason, "client", ev.ClientAddr)
	return nil
}

// Hash computes an event's chain hash: SHA-256 over a canonical JSON
// encoding of its fields and the previous hash.
func Hash(e store.AuditEvent) string {
	// encoding/json writes map keys sorted, so the encoding is canonical.
	b, _ := json.Marshal(struct {
		ID         int64             `json:"id"`
		Time       int64             `json:"time"`
		Actor      string            `json:"actor"`
		Action     string            `json:"action"`
		Target     string            `json:"target"`
		ClientAddr string            `json:"client_addr"`
		Outcome    string            `json:"outcome"`
		Reason     string            `json:"reason"`
		Details    map[string]string `json:"details"`
		PrevHash   string            `json:"prev_hash"`
	}{e.ID, e.Time.UnixNano(), e.Actor, e.Action, e.Target, e.ClientAddr, e.Outcome, e.Reason, e.Details, e.PrevHash})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Search returns matching events, newest first.
func (l *Log) Search(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	return l.store.SearchAudit(ctx, f)
}

// Verify recomputes the whole chain and returns how many events it checked,
// or an error naming the first event that does not fit.
func (l *Log) Verify(ctx context.Context) (int, error) {
	n := 0
	prev := genesis
	var lastID int64
	err := l.store.AuditChain(ctx, func(e store.AuditEvent) error {
		if e.ID != lastID+1 {
			return fmt.Errorf("audit event %d is missing", lastID+1)
		}
		if e.PrevHash != prev {
			return fmt.Errorf("audit event %d does not follow event %d", e.ID, lastID)
		}
		if Hash(e) != e.Hash {
			return fmt.Errorf("audit event %d was altered", e.ID)
		}
		prev, lastID = e.Hash, e.ID
		n++
		return nil
	})
	return n, err
}
