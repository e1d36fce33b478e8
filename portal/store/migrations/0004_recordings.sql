-- Session recordings uploaded by gateways: the metadata here, the bytes in
-- the recordings directory (path is relative to it). Listing pages by
-- (start_ms, id) newest first, with one index per filter column, so a page
-- costs the same with 100,000 recordings as with ten.
CREATE TABLE recordings (
	id          INTEGER PRIMARY KEY,
	session_id  TEXT NOT NULL UNIQUE,
	username    TEXT NOT NULL COLLATE NOCASE,
	resource    TEXT NOT NULL COLLATE NOCASE,
	protocol    TEXT NOT NULL,
	-- The gateway that made and uploaded it, as authenticated; its name is
	-- kept because gateways can be deleted.
	gateway_id  INTEGER NOT NULL,
	gateway     TEXT NOT NULL COLLATE NOCASE,
	client_addr TEXT NOT NULL,
	format      TEXT NOT NULL,
	start_ms    INTEGER NOT NULL,
	end_ms      INTEGER NOT NULL,
	size        INTEGER NOT NULL,
	sha256      TEXT NOT NULL,
	-- 1 when cut short (a gateway crash, a write error): plays up to there.
	incomplete  INTEGER NOT NULL DEFAULT 0,
	-- 1 when typed input was recorded too.
	input       INTEGER NOT NULL DEFAULT 0,
	path        TEXT NOT NULL,
	stored_ms   INTEGER NOT NULL
);
CREATE INDEX recordings_start ON recordings (start_ms, id);
CREATE INDEX recordings_user ON recordings (username, start_ms, id);
CREATE INDEX recordings_resource ON recordings (resource, start_ms, id);
CREATE INDEX recordings_gateway ON recordings (gateway, start_ms, id);
CREATE INDEX recordings_protocol ON recordings (protocol, start_ms, id);

-- The plain text of terminal output, for full-text search; docid is the
-- recording's id. FTS4 is built into mattn/go-sqlite3 by default (FTS5
-- would need the sqlite_fts5 build tag on every build and test).
CREATE VIRTUAL TABLE recordings_text USING fts4(text, tokenize=unicode61);

CREATE TRIGGER recordings_text_delete AFTER DELETE ON recordings
BEGIN DELETE FROM recordings_text WHERE docid = old.id; END;
