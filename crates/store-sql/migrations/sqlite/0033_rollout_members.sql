-- Each tenant of a rollout as a row of its own (issue 16's throughput, docs/releases.md
-- "Storage"): a worker's pass writes only the tenants whose state moved, instead of
-- rewriting the whole record. `rollouts.rollout` keeps the rest (waves without their
-- tenants). `member` is the tenant's state as JSON (`RolloutTenant`); `state` is copied
-- out of it for queries. A record written before this migration still holds its
-- tenants in `rollouts.rollout` and has no rows here: it is read as it is, and its
-- next save moves the tenants here.
CREATE TABLE rollout_members (
    rollout_id TEXT NOT NULL,
    wave BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    state TEXT NOT NULL,
    member TEXT NOT NULL,
    PRIMARY KEY (rollout_id, wave, idx)
);
