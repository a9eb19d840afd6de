-- Revocation: an agent or an enrollment token an operator revoked is refused from then on, by
-- every console on this database. Revoking bumps fleet.revision, which every console polls
-- every second; on a new revision a console drops its cached credentials, so a revoked agent
-- is refused within about a second everywhere.
ALTER TABLE agents ADD COLUMN revoked_at BIGINT;
ALTER TABLE enrollment_tokens ADD COLUMN revoked_at BIGINT;
-- Mutual TLS: when the console issued the agent a client certificate, the unix second it
-- expires; from then on the agent must present it on every request over TLS.
ALTER TABLE agents ADD COLUMN cert_not_after BIGINT;
-- What content the agent says is active ("the built-in pack, 31 rules", "bundle v9, 12
-- rules"): the operator sees an agent that fell back to the built-in pack.
ALTER TABLE agent_state ADD COLUMN content TEXT;
