-- Findings an operator works: a status (open, acknowledged, closed), the reason a closed one was
-- closed (false_positive, duplicate, true_positive, benign_positive), an assignee, tags (comma
-- separated) and a comment. The first ATT&CK technique is kept in its own column so findings
-- can be filtered and grouped by it. Every change is in the audit log, tied to its finding.
ALTER TABLE findings ADD COLUMN status TEXT NOT NULL DEFAULT 'open';
ALTER TABLE findings ADD COLUMN close_reason TEXT;
ALTER TABLE findings ADD COLUMN assignee TEXT;
ALTER TABLE findings ADD COLUMN tags TEXT NOT NULL DEFAULT '';
ALTER TABLE findings ADD COLUMN comment TEXT;
ALTER TABLE findings ADD COLUMN technique TEXT;
-- How many matches the agent folded into the finding (ringfence.finding.count, at most 10^9;
-- findings stored before this migration count as one).
ALTER TABLE findings ADD COLUMN matches BIGINT NOT NULL DEFAULT 1;
UPDATE findings SET technique = (body::jsonb) #>> '{threat,technique,id,0}';
-- Pages are keyset pages on (received_at, id), newest first, under any filter.
CREATE INDEX findings_time_id ON findings (received_at, id);
CREATE INDEX findings_agent_time ON findings (agent_id, received_at, id);
CREATE INDEX findings_rule_time ON findings (rule, received_at, id);
CREATE INDEX findings_status_time ON findings (status, received_at, id);
CREATE INDEX findings_technique_time ON findings (technique, received_at, id);
ALTER TABLE audit ADD COLUMN finding_id BIGINT;
CREATE INDEX audit_finding ON audit (finding_id);
