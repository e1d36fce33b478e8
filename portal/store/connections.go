package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Results of a connection attempt.
const (
	// ConnectionConnected: the session started (it may have ended since).
	ConnectionConnected = "connected"
	// ConnectionRefused: the hook, a grant or a policy said no.
	ConnectionRefused = "refused"
	// ConnectionFailed: allowed, but the gateway or target could not be
	// reached or refused the login.
	ConnectionFailed = "failed"
)

// Connection is one connection attempt in the connection log.
type Connection struct {
	ID        int64
	SessionID string
	Start     time.Time
	User      string
	// ClientAddr is the client's address after trusted-proxy handling.
	ClientAddr string
	Resource   string
	// Protocol is ssh, sftp, rdp, vnc or tcp.
	Protocol string
	Gateway  string
	Segment  string
	// Result is ConnectionConnected, ConnectionRefused or ConnectionFailed.
	Result string
	// Reason is a machine code for a refusal or failure: a hook reason,
	// "policy", "no_grant", a dial code…; empty when connected.
	Reason string
	// Message is what the user was told.
	Message string
	// Posture are the hook's posture compliance statuses.
	Posture []string
	// End is zero while the session runs, and for attempts that never ran.
	End time.Time
	// BytesIn went from the client to the target, BytesOut back.
	BytesIn, BytesOut int64
}

// Running reports a connected session that has not ended (or whose end
// was never written: the portal stopped while it ran).
func (c Connection) Running() bool { return c.Result == ConnectionConnected && c.End.IsZero() }

// Duration is how long the session lasted; zero while it runs and for
// attempts that never ran.
func (c Connection) Duration() time.Duration {
	if c.End.IsZero() || c.End.Before(c.Start) {
		return 0
	}
	return c.End.Sub(c.Start)
}

// Bounds on what one connection row keeps. Values come from browsers,
// the hook and targets' errors: longer ones are cut (the attempt is still
// logged), in whole characters.
const (
	maxConnName       = 255  // user, resource, gateway, segment
	maxConnSessionID  = 128  // the portal's own ids are far shorter
	maxConnAddr       = 128  // an IPv6 address with a zone fits
	maxConnProtocol   = 16   // "ssh", "sftp"…
	maxConnReason     = 128  // a machine code
	maxConnMessage    = 1024 // the hook's are at most 255
	maxPostureEntries = 10   // the hook's response allows 10…
	maxPostureEntry   = 255  // …of at most 255 characters
)

// clip makes s valid UTF-8 without control characters (a log line must
// stay one line) and at most n characters long.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i, count := 0, 0
	for i = range s {
		if count == n {
			break
		}
		count++
	}
	return s[:i]
}

// bound clips every field of c to its limit.
func (c Connection) bound() Connection {
	c.SessionID = clip(c.SessionID, maxConnSessionID)
	c.User, c.Resource = clip(c.User, maxConnName), clip(c.Resource, maxConnName)
	c.Gateway, c.Segment = clip(c.Gateway, maxConnName), clip(c.Segment, maxConnName)
	c.ClientAddr = clip(c.ClientAddr, maxConnAddr)
	c.Protocol = clip(c.Protocol, maxConnProtocol)
	c.Reason = clip(c.Reason, maxConnReason)
	c.Message = clip(c.Message, maxConnMessage)
	posture := make([]string, 0, min(len(c.Posture), maxPostureEntries))
	for _, p := range c.Posture[:min(len(c.Posture), maxPostureEntries)] {
		posture = append(posture, clip(p, maxPostureEntry))
	}
	c.Posture = posture
	return c
}

