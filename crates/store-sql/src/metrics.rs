//! [`Store::metrics_gauges`](tenancy_store::Store::metrics_gauges) on SQL: aggregate
//! queries on the reader pool, the same text on both engines (`COUNT(CASE ...)` rather
//! than `SUM`, which PostgreSQL types `NUMERIC`).

use std::collections::BTreeMap;

use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;
use tenancy_store::{QueueGauge, StoreGauges};

use super::{db_err, SqlStore};

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(super) async fn gauges(s: &SqlStore, now: Timestamp, stuck_before: Timestamp) -> Result<StoreGauges> {
    let db = &s.reader;
    let tenants: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT status, plan_id, COUNT(*) FROM tenants GROUP BY status, plan_id ORDER BY status, plan_id",
    )
    .fetch_all(db)
    .await
    .map_err(db_err)?;
    let running: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state_machine, COUNT(*) FROM executions WHERE status = 'RUNNING' GROUP BY state_machine \
         ORDER BY state_machine",
    )
    .fetch_all(db)
    .await
    .map_err(db_err)?;
    // As `execution_list`'s stuck filter.
    let stuck: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state_machine, COUNT(*) FROM executions WHERE status = 'RUNNING' AND updated_at < $1 \
         AND wake_at IS NOT NULL AND wake_at < $1 GROUP BY state_machine ORDER BY state_machine",
    )
    .bind(stuck_before.millis())
    .fetch_all(db)
    .await
    .map_err(db_err)?;
    let queues: Vec<(String, i64)> = sqlx::query_as(
        "SELECT q.name, (SELECT COUNT(*) FROM queues d WHERE d.dead_letter_queue = q.name) FROM queues q ORDER BY q.name",
    )
    .fetch_all(db)
    .await
    .map_err(db_err)?;
    let depths: Vec<(String, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT queue, COUNT(CASE WHEN in_flight = 0 THEN 1 END), COUNT(CASE WHEN in_flight <> 0 THEN 1 END), \
         MIN(sent_at) FROM queue_messages WHERE expires_at > $1 GROUP BY queue",
    )
    .bind(now.millis())
    .fetch_all(db)
    .await
    .map_err(db_err)?;
    let mut depths: BTreeMap<String, (i64, i64, Option<i64>)> =
        depths.into_iter().map(|(q, w, f, o)| (q, (w, f, o))).collect();
    let queues = queues
        .into_iter()
        .map(|(queue, sources)| {
            let (waiting, in_flight, oldest) = depths.remove(&queue).unwrap_or((0, 0, None));
            QueueGauge {
                queue,
                dead_letter: sources > 0,
                waiting: count(waiting),
                in_flight: count(in_flight),
                oldest_sent_at: oldest.map(Timestamp),
            }
        })
        .collect();
    let deliveries: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, COUNT(*) FROM deliveries WHERE status IN ('pending', 'dead') GROUP BY status ORDER BY status",
    )
    .fetch_all(db)
    .await
    .map_err(db_err)?;
    let rollouts: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM rollouts GROUP BY status ORDER BY status")
            .fetch_all(db)
            .await
            .map_err(db_err)?;
    Ok(StoreGauges {
        tenants: tenants.into_iter().map(|(s, p, n)| (s, p, count(n))).collect(),
        running_executions: running.into_iter().map(|(m, n)| (m, count(n))).collect(),
        stuck_executions: stuck.into_iter().map(|(m, n)| (m, count(n))).collect(),
        queues,
        deliveries: deliveries.into_iter().map(|(s, n)| (s, count(n))).collect(),
        rollouts: rollouts.into_iter().map(|(s, n)| (s, count(n))).collect(),
    })
}
