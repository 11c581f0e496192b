-- Issue 14 item 2: where and to how many tenants a plan is offered.
-- The regions the plan is offered in, a sorted JSON array; '[]': every region.
ALTER TABLE plans ADD COLUMN regions TEXT NOT NULL DEFAULT '[]';
-- The most tenants (all but the offboarded) that may hold the plan; NULL: no cap.
-- Checked in the transaction that inserts a tenant (docs/entitlements.md).
ALTER TABLE plans ADD COLUMN max_tenants BIGINT;
-- Whether self-service signup may put tenants on the plan: 1 or 0.
ALTER TABLE plans ADD COLUMN self_service BIGINT NOT NULL DEFAULT 0;
-- The plan each tenant last started moving to, with the execution that moves it: a
-- row counts toward the plan's max_tenants only while that execution is the tenant's
-- current one and the tenant is still updating (so finished or abandoned moves need
-- no cleanup; the next move of the tenant replaces its row).
CREATE TABLE plan_moves (
    tenant_id TEXT PRIMARY KEY,
    plan_id TEXT NOT NULL,
    execution_id TEXT NOT NULL
);
CREATE INDEX plan_moves_plan ON plan_moves (plan_id);
