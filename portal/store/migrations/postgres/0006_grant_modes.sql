-- A grant allows a terminal (or desktop) session, the SFTP file browser, or
-- both. Grants made before file browsing existed keep what they allowed.
ALTER TABLE grants ADD COLUMN mode TEXT NOT NULL DEFAULT 'terminal' CHECK (mode IN ('terminal', 'files', 'both'));
