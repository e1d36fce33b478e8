-- The cluster tables of the PostgreSQL schema (migrations/postgres/
-- 0016_cluster.sql), kept here so that both databases have the same
-- versions. A portal on SQLite is one process and never writes them.
CREATE TABLE cluster_replicas (
	id           TEXT PRIMARY KEY,
	address      TEXT NOT NULL,
	started_at   INTEGER NOT NULL,
	heartbeat_at INTEGER NOT NULL
);
CREATE TABLE cluster_sessions (
	id         TEXT PRIMARY KEY,
	replica_id TEXT NOT NULL REFERENCES cluster_replicas (id) ON DELETE CASCADE,
	user_id    INTEGER NOT NULL,
	counted    INTEGER NOT NULL,
	started_at INTEGER NOT NULL,
	info       TEXT NOT NULL
);
CREATE TABLE cluster_gateway_health (
	gateway_id      TEXT PRIMARY KEY,
	key_fingerprint TEXT NOT NULL,
	state           TEXT NOT NULL,
	last_check      INTEGER,
	last_error      TEXT NOT NULL DEFAULT '',
	version         TEXT NOT NULL DEFAULT '',
	uptime_seconds  INTEGER NOT NULL DEFAULT 0,
	active_sessions INTEGER NOT NULL DEFAULT 0,
	checked_by      TEXT NOT NULL DEFAULT '',
	updated_at      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX cluster_sessions_user ON cluster_sessions (user_id);
CREATE INDEX cluster_sessions_replica ON cluster_sessions (replica_id);
