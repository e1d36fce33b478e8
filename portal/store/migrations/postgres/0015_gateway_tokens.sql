-- Each gateway's two keys (primary and secondary) its access tokens are
-- made with, sealed, with a generation that regenerating a key raises,
-- and the state of the gateway's token (see ../0015_gateway_tokens.sql).
CREATE TABLE gateway_credentials (
	gateway_id        BIGINT PRIMARY KEY REFERENCES gateways (id) ON DELETE CASCADE,
	primary_key       BYTEA NOT NULL,
	primary_gen       BIGINT NOT NULL DEFAULT 1,
	primary_at        BIGINT NOT NULL,
	secondary_key     BYTEA NOT NULL,
	secondary_gen     BIGINT NOT NULL DEFAULT 1,
	secondary_at      BIGINT NOT NULL,
	active_slot       TEXT NOT NULL DEFAULT 'primary',
	bootstrap         BIGINT NOT NULL DEFAULT 0,
	token_slot        TEXT NOT NULL DEFAULT '',
	token_issued_at   BIGINT NOT NULL DEFAULT 0,
	token_expires_at  BIGINT NOT NULL DEFAULT 0,
	renew_error       TEXT NOT NULL DEFAULT '',
	renew_error_at    BIGINT NOT NULL DEFAULT 0
);
