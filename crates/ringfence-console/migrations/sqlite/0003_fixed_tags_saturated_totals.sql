-- Ring-selecting tags an enrollment token imposes on the agents it enrolls (JSON, or NULL to
-- take the tags the agent states at enrollment).
ALTER TABLE enrollment_tokens ADD COLUMN tags TEXT;

-- Totals that overflowed before they saturated were turned into REAL by SQLite, and every read
-- of the row failed: saturate them.
UPDATE agent_state SET crashes_total = 9223372036854775807 WHERE typeof(crashes_total) <> 'integer';
UPDATE agent_state SET lkg_total = 9223372036854775807 WHERE typeof(lkg_total) <> 'integer';
UPDATE agent_state SET drops_total = 9223372036854775807 WHERE typeof(drops_total) <> 'integer';
UPDATE agent_state SET events_total = 9223372036854775807 WHERE typeof(events_total) <> 'integer';
UPDATE agent_state SET findings_total = 9223372036854775807 WHERE typeof(findings_total) <> 'integer';
UPDATE agent_state SET checkins = 9223372036854775807 WHERE typeof(checkins) <> 'integer';
