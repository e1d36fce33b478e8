package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// Policy scopes: whom a policy applies to.
const (
	ScopeEveryone = "everyone"
	ScopeResource = "resource"
	ScopeGroup    = "group"
)

// Policy restricts new connections beyond what grants allow: from where,
// when, for how long, how many at once, and what a session may do. The
// portal/policy package evaluates policies; the store only keeps them.
type Policy struct {
	ID          int64
	Name        string
	Description string
	// ScopeKind is ScopeEveryone, ScopeResource or ScopeGroup; ScopeID is
	// the resource's or group's id (0 for everyone) and ScopeName its name.
	ScopeKind string
	ScopeID   int64
	ScopeName string
	// Networks are the client networks connections may come from; empty
	// is any.
	Networks []netip.Prefix
	// Windows are when connections may start, in TimeZone; empty is
	// always.
	Windows  []PolicyWindow
	TimeZone string
	// MaxSession bounds a session's length; 0 is no limit.
	MaxSession time.Duration
	// MaxSessionsPerUser bounds one user's sessions running at once; 0
	// is no limit.
	MaxSessionsPerUser int
	// StepUpMinutes, when positive, asks for an MFA check passed within
	// the last that many minutes before each connection; 0 is off.
	StepUpMinutes int
	Allow         PolicyAllow
	Enabled       bool
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// PolicyWindow is a weekly time window: on each of Days, from minute From
// after midnight (inclusive) to minute To (exclusive, up to 1440). A window
// with To <= From runs over midnight into the next day.
type PolicyWindow struct {
	Days []time.Weekday `json:"days"`
	From int            `json:"from"`
	To   int            `json:"to"`
}

// PolicyAllow is what a policy lets sessions do.
type PolicyAllow struct {
	// Terminal allows interactive sessions: terminals and desktops.
	Terminal     bool
	Upload       bool
	Download     bool
	ClipboardIn  bool
	ClipboardOut bool
}

// AllowAll allows everything: the default of a new policy.
var AllowAll = PolicyAllow{Terminal: true, Upload: true, Download: true, ClipboardIn: true, ClipboardOut: true}

func policyScope(p Policy) (resourceID, groupID any, err error) {
	switch p.ScopeKind {
	case ScopeEveryone:
		return nil, nil, nil
	case ScopeResource:
		return p.ScopeID, nil, nil
	case ScopeGroup:
		return nil, p.ScopeID, nil
	}
	return nil, nil, fmt.Errorf("policy scope %q: want everyone, resource or group", p.ScopeKind)
}

func policyJSON(p Policy) (networks, windows string) {
	n, _ := json.Marshal(orEmpty(p.Networks))
	w, _ := json.Marshal(orEmpty(p.Windows))
	return string(n), string(w)
}

// orEmpty keeps a nil list from being stored as JSON null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// CreatePolicy inserts p.
func (s *Store) CreatePolicy(ctx context.Context, p Policy) (Policy, error) {
	res, grp, err := policyScope(p)
	if err != nil {
		return Policy{}, err
	}
	nets, wins := policyJSON(p)
	now := millis(s.now())
	var id int64
	err = s.db.QueryRowContext(ctx, `INSERT INTO policies (name, description, resource_id, group_id, networks, windows, time_zone,
		max_session_seconds, max_sessions_per_user, step_up_minutes, allow_terminal, allow_upload, allow_download, allow_clipboard_in,
		allow_clipboard_out, enabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		p.Name, p.Description, res, grp, nets, wins, p.TimeZone, int64(p.MaxSession/time.Second), p.MaxSessionsPerUser, p.StepUpMinutes,
		p.Allow.Terminal, p.Allow.Upload, p.Allow.Download, p.Allow.ClipboardIn, p.Allow.ClipboardOut, p.Enabled, now, now).Scan(&id)
	if err != nil {
		return Policy{}, fmt.Errorf("create policy %s: %w", p.Name, conflict(err, fmt.Sprintf("a policy named %s already exists", p.Name)))
	}
	return s.PolicyByID(ctx, id)
}

// UpdatePolicy saves every field of p but its id and creation time.
func (s *Store) UpdatePolicy(ctx context.Context, p Policy) error {
	res, grp, err := policyScope(p)
	if err != nil {
		return err
	}
	nets, wins := policyJSON(p)
	r, err := s.db.ExecContext(ctx, `UPDATE policies SET name = ?, description = ?, resource_id = ?, group_id = ?, networks = ?, windows = ?,
		time_zone = ?, max_session_seconds = ?, max_sessions_per_user = ?, step_up_minutes = ?, allow_terminal = ?, allow_upload = ?,
		allow_download = ?, allow_clipboard_in = ?, allow_clipboard_out = ?, enabled = ?, updated_at = ? WHERE id = ?`,
		p.Name, p.Description, res, grp, nets, wins, p.TimeZone, int64(p.MaxSession/time.Second), p.MaxSessionsPerUser, p.StepUpMinutes,
		p.Allow.Terminal, p.Allow.Upload, p.Allow.Download, p.Allow.ClipboardIn, p.Allow.ClipboardOut, p.Enabled, millis(s.now()), p.ID)
	if err != nil {
		return fmt.Errorf("update policy %d: %w", p.ID, conflict(err, fmt.Sprintf("a policy named %s already exists", p.Name)))
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("update policy %d: %w", p.ID, ErrNotFound)
	}
	return nil
}

// DeletePolicy removes a policy.
func (s *Store) DeletePolicy(ctx context.Context, id int64) error {
	return deleteByID(ctx, s.db, "policies", id)
}

const policyColumns = `p.id, p.name, p.description,
	CASE WHEN p.resource_id IS NOT NULL THEN 'resource' WHEN p.group_id IS NOT NULL THEN 'group' ELSE 'everyone' END,
	COALESCE(p.resource_id, p.group_id, 0), COALESCE(r.name, g.name, ''),
	p.networks, p.windows, p.time_zone, p.max_session_seconds, p.max_sessions_per_user, p.step_up_minutes,
	p.allow_terminal, p.allow_upload, p.allow_download, p.allow_clipboard_in, p.allow_clipboard_out, p.enabled, p.created_at, p.updated_at
	FROM policies p LEFT JOIN resources r ON r.id = p.resource_id LEFT JOIN groups g ON g.id = p.group_id`

func scanPolicy(row interface{ Scan(...any) error }) (Policy, error) {
	var p Policy
	var nets, wins string
	var maxSession, created, updated int64
	if err := row.Scan(&p.ID, &p.Name, &p.Description, &p.ScopeKind, &p.ScopeID, &p.ScopeName, &nets, &wins, &p.TimeZone,
		&maxSession, &p.MaxSessionsPerUser, &p.StepUpMinutes, &p.Allow.Terminal, &p.Allow.Upload, &p.Allow.Download, &p.Allow.ClipboardIn,
		&p.Allow.ClipboardOut, &p.Enabled, &created, &updated); err != nil {
		return Policy{}, err
	}
	// A row the portal cannot read must not become a policy that allows
	// more: the error stops every check that reads it.
	if err := json.Unmarshal([]byte(nets), &p.Networks); err != nil {
		return Policy{}, fmt.Errorf("policy %d networks: %w", p.ID, err)
	}
	if err := json.Unmarshal([]byte(wins), &p.Windows); err != nil {
		return Policy{}, fmt.Errorf("policy %d windows: %w", p.ID, err)
	}
	p.MaxSession = time.Duration(maxSession) * time.Second
	p.CreatedAt, p.UpdatedAt = fromMillis(created), fromMillis(updated)
	return p, nil
}

// PolicyByID returns the policy with id.
func (s *Store) PolicyByID(ctx context.Context, id int64) (Policy, error) {
	p, err := scanPolicy(s.db.QueryRowContext(ctx, `SELECT `+policyColumns+` WHERE p.id = ?`, id))
	if err != nil {
		return Policy{}, fmt.Errorf("policy %d: %w", id, notFound(err))
	}
	return p, nil
}

// ListPolicies returns every policy, enabled or not, by name.
func (s *Store) ListPolicies(ctx context.Context) ([]Policy, error) {
	return s.queryPolicies(ctx, `ORDER BY p.name`)
}

// PoliciesFor returns the enabled policies that apply to a connection of
// userID to resourceID: those for everyone, for the resource, and for a
// group the user is a member of, by name.
func (s *Store) PoliciesFor(ctx context.Context, userID, resourceID int64) ([]Policy, error) {
	return s.queryPolicies(ctx, `WHERE p.enabled <> 0 AND ((p.resource_id IS NULL AND p.group_id IS NULL) OR p.resource_id = ?
		OR p.group_id IN (SELECT group_id FROM group_members WHERE user_id = ?)) ORDER BY p.name`, resourceID, userID)
}

func (s *Store) queryPolicies(ctx context.Context, where string, args ...any) ([]Policy, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+policyColumns+` `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	defer rows.Close()
	var out []Policy
	for rows.Next() {
		p, err := scanPolicy(rows)
		if err != nil {
			return nil, fmt.Errorf("list policies: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	return out, nil
}
