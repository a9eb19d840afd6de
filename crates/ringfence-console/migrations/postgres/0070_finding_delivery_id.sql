-- Each finding carries the agent's delivery id (`ringfence.delivery_id`). An agent retries an
-- upload whose acknowledgement it never received; the unique index lets the console store
-- each delivered finding once. Older rows have none (NULLs are distinct), and are kept as they
-- are.
ALTER TABLE findings ADD COLUMN delivery_id TEXT;
CREATE UNIQUE INDEX findings_delivery ON findings (agent_id, delivery_id);
