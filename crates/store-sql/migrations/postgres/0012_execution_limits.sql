-- Issue 11: engine limits and the lifecycle's reserved share.
-- Due lifecycle executions (the built-in `tenancy.*` state machines), for the claim of
-- the worker slots reserved to them (`Claim::state_machine_prefix`; the term is the
-- one the claim writes, so the planner matches this partial index).
CREATE INDEX executions_lifecycle_due ON executions (wake_at)
    WHERE wake_at IS NOT NULL AND substr(state_machine, 1, 8) = 'tenancy.';
-- RUNNING executions per state machine and per tenant, for the caps on starts.
CREATE INDEX executions_running_machine ON executions (state_machine) WHERE status = 'RUNNING';
CREATE INDEX executions_running_tenant ON executions (tenant_id) WHERE status = 'RUNNING';
