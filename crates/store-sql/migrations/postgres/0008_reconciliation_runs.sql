-- The reconciler's last pass, whichever replica made it: one row (`id` 1), replaced
-- only by a pass that finished later. Every replica serves it at GET
-- /v1/reconciliation, and each replica's reconciler reads it to skip a pass another
-- replica has just made.
CREATE TABLE reconciliation_runs (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    started_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    node TEXT NOT NULL,
    report TEXT NOT NULL
);
