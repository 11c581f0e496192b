-- Rollouts (issue 16, docs/releases.md "Rollouts"): the record as JSON (waves, each
-- tenant's state), its status, a revision for compare-and-set, and the lease of the
-- worker driving it.
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    rollout TEXT NOT NULL,
    rev BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX rollouts_status ON rollouts (status);

-- The tenants of active (running, paused, halted) rollouts: one rollout at a time per
-- tenant, enforced by the primary key in the transaction that records a rollout.
CREATE TABLE rollout_tenants (
    tenant_id TEXT PRIMARY KEY,
    rollout_id TEXT NOT NULL
);
CREATE INDEX rollout_tenants_rollout ON rollout_tenants (rollout_id);
