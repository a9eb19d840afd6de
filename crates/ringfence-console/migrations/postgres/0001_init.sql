-- Ringfence console schema (PostgreSQL). Kept column-for-column equal to migrations/sqlite.
CREATE TABLE operators (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    operator TEXT NOT NULL REFERENCES operators(name),
    created_at BIGINT NOT NULL
);
CREATE TABLE sessions (
    session_hash TEXT PRIMARY KEY,
    operator TEXT NOT NULL REFERENCES operators(name),
    expires_at BIGINT NOT NULL,
    one_time BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE enrollment_tokens (
    token_hash TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    max_uses BIGINT NOT NULL,
    uses BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    credential_hash TEXT NOT NULL,
    hostname TEXT NOT NULL,
    hash_rank BIGINT NOT NULL,
    enrolled_at BIGINT NOT NULL
);
CREATE TABLE agent_state (
    agent_id TEXT PRIMARY KEY REFERENCES agents(id),
    last_seen BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    agent_version TEXT NOT NULL,
    content_version BIGINT NOT NULL,
    region TEXT,
    industry TEXT,
    environment TEXT,
    custom_tags TEXT NOT NULL,
    tz_offset BIGINT NOT NULL,
    cpu DOUBLE PRECISION NOT NULL,
    rss BIGINT NOT NULL,
    crashes_total BIGINT NOT NULL,
    lkg_total BIGINT NOT NULL,
    drops_total BIGINT NOT NULL,
    events_total BIGINT NOT NULL,
    findings_total BIGINT NOT NULL,
    checkins BIGINT NOT NULL
);
CREATE TABLE checkins (
    agent_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    content_version BIGINT NOT NULL,
    crashes BIGINT NOT NULL,
    restarts BIGINT NOT NULL,
    lkg BIGINT NOT NULL,
    cpu DOUBLE PRECISION NOT NULL,
    rss BIGINT NOT NULL,
    events BIGINT NOT NULL,
    drops BIGINT NOT NULL,
    findings BIGINT NOT NULL,
    interval_ms BIGINT NOT NULL
);
CREATE INDEX checkins_agent_at ON checkins (agent_id, at);
CREATE INDEX checkins_at ON checkins (at);
CREATE TABLE content (
    version BIGINT PRIMARY KEY,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    carries BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE fleet (
    id BIGINT PRIMARY KEY,
    baseline_version BIGINT NOT NULL,
    revision BIGINT NOT NULL
);
INSERT INTO fleet (id, baseline_version, revision) VALUES (1, 0, 0);
CREATE TABLE rollouts (
    id BIGSERIAL PRIMARY KEY,
    from_version BIGINT NOT NULL,
    to_version BIGINT NOT NULL,
    rollback_version BIGINT,
    plan TEXT NOT NULL,
    state TEXT NOT NULL,
    active BIGINT UNIQUE,
    current_ring BIGINT NOT NULL,
    emergency BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revision BIGINT NOT NULL
);
CREATE TABLE rings (
    rollout_id BIGINT NOT NULL REFERENCES rollouts(id),
    idx BIGINT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at BIGINT,
    first_offered_at BIGINT,
    finished_at BIGINT,
    members BIGINT NOT NULL,
    controls BIGINT NOT NULL,
    gate TEXT NOT NULL,
    PRIMARY KEY (rollout_id, idx)
);
CREATE TABLE ring_members (
    rollout_id BIGINT NOT NULL,
    ring BIGINT NOT NULL,
    agent_id TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (rollout_id, ring, agent_id)
);
CREATE INDEX ring_members_agent ON ring_members (agent_id);
CREATE TABLE agent_pins (
    agent_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    rollout_id BIGINT NOT NULL
);
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    rollout_id BIGINT,
    action TEXT NOT NULL,
    decision TEXT NOT NULL,
    evidence TEXT NOT NULL
);
CREATE TABLE findings (
    id BIGSERIAL PRIMARY KEY,
    agent_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    rule TEXT,
    severity TEXT,
    body TEXT NOT NULL
);
CREATE INDEX findings_received ON findings (received_at);
