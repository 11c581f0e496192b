-- Self-service: sign-ups awaiting activation, and API keys' hygiene (last use, rotation).

-- A sign-up, by the SHA-256 of its activation token (the token itself is never stored).
-- `activated_at` is set when the token is used (single use); the sweeper deletes rows
-- past `expires_at`.
CREATE TABLE signups (
    token_hash TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    org_name TEXT NOT NULL,
    plan TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    activated_at BIGINT,
    tenant_id TEXT
);
CREATE INDEX signups_expires_at ON signups (expires_at);

-- When a key was last used (to the minute), and the secret a rotation replaced with
-- the time it stops working.
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
ALTER TABLE api_keys ADD COLUMN previous_hash TEXT;
ALTER TABLE api_keys ADD COLUMN previous_expires_at BIGINT;
