package store

import (
	"context"
	"fmt"
	"strings"
)

// SetFavourite stars (on) or unstars resourceID for userID. Starring twice
// or unstarring what is not starred is not an error.
func (s *Store) SetFavourite(ctx context.Context, userID, resourceID int64, on bool) error {
	var err error
	if on {
		_, err = s.db.ExecContext(ctx, `INSERT INTO favourites (user_id, resource_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
			userID, resourceID, millis(s.now()))
	} else {
		_, err = s.db.ExecContext(ctx, `DELETE FROM favourites WHERE user_id = ? AND resource_id = ?`, userID, resourceID)
	}
	if err != nil {
		return fmt.Errorf("set favourite %d of user %d: %w", resourceID, userID, err)
	}
	return nil
}

// Favourites returns the ids of the resources userID starred.
func (s *Store) Favourites(ctx context.Context, userID int64) (map[int64]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT resource_id FROM favourites WHERE user_id = ?`, userID)
	if err != nil {
		return nil, fmt.Errorf("favourites of user %d: %w", userID, err)
	}
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("favourites of user %d: %w", userID, err)
		}
		out[id] = true
	}
	return out, rows.Err()
}

// recentScan bounds how many of a user's latest audit events RecentTargets
// reads, so the home page costs the same after years of use.
const recentScan = 500

// RecentTargets returns the distinct targets of actor's latest successful
// events of action (such as "connect"), most recent first, at most limit.
// Names are folded to lower case, as resource names compare.
func (s *Store) RecentTargets(ctx context.Context, actor, action string, limit int) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT target FROM audit_events WHERE actor = ? AND action = ? AND outcome = 'success'
		ORDER BY id DESC LIMIT ?`, actor, action, recentScan)
	if err != nil {
		return nil, fmt.Errorf("recent %s of %s: %w", action, actor, err)
	}
	defer rows.Close()
	var out []string
	seen := map[string]bool{}
	for rows.Next() && len(out) < limit {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("recent %s of %s: %w", action, actor, err)
		}
		if t = strings.ToLower(t); t != "" && !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out, rows.Err()
}
