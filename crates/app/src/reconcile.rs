//! Reconciliation: desired state (what each tenant's plan requires) against actual
//! state (what its provisioner observes), repaired where possible.
//!
//! The reconciler takes no input and can run at any time, on any replica. Every
//! `interval` it makes one pass:
//!
//! * **Missing databases.** For each active or suspended tenant whose isolation model
//!   the data plane provisions (silo databases; on PostgreSQL also pool schemas) it
//!   observes the tenant's database. A missing one is recreated (empty, with the
//!   tenant's stored password) and a `TenantDriftRepaired` event and a system audit
//!   entry say so, in one transaction.
//! * **Extra databases.** It lists what exists under the provisioner's naming scheme
//!   ([`DatabaseProvisioner::database_list`], *before* it reads the tenants: a tenant's
//!   record is written before its database, so a listed database of any tenant has its
//!   record in the walk) and maps every tenant to its key
//!   ([`DatabaseProvisioner::database_key`]). A listed database is **extra** when
//!   - no tenant has its key (`no tenant`: made by hand, or left by a tenant record
//!     that no longer exists), or
//!   - its tenant is `offboarded` (`tenant offboarded`: a leftover of the offboarding), or
//!   - its tenant is `active` or `suspended` and its plan's isolation is the other one
//!     (`plan is pool` / `plan is silo`: the old database of a move whose
//!     `FinishMove` failed, or one created by hand), unless the tenant has a `RUNNING`
//!     execution (a plan change is applied before its old database is deleted).
//!
//!   Tenants that are `provisioning`, `updating`, `offboarding` or `failed` may
//!   legitimately have a database or not (a workflow is creating, moving or deleting
//!   it, or a failed one awaits a redrive or an offboarding), so their databases are
//!   never extra. A candidate that has a tenant is observed once more before it is
//!   reported (it may have just been deleted).
//!
//! * **Lone logins.** On a data plane with logins (PostgreSQL), a login role that
//!   follows the naming scheme but has no database (silo) or schema (pool) of its own
//!   ([`DatabaseProvisioner::lone_logins`], listed before the tenants too) is an extra
//!   `role` on the same terms: no tenant has it, its tenant is offboarded, or its
//!   settled tenant's plan is the other isolation. A settled tenant's own login
//!   without its database is the missing database above, and is repaired with it. A
//!   login is reported only if it is still lone after the walk (a delete drops the
//!   database first, then the login).
//!
//!   Extras are **not deleted**: a database nobody expects may be the only copy of
//!   someone's data. Each is listed in every report (`problem: "extra"`, `repaired:
//!   false`), and a `TenantDriftDetected` event with a system audit entry is emitted
//!   the first time it is seen, in one transaction with a row of `reported_drift`
//!   ([`tenancy_store::DriftStore`]): a lasting extra is evented once, not every pass,
//!   and not again by another replica or after a restart. A pass forgets the rows of
//!   extras that went away (reported before it listed the databases), so one that
//!   comes back is evented again. Deleting an extra is an operator's decision.
//!
//! **Replicas share the passes.** Each pass's report is recorded in the store
//! ([`tenancy_store::DriftStore::reconciliation_record`], the latest-finished pass
//! wins) and every replica serves that one at `GET /v1/reconciliation`, with the
//! `node` that made it: behind a load balancer an operator sees the same last pass
//! whichever replica answers. Each replica's background loop reads it first and
//! skips its own pass while the last one, by any replica, is younger than its
//! interval (plus a random tenth, so that replicas started together drift apart):
//! N replicas make about one pass per interval between them, not N. Two passes that
//! do overlap are harmless: repairs are idempotent and extras are evented once
//! through `reported_drift`. `POST /v1/reconciliation` runs a pass now, whatever
//! the last one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tenancy_domain::event::Event;
use tenancy_domain::page::PageRequest;
use tenancy_domain::plan::Isolation;
use tenancy_domain::tenant::{TenantFilter, TenantStatus};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;
use tenancy_store::provision::{DatabaseProvisioner, ListedDatabase};
use tenancy_store::{Effects, ExecutionFilter, ReconciliationRun};
use tokio_util::sync::CancellationToken;

use crate::context::Permission;
use crate::provisioning::DataPlane;
use crate::{App, OpContext};

