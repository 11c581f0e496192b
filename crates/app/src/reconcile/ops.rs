//! Reconciliation: desired state (what each tenant's plan requires) against actual
//! state (what its provisioner observes), repaired where possible.
//!
//! The reconciler takes no input and can run at any time, on any replica. Every
//! `interval` it makes one pass:
//!
//! * **Missing resources.** For each active or suspended tenant it observes what its
//!   plan needs: its database (`database`: a silo database; `schema`: a pool tenant's
//!   schema on PostgreSQL) when the data plane provisions that isolation, its login
//!   (`role`, PostgreSQL) when the database is there, and its resource records
//!   (`record`: `namespace`, `database`, `defaults`). A missing one of a kind listed in
//!   `--reconcile-repair` (by default `role` and `record`, which lose nothing when
//!   recreated) is recreated by the pass, with `TenantDriftRepaired` and a system
//!   audit entry in one transaction. The others (by default a database or schema,
//!   whose recreation empty would hide that the data is gone) are only reported:
//!   `TenantDriftDetected` once, with the newest export of the tenant in the blob store
//!   to restore from (`restore_from`), until an operator calls
//!   `POST /v1/reconciliation/{drift id}/repair` ([`App::reconciliation_repair`]).
//!   Every drift has a stable id ([`drift_id`]), the same in every pass.
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
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tenancy_adapters::dataplane::{DatabaseProvisioner, ListedDatabase};
use tenancy_domain::event::Event;
use tenancy_domain::page::PageRequest;
use tenancy_domain::plan::Isolation;
use tenancy_domain::tenant::{Tenant, TenantFilter, TenantStatus};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::{Effects, ExecutionFilter, ReconciliationRun, ResourceChange, TenantResource};

use crate::context::Permission;
use crate::dataplane::plane::DataPlane;
use crate::{App, OpContext};

pub const DRIFT_REPAIRED: &str = "TenantDriftRepaired";
pub const DRIFT_DETECTED: &str = "TenantDriftDetected";

/// The resource records the provisioning workflow leaves for every active tenant.
pub const EXPECTED_RECORDS: &[&str] = &["namespace", "database", "defaults"];

/// The kinds of resources the reconciler compares, each repaired automatically or
/// only reported (`serve --reconcile-repair`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DriftKind {
    /// A silo tenant's database (a SQLite file, a PostgreSQL database).
    Database,
    /// A pool tenant's schema in the pool database (PostgreSQL data plane).
    Schema,
    /// A tenant's login role (PostgreSQL data plane).
    Role,
    /// A tenant resource record (`namespace`, `database`, `defaults`).
    Record,
}

impl DriftKind {
    pub const ALL: [DriftKind; 4] = [DriftKind::Database, DriftKind::Schema, DriftKind::Role, DriftKind::Record];
    /// Repaired on their own by default: recreating a login (with the stored
    /// password) or a record loses nothing. A database or schema recreated empty would
    /// hide that the data is gone, so those wait for an operator (and an export).
    pub const DEFAULT_REPAIR: &'static [DriftKind] = &[DriftKind::Role, DriftKind::Record];

    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Database => "database",
            DriftKind::Schema => "schema",
            DriftKind::Role => "role",
            DriftKind::Record => "record",
        }
    }

    pub fn parse(s: &str) -> Option<DriftKind> {
        DriftKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// A list of kinds as `--reconcile-repair` takes it: names, or `none` alone.
    pub fn parse_list(items: &[String]) -> std::result::Result<Vec<DriftKind>, String> {
        let items: Vec<&str> = items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
        if items == ["none"] {
            return Ok(vec![]);
        }
        let mut out = Vec::new();
        for i in items {
            let k = DriftKind::parse(i).ok_or_else(|| {
                format!("unknown reconciliation kind {i:?}: use database, schema, role, record, or none")
            })?;
            if !out.contains(&k) {
                out.push(k);
            }
        }
        Ok(out)
    }

    /// The kind of a tenant's database of `isolation`.
    pub fn of_database(isolation: Isolation) -> DriftKind {
        match isolation {
            Isolation::Silo => DriftKind::Database,
            Isolation::Pool => DriftKind::Schema,
        }
    }
}

pub use tenancy_domain::api::{Drift, ReconciliationReport};