// AddConnection logs a connection attempt and returns its id. Fields
// longer than their bounds are cut; a zero Start is now. A connected
// attempt is later finished with FinishConnection.
func (s *Store) AddConnection(ctx context.Context, c Connection) (int64, error) {
	switch c.Result {
	case ConnectionConnected, ConnectionRefused, ConnectionFailed:
	default:
		return 0, fmt.Errorf("log connection of %q to %q: unknown result %q", c.User, c.Resource, c.Result)
	}
	if c.Start.IsZero() {
		c.Start = s.now()
	}
	c = c.bound()
	posture, err := json.Marshal(c.Posture)
	if err != nil {
		return 0, fmt.Errorf("log connection of %q to %q: %w", c.User, c.Resource, err)
	}
	var id int64
	err = s.db.QueryRowContext(ctx, `INSERT INTO connections (session_id, start_ms, username, client_addr, resource, protocol, gateway, segment,
		result, reason, message, posture, end_ms, bytes_in, bytes_out) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		c.SessionID, c.Start.UnixMilli(), c.User, c.ClientAddr, c.Resource, c.Protocol, c.Gateway, c.Segment,
		c.Result, c.Reason, c.Message, string(posture), millis(c.End), max(c.BytesIn, 0), max(c.BytesOut, 0)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("log connection of %q to %q: %w", c.User, c.Resource, err)
	}
	return id, nil
}

// ErrConnectionNotRunning is returned when finishing a connection whose
// end was already written, or that never ran (refused, failed).
var ErrConnectionNotRunning = errors.New("connection is not running")

// FinishConnection writes the end of a running connection and the bytes
// it carried each way (client to target, target to client). An end before
// the start (the clock went back) is taken as the start. It fails with
// ErrNotFound for an unknown id and ErrConnectionNotRunning when the end
// was already written or the attempt never connected.
func (s *Store) FinishConnection(ctx context.Context, id int64, end time.Time, bytesIn, bytesOut int64) error {
	if end.IsZero() {
		return fmt.Errorf("finish connection %d: no end time", id)
	}
	if bytesIn < 0 || bytesOut < 0 {
		return fmt.Errorf("finish connection %d: negative byte count %d/%d", id, bytesIn, bytesOut)
	}
	// INDEXED BY: without statistics SQLite would take the result index
	// and read every connected row; this one holds only those running
	// (and the statement fails, in tests too, should it stop fitting).
	// PostgreSQL has no INDEXED BY (its planner has statistics) and
	// calls SQLite's max(a, b, c) GREATEST.
	q := `UPDATE connections INDEXED BY connections_running SET end_ms = max(?, start_ms, 1), bytes_in = ?, bytes_out = ?
		WHERE id = ? AND end_ms = 0 AND result = 'connected'`
	if s.pg {
		q = `UPDATE connections SET end_ms = GREATEST(?, start_ms, 1), bytes_in = ?, bytes_out = ?
		WHERE id = ? AND end_ms = 0 AND result = 'connected'`
	}
	res, err := s.db.ExecContext(ctx, q, end.UnixMilli(), bytesIn, bytesOut, id)
	if err != nil {
		return fmt.Errorf("finish connection %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM connections WHERE id = ?`, id).Scan(&n); err != nil {
		return fmt.Errorf("finish connection %d: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("finish connection %d: %w", id, ErrNotFound)
	}
	return fmt.Errorf("finish connection %d: %w", id, ErrConnectionNotRunning)
}

// ReasonInterrupted is the reason of a session the portal never saw end:
// it stopped (killed, crashed) while the session ran. Its end is when the
// portal started again, and its byte counts are not known.
const ReasonInterrupted = "interrupted"

// EndRunningConnections marks every connection still running as ended at
// at with ReasonInterrupted, and returns how many. The portal calls it as
// it starts, before any session can: any row still running then was left
// by a portal that stopped without ending its sessions.
func (s *Store) EndRunningConnections(ctx context.Context, at time.Time) (int64, error) {
	// INDEXED BY: without statistics SQLite would take the result index
	// and read every connected row; this one holds only those running
	// (and the statement fails, in tests too, should it stop fitting).
	q := `UPDATE connections INDEXED BY connections_running SET end_ms = max(?, start_ms, 1), reason = ?
		WHERE result = 'connected' AND end_ms = 0`
	if s.pg {
		q = `UPDATE connections SET end_ms = GREATEST(?, start_ms, 1), reason = ?
		WHERE result = 'connected' AND end_ms = 0`
	}
	res, err := s.db.ExecContext(ctx, q, at.UnixMilli(), ReasonInterrupted)
	if err != nil {
		return 0, fmt.Errorf("end the sessions an earlier portal left running: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("end the sessions an earlier portal left running: %w", err)
	}
	return n, nil
}

// maxEndSessions bounds the sessions one EndSessionConnections ends: a
// crashed replica's are ended in batches of it.
const maxEndSessions = 1000

// EndSessionConnections marks the running connections of the sessions
// ids as ended at at with ReasonInterrupted, and returns how many: those
// ran on a portal replica that stopped without ending them (crashed,
// killed, cut off), which the other replicas notice.
func (s *Store) EndSessionConnections(ctx context.Context, ids []string, at time.Time) (int64, error) {
	var total int64
	for len(ids) > 0 {
		batch := ids[:min(len(ids), maxEndSessions)]
		ids = ids[len(batch):]
		marks := strings.TrimSuffix(strings.Repeat("?,", len(batch)), ",")
		q := `UPDATE connections INDEXED BY connections_running SET end_ms = max(?, start_ms, 1), reason = ?
			WHERE result = 'connected' AND end_ms = 0 AND session_id IN (` + marks + `)`
		if s.pg {
			q = `UPDATE connections SET end_ms = GREATEST(?, start_ms, 1), reason = ?
			WHERE result = 'connected' AND end_ms = 0 AND session_id IN (` + marks + `)`
		}
		args := []any{at.UnixMilli(), ReasonInterrupted}
		for _, id := range batch {
			args = append(args, id)
		}
		res, err := s.db.ExecContext(ctx, q, args...)
		if err != nil {
			return total, fmt.Errorf("end the sessions of a stopped replica: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("end the sessions of a stopped replica: %w", err)
		}
		total += n
	}
	return total, nil
}

// ConnectionCursor is a position in the connection log, newest first: a
// page continues after (before, in time) the last row of the previous one.
type ConnectionCursor struct {
	StartMS int64
	ID      int64
}

// String encodes the cursor for a URL; "" for the zero cursor.
func (c ConnectionCursor) String() string {
	if c.ID == 0 {
		return ""
	}
	return strconv.FormatInt(c.StartMS, 10) + "_" + strconv.FormatInt(c.ID, 10)
}

// ParseConnectionCursor reads a cursor written by String.
func ParseConnectionCursor(s string) (ConnectionCursor, error) {
	a, b, ok := strings.Cut(s, "_")
	start, err1 := strconv.ParseInt(a, 10, 64)
	id, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || id <= 0 {
		return ConnectionCursor{}, fmt.Errorf("invalid page position %q", s)
	}
	return ConnectionCursor{StartMS: start, ID: id}, nil
}

// CursorAfter is the cursor just after c.
func (c Connection) CursorAfter() ConnectionCursor {
	return ConnectionCursor{StartMS: c.Start.UnixMilli(), ID: c.ID}
}

// ConnectionFilter selects connections; empty fields match everything.
type ConnectionFilter struct {
	// User, Resource, Protocol, Gateway and Result match exactly, the
	// names ignoring case.
	User, Resource, Protocol, Gateway, Result string
	// Since and Until bound the attempt's start: Since ≤ start < Until.
	Since, Until time.Time
	// Text must appear in the reason or the message.
	Text string
	// After continues a listing after this position; zero starts at the
	// newest.
	After ConnectionCursor
	// Limit is the page size, at most maxConnectionPage; 0 is the most.
	Limit int
}

// maxConnectionPage bounds one search.
const maxConnectionPage = 1000

const connectionColumns = `id, session_id, start_ms, username, client_addr, resource, protocol, gateway, segment,
	result, reason, message, posture, end_ms, bytes_in, bytes_out`

func scanConnection(row interface{ Scan(...any) error }) (Connection, error) {
	var c Connection
	var start, end int64
	var posture string
	if err := row.Scan(&c.ID, &c.SessionID, &start, &c.User, &c.ClientAddr, &c.Resource, &c.Protocol, &c.Gateway, &c.Segment,
		&c.Result, &c.Reason, &c.Message, &posture, &end, &c.BytesIn, &c.BytesOut); err != nil {
		return Connection{}, err
	}
	c.Start, c.End = time.UnixMilli(start).UTC(), fromMillis(end)
	if err := json.Unmarshal([]byte(posture), &c.Posture); err != nil {
		return Connection{}, fmt.Errorf("posture statuses of connection %d: %w", c.ID, err)
	}
	return c, nil
}

// connectionQuery builds the search: newest first by (start, id), which
// the per-column indexes serve in order, so a page reads about Limit rows
// whatever the log's size (Text aside, which scans).
func connectionQuery(f ConnectionFilter) (string, []any) {
	var where []string
	var args []any
	add := func(cond string, a ...any) { where = append(where, cond); args = append(args, a...) }
	for _, c := range []struct{ col, v string }{{"username", f.User}, {"resource", f.Resource}, {"protocol", f.Protocol},
		{"gateway", f.Gateway}, {"result", f.Result}} {
		if c.v != "" {
			add(c.col+` = ?`, c.v)
		}
	}
	if !f.Since.IsZero() {
		add(`start_ms >= ?`, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		add(`start_ms < ?`, f.Until.UnixMilli())
	}
	if f.After.ID > 0 {
		add(`(start_ms, id) < (?, ?)`, f.After.StartMS, f.After.ID)
	}
	if f.Text != "" {
		p := "%" + likeEscape(f.Text) + "%"
		add(`(lower(reason) LIKE lower(?) ESCAPE '\' OR lower(message) LIKE lower(?) ESCAPE '\')`, p, p)
	}
	limit := f.Limit
	if limit <= 0 || limit > maxConnectionPage {
		limit = maxConnectionPage
	}
	q := `SELECT ` + connectionColumns + ` FROM connections`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += fmt.Sprintf(` ORDER BY start_ms DESC, id DESC LIMIT %d`, limit)
	return q, args
}

// Connections returns the connection attempts f selects, newest first.
func (s *Store) Connections(ctx context.Context, f ConnectionFilter) ([]Connection, error) {
	q, args := connectionQuery(f)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("search the connection log: %w", err)
	}
	defer rows.Close()
	var out []Connection
	for rows.Next() {
		c, err := scanConnection(rows)
		if err != nil {
			return nil, fmt.Errorf("search the connection log: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search the connection log: %w", err)
	}
	return out, nil
}

// ConnectionByID returns one connection attempt.
func (s *Store) ConnectionByID(ctx context.Context, id int64) (Connection, error) {
	c, err := scanConnection(s.db.QueryRowContext(ctx, `SELECT `+connectionColumns+` FROM connections WHERE id = ?`, id))
	if err != nil {
		return Connection{}, fmt.Errorf("connection %d: %w", id, notFound(err))
	}
	return c, nil
}

// ExplainConnectionSearch returns SQLite's query plan for a search, one
// line per step, for tests that check indexes are used; ErrSQLiteOnly on
// PostgreSQL.
func (s *Store) ExplainConnectionSearch(ctx context.Context, f ConnectionFilter) ([]string, error) {
	if s.pg {
		return nil, ErrSQLiteOnly
	}
	q, args := connectionQuery(f)
	rows, err := s.db.QueryContext(ctx, `EXPLAIN QUERY PLAN `+q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			return nil, err
		}
		plan = append(plan, detail)
	}
	return plan, rows.Err()
}

// pruneBatch is how many rows one prune transaction deletes: a large
// first prune goes in short transactions, so sign-ins and audit writes
// wait for none of them long.
const pruneBatch = 5000

// PruneConnections deletes the attempts that started before t and returns
// how many it deleted.
func (s *Store) PruneConnections(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		res, err := s.db.ExecContext(ctx, `DELETE FROM connections WHERE id IN
			(SELECT id FROM connections WHERE start_ms < ? ORDER BY start_ms LIMIT ?)`, before.UnixMilli(), pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune the connection log: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("prune the connection log: %w", err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
