-- Each gateway's two keys (primary and secondary) its access tokens are
-- made with, sealed, with a generation that regenerating a key raises:
-- a token names the generation of its key, so old tokens stop working.
-- Also the state of the gateway's token as last issued and renewed.
CREATE TABLE gateway_credentials (
	gateway_id        INTEGER PRIMARY KEY REFERENCES gateways (id) ON DELETE CASCADE,
	primary_key       BLOB NOT NULL,
	primary_gen       INTEGER NOT NULL DEFAULT 1,
	-- Unix ms the key was last (re)generated.
	primary_at        INTEGER NOT NULL,
	secondary_key     BLOB NOT NULL,
	secondary_gen     INTEGER NOT NULL DEFAULT 1,
	secondary_at      INTEGER NOT NULL,
	-- The slot new tokens are made on: 'primary' or 'secondary'.
	active_slot       TEXT NOT NULL DEFAULT 'primary',
	-- 1 lets the gateway get a first token with its signature alone: set
	-- when an admin pins its key, used up by that first token.
	bootstrap         INTEGER NOT NULL DEFAULT 0,
	-- The token last issued: its slot and times (Unix ms).
	token_slot        TEXT NOT NULL DEFAULT '',
	token_issued_at   INTEGER NOT NULL DEFAULT 0,
	token_expires_at  INTEGER NOT NULL DEFAULT 0,
	-- Why the gateway's last renewal failed, as it reported; '' when its
	-- last renewal worked.
	renew_error       TEXT NOT NULL DEFAULT '',
	renew_error_at    INTEGER NOT NULL DEFAULT 0
);
