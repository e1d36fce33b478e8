package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SignInLock is an account's recent failed sign-ins and, past the limit,
// until when it is locked.
type SignInLock struct {
	Failures     int
	FirstFailure time.Time
	LastFailure  time.Time
	// LastAddr is the client address of the last failure.
	LastAddr    string
	LockedUntil time.Time
}

// Locked reports whether the account is locked at now.
func (l SignInLock) Locked(now time.Time) bool { return l.LockedUntil.After(now) }

// SignInLock returns userID's failed sign-ins; the zero SignInLock if it
// has none.
func (s *Store) SignInLock(ctx context.Context, userID int64) (SignInLock, error) {
	var l SignInLock
	var first, last, until int64
	err := s.db.QueryRowContext(ctx, `SELECT failures, first_failure, last_failure, last_addr, locked_until FROM signin_locks WHERE user_id = ?`, userID).
		Scan(&l.Failures, &first, &last, &l.LastAddr, &until)
	if errors.Is(err, sql.ErrNoRows) {
		return SignInLock{}, nil
	}
	if err != nil {
		return SignInLock{}, fmt.Errorf("sign-in lock of user %d: %w", userID, err)
	}
	l.FirstFailure, l.LastFailure, l.LockedUntil = fromMillis(first), fromMillis(last), fromMillis(until)
	return l, nil
}

// AddSignInFailure counts a failed sign-in of userID from addr at now.
// Failures count within window from the first; at max the account is
// locked for window from now.
func (s *Store) AddSignInFailure(ctx context.Context, userID int64, addr string, now time.Time, window time.Duration, max int) (SignInLock, error) {
	var l SignInLock
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var first, until int64
		err := tx.QueryRowContext(ctx, `SELECT failures, first_failure, locked_until FROM signin_locks WHERE user_id = ?`, userID).Scan(&l.Failures, &first, &until)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		l.FirstFailure, l.LockedUntil = fromMillis(first), fromMillis(until)
		if err != nil || now.Sub(l.FirstFailure) >= window {
			l.Failures, l.FirstFailure = 0, now
		}
		l.Failures++
		l.LastFailure, l.LastAddr = now, addr
		if l.Failures >= max {
			l.LockedUntil = now.Add(window)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO signin_locks (user_id, failures, first_failure, last_failure, last_addr, locked_until) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (user_id) DO UPDATE SET failures = excluded.failures, first_failure = excluded.first_failure, last_failure = excluded.last_failure,
			last_addr = excluded.last_addr, locked_until = excluded.locked_until`,
			userID, l.Failures, millis(l.FirstFailure), millis(l.LastFailure), l.LastAddr, millis(l.LockedUntil))
		return err
	})
	if err != nil {
		return SignInLock{}, fmt.Errorf("count failed sign-in of user %d: %w", userID, err)
	}
	return l, nil
}

// ClearSignInLock forgets userID's failed sign-ins, lifting any lock.
func (s *Store) ClearSignInLock(ctx context.Context, userID int64) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM signin_locks WHERE user_id = ?`, userID); err != nil {
		return fmt.Errorf("clear sign-in lock of user %d: %w", userID, err)
	}
	return nil
}
