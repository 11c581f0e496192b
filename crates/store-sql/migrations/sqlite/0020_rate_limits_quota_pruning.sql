-- Issue 14, item 6: API rate limits per plan and per key (docs/rate-limits.md).
-- A plan's rate limit for each of its tenants, and an API key's own, as JSON
-- `{"per_second": n, "burst": n}`; NULL: the server's `--rate-limit-*` default.
ALTER TABLE plans ADD COLUMN rate_limit TEXT;
ALTER TABLE api_keys ADD COLUMN rate_limit TEXT;

-- The quota ledger's housekeeping (docs/entitlements.md): usage rows of ended periods
-- and old idempotency records are found by these, not by scanning the tables.
CREATE INDEX quota_usage_period_start ON quota_usage (period_start);
CREATE INDEX quota_grants_created_at ON quota_grants (created_at);
