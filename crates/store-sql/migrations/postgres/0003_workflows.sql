CREATE TABLE state_machines (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    definition TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state_machine TEXT NOT NULL,
    version BIGINT NOT NULL,
    tenant_id TEXT,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    cause TEXT,
    cursor TEXT,
    pending TEXT,
    task_token TEXT UNIQUE,
    wake_at BIGINT,
    redrive_cursor TEXT,
    redrive_pending TEXT,
    redrive_count BIGINT NOT NULL DEFAULT 0,
    seq BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    started_at BIGINT NOT NULL,
    stopped_at BIGINT,
    updated_at BIGINT NOT NULL,
    UNIQUE (state_machine, name)
);
CREATE INDEX executions_due ON executions (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX executions_status ON executions (status, id);
CREATE INDEX executions_machine ON executions (state_machine, id);
CREATE INDEX executions_tenant ON executions (tenant_id, id);

CREATE TABLE execution_history (
    execution_id TEXT NOT NULL,
    event_id BIGINT NOT NULL,
    type TEXT NOT NULL,
    state TEXT,
    details TEXT NOT NULL,
    time BIGINT NOT NULL,
    PRIMARY KEY (execution_id, event_id)
);

-- What lifecycle workflows created for a tenant (each step's idempotent record).
CREATE TABLE tenant_resources (
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);
