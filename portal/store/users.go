package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// Role is what a user may do in the portal.
type Role string

// Roles.
const (
	RoleAdmin   Role = "admin"
	RoleAuditor Role = "auditor"
	RoleUser    Role = "user"
)

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.ToLower(strings.TrimSpace(s))); r {
	case RoleAdmin, RoleAuditor, RoleUser:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q", s)
}

// User is a person who signs in to the portal. The password hash is kept
// out of this struct so it never travels with it.
type User struct {
	ID          int64
	Name        string
	DisplayName string
	Role        Role
	Groups      []string
	Disabled    bool
	// SessionEpoch moves on at every password change; web sessions signed
	// in under an older epoch are signed out.
	SessionEpoch int64
	// Source is where the user signs in: SourceLocal, or a provider's
	// ProviderSource ("oidc:corp", "ldap:ad").
	Source    string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Group is a named set of users that grants can name.
type Group struct {
	ID          int64
	Name        string
	Description string
	Members     int
}

// CreateUser inserts u with its password hash and group memberships.
func (s *Store) CreateUser(ctx context.Context, u User, passwordHash string) (User, error) {
	now := s.now()
	if u.Source == "" {
		u.Source = SourceLocal
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		u.ID, err = insertUser(ctx, tx, u, passwordHash, now)
		if err != nil {
			return err
		}
		return setGroups(ctx, tx, u.ID, u.Groups)
	})
	if err != nil {
		return User{}, fmt.Errorf("create user %s: %w", u.Name, err)
	}
	return s.UserByID(ctx, u.ID)
}

// insertUser inserts u (its Source set) and returns its id.
func insertUser(ctx context.Context, tx *sql.Tx, u User, passwordHash string, now time.Time) (int64, error) {
	// The session epoch starts at random: SQLite gives a deleted user's
	// id to the next user created, and a web session the deleted user
	// kept must not match the new one's epoch.
	var id int64
	err := tx.QueryRowContext(ctx, `INSERT INTO users (name, display_name, role, password_hash, disabled, session_epoch, source, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		u.Name, u.DisplayName, string(u.Role), passwordHash, u.Disabled, randomEpoch(), u.Source, millis(now), millis(now)).Scan(&id)
	if err != nil {
		return 0, conflict(err, fmt.Sprintf("a user named %s already exists", u.Name))
	}
	return id, nil
}

// randomEpoch is a new user's first session epoch, below 2^62 so that
// password changes never overflow it.
func randomEpoch() int64 {
	var b [8]byte
	rand.Read(b[:])
	return int64(binary.BigEndian.Uint64(b[:]) >> 2)
}

func setGroups(ctx context.Context, tx *sql.Tx, userID int64, groups []string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM group_members WHERE user_id = ?`, userID); err != nil {
		return err
	}
	for _, g := range groups {
		res, err := tx.ExecContext(ctx, `INSERT INTO group_members (group_id, user_id) SELECT id, ? FROM groups WHERE name = ? ON CONFLICT DO NOTHING`, userID, g)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var exists int
			tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM groups WHERE name = ?`, g).Scan(&exists)
			if exists == 0 {
				return fmt.Errorf("group %s: %w", g, ErrNotFound)
			}
		}
	}
	return nil
}

// UpdateUser saves u's name, display name, role, disabled flag, groups
// and source (an empty Source leaves it as it is).
func (s *Store) UpdateUser(ctx context.Context, u User) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET name = ?, display_name = ?, role = ?, disabled = ?, source = COALESCE(NULLIF(?, ''), source), updated_at = ? WHERE id = ?`,
			u.Name, u.DisplayName, string(u.Role), u.Disabled, u.Source, millis(s.now()), u.ID)
		if err != nil {
			return conflict(err, fmt.Sprintf("a user named %s already exists", u.Name))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return setGroups(ctx, tx, u.ID, u.Groups)
	})
	if err != nil {
		return fmt.Errorf("update user %d: %w", u.ID, err)
	}
	return nil
}

// DeleteUser deletes a user with their grants, memberships and tokens.
func (s *Store) DeleteUser(ctx context.Context, id int64) error {
	return deleteByID(ctx, s.db, "users", id)
}

