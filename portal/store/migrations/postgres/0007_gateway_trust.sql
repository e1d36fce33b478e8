-- A segment whose gateways serve untagged resources (the default) may be
-- chosen for a resource no tag ties to a segment; switched off, its
-- gateways only ever get the credentials of its own resources.
ALTER TABLE segments ADD COLUMN serves_untagged BIGINT NOT NULL DEFAULT 1;

-- The sessions the portal started and through which gateway, so that a
-- recording a gateway uploads (after restarts too) is checked against the
-- session it really ran: user, resource, protocol and times.
CREATE TABLE gateway_sessions (
	session_id  TEXT PRIMARY KEY,
	-- No foreign key: the record outlives the gateway.
	gateway_id  BIGINT NOT NULL,
	"user"      TEXT NOT NULL,
	resource    TEXT NOT NULL,
	protocol    TEXT NOT NULL,
	client_addr TEXT NOT NULL DEFAULT '',
	-- Unix ms: when the portal began to open it, when the gateway answered,
	-- when the portal's side closed (0 while running, or if the portal
	-- stopped first).
	started_at  BIGINT NOT NULL,
	opened_at   BIGINT NOT NULL,
	ended_at    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX gateway_sessions_started ON gateway_sessions (started_at);
