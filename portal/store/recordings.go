package store

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Recording is a stored session recording's metadata; its bytes are in
// the recordings directory at Path.
type Recording struct {
	ID         int64
	SessionID  string
	User       string
	Resource   string
	Protocol   string
	GatewayID  int64
	Gateway    string
	ClientAddr string
	Format     string
	Start      time.Time
	End        time.Time
	Size       int64
	SHA256     string
	// Incomplete recordings were cut short (a gateway crash or a write
	// error); they play up to where they stop.
	Incomplete bool
	// Input is true when typed input was recorded too.
	Input    bool
	Path     string
	StoredAt time.Time
}

// Duration is how long the recorded session lasted.
func (r Recording) Duration() time.Duration { return r.End.Sub(r.Start) }

// RecordingCursor is a position in the list of recordings, newest first:
// a page continues after (before, in time) the last recording of the
// previous one.
type RecordingCursor struct {
	StartMS int64
	ID      int64
}

// String encodes the cursor for a URL.
func (c RecordingCursor) String() string {
	if c.ID == 0 {
		return ""
	}
	return strconv.FormatInt(c.StartMS, 10) + "_" + strconv.FormatInt(c.ID, 10)
}

// ParseRecordingCursor reads a cursor written by String.
func ParseRecordingCursor(s string) (RecordingCursor, error) {
	a, b, ok := strings.Cut(s, "_")
	start, err1 := strconv.ParseInt(a, 10, 64)
	id, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || id <= 0 {
		return RecordingCursor{}, fmt.Errorf("invalid page position %q", s)
	}
	return RecordingCursor{StartMS: start, ID: id}, nil
}

// CursorOf is the cursor just after r.
func CursorOf(r Recording) RecordingCursor {
	return RecordingCursor{StartMS: r.Start.UnixMilli(), ID: r.ID}
}

// RecordingFilter selects recordings; empty fields match everything.
type RecordingFilter struct {
	// User, Resource, Protocol and Gateway match exactly, ignoring case.
	User, Resource, Protocol, Gateway string
	// Since and Until bound the session's start.
	Since, Until time.Time
	// Text are words that must all appear in the terminal output.
	Text string
	// After continues a listing after this position; zero starts at the
	// newest.
	After RecordingCursor
	Limit int
}

// maxRecordingPage bounds one search.
const maxRecordingPage = 500

// AddRecording stores a recording's metadata and the plain text of its
// terminal output (for search) in one transaction. A recording of the
// same session already stored is a *ConflictError.
func (s *Store) AddRecording(ctx context.Context, r Recording, text string) (Recording, error) {
	r.StoredAt = s.now().UTC()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO recordings (session_id, username, resource, protocol, gateway_id, gateway, client_addr, format,
			start_ms, end_ms, size, sha256, incomplete, input, path, stored_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			r.SessionID, r.User, r.Resource, r.Protocol, r.GatewayID, r.Gateway, r.ClientAddr, r.Format,
			r.Start.UnixMilli(), r.End.UnixMilli(), r.Size, r.SHA256, r.Incomplete, r.Input, r.Path, r.StoredAt.UnixMilli()).Scan(&r.ID)
		if err != nil {
			return conflict(err, "a recording of session "+r.SessionID+" is already stored")
		}
		switch {
		case text == "":
		case s.pg:
			_, err = tx.ExecContext(ctx, `INSERT INTO recordings_text (docid, text, words) VALUES (?, ?, to_tsvector('simple', ?))`, r.ID, text, searchWords(text))
		default:
			_, err = tx.ExecContext(ctx, `INSERT INTO recordings_text (docid, text) VALUES (?, ?)`, r.ID, text)
		}
		return err
	})
	if err != nil {
		return Recording{}, fmt.Errorf("add recording of session %s: %w", r.SessionID, err)
	}
	return r, nil
}

const recordingColumns = `r.id, r.session_id, r.username, r.resource, r.protocol, r.gateway_id, r.gateway, r.client_addr, r.format,
	r.start_ms, r.end_ms, r.size, r.sha256, r.incomplete, r.input, r.path, r.stored_ms`

func scanRecording(row interface{ Scan(...any) error }) (Recording, error) {
	var r Recording
	var start, end, stored int64
	err := row.Scan(&r.ID, &r.SessionID, &r.User, &r.Resource, &r.Protocol, &r.GatewayID, &r.Gateway, &r.ClientAddr, &r.Format,
		&start, &end, &r.Size, &r.SHA256, &r.Incomplete, &r.Input, &r.Path, &stored)
	r.Start, r.End, r.StoredAt = time.UnixMilli(start).UTC(), time.UnixMilli(end).UTC(), time.UnixMilli(stored).UTC()
	return r, err
}

