-- Ring-selecting tags an enrollment token imposes on the agents it enrolls (JSON, or NULL to
-- take the tags the agent states at enrollment). PostgreSQL refused overflowing totals, so
-- there is nothing to repair here (SQLite's twin of this migration saturates REAL totals).
ALTER TABLE enrollment_tokens ADD COLUMN tags TEXT;
