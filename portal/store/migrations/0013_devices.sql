-- Devices are native clients (keyway) a user approved from the browser.
-- Each holds an ed25519 key made on the device (public_key, 32 bytes); its
-- credential kwd_<id>_<secret> is handed out once and only its SHA-256 is
-- kept. A revoked device keeps its row (revoked_at > 0) for the pages.
CREATE TABLE devices (
	id                    INTEGER PRIMARY KEY,
	user_id               INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name                  TEXT NOT NULL,
	os                    TEXT NOT NULL,
	arch                  TEXT NOT NULL,
	version               TEXT NOT NULL,
	public_key            BLOB NOT NULL,
	credential_hash       TEXT NOT NULL DEFAULT '',
	credential_expires_at INTEGER NOT NULL DEFAULT 0,
	created_at            INTEGER NOT NULL,
	last_used_at          INTEGER NOT NULL DEFAULT 0,
	last_addr             TEXT NOT NULL DEFAULT '',
	revoked_at            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX devices_user ON devices (user_id, id);

-- Device sign-in requests (RFC 8628 style), from the client's POST until
-- the credential is handed out, or until they expire and are swept.
-- device_code_hash is the SHA-256 of the secret the client polls with;
-- user_code the 8 letters a person types, without the dash.
CREATE TABLE device_requests (
	id               INTEGER PRIMARY KEY,
	device_code_hash TEXT NOT NULL UNIQUE,
	user_code        TEXT NOT NULL UNIQUE,
	public_key       BLOB NOT NULL,
	name             TEXT NOT NULL,
	os               TEXT NOT NULL,
	arch             TEXT NOT NULL,
	version          TEXT NOT NULL,
	client_addr      TEXT NOT NULL,
	created_at       INTEGER NOT NULL,
	expires_at       INTEGER NOT NULL,
	last_poll_at     INTEGER NOT NULL DEFAULT 0,
	status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'denied')),
	user_id          INTEGER REFERENCES users(id) ON DELETE CASCADE,
	device_id        INTEGER REFERENCES devices(id) ON DELETE CASCADE
);
CREATE INDEX device_requests_addr ON device_requests (client_addr, expires_at);
CREATE INDEX device_requests_expiry ON device_requests (expires_at);
