-- Secret rotation (issue 15 items 3 and 4, docs/secrets.md "Rotation"). On the
-- secret's row: the generator a rotation makes the pending value with (JSON, kept from
-- the last put that gave one), the rotation spec (JSON: schedule and target), when the
-- scheduler rotates it next, the running rotation's execution (at most one: a start is
-- a conditional update of this column) and the outcome of the last rotation (JSON).
ALTER TABLE secrets ADD COLUMN generator TEXT;
ALTER TABLE secrets ADD COLUMN rotation TEXT;
ALTER TABLE secrets ADD COLUMN next_rotation_at BIGINT;
ALTER TABLE secrets ADD COLUMN rotation_execution_id TEXT;
ALTER TABLE secrets ADD COLUMN last_rotation TEXT;
CREATE INDEX secrets_next_rotation ON secrets (next_rotation_at);

-- Leases of singleton background jobs (the rotation scheduler): the row's owner runs
-- the job until `expires_at`; another replica takes it over only after that.
CREATE TABLE job_leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
