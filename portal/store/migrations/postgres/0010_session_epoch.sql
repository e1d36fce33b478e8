-- A user's session epoch counts their password changes: a web session (and
-- a terminal, desktop or file session started from it) belongs to the epoch
-- it was signed in under, and ends when the epoch moves on.
ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