/// The stable id of a drift: a hash of what it is about, so every pass (on any
/// replica) names it the same.
pub fn drift_id(
    problem: &str,
    resource: &str,
    isolation: Option<Isolation>,
    key: &str,
    tenant: Option<&str>,
) -> String {
    let isolation = isolation.map_or("", |i| i.as_str());
    let text = format!("{problem}\n{resource}\n{isolation}\n{key}\n{}", tenant.unwrap_or(""));
    format!("drift_{}", &hex::encode(Sha256::digest(text.as_bytes()))[..20])
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

/// A missing resource of a settled tenant, as found (before its id and export).
fn missing(
    tenant: &Tenant,
    kind: DriftKind,
    isolation: Option<Isolation>,
    key: String,
    location: Option<String>,
) -> Drift {
    Drift {
        id: drift_id("missing", kind.as_str(), isolation, &key, Some(&tenant.id)),
        tenant_id: Some(tenant.id.clone()),
        resource: kind.as_str().into(),
        problem: "missing".into(),
        repaired: false,
        repairable: true,
        error: None,
        isolation,
        key: Some(key),
        location: location.filter(|l| !l.is_empty()),
        reason: None,
        restore_from: None,
        restore_from_at: None,
    }
}

impl App {
    /// The kinds of missing resources the reconciler recreates on its own (`serve
    /// --reconcile-repair`; default [`DriftKind::DEFAULT_REPAIR`]); the others are
    /// reported until an operator asks (`POST /v1/reconciliation/{id}/repair`).
    pub fn set_reconcile_repair(&mut self, kinds: &[DriftKind]) {
        self.reconcile_repair = kinds.iter().copied().collect();
    }

    /// One pass, recorded as the last one for every replica to serve.
    pub async fn reconcile_once(&self) -> Result<ReconciliationReport> {
        let report = self.reconcile_pass().await?;
        for d in &report.drift {
            metrics::counter!("tenancy_drift_found_total", "resource" => d.resource.clone(), "problem" => d.problem.clone())
                .increment(1);
            if d.repaired {
                metrics::counter!("tenancy_drift_repaired_total", "resource" => d.resource.clone()).increment(1);
            }
        }
        let run = ReconciliationRun {
            started_at: report.started_at,
            finished_at: report.finished_at,
            node: report.node.clone(),
            report: serde_json::to_value(&report).expect("a report serializes"),
        };
        self.store().drift().reconciliation_record(&run).await?;
        Ok(report)
    }

    /// Missing resources of active and suspended tenants, then extra ones.
    pub(crate) async fn reconcile_pass(&self) -> Result<ReconciliationReport> {
        let started_at = Timestamp::now();
        let node = self.node_id().to_owned();
        let mut report =
            ReconciliationReport { node, started_at, finished_at: started_at, tenants_checked: 0, drift: vec![] };
        let plane = self.data_plane().cloned();
        let provisioner = plane.as_ref().map(|p| p.provisioner.clone());
        let isolations: Vec<Isolation> = [Isolation::Silo, Isolation::Pool]
            .into_iter()
            .filter(|i| provisioner.as_ref().is_some_and(|p| p.provisions(*i)))
            .collect();
        // Listed before the tenants are read (see the module docs).
        let mut existing: Vec<(Isolation, ListedDatabase)> = vec![];
        let mut lone: Vec<(Isolation, ListedDatabase)> = vec![];
        if let Some(p) = &provisioner {
            for &i in &isolations {
                existing.extend(p.database_list(i).await?.into_iter().map(|d| (i, d)));
            }
            for &i in &isolations {
                lone.extend(p.lone_logins(i).await?.into_iter().map(|d| (i, d)));
            }
        }
        let listed: HashSet<(Isolation, &str)> = existing.iter().map(|(i, d)| (*i, d.key.as_str())).collect();
        let lone_keys: HashSet<(Isolation, &str)> = lone.iter().map(|(i, d)| (*i, d.key.as_str())).collect();
        let mut owners: HashMap<(Isolation, String), Vec<Owner>> = HashMap::new();
        let mut login_owners: HashMap<(Isolation, String), Vec<Owner>> = HashMap::new();
        let mut plans: HashMap<String, Option<Isolation>> = HashMap::new();
        // Ids of the drift reported (evented once) that is still there.
        let mut still_there = HashSet::new();
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
                if let Some(p) = &provisioner {
                    for &i in &isolations {
                        let owner = || Owner { tenant_id: t.id.clone(), status: t.status, plan };
                        if let Ok(key) = p.database_key(&t.id, i) {
                            if listed.contains(&(i, key.as_str())) {
                                owners.entry((i, key)).or_default().push(owner());
                            }
                        }
                        if let Ok(Some(key)) = p.login_key(&t.id, i) {
                            if lone_keys.contains(&(i, key.as_str())) {
                                login_owners.entry((i, key)).or_default().push(owner());
                            }
                        }
                    }
                }
                if settled {
                    report.tenants_checked += 1;
                    if let Some(isolation) = plan {
                        for drift in self.find_missing(plane.as_deref(), t, isolation).await? {
                            let drift = self.handle_missing(plane.as_deref(), t, drift).await?;
                            if !drift.repaired && drift.error.is_none() {
                                still_there.insert(drift.id.clone());
                            }
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
        if let Some(p) = &provisioner {
            for (isolation, db) in &existing {
                let Some((owner, reason)) = judge(owners.get(&(*isolation, db.key.clone())), *isolation) else {
                    continue;
                };
                if let Some(owner) = owner {
                    if !self.still_extra(&**p, owner, *isolation).await? {
                        continue;
                    }
                }
                let tenant_id = owner.map(|o| o.tenant_id.clone());
                let drift = self.report_extra(Extra::Database, tenant_id, *isolation, db, reason).await?;
                still_there.insert(drift.id.clone());
                report.drift.push(drift);
            }
            // Logins without a database: extra on the same terms as a database, once
            // listed again (a delete in flight drops the database first, then the login).
            if !lone.is_empty() {
                let mut again: HashSet<(Isolation, String)> = HashSet::new();
                for &i in &isolations {
                    again.extend(p.lone_logins(i).await?.into_iter().map(|d| (i, d.key)));
                }
                for (isolation, login) in &lone {
                    if !again.contains(&(*isolation, login.key.clone())) {
                        continue;
                    }
                    // A settled tenant's own login without its database is the missing
                    // database, found above: `judge` finds it legitimate.
                    let owners = login_owners.get(&(*isolation, login.key.clone()));
                    let Some((owner, reason)) = judge(owners, *isolation) else { continue };
                    let tenant_id = owner.map(|o| o.tenant_id.clone());
                    let drift = self.report_extra(Extra::Role, tenant_id, *isolation, login, reason).await?;
                    still_there.insert(drift.id.clone());
                    report.drift.push(drift);
                }
            }
        }
        // Forget the drift that went away: drift that comes back is evented again. Only
        // what was reported before this pass started: a replica may have reported
        // drift that appeared since.
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

    /// What a settled tenant on a plan of `isolation` lacks: its database or schema
    /// (when the data plane provisions that isolation), its login (when its database
    /// is there and the data plane has logins), its resource records.
    pub(crate) async fn find_missing(
        &self,
        plane: Option<&DataPlane>,
        t: &Tenant,
        isolation: Isolation,
    ) -> Result<Vec<Drift>> {
        let mut found = Vec::new();
        let mut database_missing = false;
        if let Some(p) = plane.map(|p| &p.provisioner).filter(|p| p.provisions(isolation)) {
            let observed = p.database_observe(&t.id, isolation).await?;
            let key = p.database_key(&t.id, isolation)?;
            if !observed.exists {
                database_missing = true;
                let mut d =
                    missing(t, DriftKind::of_database(isolation), Some(isolation), key, Some(observed.location));
                if let Some((location, at)) = self.latest_export(t).await {
                    d.restore_from = Some(location);
                    d.restore_from_at = Some(at);
                }
                found.push(d);
            } else if let Some(login) = p.login_key(&t.id, isolation)? {
                if !p.login_exists(&t.id, isolation).await? {
                    let location = observed.location.clone();
                    found.push(missing(t, DriftKind::Role, Some(isolation), login, Some(location)));
                }
            }
        }
        let records: HashSet<String> =
            self.store().workflows().tenant_resource_list(&t.id).await?.into_iter().map(|r| r.kind).collect();
        for kind in EXPECTED_RECORDS {
            // A missing database's repair records it again too.
            let with_database = database_missing && *kind == "database";
            if !records.contains(*kind) && !with_database {
                found.push(missing(t, DriftKind::Record, Some(isolation), (*kind).to_owned(), None));
            }
        }
        Ok(found)
    }

    /// Repairs a missing resource now when its kind is repaired automatically; else
    /// reports it (evented once, see [`App::report_once`]).
    pub(crate) async fn handle_missing(
        &self,
        plane: Option<&DataPlane>,
        t: &Tenant,
        mut drift: Drift,
    ) -> Result<Drift> {
        let kind = DriftKind::parse(&drift.resource).unwrap_or(DriftKind::Record);
        if !self.reconcile_repair.contains(&kind) {
            self.report_once(&drift).await?;
            return Ok(drift);
        }
        match self.repair(plane, t, &drift, &OpContext::system()).await {
            Ok(()) => {
                drift.repaired = true;
                drift.repairable = false;
                tracing::warn!(tenant_id = %t.id, resource = %drift.resource, key = ?drift.key, "drift: missing, recreated");
            }
            Err(e) => drift.error = Some(e.to_string()),
        }
        Ok(drift)
    }

    /// Recreates a missing resource (a database or schema empty, a login with the
    /// stored password, a record) and writes `TenantDriftRepaired` with an audit entry
    /// of `ctx` in one transaction (the recreated record too).
    pub(crate) async fn repair(
        &self,
        plane: Option<&DataPlane>,
        t: &Tenant,
        drift: &Drift,
        ctx: &OpContext,
    ) -> Result<()> {
        let kind = DriftKind::parse(&drift.resource)
            .ok_or_else(|| Error::internal(format!("unknown drift resource {:?}", drift.resource)))?;
        let isolation = drift.isolation;
        let mut fx = Effects::none();
        let (repair, record_kind) = match kind {
            DriftKind::Database | DriftKind::Schema => ("recreated empty", Some("database")),
            DriftKind::Role => ("recreated with the stored password", None),
            DriftKind::Record => ("recorded again", drift.key.as_deref()),
        };
        let mut detail = Value::Null;
        let needs_database = matches!(kind, DriftKind::Database | DriftKind::Schema | DriftKind::Role)
            || record_kind == Some("database");
        if needs_database {
            if let (Some(plane), Some(isolation)) = (plane, isolation) {
                // Recreated with the tenant's stored password, so its service reconnects.
                detail = plane.ensure(&**self.store(), &t.id, isolation).await?.unwrap_or(Value::Null);
            }
        }
        if let Some(record_kind) = record_kind {
            let mut record = json!({"tenant_id": t.id, "kind": record_kind, "plan": t.plan});
            if record_kind == "database" {
                record["isolation"] = json!(isolation);
                if let (Value::Object(m), Value::Object(d)) = (&mut record, &detail) {
                    m.extend(d.clone());
                }
            }
            fx = fx.with_resource(ResourceChange::Put(TenantResource {
                tenant_id: t.id.clone(),
                kind: record_kind.to_owned(),
                detail: record,
                created_by: format!("reconciliation/{}", drift.id),
                created_at: Timestamp::now(),
            }));
        }
        let about = json!({"drift_id": drift.id, "resource": drift.resource, "problem": drift.problem,
                           "isolation": drift.isolation, "key": drift.key, "repair": repair,
                           "restore_from": drift.restore_from});
        let mut event_detail = json!({"id": t.id, "detail": detail});
        if let (Value::Object(e), Value::Object(a)) = (&mut event_detail, &about) {
            e.extend(a.clone());
        }
        let event = Event::new(DRIFT_REPAIRED, Some(&t.id), vec![format!("tenant/{}", t.id)], event_detail);
        let action = if ctx.is_system() { "tenant.reconcile" } else { "reconciliation.repair" };
        let audit = ctx.audit(action, format!("tenant/{}", t.id), Some(&t.id), about);
        self.store().commit_effects(&fx.with_event(event).with_audit(audit)).await?;
        self.store().drift().drift_forget(std::slice::from_ref(&drift.id)).await?;
        Ok(())
    }

    /// The newest export of the tenant's data written since it was created: `(URL,
    /// time)`. Offboarding exports (`tenants/<id>/offboard-<execution>/database.*`)
    /// and plan-change exports (`tenants/<id>/exports/*`); `None` without a blob store
    /// or any such export (or when the store cannot be listed: a report is not failed
    /// for it).
    pub(crate) async fn latest_export(&self, t: &Tenant) -> Option<(String, Timestamp)> {
        use futures::TryStreamExt;
        let blobs = self.services.blobs.as_ref()?;
        let prefix = object_store::path::Path::from(format!("tenants/{}/", t.id));
        let listed: Vec<object_store::ObjectMeta> = match blobs.store.list(Some(&prefix)).try_collect().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(tenant_id = %t.id, error = %e, "could not list the tenant's exports");
                return None;
            }
        };
        listed
            .into_iter()
            .filter(|m| {
                let path = m.location.as_ref();
                let name = path.rsplit('/').next().unwrap_or("");
                path.contains("/exports/") || (path.contains("/offboard-") && name.starts_with("database."))
            })
            .map(|m| (m.location.to_string(), Timestamp(m.last_modified.timestamp_millis())))
            .filter(|(_, at)| *at >= t.created_at)
            .max_by_key(|(_, at)| *at)
            .map(|(path, at)| (format!("{}/{path}", blobs.url.trim_end_matches('/')), at))
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

    /// Emits `TenantDriftDetected` and its audit entry for drift that is reported and
    /// left (an extra, a missing resource of a kind repaired only on request), unless
    /// it was reported already (by any replica) and stayed since.
    pub(crate) async fn report_once(&self, drift: &Drift) -> Result<()> {
        let tenant = drift.tenant_id.as_deref();
        let key = drift.key.as_deref().unwrap_or("");
        let resource = match drift.resource.as_str() {
            "role" => format!("role/{key}"),
            "record" => format!("record/{}/{key}", tenant.unwrap_or("")),
            other => format!("{other}/{}/{key}", drift.isolation.map_or("", |i| i.as_str())),
        };
        let mut resources = vec![resource.clone()];
        if let Some(t) = tenant {
            resources.insert(0, format!("tenant/{t}"));
        }
        let mut detail = json!({"drift_id": drift.id, "resource": drift.resource, "problem": drift.problem,
                                "isolation": drift.isolation, "key": drift.key, "location": drift.location});
        if let Some(reason) = &drift.reason {
            detail["reason"] = json!(reason);
        }
        if let Some(r) = &drift.restore_from {
            detail["restore_from"] = json!(r);
        }
        let mut event_detail = json!({"id": tenant});
        if let (Some(e), Some(d)) = (event_detail.as_object_mut(), detail.as_object()) {
            e.extend(d.clone());
        }
        let event = Event::new(DRIFT_DETECTED, tenant, resources, event_detail);
        let target = tenant.map(|t| format!("tenant/{t}")).unwrap_or(resource);
        let audit = OpContext::system().audit("tenant.reconcile", target, tenant, detail);
        let fx = Effects::none().with_event(event).with_audit(audit);
        let (kind, problem) = (drift.resource.as_str(), drift.problem.as_str());
        if self.store().drift().drift_report(&drift.id, Timestamp::now(), &fx).await? {
            tracing::warn!(tenant_id = tenant, kind, problem, id = %drift.id, location = ?drift.location, reason = ?drift.reason, "drift: {problem} {kind}, reported");
        } else {
            tracing::debug!(kind, problem, id = %drift.id, "drift: {problem} {kind} still there");
        }
        Ok(())
    }

    /// Reports an extra database or login (see [`App::report_once`]).
    async fn report_extra(
        &self,
        kind: Extra,
        tenant_id: Option<String>,
        isolation: Isolation,
        listed: &ListedDatabase,
        reason: String,
    ) -> Result<Drift> {
        let resource = match kind {
            Extra::Database => DriftKind::of_database(isolation),
            Extra::Role => DriftKind::Role,
        };
        let drift = Drift {
            id: drift_id("extra", resource.as_str(), Some(isolation), &listed.key, tenant_id.as_deref()),
            tenant_id,
            resource: resource.as_str().into(),
            problem: "extra".into(),
            repaired: false,
            repairable: false,
            error: None,
            isolation: Some(isolation),
            key: Some(listed.key.clone()),
            location: Some(listed.location.clone()),
            reason: Some(reason),
            restore_from: None,
            restore_from_at: None,
        };
        self.report_once(&drift).await?;
        Ok(drift)
    }

    /// Recreates a drift of the last pass on an operator's request (admins and
    /// operators): 404 for an id the last pass did not report, 409
    /// `drift-not-repairable` for an extra (never deleted by Tenancy), 409 `drift-gone`
    /// when what was missing is there again (or its tenant moved on). The repair and
    /// its `TenantDriftRepaired` event and `reconciliation.repair` audit entry commit
    /// together. Returns the drift, `repaired: true`.
    pub async fn reconciliation_repair(&self, ctx: &OpContext, drift_id: &str) -> Result<Drift> {
        ctx.authorize(Permission::TenantAdmin)?;
        let not_found = || Error::not_found("drift", drift_id);
        let run = self.store().drift().reconciliation_last().await?.ok_or_else(not_found)?;
        let report: ReconciliationReport = serde_json::from_value(run.report)
            .map_err(|e| Error::internal(format!("unreadable reconciliation report: {e}")))?;
        let mut drift = report.drift.into_iter().find(|d| d.id == drift_id).ok_or_else(not_found)?;
        if drift.problem != "missing" {
            return Err(Error::Conflict {
                code: ErrorCode::DriftNotRepairable,
                message: format!(
                    "drift {drift_id:?} is an extra {}: Tenancy never deletes one (it may be the only copy of \
                     someone's data); export it and remove it by hand",
                    drift.resource
                ),
            });
        }
        let gone = |why: String| Error::Conflict {
            code: ErrorCode::DriftGone,
            message: format!("drift {drift_id:?} is gone: {why} (run a pass to refresh the report)"),
        };
        let tenant_id = drift.tenant_id.clone().ok_or_else(|| gone("it names no tenant".into()))?;
        let t = match self.store().tenant_get(&tenant_id).await {
            Ok(t) => t,
            Err(Error::NotFound { .. }) => return Err(gone(format!("tenant {tenant_id:?} no longer exists"))),
            Err(e) => return Err(e),
        };
        if !matches!(t.status, TenantStatus::Active | TenantStatus::Suspended) {
            return Err(gone(format!("tenant {tenant_id:?} is {}", t.status.as_str())));
        }
        let isolation = self.store().plan_get(&t.plan).await?.isolation;
        let plane = self.data_plane().cloned();
        let now = self.find_missing(plane.as_deref(), &t, isolation).await?;
        if !now.iter().any(|d| d.id == drift.id) {
            return Err(gone(format!("tenant {tenant_id:?} has its {} {:?} again", drift.resource, drift.key)));
        }
        self.repair(plane.as_deref(), &t, &drift, ctx).await?;
        tracing::warn!(tenant_id, resource = %drift.resource, key = ?drift.key, "drift: missing, recreated on request");
        metrics::counter!("tenancy_drift_repaired_total", "resource" => drift.resource.clone()).increment(1);
        drift.repaired = true;
        drift.repairable = false;
        drift.error = None;
        Ok(drift)
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
    pub(crate) async fn reconciliation_due_in(&self, interval: Duration) -> Result<Duration> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use Isolation::{Pool, Silo};

    #[test]
    fn repair_kinds_parse_and_ids_are_stable() {
        let list = |s: &[&str]| DriftKind::parse_list(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(list(&["database", " role", "database"]), Ok(vec![DriftKind::Database, DriftKind::Role]));
        assert_eq!(list(&["none"]), Ok(vec![]));
        assert!(list(&["databases"]).unwrap_err().contains("databases"));
        assert!(list(&["none", "role"]).is_err(), "none stands alone");
        let a = drift_id("missing", "database", Some(Silo), "acme", Some("acme"));
        assert_eq!(a, drift_id("missing", "database", Some(Silo), "acme", Some("acme")));
        assert_ne!(a, drift_id("extra", "database", Some(Silo), "acme", Some("acme")));
        assert_ne!(a, drift_id("missing", "database", Some(Pool), "acme", Some("acme")));
        assert!(a.starts_with("drift_") && a.len() == 26 && a[6..].chars().all(|c| c.is_ascii_hexdigit()), "{a}");
    }

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
