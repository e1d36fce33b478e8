-- Identity (issue 20): single sign-on providers, accounts linked to them,
-- multi-factor authentication and step-up.

-- Where a user signs in: 'local' (a password kept here), or the
-- provider's kind and name, e.g. 'oidc:corp', 'saml:okta', 'ldap:ad'.
ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local';

-- Identity providers. name is a slug ([a-z0-9-], 1-32) used in URLs and in
-- users.source; config is the kind's JSON settings, sealed with the secrets
-- key (it holds client secrets and bind passwords). jit_create makes users
-- on first sign-in with jit_role; otherwise only users an admin created
-- with this provider as their source may sign in.
CREATE TABLE identity_providers (
	id           INTEGER PRIMARY KEY,
	kind         TEXT NOT NULL CHECK (kind IN ('oidc', 'saml', 'ldap')),
	name         TEXT NOT NULL UNIQUE COLLATE NOCASE,
	display_name TEXT NOT NULL,
	enabled      INTEGER NOT NULL DEFAULT 1,
	config       BLOB NOT NULL,
	jit_create   INTEGER NOT NULL DEFAULT 0,
	jit_role     TEXT NOT NULL DEFAULT 'user' CHECK (jit_role IN ('admin', 'auditor', 'user')),
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL
);

-- A provider's group claim value (or LDAP group DN / name) that makes its
-- users members of a Keyway group; re-applied at every sign-in.
CREATE TABLE identity_group_mappings (
	provider_id INTEGER NOT NULL REFERENCES identity_providers (id) ON DELETE CASCADE,
	claim_value TEXT NOT NULL,
	group_id    INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
	PRIMARY KEY (provider_id, claim_value, group_id)
);

-- The provider's stable identifier of a user (OIDC sub, SAML NameID, LDAP
-- entry DN or objectGUID) and the Keyway user it is.
CREATE TABLE external_identities (
	provider_id   INTEGER NOT NULL REFERENCES identity_providers (id) ON DELETE CASCADE,
	subject       TEXT NOT NULL,
	user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	created_at    INTEGER NOT NULL,
	last_login_at INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (provider_id, subject)
);
CREATE INDEX external_identities_user ON external_identities (user_id);

-- MFA factors. kind 'totp': secret is the sealed base32 key, last_step the
-- last accepted time step (a code is never accepted twice). kind
-- 'webauthn': credential_id the raw credential id, data the JSON of the
-- go-webauthn Credential (public key, sign count, flags).
CREATE TABLE mfa_factors (
	id            INTEGER PRIMARY KEY,
	user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	kind          TEXT NOT NULL CHECK (kind IN ('totp', 'webauthn')),
	name          TEXT NOT NULL,
	secret        BLOB,
	credential_id BLOB UNIQUE,
	data          TEXT NOT NULL DEFAULT '',
	last_step     INTEGER NOT NULL DEFAULT 0,
	created_at    INTEGER NOT NULL,
	last_used_at  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX mfa_factors_user ON mfa_factors (user_id);

-- One-time recovery codes: the SHA-256 of each, used_at > 0 once used.
CREATE TABLE mfa_recovery_codes (
	user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	hash    TEXT NOT NULL,
	used_at INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (user_id, hash)
);

-- Step-up: a policy may ask for an MFA check within the last N minutes
-- before a connection starts (0: not asked).
ALTER TABLE policies ADD COLUMN step_up_minutes INTEGER NOT NULL DEFAULT 0 CHECK (step_up_minutes >= 0);

-- When the browser session that approved a native client's device, or a
-- later step-up for it, last passed an MFA check (0: never).
ALTER TABLE devices ADD COLUMN mfa_at INTEGER NOT NULL DEFAULT 0;
