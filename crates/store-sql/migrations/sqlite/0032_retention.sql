-- Retention (issue 20, docs/storage.md "Retention"): a state machine's own retention
-- of finished executions, in days (no row: the server's --execution-retention), and
-- the indexes the leased pruner's batches seek by, so a batch never scans a table.
CREATE TABLE state_machine_retention (
    name TEXT PRIMARY KEY,
    retention_days BIGINT NOT NULL
);
CREATE INDEX executions_stopped ON executions (stopped_at) WHERE stopped_at IS NOT NULL;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
