//! `GET /v1/storage`: the tables' rows and bytes, and what a prune run now would remove.

use std::collections::HashMap;

use tenancy_domain::api::{StorageReport, TableStorage};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use super::pruner::{cutoffs, DEFAULT_BATCH};
use crate::context::Permission as P;
use crate::{App, OpContext};

impl App {
    /// The storage report: admins and operators.
    pub async fn storage_report(&self, ctx: &OpContext) -> Result<StorageReport> {
        ctx.authorize(P::StorageRead)?;
        let retention = self.store.retention();
        let policy = self.retention;
        let cut = cutoffs(&policy, Timestamp::now(), DEFAULT_BATCH);
        let next: HashMap<String, u64> = retention.prune_preview(&cut).await?.into_iter().collect();
        let tables = retention
            .storage_sizes()
            .await?
            .into_iter()
            .map(|t| TableStorage {
                next_prune_rows: next.get(&t.table).copied().unwrap_or(0),
                table: t.table,
                rows: t.rows,
                bytes: t.bytes,
            })
            .collect();
        let whole_days = |d: std::time::Duration| (d.as_secs() / 86_400).min(u64::from(u32::MAX)) as u32;
        Ok(StorageReport {
            tables,
            execution_retention_days: whole_days(policy.executions),
            event_retention_days: whole_days(policy.events),
            state_machine_retention: retention.retention_list().await?.into_iter().collect(),
        })
    }
}
