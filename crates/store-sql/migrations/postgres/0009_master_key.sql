-- The fingerprint of the master key that seals stored secrets (webhook secrets,
-- data-plane database passwords): `v1:` and the base64 of HMAC-SHA256 under the key of
-- a fixed label. It proves which key sealed this database's values without revealing
-- the key or anything to guess it from. Recorded by the first server that runs here; a
-- server with a missing or different key refuses to start (crates/cli/src/serve.rs).
CREATE TABLE master_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
