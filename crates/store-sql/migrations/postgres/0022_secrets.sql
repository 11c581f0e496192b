-- The secret store (issue 15, docs/secrets.md). A secret belongs to a tenant, or to the
-- platform (`tenant_id` = ''); its stage labels are columns of its row, so each label is
-- on at most one version. A deleted secret keeps its row and versions until `purge_at`.
CREATE TABLE secrets (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    current_version BIGINT NOT NULL,
    previous_version BIGINT,
    pending_version BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT,
    purge_at BIGINT,
    PRIMARY KEY (tenant_id, name)
);
CREATE INDEX secrets_purge ON secrets (purge_at);

-- A version's value sealed under its own data key (AES-256-GCM, the tenant, name and
-- version as associated data), and that data key wrapped by the key-encryption key
-- `kek_id` (the master key's fingerprint). Never plaintext.
CREATE TABLE secret_versions (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    ciphertext TEXT NOT NULL,
    wrapped_key TEXT NOT NULL,
    kek_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);
