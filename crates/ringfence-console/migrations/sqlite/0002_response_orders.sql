-- Response actions ordered from the console for one agent, and what became of them.
-- state: pending (not yet sent) → delivered (in a check-in response) → done | dry-run | refused | failed
-- (the agent's result, reported in a later check-in). An order delivered whose result never
-- comes back stays delivered.
CREATE TABLE response_orders (
    id INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    action TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX response_orders_agent ON response_orders (agent_id, state);
CREATE INDEX response_orders_pending ON response_orders (state) WHERE state = 'pending';
-- Bumped with every new order: consoles poll it with fleet.revision and reload their set of
-- agents with pending orders when it moved (the check-in path reads it from memory).
ALTER TABLE fleet ADD COLUMN orders_revision BIGINT NOT NULL DEFAULT 0;
