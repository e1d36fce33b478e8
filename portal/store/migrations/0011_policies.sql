-- Access policies: rules every new connection must pass after the
-- authorization hook and the grants. A policy applies to everyone (both
-- scope columns NULL), to one resource or to the members of one group; it
-- goes with its resource or group. networks and windows are JSON arrays:
-- ["10.0.0.0/8"] and [{"days":[1,2,3,4,5],"from":540,"to":1020}] (days
-- 0 = Sunday, minutes after midnight in time_zone).
CREATE TABLE policies (
	id                    INTEGER PRIMARY KEY,
	name                  TEXT NOT NULL UNIQUE COLLATE NOCASE,
	description           TEXT NOT NULL DEFAULT '',
	resource_id           INTEGER REFERENCES resources (id) ON DELETE CASCADE,
	group_id              INTEGER REFERENCES groups (id) ON DELETE CASCADE,
	networks              TEXT NOT NULL DEFAULT '[]',
	windows               TEXT NOT NULL DEFAULT '[]',
	time_zone             TEXT NOT NULL DEFAULT 'UTC',
	max_session_seconds   INTEGER NOT NULL DEFAULT 0 CHECK (max_session_seconds >= 0),
	max_sessions_per_user INTEGER NOT NULL DEFAULT 0 CHECK (max_sessions_per_user >= 0),
	allow_terminal        INTEGER NOT NULL DEFAULT 1,
	allow_upload          INTEGER NOT NULL DEFAULT 1,
	allow_download        INTEGER NOT NULL DEFAULT 1,
	allow_clipboard_in    INTEGER NOT NULL DEFAULT 1,
	allow_clipboard_out   INTEGER NOT NULL DEFAULT 1,
	enabled               INTEGER NOT NULL DEFAULT 1,
	created_at            INTEGER NOT NULL,
	updated_at            INTEGER NOT NULL,
	CHECK (resource_id IS NULL OR group_id IS NULL)
);
CREATE INDEX policies_resource ON policies (resource_id);
CREATE INDEX policies_group ON policies (group_id);