func deleteByID(ctx context.Context, db *sql.DB, table string, id int64) error {
	res, err := db.ExecContext(ctx, `DELETE FROM `+table+` WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete from %s: %w", table, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

const userColumns = `u.id, u.name, u.display_name, u.role, u.disabled, u.session_epoch, u.source, u.created_at, u.updated_at,
	COALESCE((SELECT string_agg(g.name, '` + groupSep + `' ORDER BY g.name) FROM groups g JOIN group_members m ON m.group_id = g.id WHERE m.user_id = u.id), '')`

// groupSep separates a user's group names in userColumns: a control
// character no name has, written into the SQL as it is (SQLite's char(31)
// is PostgreSQL's chr(31)).
const groupSep = "\x1f"

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	var role, groups string
	var created, updated int64
	if err := row.Scan(&u.ID, &u.Name, &u.DisplayName, &role, &u.Disabled, &u.SessionEpoch, &u.Source, &created, &updated, &groups); err != nil {
		return User{}, err
	}
	u.Role, u.CreatedAt, u.UpdatedAt = Role(role), fromMillis(created), fromMillis(updated)
	if groups != "" {
		u.Groups = strings.Split(groups, "\x1f")
	}
	return u, nil
}

// UserByID returns the user with id.
func (s *Store) UserByID(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users u WHERE u.id = ?`, id))
	if err != nil {
		return User{}, fmt.Errorf("user %d: %w", id, notFound(err))
	}
	return u, nil
}

// UserByName returns the user called name (case-insensitive).
func (s *Store) UserByName(ctx context.Context, name string) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users u WHERE u.name = ?`, name))
	if err != nil {
		return User{}, fmt.Errorf("user %s: %w", name, notFound(err))
	}
	return u, nil
}

// ListUsers returns all users by name.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users u ORDER BY u.name`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// CountUsers returns how many users exist.
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n)
	return n, err
}

// PasswordHash returns a user's password hash.
func (s *Store) PasswordHash(ctx context.Context, userID int64) (string, error) {
	var h string
	if err := s.db.QueryRowContext(ctx, `SELECT password_hash FROM users WHERE id = ?`, userID).Scan(&h); err != nil {
		return "", fmt.Errorf("password of user %d: %w", userID, notFound(err))
	}
	return h, nil
}

// SetPasswordHash replaces a user's password hash and moves their session
// epoch on, which signs out every web session of theirs.
func (s *Store) SetPasswordHash(ctx context.Context, userID int64, hash string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET password_hash = ?, session_epoch = session_epoch + 1, updated_at = ? WHERE id = ?`, hash, millis(s.now()), userID)
	if err != nil {
		return fmt.Errorf("set password of user %d: %w", userID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// CreateGroup inserts g.
func (s *Store) CreateGroup(ctx context.Context, g Group) (Group, error) {
	err := s.db.QueryRowContext(ctx, `INSERT INTO groups (name, description, created_at) VALUES (?, ?, ?) RETURNING id`, g.Name, g.Description, millis(s.now())).Scan(&g.ID)
	if err != nil {
		return Group{}, fmt.Errorf("create group %s: %w", g.Name, conflict(err, fmt.Sprintf("a group named %s already exists", g.Name)))
	}
	return g, nil
}

// UpdateGroup saves g's name and description.
func (s *Store) UpdateGroup(ctx context.Context, g Group) error {
	res, err := s.db.ExecContext(ctx, `UPDATE groups SET name = ?, description = ? WHERE id = ?`, g.Name, g.Description, g.ID)
	if err != nil {
		return fmt.Errorf("update group %d: %w", g.ID, conflict(err, fmt.Sprintf("a group named %s already exists", g.Name)))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteGroup deletes a group, its memberships and grants.
func (s *Store) DeleteGroup(ctx context.Context, id int64) error {
	return deleteByID(ctx, s.db, "groups", id)
}

const groupColumns = `g.id, g.name, g.description, (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id)`

// GroupByID returns the group with id.
func (s *Store) GroupByID(ctx context.Context, id int64) (Group, error) {
	var g Group
	err := s.db.QueryRowContext(ctx, `SELECT `+groupColumns+` FROM groups g WHERE g.id = ?`, id).Scan(&g.ID, &g.Name, &g.Description, &g.Members)
	if err != nil {
		return Group{}, fmt.Errorf("group %d: %w", id, notFound(err))
	}
	return g, nil
}

// ListGroups returns all groups by name.
func (s *Store) ListGroups(ctx context.Context) ([]Group, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+groupColumns+` FROM groups g ORDER BY g.name`)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	defer rows.Close()
	var out []Group
	for rows.Next() {
		var g Group
		if err := rows.Scan(&g.ID, &g.Name, &g.Description, &g.Members); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// DeleteUnhashedSessions removes web sessions written before session
// tokens were stored hashed: their key is the token itself, which would
// sign in whoever reads the database. A hashed key is 64 hex digits; scs
// tokens are 43 characters. Their users sign in again.
func (s *Store) DeleteUnhashedSessions(ctx context.Context) (int64, error) {
	r, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE length(token) != 64 OR ltrim(token, '0123456789abcdef') != ''`)
	if err != nil {
		return 0, fmt.Errorf("delete web sessions stored unhashed: %w", err)
	}
	return r.RowsAffected()
}