pub const DRIFT_REPAIRED: &str = "TenantDriftRepaired";
pub const DRIFT_DETECTED: &str = "TenantDriftDetected";

/// One difference between what tenants need and what exists.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Drift {
    /// The tenant concerned; `null` for an extra database that belongs to no tenant.
    pub tenant_id: Option<String>,
    /// The resource kind: `database` (a database or a pool schema) or `role` (a login).
    pub resource: String,
    /// What is wrong: `missing` or `extra`.
    pub problem: String,
    /// `false` for extras, which are never deleted automatically.
    pub repaired: bool,
    /// Why the repair failed, when it did.
    pub error: Option<String>,
    /// The isolation model of the database concerned.
    pub isolation: Option<Isolation>,
    /// The provisioner's key of the database: a directory name, a database or a schema.
    pub key: Option<String>,
    /// Where it is (a path or URL without credentials).
    pub location: Option<String>,
    /// Why an extra is extra: `no tenant`, `tenant offboarded`, `plan is pool`, `plan is silo`.
    pub reason: Option<String>,
}

/// The result of one reconciliation pass.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReconciliationReport {
    /// The replica that made the pass (its `--node-id`).
    pub node: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// Active and suspended tenants whose databases were observed.
    pub tenants_checked: u64,
    pub drift: Vec<Drift>,
}

const PAGE: u32 = 500;

/// What an extra is.
#[derive(Clone, Copy)]
enum Extra {
    /// A database (or a pool schema).
    Database,
    /// A login without its database.
    Role,
}

impl Extra {
    fn as_str(self) -> &'static str {
        match self {
            Extra::Database => "database",
            Extra::Role => "role",
        }
    }
}

/// A tenant that has the key of a listed database.
struct Owner {
    tenant_id: String,
    status: TenantStatus,
    /// Its plan's isolation (`None` when the plan is gone).
    plan: Option<Isolation>,
}

/// Why a tenant's database of `isolation` is extra, or `None` when the tenant may
/// legitimately have it (see the module docs).
pub fn extra_reason(status: TenantStatus, plan: Option<Isolation>, isolation: Isolation) -> Option<String> {
    match status {
        TenantStatus::Offboarded => Some("tenant offboarded".into()),
        TenantStatus::Active | TenantStatus::Suspended => {
            plan.filter(|p| *p != isolation).map(|p| format!("plan is {}", p.as_str()))
        }
        TenantStatus::Provisioning | TenantStatus::Updating | TenantStatus::Offboarding | TenantStatus::Failed => None,
    }
}

/// Whether something listed with these owners (the tenants that have its key) is
/// extra, and why: extra only when no owner may have it; `None` when one may.
fn judge(owners: Option<&Vec<Owner>>, isolation: Isolation) -> Option<(Option<&Owner>, String)> {
    let Some(found) = owners else { return Some((None, "no tenant".to_owned())) };
    let reasons: Vec<String> =
        found.iter().map(|o| extra_reason(o.status, o.plan, isolation)).collect::<Option<_>>()?;
    Some((found.first(), reasons.into_iter().next()?))
}

impl App {
    /// One pass, recorded as the last one for every replica to serve.
    pub async fn reconcile_once(&self) -> Result<ReconciliationReport> {
        let report = self.reconcile_pass().await?;
        let run = ReconciliationRun {
            started_at: report.started_at,
            finished_at: report.finished_at,
            node: report.node.clone(),
            report: serde_json::to_value(&report).expect("a report serializes"),
        };
        self.store().drift().reconciliation_record(&run).await?;
        Ok(report)
    }

