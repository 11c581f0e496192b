-- Drift the reconciler reported (an extra database left in place) and that was still
-- there at its last pass: `<isolation>/<key>`. Recorded with the TenantDriftDetected
-- event in one transaction, so a lasting drift is evented once across replicas and
-- restarts; deleted when the drift goes away.
CREATE TABLE reported_drift (
    id TEXT PRIMARY KEY,
    reported_at BIGINT NOT NULL
);
