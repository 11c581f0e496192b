//! Reconciliation: desired state (what each tenant's plan requires) against actual
//! state (what its provisioner observes), repaired where possible.
//!
//! The reconciler takes no input and can run at any time, on any replica: every
//! `interval` it walks the active and suspended tenants, and for each tenant whose
//! isolation model the data plane provisions (silo databases; on PostgreSQL also pool
//! schemas) observes its database. A missing database is drift: it is recreated
//! (empty) and a `TenantDriftRepaired` event and a system audit entry say so, in one
//! transaction. The last run's report is kept in memory and served at
//! `GET /v1/reconciliation`; `POST /v1/reconciliation` runs a pass now.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tenancy_domain::event::Event;
use tenancy_domain::page::PageRequest;
use tenancy_domain::plan::Isolation;
use tenancy_domain::tenant::{TenantFilter, TenantStatus};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;
use tenancy_store::Effects;
use tokio_util::sync::CancellationToken;

use crate::context::Permission;
use crate::{App, OpContext};

pub const DRIFT_REPAIRED: &str = "TenantDriftRepaired";

/// One difference between what a tenant needs and what exists.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Drift {
    pub tenant_id: String,
    /// The resource kind, e.g. `database`.
    pub resource: String,
    /// What was wrong, e.g. `missing`.
    pub problem: String,
    pub repaired: bool,
    /// Why the repair failed, when it did.
    pub error: Option<String>,
}

/// The result of one reconciliation pass.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReconciliationReport {
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub tenants_checked: u64,
    pub drift: Vec<Drift>,
}

const PAGE: u32 = 500;

impl App {
    /// One pass over every active or suspended tenant.
    pub async fn reconcile_once(&self) -> Result<ReconciliationReport> {
        let started_at = Timestamp::now();
        let mut report =
            ReconciliationReport { started_at, finished_at: started_at, tenants_checked: 0, drift: vec![] };
        let Some(plane) = self.data_plane().cloned() else {
            report.finished_at = Timestamp::now();
            return Ok(report);
        };
        let provisioner = plane.provisioner.clone();
        let mut isolations: HashMap<String, Option<Isolation>> = HashMap::new();
        for status in [TenantStatus::Active, TenantStatus::Suspended] {
            let filter = TenantFilter { status: Some(status), ..Default::default() };
            let mut page = PageRequest { limit: PAGE, after: None };
            loop {
                let tenants = self.store().tenant_list(&filter, &page).await?;
                for t in &tenants.items {
                    report.tenants_checked += 1;
                    let isolation = match isolations.get(&t.plan) {
                        Some(i) => *i,
                        None => {
                            let i = self.store().plan_get(&t.plan).await.ok().map(|p| p.isolation);
                            isolations.insert(t.plan.clone(), i);
                            i
                        }
                    };
                    let Some(isolation) = isolation.filter(|i| provisioner.provisions(*i)) else { continue };
                    if provisioner.database_observe(&t.id, isolation).await?.exists {
                        continue;
                    }
                    let mut drift = Drift {
                        tenant_id: t.id.clone(),
                        resource: "database".into(),
                        problem: "missing".into(),
                        repaired: false,
                        error: None,
                    };
                    // Recreated with the tenant's stored password, so its service reconnects.
                    match plane.ensure(&**self.store(), &t.id, isolation).await {
                        Ok(detail) => {
                            drift.repaired = true;
                            let event = Event::new(
                                DRIFT_REPAIRED,
                                Some(&t.id),
                                vec![format!("tenant/{}", t.id)],
                                json!({"id": t.id, "resource": "database", "problem": "missing",
                                       "repair": "recreated empty", "detail": detail}),
                            );
                            let audit = OpContext::system().audit(
                                "tenant.reconcile",
                                format!("tenant/{}", t.id),
                                Some(&t.id),
                                json!({"resource": "database", "problem": "missing", "repair": "recreated empty"}),
                            );
                            self.store().job_complete(&Effects::none().with_event(event).with_audit(audit)).await?;
                            tracing::warn!(tenant_id = %t.id, isolation = isolation.as_str(), "drift: database missing, recreated empty");
                        }
                        Err(e) => drift.error = Some(e.to_string()),
                    }
                    report.drift.push(drift);
                }
                match tenants.next_cursor {
                    Some(c) => page.after = Some(c),
                    None => break,
                }
            }
        }
        report.finished_at = Timestamp::now();
        *self.last_reconciliation.lock().expect("reconciliation report poisoned") = Some(report.clone());
        Ok(report)
    }

    /// The last pass's report on this process (`None` before the first pass).
    pub fn reconciliation_last(&self, ctx: &OpContext) -> Result<Option<ReconciliationReport>> {
        ctx.authorize(Permission::RecordsRead)?;
        Ok(self.last_reconciliation.lock().expect("reconciliation report poisoned").clone())
    }

    /// Runs a pass now, for an operator.
    pub async fn reconciliation_run(&self, ctx: &OpContext) -> Result<ReconciliationReport> {
        ctx.authorize(Permission::TenantAdmin)?;
        self.reconcile_once().await
    }
}

/// The background loop.
pub async fn run(app: Arc<App>, interval: Duration, shutdown: CancellationToken) {
    loop {
        if let Err(e) = app.reconcile_once().await {
            tracing::warn!(error = %e, "reconciliation pass failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
