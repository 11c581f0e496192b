-- Archives (issue 20 item 3, docs/audit.md "Archives"): events the archiver has
-- written to the blob store as Parquet are marked, so that the pruner drops only
-- archived events past their retention; the audit log's archive position (the last
-- sealed `seq` archived) is a cursor. Audit records themselves are never pruned.
ALTER TABLE events ADD COLUMN archived BIGINT NOT NULL DEFAULT 0;
CREATE INDEX events_unarchived ON events (seq) WHERE archived = 0;
CREATE TABLE archive_cursors (
    name TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);
