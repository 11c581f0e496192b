-- Quotas (issue 14): a tenant's usage of one quota in one period (`period_start` is
-- the period's first millisecond, 0 for a quota without a period). `refused` is 1
-- once a hard refusal was announced (QuotaExceeded), until usage goes down.
CREATE TABLE quota_usage (
    tenant_id TEXT NOT NULL,
    quota TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    used BIGINT NOT NULL,
    refused BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, quota, period_start)
);

-- Consumes with an idempotency key: what the grant answered (JSON, `[[quota, used]]`),
-- so a repeat answers the same and consumes nothing.
CREATE TABLE quota_grants (
    tenant_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    response TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, idempotency_key)
);
