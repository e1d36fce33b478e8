-- Users, groups, resources, grants, API tokens, settings, audit events and
-- the web session store.
CREATE TABLE users (
	id            INTEGER PRIMARY KEY,
	name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
	display_name  TEXT NOT NULL DEFAULT '',
	role          TEXT NOT NULL CHECK (role IN ('admin', 'auditor', 'user')),
	password_hash TEXT NOT NULL,
	disabled      INTEGER NOT NULL DEFAULT 0,
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL
);

CREATE TABLE groups (
	id          INTEGER PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE COLLATE NOCASE,
	description TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL
);

CREATE TABLE group_members (
	group_id INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
	user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE resources (
	id                 INTEGER PRIMARY KEY,
	name               TEXT NOT NULL UNIQUE COLLATE NOCASE,
	description        TEXT NOT NULL DEFAULT '',
	protocol           TEXT NOT NULL,
	host               TEXT NOT NULL,
	port               INTEGER NOT NULL,
	login              TEXT NOT NULL DEFAULT '',
	tags               TEXT NOT NULL DEFAULT '[]',
	host_key           TEXT NOT NULL DEFAULT '',
	host_key_pinned_at INTEGER NOT NULL DEFAULT 0,
	-- AES-GCM sealed JSON of the credentials, bound to the row id.
	secrets            BLOB,
	has_password       INTEGER NOT NULL DEFAULT 0,
	has_private_key    INTEGER NOT NULL DEFAULT 0,
	created_at         INTEGER NOT NULL,
	updated_at         INTEGER NOT NULL
);

CREATE TABLE grants (
	id          INTEGER PRIMARY KEY,
	resource_id INTEGER NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
	user_id     INTEGER REFERENCES users (id) ON DELETE CASCADE,
	group_id    INTEGER REFERENCES groups (id) ON DELETE CASCADE,
	created_at  INTEGER NOT NULL,
	CHECK ((user_id IS NULL) <> (group_id IS NULL)),
	UNIQUE (resource_id, user_id),
	UNIQUE (resource_id, group_id)
);
CREATE INDEX grants_user ON grants (user_id);
CREATE INDEX grants_group ON grants (group_id);

CREATE TABLE tokens (
	id           INTEGER PRIMARY KEY,
	user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name         TEXT NOT NULL,
	hash         TEXT NOT NULL UNIQUE,
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	last_used_at INTEGER NOT NULL DEFAULT 0,
	revoked      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE settings (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);

CREATE TABLE audit_events (
	id          INTEGER PRIMARY KEY,
	time        INTEGER NOT NULL,
	actor       TEXT NOT NULL,
	action      TEXT NOT NULL,
	target      TEXT NOT NULL,
	client_addr TEXT NOT NULL,
	outcome     TEXT NOT NULL,
	reason      TEXT NOT NULL,
	details     TEXT NOT NULL,
	prev_hash   TEXT NOT NULL,
	hash        TEXT NOT NULL
);
CREATE INDEX audit_actor ON audit_events (actor, id);
CREATE INDEX audit_action ON audit_events (action, id);
CREATE INDEX audit_time ON audit_events (time);

-- The audit log is append-only.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

-- Web sessions, in the layout scs/sqlite3store expects.
CREATE TABLE sessions (
	token  TEXT PRIMARY KEY,
	data   BLOB NOT NULL,
	expiry REAL NOT NULL
);
CREATE INDEX sessions_expiry_idx ON sessions (expiry);
