-- Issue 12: recovering tenants.
-- The lifecycle execution started by a tenant's last status change that starts one
-- (provisioning, retry, plan change, offboarding): only its steps may change the
-- tenant, so a redriven older execution cannot undo a retry (`Tenancy.StaleExecution`).
-- NULL for tenants written before it was recorded (not checked).
ALTER TABLE tenants ADD COLUMN lifecycle_execution_id TEXT;
