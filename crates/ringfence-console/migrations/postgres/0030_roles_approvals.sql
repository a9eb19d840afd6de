-- Roles: what each operator may do (viewer, responder, content_admin, admin). Operators from
-- before roles existed could do everything, so they become admins.
ALTER TABLE operators ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
-- Operator API tokens expire and can be revoked. Tokens from before expiry existed get the
-- default lifetime from their creation. Revoking (or changing the operator's role) bumps
-- fleet.revision, and every console drops its cached operator tokens when it moves.
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN revoked_at BIGINT;
UPDATE api_tokens SET expires_at = created_at + 7776000000 WHERE expires_at IS NULL;
-- Two-person approval: an action that needs a second operator is stored here as pending; a
-- different operator with the right role approves it before it expires, and only then it runs.
-- state: pending -> approved (ran) | failed (ran and was refused); pending past expires_at is
-- expired.
CREATE TABLE approvals (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    summary TEXT NOT NULL,
    need TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    outcome TEXT NOT NULL DEFAULT ''
);
CREATE INDEX approvals_state ON approvals (state, id);
