package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// AuditEvent is one row of the append-only, hash-chained audit log.
type AuditEvent struct {
	ID         int64
	Time       time.Time
	Actor      string
	Action     string
	Target     string
	ClientAddr string
	Outcome    string
	Reason     string
	Details    map[string]string
	PrevHash   string
	Hash       string
}

// AuditFilter selects audit events; empty fields match everything.
type AuditFilter struct {
	Actor   string
	Action  string // exact, or a prefix ending in "." such as "user."
	Outcome string
	Target  string
	Text    string // substring of target, reason or details
	Since   time.Time
	Until   time.Time
	Limit   int
	// BeforeID pages backwards: only events with a smaller id.
	BeforeID int64
}

// maxAuditPage bounds one search.
const maxAuditPage = 1000

// AppendAudit appends the event build returns, given the previous event's
// hash and the new event's id, in one write transaction so the chain stays
// consistent under concurrent writers.
func (s *Store) AppendAudit(ctx context.Context, build func(prevHash string, id int64) (AuditEvent, error)) (AuditEvent, error) {
	var ev AuditEvent
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var lastID int64
		var prev string
		err := tx.QueryRowContext(ctx, `SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1`).Scan(&lastID, &prev)
		if err != nil && err != sql.ErrNoRows {
			return err
		}
		if ev, err = build(prev, lastID+1); err != nil {
			return err
		}
		details, err := json.Marshal(ev.Details)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_events (id, time, actor, action, target, client_addr, outcome, reason, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			ev.ID, ev.Time.UnixNano(), ev.Actor, ev.Action, ev.Target, ev.ClientAddr, ev.Outcome, ev.Reason, string(details), ev.PrevHash, ev.Hash)
		return err
	})
	if err != nil {
		return AuditEvent{}, fmt.Errorf("append audit event: %w", err)
	}
	return ev, nil
}

const auditColumns = `id, time, actor, action, target, client_addr, outcome, reason, details, prev_hash, hash`

func scanAudit(rows *sql.Rows) (AuditEvent, error) {
	var e AuditEvent
	var t int64
	var details string
	if err := rows.Scan(&e.ID, &t, &e.Actor, &e.Action, &e.Target, &e.ClientAddr, &e.Outcome, &e.Reason, &details, &e.PrevHash, &e.Hash); err != nil {
		return AuditEvent{}, err
	}
	e.Time = time.Unix(0, t).UTC()
	if err := json.Unmarshal([]byte(details), &e.Details); err != nil {
		return AuditEvent{}, fmt.Errorf("details of audit event %d: %w", e.ID, err)
	}
	return e, nil
}

// SearchAudit returns matching events, newest first.
func (s *Store) SearchAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
	var where []string
	var args []any
	add := func(cond string, a ...any) { where = append(where, cond); args = append(args, a...) }
	if f.Actor != "" {
		add(`actor = ?`, f.Actor)
	}
	if f.Action != "" {
		if strings.HasSuffix(f.Action, ".") {
			add(`lower(action) LIKE lower(?) ESCAPE '\'`, likeEscape(f.Action)+"%")
		} else {
			add(`action = ?`, f.Action)
		}
	}
	if f.Outcome != "" {
		add(`outcome = ?`, f.Outcome)
	}
	if f.Target != "" {
		add(`target = ?`, f.Target)
	}
	if f.Text != "" {
		p := "%" + likeEscape(f.Text) + "%"
		add(`(lower(target) LIKE lower(?) ESCAPE '\' OR lower(reason) LIKE lower(?) ESCAPE '\' OR lower(details) LIKE lower(?) ESCAPE '\' OR lower(actor) LIKE lower(?) ESCAPE '\')`, p, p, p, p)
	}
	if !f.Since.IsZero() {
		add(`time >= ?`, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		add(`time < ?`, f.Until.UnixNano())
	}
	if f.BeforeID > 0 {
		add(`id < ?`, f.BeforeID)
	}
	limit := f.Limit
	if limit <= 0 || limit > maxAuditPage {
		limit = maxAuditPage
	}
	q := `SELECT ` + auditColumns + ` FROM audit_events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += fmt.Sprintf(` ORDER BY id DESC LIMIT %d`, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("search audit events: %w", err)
	}
	defer rows.Close()
	var out []AuditEvent
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// AuditChain calls fn for every event, oldest first.
func (s *Store) AuditChain(ctx context.Context, fn func(AuditEvent) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit_events ORDER BY id`)
	if err != nil {
		return fmt.Errorf("read audit chain: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// AuditHead returns the newest event's id and hash; 0 and "" when the log
// is empty.
func (s *Store) AuditHead(ctx context.Context) (int64, string, error) {
	var id int64
	var hash string
	err := s.db.QueryRowContext(ctx, `SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1`).Scan(&id, &hash)
	if err == sql.ErrNoRows {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("read audit head: %w", err)
	}
	return id, hash, nil
}

// FirstAuditWithHashPrefix returns the id of the oldest event whose hash
// starts with prefix, or 0 if none does.
func (s *Store) FirstAuditWithHashPrefix(ctx context.Context, prefix string) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT id FROM audit_events WHERE lower(hash) LIKE lower(?) ESCAPE '\' ORDER BY id LIMIT 1`, likeEscape(prefix)+"%").Scan(&id)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find the start of the audit HMAC chain: %w", err)
	}
	return id, nil
}
