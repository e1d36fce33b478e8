-- The connection log: one row per connection attempt (terminal, desktop,
-- files, watch, tunnel), whether it was refused, failed or connected, with
-- what the user was told and, once it ends, its end and bytes each way.
-- Names are copied, not referenced, because users, resources and gateways
-- can be deleted while their history is kept. Listing pages by (start_ms,
-- id) newest first with one index per filter column, as recordings do.
CREATE TABLE connections (
	id          INTEGER PRIMARY KEY,
	session_id  TEXT NOT NULL,
	start_ms    INTEGER NOT NULL,
	username    TEXT NOT NULL COLLATE NOCASE,
	client_addr TEXT NOT NULL,
	resource    TEXT NOT NULL COLLATE NOCASE,
	protocol    TEXT NOT NULL,
	gateway     TEXT NOT NULL COLLATE NOCASE,
	segment     TEXT NOT NULL COLLATE NOCASE,
	result      TEXT NOT NULL CHECK (result IN ('connected', 'refused', 'failed')),
	-- A machine code (a hook reason, "policy", "no_grant", a dial code).
	reason      TEXT NOT NULL,
	-- The words the user saw.
	message     TEXT NOT NULL,
	-- The hook's posture compliance statuses, a JSON array of strings.
	posture     TEXT NOT NULL DEFAULT '[]',
	-- 0 while the session runs (and for attempts that never ran).
	end_ms      INTEGER NOT NULL DEFAULT 0,
	-- Client to target, and target to client.
	bytes_in    INTEGER NOT NULL DEFAULT 0,
	bytes_out   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX connections_start ON connections (start_ms, id);
CREATE INDEX connections_user ON connections (username, start_ms, id);
CREATE INDEX connections_resource ON connections (resource, start_ms, id);
CREATE INDEX connections_protocol ON connections (protocol, start_ms, id);
CREATE INDEX connections_result ON connections (result, start_ms, id);
CREATE INDEX connections_gateway ON connections (gateway, start_ms, id);
-- The sessions still running: few, found at start without a scan.
CREATE INDEX connections_running ON connections (id) WHERE result = 'connected' AND end_ms = 0;
