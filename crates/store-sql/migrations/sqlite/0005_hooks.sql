-- Provisioning hooks: the hook record as JSON (url, events, mode, timeout, attempts).
CREATE TABLE hooks (
    name TEXT PRIMARY KEY,
    hook TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
