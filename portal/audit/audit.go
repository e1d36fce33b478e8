// Package audit records who did what in the portal, in an append-only log
// whose rows are chained by HMAC-SHA256 under a key kept outside the
// database, and anchored by signed checkpoints of the head kept outside it
// too, so that altering or removing one is detectable.
package audit

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
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
	// ActionUserUnlock is an admin lifting an account's sign-in lock.
	ActionUserUnlock     = "user.unlock"
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
	// Gateway keys and access tokens: an admin regenerating a key or
	// choosing the slot new tokens are made on; a token issued or
	// refused; a renewal the gateway reported as failed; a token near
	// its expiry.
	ActionGatewayKeyRegenerate   = "gateway.key.regenerate"
	ActionGatewayTokenSlot       = "gateway.token.slot"
	ActionGatewayTokenIssue      = "gateway.token.issue"
	ActionGatewayTokenRefused    = "gateway.token.refused"
	ActionGatewayTokenRenewError = "gateway.token.renew_failed"
	ActionGatewayTokenExpiring   = "gateway.token.expiring"
	ActionResourceTest           = "resource.test"
	// Access policies (portal/policy): an admin creating, changing or
	// deleting one.
	ActionPolicyCreate = "policy.create"
	ActionPolicyUpdate = "policy.update"
	ActionPolicyDelete = "policy.delete"
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
	// The connection log: retention deleting its old rows (one event per
	// sweep, with the count), an auditor downloading it as CSV.
	ActionConnectionPrune  = "connection.prune"
	ActionConnectionExport = "connection.export"
	// File browser (SFTP): one event per operation, with the path, the
	// size where there is one, and the target's refusal as the reason.
	ActionFileList     = "file.list"
	ActionFileDownload = "file.download"
	ActionFileUpload   = "file.upload"
	ActionFileMkdir    = "file.mkdir"
	ActionFileRename   = "file.rename"
	ActionFileDelete   = "file.delete"
	ActionFileChmod    = "file.chmod"
	// Native-client devices: a user approving or denying a device's
	// sign-in on /device, and a device revoked (by its user, an admin,
	// or itself at keyway logout).
	ActionDeviceApprove = "device.approve"
	ActionDeviceDeny    = "device.deny"
	ActionDeviceRevoke  = "device.revoke"
)

// Outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeDenied  = "denied"
)

// genesis is the previous hash of the first event.
var genesis = strings.Repeat("0", 64)

// macPrefix marks a row chained with HMAC-SHA256 under the log's key. Rows
// written before keyed chaining keep their plain SHA-256 hash (no prefix).
const macPrefix = "hmac-sha256:"

// HKDF info strings: the chain and the checkpoints each get their own key,
// derived from the portal's secrets key.
const (
	chainInfo      = "keyway audit chain v1"
	checkpointInfo = "keyway audit checkpoint v1"
)

// minKeySize is the shortest root key New takes (the secrets key is 32
// bytes).
const minKeySize = 32

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
	store         *store.Store
	logger        *slog.Logger
	now           func() time.Time
	chainKey      []byte
	checkpointKey []byte

	mu       sync.Mutex
	hmacFrom int64 // first HMAC-chained event once known; it never moves
}

// New returns a Log on st. key is the portal's secrets key, kept outside
// the database: the chain's HMAC key and the checkpoints' key are derived
// from it with HKDF-SHA256, so whoever can write the database but not read
// that key cannot rewrite rows and recompute the chain.
func New(st *store.Store, key []byte, logger *slog.Logger, now func() time.Time) (*Log, error) {
	if len(key) < minKeySize {
		return nil, fmt.Errorf("audit key has %d bytes, want at least %d", len(key), minKeySize)
	}
	chainKey, err := hkdf.Key(sha256.New, key, nil, chainInfo, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("derive audit chain key: %w", err)
	}
	checkpointKey, err := hkdf.Key(sha256.New, key, nil, checkpointInfo, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("derive audit checkpoint key: %w", err)
	}
	return &Log{store: st, logger: logger, now: now, chainKey: chainKey, checkpointKey: checkpointKey}, nil
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
		r.Hash = l.mac(r)
		return r, nil
	})
	if err != nil {
		return err
	}
	l.logger.Info("audit", "id", row.ID, "actor", ev.Actor, "action", ev.Action, "target", ev.Target,
		"outcome", ev.Outcome, "reason", ev.Reason, "client", ev.ClientAddr)
	return nil
}

