-- Agent releases roll out through the same engine as content (issue #21). A rollout says what
-- it delivers (`kind`); `active` holds the kind's slot (1 content, 2 agent) so one rollout of
-- each kind may run at once. Releases get sequence numbers in publish order; a rollback is a
-- new row that carries (re-offers) an earlier release's file. Release pins: `hold` pins keep a
-- plan's pinned tag group on the previous release; the others are rollback pins.
ALTER TABLE rollouts ADD COLUMN kind TEXT NOT NULL DEFAULT 'content';
ALTER TABLE checkins ADD COLUMN agent_version TEXT NOT NULL DEFAULT '';
ALTER TABLE checkins ADD COLUMN release_fallbacks BIGINT NOT NULL DEFAULT 0;
ALTER TABLE fleet ADD COLUMN release_baseline BIGINT NOT NULL DEFAULT 0;
CREATE TABLE releases (
    seq BIGINT PRIMARY KEY,
    version TEXT NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    carries BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE release_pins (
    agent_id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    rollout_id BIGINT NOT NULL,
    hold BIGINT NOT NULL
);
