-- What each agent reports as tuned locally (its check-in's `tuning`: disabled rules, and
-- rules with exceptions and how many), as JSON; NULL when nothing is.
ALTER TABLE agent_state ADD COLUMN tuning TEXT;
-- Exceptions made on the console: "this rule, on these hosts, when these fields match". They
-- travel to agents as content: publishing builds a new content version (the baseline's
-- entries plus an exceptions overlay), signs it and starts a normal rollout.
-- state: pending -> approved -> published; pending|approved -> withdrawn. An exception with no
-- host and no field (it silences the rule fleet-wide) is approved only through a second
-- operator (approvals).
CREATE TABLE exceptions (
    id BIGSERIAL PRIMARY KEY,
    rule TEXT NOT NULL,
    hosts TEXT NOT NULL,
    fields TEXT NOT NULL,
    comment TEXT NOT NULL,
    finding_id BIGINT,
    state TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    approved_by TEXT,
    approved_at BIGINT,
    published_version BIGINT,
    published_at BIGINT
);
CREATE INDEX exceptions_state ON exceptions (state, id);