// canonical is the encoding an event's chain value is computed over: its
// fields and the previous hash.
func canonical(e store.AuditEvent) []byte {
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
	return b
}

// Hash computes the plain chain hash of events written before keyed
// chaining: SHA-256 over the canonical encoding. Anyone can recompute it,
// which is why new events are chained with an HMAC instead.
func Hash(e store.AuditEvent) string {
	sum := sha256.Sum256(canonical(e))
	return hex.EncodeToString(sum[:])
}

// mac computes an event's keyed chain value.
func (l *Log) mac(e store.AuditEvent) string {
	m := hmac.New(sha256.New, l.chainKey)
	m.Write(canonical(e))
	return macPrefix + hex.EncodeToString(m.Sum(nil))
}

// Search returns matching events, newest first.
func (l *Log) Search(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	return l.store.SearchAudit(ctx, f)
}

// Report is what Verify found.
type Report struct {
	// Events is how many events were checked.
	Events int
	// HMACFrom is the first event chained with the key; 0 if none is.
	// Events before it were written by an older portal and keep their
	// plain SHA-256 hash; the first HMAC-chained event covers the last
	// of them, so they cannot be rewritten either.
	HMACFrom int64
	// Checkpoint is the latest checkpoint checked against, if any.
	Checkpoint *Checkpoint
}

// Verify recomputes the whole chain and checks it against checkpoints
// (from ReadCheckpoints; none is allowed). It returns what it checked, or
// an error naming the first event that does not fit: changed, missing,
// rechained without the key, or removed from the end after a checkpoint.
func (l *Log) Verify(ctx context.Context, checkpoints []Checkpoint) (Report, error) {
	var rep Report
	byEvent := map[int64]Checkpoint{}
	for _, c := range checkpoints {
		byEvent[c.Event] = c
		if rep.Checkpoint == nil || c.Event > rep.Checkpoint.Event || (c.Event == rep.Checkpoint.Event && c.Time.After(rep.Checkpoint.Time)) {
			rep.Checkpoint = &c
		}
	}
	prev := genesis
	var lastID int64
	err := l.store.AuditChain(ctx, func(e store.AuditEvent) error {
		if e.ID != lastID+1 {
			return fmt.Errorf("audit event %d is missing", lastID+1)
		}
		if e.PrevHash != prev {
			return fmt.Errorf("audit event %d does not follow event %d", e.ID, lastID)
		}
		if strings.HasPrefix(e.Hash, macPrefix) {
			if rep.HMACFrom == 0 {
				rep.HMACFrom = e.ID
			}
			if !hmac.Equal([]byte(l.mac(e)), []byte(e.Hash)) {
				return fmt.Errorf("audit event %d was altered (or the secrets key is not the one it was written with)", e.ID)
			}
		} else {
			if rep.HMACFrom != 0 {
				return fmt.Errorf("audit event %d has a plain hash although the HMAC chain started at event %d: it was rewritten without the key", e.ID, rep.HMACFrom)
			}
			if Hash(e) != e.Hash {
				return fmt.Errorf("audit event %d was altered", e.ID)
			}
		}
		if c, ok := byEvent[e.ID]; ok && c.Hash != e.Hash {
			return fmt.Errorf("audit event %d differs from the checkpoint of %s: it was altered", e.ID, c.Time.Format(time.RFC3339))
		}
		prev, lastID = e.Hash, e.ID
		rep.Events++
		return nil
	})
	if err != nil {
		return rep, err
	}
	if c := rep.Checkpoint; c != nil {
		if c.Event > lastID {
			return rep, fmt.Errorf("audit events %d to %d are missing: the checkpoint of %s names event %d", lastID+1, c.Event, c.Time.Format(time.RFC3339), c.Event)
		}
		if c.HMACFrom != 0 && c.HMACFrom != rep.HMACFrom {
			return rep, fmt.Errorf("the HMAC chain starts at event %d, but the checkpoint of %s says %d: events were rechained without the key", rep.HMACFrom, c.Time.Format(time.RFC3339), c.HMACFrom)
		}
	}
	return rep, nil
}
