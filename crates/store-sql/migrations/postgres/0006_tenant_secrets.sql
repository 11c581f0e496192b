-- Secrets of tenant resources (a data-plane database role's password), sealed with the
-- master key (AES-256-GCM, the record `tenant/<id>/<name>` as associated data). Never
-- part of a resource's detail; read only by GET /v1/tenants/{id}/database-credentials.
CREATE TABLE tenant_secrets (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
