-- Issue 14 item 2: where and to how many tenants a plan is offered.
-- The regions the plan is offered in, a sorted JSON array; '[]': every region.
ALTER TABLE plans ADD COLUMN regions TEXT NOT NULL DEFAULT '[]';
-- The most tenants (all but the offboarded) that may hold the plan; NULL: no cap.
-- Checked in the transaction that inserts a tenant (docs/entitlements.md).
ALTER TABLE plans ADD COLUMN max_tenants BIGINT;
-- Whether self-service signup may put tenants on the plan: 1 or 0.
ALTER TABLE plans ADD COLUMN self_service BIGINT NOT NULL DEFAULT 0;
