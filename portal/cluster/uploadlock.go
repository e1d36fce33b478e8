package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyway-dev/keyway/recordings/storage"
)

// uploadLockClass namespaces the recording uploads' advisory locks
// (pg_try_advisory_lock(class, hashtext(key))). Two keys with the same
// 32-bit hash share a lock: the second upload is only told to retry.
const uploadLockClass int32 = 0x6b75 // "ku"

// Bounds of the upload locks.
const (
	// maxUploadLocks bounds the database connections this replica holds
	// for uploads in progress, one each: a gateway past it is told to
	// retry (HTTP 503).
	maxUploadLocks = 32
	// uploadLockTimeout bounds taking a lock (a connection, one query).
	uploadLockTimeout = 10 * time.Second
	// uploadUnlockTimeout bounds releasing it; the connection is closed
	// then, which releases it too.
	uploadUnlockTimeout = 5 * time.Second
)

// ErrUploadLock is wrapped by a Lock that could not ask the database,
// as opposed to storage.ErrBusy: another upload holds the key.
var ErrUploadLock = errors.New("cluster: take the recording's upload lock")

// Recordings returns s with its uploads' Lock held across the replicas:
// a gateway's upload can reach any replica, and two replicas appending to
// one recording in the bucket at once would interleave its parts. The
// lock is PostgreSQL's session-scoped advisory lock on a connection kept
// for the upload; a replica that dies loses its connection and so its
// locks. A key already locked, here or on another replica, gives
// storage.ErrBusy, which the gateway retries.
func (c *Cluster) Recordings(s storage.Store) storage.Store {
	return &lockedRecordings{Store: s, c: c}
}

type lockedRecordings struct {
	storage.Store
	c *Cluster
}

// Lock takes the in-process lock first, so that uploads this replica
// already runs cost no connection, then the cluster's.
func (r *lockedRecordings) Lock(key string) (unlock func(), err error) {
	local, err := r.Store.Lock(key)
	if err != nil {
		return nil, err
	}
	remote, err := r.c.lockUpload(key)
	if err != nil {
		local()
		return nil, err
	}
	return func() { remote(); local() }, nil
}

// lockUpload takes key's advisory lock on a connection of its own, kept
// until unlock. Not a pool: closing the cluster must not wait for the
// uploads still running, and their connections close with the process.
func (c *Cluster) lockUpload(key string) (unlock func(), err error) {
	select {
	case c.uploads <- struct{}{}:
	default:
		return nil, fmt.Errorf("%w of %s: %d uploads run on this replica already", ErrUploadLock, key, maxUploadLocks)
	}
	ctx, cancel := context.WithTimeout(c.ctx, uploadLockTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, c.conn.Copy())
	if err != nil {
		<-c.uploads
		return nil, fmt.Errorf("%w of %s: %w", ErrUploadLock, key, err)
	}
	closeConn := func() {
		// Closing the connection releases its locks.
		conn.Close(context.Background())
		<-c.uploads
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, uploadLockClass, key).Scan(&got); err != nil {
		closeConn()
		return nil, fmt.Errorf("%w of %s: %w", ErrUploadLock, key, err)
	}
	if !got {
		closeConn()
		return nil, storage.ErrBusy
	}
	return func() {
		// Released explicitly before the connection closes: PostgreSQL
		// ends a closed connection's backend, and its locks, a moment
		// later, and the next upload of the key may come at once.
		ctx, cancel := context.WithTimeout(context.Background(), uploadUnlockTimeout)
		defer cancel()
		var released bool
		if err := conn.QueryRow(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, uploadLockClass, key).Scan(&released); err != nil || !released {
			// The connection broke, and its lock went with it.
			c.logger.Warn("release a recording's upload lock", "key", key, "released", released, "err", err)
		}
		closeConn()
	}, nil
}