// RecordingByID returns a recording's metadata.
func (s *Store) RecordingByID(ctx context.Context, id int64) (Recording, error) {
	r, err := scanRecording(s.db.QueryRowContext(ctx, `SELECT `+recordingColumns+` FROM recordings r WHERE r.id = ?`, id))
	if err != nil {
		return Recording{}, fmt.Errorf("recording %d: %w", id, notFound(err))
	}
	return r, nil
}

// RecordingBySession returns the recording of a session.
func (s *Store) RecordingBySession(ctx context.Context, sessionID string) (Recording, error) {
	r, err := scanRecording(s.db.QueryRowContext(ctx, `SELECT `+recordingColumns+` FROM recordings r WHERE r.session_id = ?`, sessionID))
	if err != nil {
		return Recording{}, fmt.Errorf("recording of session %s: %w", sessionID, notFound(err))
	}
	return r, nil
}

// recordingQuery builds the search: newest first by (start, id), which the
// per-column indexes serve in order, so a page reads about Limit rows
// whatever the table's size.
func recordingQuery(f RecordingFilter, pg bool) (string, []any) {
	var where []string
	var args []any
	add := func(cond string, a ...any) { where = append(where, cond); args = append(args, a...) }
	for _, c := range []struct{ col, v string }{{"username", f.User}, {"resource", f.Resource}, {"protocol", f.Protocol}, {"gateway", f.Gateway}} {
		if c.v != "" {
			add(`r.`+c.col+` = ?`, c.v)
		}
	}
	if !f.Since.IsZero() {
		add(`r.start_ms >= ?`, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		add(`r.start_ms < ?`, f.Until.UnixMilli())
	}
	if f.After.ID > 0 {
		add(`(r.start_ms, r.id) < (?, ?)`, f.After.StartMS, f.After.ID)
	}
	if q := MatchQuery(f.Text); q != "" {
		if pg {
			add(`r.id IN (SELECT docid FROM recordings_text WHERE words @@ to_tsquery('simple', ?))`, tsQuery(f.Text))
		} else {
			add(`r.id IN (SELECT docid FROM recordings_text WHERE recordings_text MATCH ?)`, q)
		}
	}
	limit := f.Limit
	if limit <= 0 || limit > maxRecordingPage {
		limit = maxRecordingPage
	}
	q := `SELECT ` + recordingColumns + ` FROM recordings r`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += fmt.Sprintf(` ORDER BY r.start_ms DESC, r.id DESC LIMIT %d`, limit)
	return q, args
}

// MatchQuery turns words a person typed into a full-text query that finds
// recordings containing all of them: each word is a quoted phrase (so
// "deploy-42" matches those two tokens side by side, and no word is read
// as an operator); a trailing * keeps prefix search. It returns "" when
// nothing searchable is left.
func MatchQuery(text string) string {
	var terms []string
	for _, w := range strings.Fields(text) {
		prefix := strings.HasSuffix(w, "*")
		w = strings.Map(func(r rune) rune {
			if r == '"' || r == '*' {
				return ' '
			}
			return r
		}, w)
		if w = strings.TrimSpace(w); w == "" {
			continue
		}
		if prefix {
			w += "*"
		}
		terms = append(terms, `"`+w+`"`)
	}
	return strings.Join(terms, " ")
}

// SearchRecordings returns matching recordings, newest first.
func (s *Store) SearchRecordings(ctx context.Context, f RecordingFilter) ([]Recording, error) {
	q, args := recordingQuery(f, s.pg)
	return s.queryRecordings(ctx, "search recordings", q, args...)
}

// queryRecordings runs q, which selects recordingColumns, and scans the
// rows; what names the query in errors.
func (s *Store) queryRecordings(ctx context.Context, what, q string, args ...any) ([]Recording, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []Recording
	for rows.Next() {
		r, err := scanRecording(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ExplainRecordingSearch returns SQLite's query plan for a search, one
// line per step, for tests that check indexes are used; ErrSQLiteOnly on
// PostgreSQL.
func (s *Store) ExplainRecordingSearch(ctx context.Context, f RecordingFilter) ([]string, error) {
	if s.pg {
		return nil, ErrSQLiteOnly
	}
	q, args := recordingQuery(f, false)
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

// RecordingsStartedBefore returns up to limit recordings that started
// before t, oldest first (the retention job's batch).
func (s *Store) RecordingsStartedBefore(ctx context.Context, t time.Time, limit int) ([]Recording, error) {
	return s.queryRecordings(ctx, "expired recordings",
		`SELECT `+recordingColumns+` FROM recordings r WHERE r.start_ms < ? ORDER BY r.start_ms, r.id LIMIT ?`, t.UnixMilli(), limit)
}

// DeleteRecording removes a recording's metadata and searchable text.
func (s *Store) DeleteRecording(ctx context.Context, id int64) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM recordings WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete recording %d: %w", id, err)
	}
	return nil
}
