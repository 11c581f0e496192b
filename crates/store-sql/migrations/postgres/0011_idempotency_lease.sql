-- An in-progress idempotency key is leased: a request that died with its process (or
-- whose lease otherwise ran out) no longer blocks its key, a retry takes it over.
-- NULL on completed keys, and on in-progress keys written before this migration
-- (taken over at once).
ALTER TABLE idempotency_keys ADD COLUMN lease_expires_at BIGINT;
