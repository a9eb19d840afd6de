-- Each agent's asset inventory (ringfence_wire::inventory): the whole inventory as the agent
-- last sent it, with its digest, so a delta applies only to the inventory it was made from;
-- and its packages one per row, so "which hosts run openssh-server below 1:9.2p1-2+deb12u3"
-- is an index lookup by name (the version comparison is Debian's, done by the console).
CREATE TABLE host_inventory (
    agent_id TEXT PRIMARY KEY REFERENCES agents(id),
    sha256 TEXT NOT NULL,
    body TEXT NOT NULL,
    items BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE host_packages (
    agent_id TEXT NOT NULL REFERENCES agents(id),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    architecture TEXT NOT NULL
);
CREATE INDEX host_packages_name ON host_packages (name, agent_id);
CREATE INDEX host_packages_agent ON host_packages (agent_id);
