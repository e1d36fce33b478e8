-- Per-resource session options (JSON), e.g. a desktop's view-only mode and
-- which way its clipboard may flow.
ALTER TABLE resources ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
