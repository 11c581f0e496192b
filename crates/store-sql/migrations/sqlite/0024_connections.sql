-- Connections (issue 15 item 6): named credentials for outbound HTTP. The row holds
-- the metadata (`auth`: the auth type with its header, username or token URL, client
-- id and scope, as JSON; never the credential); the credential is the platform secret
-- `connection.<name>` in `secrets` / `secret_versions`, written in the same
-- transaction (envelope-encrypted, docs/connections.md).
CREATE TABLE connections (
    name TEXT PRIMARY KEY,
    auth TEXT NOT NULL,
    description TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
