-- Resources a user starred: shown first on their resource list. A row goes
-- with its user or resource.
CREATE TABLE favourites (
	user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	resource_id BIGINT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
	created_at  BIGINT NOT NULL,
	PRIMARY KEY (user_id, resource_id)
);
CREATE INDEX favourites_resource ON favourites (resource_id);
