-- Gateway segments and gateways. Health is kept in memory by the portal;
-- only what an admin configures is stored.
CREATE TABLE segments (
	id               INTEGER PRIMARY KEY,
	name             TEXT NOT NULL UNIQUE COLLATE NOCASE,
	description      TEXT NOT NULL DEFAULT '',
	-- JSON list of CIDRs targets must be in; empty allows any.
	allowed_networks TEXT NOT NULL DEFAULT '[]',
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL
);

CREATE TABLE gateways (
	id              INTEGER PRIMARY KEY,
	name            TEXT NOT NULL UNIQUE COLLATE NOCASE,
	segment_id      INTEGER NOT NULL REFERENCES segments (id) ON DELETE RESTRICT,
	host            TEXT NOT NULL,
	ssh_port        INTEGER NOT NULL,
	management_port INTEGER NOT NULL,
	-- "ed25519:<base64>" once an admin pasted it; "" while pending.
	public_key      TEXT NOT NULL DEFAULT '',
	embedded        INTEGER NOT NULL DEFAULT 0,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL
);
CREATE INDEX gateways_segment ON gateways (segment_id);

INSERT INTO segments (name, description, created_at, updated_at)
VALUES ('default', 'The portal''s own embedded gateway', 0, 0);