    /// Missing databases of active and suspended tenants, then extra ones.
    async fn reconcile_pass(&self) -> Result<ReconciliationReport> {
        let started_at = Timestamp::now();
        let node = self.node_id().to_owned();
        let mut report =
            ReconciliationReport { node, started_at, finished_at: started_at, tenants_checked: 0, drift: vec![] };
        let Some(plane) = self.data_plane().cloned() else {
            report.finished_at = Timestamp::now();
            return Ok(report);
        };
        let provisioner = plane.provisioner.clone();
        let isolations: Vec<Isolation> =
            [Isolation::Silo, Isolation::Pool].into_iter().filter(|i| provisioner.provisions(*i)).collect();
        // Listed before the tenants are read (see the module docs).
        let mut existing: Vec<(Isolation, ListedDatabase)> = vec![];
        for &i in &isolations {
            existing.extend(provisioner.database_list(i).await?.into_iter().map(|d| (i, d)));
        }
        let mut lone: Vec<(Isolation, ListedDatabase)> = vec![];
        for &i in &isolations {
            lone.extend(provisioner.lone_logins(i).await?.into_iter().map(|d| (i, d)));
        }
        let listed: HashSet<(Isolation, &str)> = existing.iter().map(|(i, d)| (*i, d.key.as_str())).collect();
        let lone_keys: HashSet<(Isolation, &str)> = lone.iter().map(|(i, d)| (*i, d.key.as_str())).collect();
        let mut owners: HashMap<(Isolation, String), Vec<Owner>> = HashMap::new();
        let mut login_owners: HashMap<(Isolation, String), Vec<Owner>> = HashMap::new();
        let mut plans: HashMap<String, Option<Isolation>> = HashMap::new();
        let mut page = PageRequest { limit: PAGE, after: None };
        loop {
            let tenants = self.store().tenant_list(&TenantFilter::default(), &page).await?;
            for t in &tenants.items {
                let settled = matches!(t.status, TenantStatus::Active | TenantStatus::Suspended);
                // Offboarded tenants do not hold their plan (it may be gone): not needed.
                let plan = if settled {
                    match plans.get(&t.plan) {
                        Some(i) => *i,
                        None => {
                            let i = self.store().plan_get(&t.plan).await.ok().map(|p| p.isolation);
                            plans.insert(t.plan.clone(), i);
                            i
                        }
                    }
                } else {
                    None
                };
                for &i in &isolations {
                    let owner = || Owner { tenant_id: t.id.clone(), status: t.status, plan };
                    if let Ok(key) = provisioner.database_key(&t.id, i) {
                        if listed.contains(&(i, key.as_str())) {
                            owners.entry((i, key)).or_default().push(owner());
                        }
                    }
                    if let Ok(Some(key)) = provisioner.login_key(&t.id, i) {
                        if lone_keys.contains(&(i, key.as_str())) {
                            login_owners.entry((i, key)).or_default().push(owner());
                        }
                    }
                }
                if settled {
                    report.tenants_checked += 1;
                    if let Some(isolation) = plan.filter(|i| provisioner.provisions(*i)) {
                        if let Some(drift) = self.repair_missing(&plane, &t.id, isolation).await? {
                            report.drift.push(drift);
                        }
                    }
                }
            }
            match tenants.next_cursor {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }
        let mut still_there = HashSet::new();
        for (isolation, db) in &existing {
            let Some((owner, reason)) = judge(owners.get(&(*isolation, db.key.clone())), *isolation) else { continue };
            if let Some(owner) = owner {
                if !self.still_extra(&*provisioner, owner, *isolation).await? {
                    continue;
                }
            }
            let tenant_id = owner.map(|o| o.tenant_id.clone());
            let (id, drift) = self.report_extra(Extra::Database, tenant_id, *isolation, db, reason).await?;
            still_there.insert(id);
            report.drift.push(drift);
        }
        // Logins without a database: extra on the same terms as a database, once listed
        // again (a delete in flight drops the database first, then the login).
        if !lone.is_empty() {
            let mut again: HashSet<(Isolation, String)> = HashSet::new();
            for &i in &isolations {
                again.extend(provisioner.lone_logins(i).await?.into_iter().map(|d| (i, d.key)));
            }
            for (isolation, login) in &lone {
                if !again.contains(&(*isolation, login.key.clone())) {
                    continue;
                }
                // A settled tenant's own login without its database is the missing
                // database, repaired above: `judge` finds it legitimate.
                let owners = login_owners.get(&(*isolation, login.key.clone()));
                let Some((owner, reason)) = judge(owners, *isolation) else { continue };
                let tenant_id = owner.map(|o| o.tenant_id.clone());
                let (id, drift) = self.report_extra(Extra::Role, tenant_id, *isolation, login, reason).await?;
                still_there.insert(id);
                report.drift.push(drift);
            }
        }
        // Forget the extras that went away: one that comes back is evented again. Only
        // those reported before this pass listed the databases: a replica may have
        // reported one that appeared since.
        let gone: Vec<String> = self
            .store()
            .drift()
            .drift_reported()
            .await?
            .into_iter()
            .filter(|(id, at)| *at < started_at && !still_there.contains(id))
            .map(|(id, _)| id)
            .collect();
        self.store().drift().drift_forget(&gone).await?;
        report.finished_at = Timestamp::now();
        Ok(report)
    }

    /// Observes a tenant's database; recreates it when it is missing.
    async fn repair_missing(&self, plane: &DataPlane, tenant_id: &str, isolation: Isolation) -> Result<Option<Drift>> {
        let provisioner = &plane.provisioner;
        let observed = provisioner.database_observe(tenant_id, isolation).await?;
        if observed.exists {
            return Ok(None);
        }
        let mut drift = Drift {
            tenant_id: Some(tenant_id.to_owned()),
            resource: "database".into(),
            problem: "missing".into(),
            repaired: false,
            error: None,
            isolation: Some(isolation),
            key: provisioner.database_key(tenant_id, isolation).ok(),
            location: Some(observed.location).filter(|l| !l.is_empty()),
            reason: None,
        };
        // Recreated with the tenant's stored password, so its service reconnects.
        match plane.ensure(&**self.store(), tenant_id, isolation).await {
            Ok(detail) => {
                drift.repaired = true;
                let event = Event::new(
                    DRIFT_REPAIRED,
                    Some(tenant_id),
                    vec![format!("tenant/{tenant_id}")],
                    json!({"id": tenant_id, "resource": "database", "problem": "missing",
                           "repair": "recreated empty", "detail": detail}),
                );
                let audit = OpContext::system().audit(
                    "tenant.reconcile",
                    format!("tenant/{tenant_id}"),
                    Some(tenant_id),
                    json!({"resource": "database", "problem": "missing", "repair": "recreated empty"}),
                );
                self.store().job_complete(&Effects::none().with_event(event).with_audit(audit)).await?;
                tracing::warn!(tenant_id, isolation = isolation.as_str(), "drift: database missing, recreated empty");
            }
            Err(e) => drift.error = Some(e.to_string()),
        }
        Ok(Some(drift))
    }

    /// Whether a tenant's database that looked extra still is: it still exists and, for
    /// an active or suspended tenant, no execution of the tenant is running (a plan
    /// change deletes the old database after it applied the new plan).
    async fn still_extra(
        &self,
        provisioner: &dyn DatabaseProvisioner,
        owner: &Owner,
        isolation: Isolation,
    ) -> Result<bool> {
        if matches!(owner.status, TenantStatus::Active | TenantStatus::Suspended) {
            let filter = ExecutionFilter {
                status: Some("RUNNING".into()),
                tenant_id: Some(owner.tenant_id.clone()),
                ..Default::default()
            };
            let running =
                self.store().workflows().execution_list(&filter, &PageRequest { limit: 1, after: None }).await?;
            if !running.items.is_empty() {
                return Ok(false);
            }
        }
        Ok(provisioner.database_observe(&owner.tenant_id, isolation).await?.exists)
    }

    /// Emits `TenantDriftDetected` and its audit entry for an extra database or login,
    /// unless it was reported already (by any replica) and stayed since. Returns its
    /// drift id and its entry of the report.
    async fn report_extra(
        &self,
        kind: Extra,
        tenant_id: Option<String>,
        isolation: Isolation,
        listed: &ListedDatabase,
        reason: String,
    ) -> Result<(String, Drift)> {
        let (id, resource) = match kind {
            Extra::Database => {
                let id = format!("{}/{}", isolation.as_str(), listed.key);
                (id.clone(), format!("database/{id}"))
            }
            Extra::Role => {
                let id = format!("role/{}", listed.key);
                (id.clone(), id)
            }
        };
        let kind = kind.as_str();
        let tenant = tenant_id.as_deref();
        let mut resources = vec![resource.clone()];
        if let Some(t) = tenant {
            resources.insert(0, format!("tenant/{t}"));
        }
        let detail = json!({"resource": kind, "problem": "extra", "isolation": isolation,
                            "key": listed.key, "location": listed.location, "reason": reason});
        let mut event_detail = json!({"id": tenant});
        if let (Some(e), Some(d)) = (event_detail.as_object_mut(), detail.as_object()) {
            e.extend(d.clone());
        }
        let event = Event::new(DRIFT_DETECTED, tenant, resources, event_detail);
        let target = tenant.map(|t| format!("tenant/{t}")).unwrap_or(resource);
        let audit = OpContext::system().audit("tenant.reconcile", target, tenant, detail);
        let fx = Effects::none().with_event(event).with_audit(audit);
        if self.store().drift().drift_report(&id, Timestamp::now(), &fx).await? {
            tracing::warn!(tenant_id = tenant, kind, id, location = %listed.location, reason, "drift: extra {kind}, left in place");
        } else {
            tracing::debug!(kind, id, "drift: extra {kind} still there");
        }
        let drift = Drift {
            tenant_id,
            resource: kind.into(),
            problem: "extra".into(),
            repaired: false,
            error: None,
            isolation: Some(isolation),
            key: Some(listed.key.clone()),
            location: Some(listed.location.clone()),
            reason: Some(reason),
        };
        Ok((id, drift))
    }

    /// The last pass recorded by any replica (`None` before the first pass).
    pub async fn reconciliation_last(&self, ctx: &OpContext) -> Result<Option<ReconciliationReport>> {
        ctx.authorize(Permission::RecordsRead)?;
        let Some(run) = self.store().drift().reconciliation_last().await? else { return Ok(None) };
        let report = serde_json::from_value(run.report)
            .map_err(|e| tenancy_domain::Error::internal(format!("unreadable reconciliation report: {e}")))?;
        Ok(Some(report))
    }

    /// How long until a pass is due on a loop of period `interval`: zero when no pass
    /// is recorded or the last one, by any replica, finished `interval` ago or more.
    async fn reconciliation_due_in(&self, interval: Duration) -> Result<Duration> {
        let Some(last) = self.store().drift().reconciliation_last().await? else { return Ok(Duration::ZERO) };
        let age = Timestamp::now().millis().saturating_sub(last.finished_at.millis()).max(0) as u64;
        Ok(interval.saturating_sub(Duration::from_millis(age)))
    }

    /// Runs a pass now, for an operator.
    pub async fn reconciliation_run(&self, ctx: &OpContext) -> Result<ReconciliationReport> {
        ctx.authorize(Permission::TenantAdmin)?;
        self.reconcile_once().await
    }
}

/// The background loop: a pass whenever none was made, on any replica, for
/// `interval` (see the module docs).
pub async fn run(app: Arc<App>, interval: Duration, shutdown: CancellationToken) {
    loop {
        let due_in = match app.reconciliation_due_in(interval).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the last reconciliation pass; making one");
                Duration::ZERO
            }
        };
        let mut wait = due_in;
        if due_in.is_zero() {
            if let Err(e) = app.reconcile_once().await {
                tracing::warn!(error = %e, "reconciliation pass failed");
            }
            wait = interval;
        }
        // Up to a tenth more, so that replicas started together do not pass together.
        let jitter = interval.mul_f64(rand::random::<f64>() / 10.0);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait + jitter) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Isolation::{Pool, Silo};

    #[test]
    fn only_settled_or_offboarded_tenants_have_extra_databases() {
        use TenantStatus as S;
        assert_eq!(extra_reason(S::Offboarded, None, Silo).as_deref(), Some("tenant offboarded"));
        for settled in [S::Active, S::Suspended] {
            assert_eq!(extra_reason(settled, Some(Silo), Silo), None, "its own database");
            assert_eq!(extra_reason(settled, Some(Pool), Silo).as_deref(), Some("plan is pool"));
            assert_eq!(extra_reason(settled, Some(Silo), Pool).as_deref(), Some("plan is silo"));
            assert_eq!(extra_reason(settled, None, Silo), None, "plan unknown: not judged");
        }
        // Mid-provisioning, mid-move, mid-offboarding, or failed: either may exist.
        for busy in [S::Provisioning, S::Updating, S::Offboarding, S::Failed] {
            for (plan, isolation) in [(Some(Pool), Silo), (Some(Silo), Silo), (None, Pool)] {
                assert_eq!(extra_reason(busy, plan, isolation), None, "{busy:?}");
            }
        }
    }
}
