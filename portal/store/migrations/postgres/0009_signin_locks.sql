-- Failed sign-ins of an account, kept here rather than only in memory so
-- that a restart neither lifts a lock nor hides it from the admin's page.
-- failures counts within the window that began at first_failure.
CREATE TABLE signin_locks (
	user_id       BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
	failures      BIGINT NOT NULL,
	first_failure BIGINT NOT NULL,
	last_failure  BIGINT NOT NULL,
	last_addr     TEXT NOT NULL DEFAULT '',
	locked_until  BIGINT NOT NULL DEFAULT 0
);
