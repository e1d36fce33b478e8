-- Replicas of the portal sharing this database (cluster mode: several
-- `portal serve` behind a load balancer). Written by portal/cluster only.
-- IF NOT EXISTS: replicas of an earlier build created these tables
-- themselves, before the store ran this file.

-- Each replica's row is refreshed by its heartbeat; a row older than the
-- cluster's TTL is a dead replica, deleted with its sessions by any other.
CREATE TABLE IF NOT EXISTS cluster_replicas (
	id           TEXT PRIMARY KEY,
	-- host:port of the replica's internal listener (--cluster-advertise).
	address      TEXT NOT NULL,
	started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
	heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The sessions running on every replica, for the Sessions page and the
-- per-user session cap.
CREATE TABLE IF NOT EXISTS cluster_sessions (
	id         TEXT PRIMARY KEY,
	replica_id TEXT NOT NULL REFERENCES cluster_replicas (id) ON DELETE CASCADE,
	user_id    BIGINT NOT NULL,
	-- counted: the session counts against the user's cap (tunnel streams
	-- have limits of their own).
	counted    BOOLEAN NOT NULL,
	started_at TIMESTAMPTZ NOT NULL,
	-- What the Sessions page shows of it (sessions.Entry as JSON).
	info       JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS cluster_sessions_user ON cluster_sessions (user_id);
CREATE INDEX IF NOT EXISTS cluster_sessions_replica ON cluster_sessions (replica_id);

-- Gateway health as the leader replica last checked it; the others read
-- it instead of checking every gateway themselves.
CREATE TABLE IF NOT EXISTS cluster_gateway_health (
	gateway_id      TEXT PRIMARY KEY,
	-- The fingerprint of the gateway key the leader checked: a replica
	-- that knows the gateway by another key ignores the row.
	key_fingerprint TEXT NOT NULL,
	state           TEXT NOT NULL,
	last_check      TIMESTAMPTZ,
	last_error      TEXT NOT NULL DEFAULT '',
	version         TEXT NOT NULL DEFAULT '',
	uptime_seconds  BIGINT NOT NULL DEFAULT 0,
	active_sessions INTEGER NOT NULL DEFAULT 0,
	checked_by      TEXT NOT NULL DEFAULT '',
	updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
