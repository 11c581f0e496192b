-- Functions (the Lambda role, issue 12): the record as JSON (url, timeout) and the
-- `whsec_` signing secret sealed under the master key (never stored in plaintext).
CREATE TABLE functions (
    name TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
