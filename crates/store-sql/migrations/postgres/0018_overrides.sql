-- Issue 14: entitlements.
-- A plan's static config values `{key: value}` as JSON.
ALTER TABLE plans ADD COLUMN config TEXT NOT NULL DEFAULT '{}';
-- A tenant's overrides of its plan (features on/off, quota limits, config values) as
-- JSON, one row per tenant; expires_at (unix ms, NULL: never) is when they stop
-- applying (the effective view ignores them from then on; the row stays until cleared).
CREATE TABLE tenant_overrides (
    tenant_id TEXT PRIMARY KEY,
    overrides TEXT NOT NULL,
    expires_at BIGINT,
    updated_at BIGINT NOT NULL
);
