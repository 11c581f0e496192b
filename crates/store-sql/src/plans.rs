//! Plans on SQL: written under the plan row's lock (an isolation change waits for no
//! tenant to hold the plan), read from the cache on SQLite, listed, deleted.

use sqlx::Row;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::plan::Plan;
use tenancy_domain::tenant::TenantStatus;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};

use super::{db_err, is_unique_violation, json_text, rows, SqlStore, Where};
use tenancy_store::Effects;

/// Tenants that hold plan `id` (all but the offboarded tombstones).
pub(super) async fn tenants_on_plan(c: &mut sqlx::AnyConnection, id: &str) -> Result<i64> {
    Ok(sqlx::query("SELECT COUNT(*) FROM tenants WHERE plan_id = $1 AND status <> $2")
        .bind(id)
        .bind(TenantStatus::Offboarded.as_str())
        .fetch_one(&mut *c)
        .await
        .map_err(db_err)?
        .get(0))
}

/// The error of a tenant created on a plan that holds its `max_tenants` already.
pub(super) fn plan_full(plan: &str, max: i64) -> Error {
    Error::Conflict {
        code: ErrorCode::PlanUnavailable,
        message: format!(
            "plan {plan:?} is full: it holds its max_tenants ({max}) tenants already (tenants moving to it count, \
             offboarded ones do not); raise max_tenants or choose another plan"
        ),
    }
}

/// Whether plan `id`, whose `max_tenants` is `max`, has room for one more tenant:
/// the tenants on it and moving to it ([`plan_load`]) are counted in the transaction
/// that inserts the new one (or starts its move), under
/// the plan's cap lock (a transaction-scoped advisory lock on PostgreSQL, so creates
/// on one capped plan take turns across replicas and each counts the ones committed
/// before it; SQLite has one writer). The caller holds the plan row `FOR SHARE`, so
/// the cap cannot change meanwhile.
pub(super) async fn check_room(
    c: &mut sqlx::AnyConnection,
    dialect: super::dialect::Dialect,
    id: &str,
    max: i64,
) -> Result<()> {
    dialect.advisory_xact_lock_text(&mut *c, &format!("tenancy.plan-cap/{id}")).await.map_err(db_err)?;
    if plan_load(c, id).await? >= max {
        return Err(plan_full(id, max));
    }
    Ok(())
}

/// What counts toward plan `id`'s `max_tenants`: the tenants holding it (all but the
/// offboarded) and those moving to it (updating, by the execution recorded in
/// `plan_moves`).
pub(super) async fn plan_load(c: &mut sqlx::AnyConnection, id: &str) -> Result<i64> {
    let sql = "SELECT (SELECT COUNT(*) FROM tenants WHERE plan_id = $1 AND status <> $2) + \
               (SELECT COUNT(*) FROM plan_moves m JOIN tenants t ON t.id = m.tenant_id \
                WHERE m.plan_id = $3 AND t.status = $4 AND t.lifecycle_execution_id = m.execution_id \
                AND t.plan_id <> $5)";
    Ok(sqlx::query(sql)
        .bind(id)
        .bind(TenantStatus::Offboarded.as_str())
        .bind(id)
        .bind(TenantStatus::Updating.as_str())
        .bind(id)
        .fetch_one(&mut *c)
        .await
        .map_err(db_err)?
        .get(0))
}

pub(super) async fn put(store: &SqlStore, plan: &Plan, if_version: Option<i64>, fx: &Effects) -> Result<Plan> {
    let (plan, dialect) = (plan.clone(), store.dialect);
    let stored = store
        .writer
        .write(fx, move |c| {
            Box::pin(async move {
                super::terms::moved();
                let sql =
                    format!("SELECT version, created_at, isolation FROM plans WHERE id = $1{}", dialect.for_update());
                let current = sqlx::query(&sql).bind(&plan.id).fetch_optional(&mut *c).await.map_err(db_err)?;
                let mut stored = plan.clone();
                let mut isolation = None;
                let found = match current {
                    None => 0,
                    Some(row) => {
                        stored.created_at = Timestamp(row.get(1));
                        isolation = Some(row.get::<String, _>(2));
                        row.get::<i64, _>(0)
                    }
                };
                if let Some(expected) = if_version {
                    if expected != found {
                        return Err(Error::PreconditionFailed { kind: "plan", id: plan.id.clone(), expected, found });
                    }
                }
                // A tenant's data is laid out by its plan's isolation (a database of
                // its own or a schema in the shared one): changing it under tenants
                // would leave them on the wrong layout. The row lock above keeps a
                // tenant from joining the plan meanwhile (its insert reads the plan
                // row FOR SHARE on PostgreSQL; SQLite has one writer).
                if let Some(from) = isolation.filter(|i| i != stored.isolation.as_str()) {
                    let in_use = tenants_on_plan(c, &plan.id).await?;
                    // A tenant moving plans holds its old plan until the move ends,
                    // and may be moving to this one: wait for the moves to finish.
                    let moving: i64 = sqlx::query("SELECT COUNT(*) FROM tenants WHERE status = $1")
                        .bind(TenantStatus::Updating.as_str())
                        .fetch_one(&mut *c)
                        .await
                        .map_err(db_err)?
                        .get(0);
                    if in_use == 0 && moving > 0 {
                        return Err(Error::Conflict {
                            code: ErrorCode::PlanInUse,
                            message: format!(
                                "{moving} tenant(s) are changing plans: plan {:?}'s isolation can change once \
                                 the plan changes finish (it may be their target); retry then",
                                plan.id
                            ),
                        });
                    }
                    if in_use > 0 {
                        return Err(Error::Conflict {
                            code: ErrorCode::PlanInUse,
                            message: format!(
                                "plan {:?} is used by {in_use} tenant(s): its isolation cannot change from {from} \
                                 to {}; create a new plan and move the tenants to it \
                                 (POST /v1/tenants/{{id}}/plan)",
                                plan.id,
                                stored.isolation.as_str()
                            ),
                        });
                    }
                }
                stored.version = found + 1;
                let sql = if found == 0 {
                    "INSERT INTO plans (id, name, isolation, features, quotas, version, created_at, updated_at, \
                     workflows, config, regions, max_tenants, self_service, rate_limit) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                } else {
                    "UPDATE plans SET name = $2, isolation = $3, features = $4, quotas = $5, version = $6, \
                     created_at = $7, updated_at = $8, workflows = $9, config = $10, regions = $11, \
                     max_tenants = $12, self_service = $13, rate_limit = $14 WHERE id = $1"
                };
                let res = sqlx::query(sql)
                    .bind(&stored.id)
                    .bind(&stored.name)
                    .bind(stored.isolation.as_str())
                    .bind(json_text(&stored.features))
                    .bind(json_text(&stored.quotas))
                    .bind(stored.version)
                    .bind(stored.created_at.millis())
                    .bind(stored.updated_at.millis())
                    .bind((!stored.workflows.is_empty()).then(|| json_text(&stored.workflows)))
                    .bind(json_text(&stored.config))
                    .bind(json_text(&stored.regions))
                    .bind(stored.max_tenants.map(|m| i64::try_from(m).unwrap_or(i64::MAX)))
                    .bind(i64::from(stored.self_service))
                    .bind(stored.rate_limit.as_ref().map(json_text))
                    .execute(&mut *c)
                    .await;
                match res {
                    // Another writer created it since the read: a stale version (the
                    // app re-reads and retries when no version was demanded).
                    Err(e) if is_unique_violation(&e) => Err(Error::PreconditionFailed {
                        kind: "plan",
                        id: plan.id.clone(),
                        expected: if_version.unwrap_or(0),
                        found: 1,
                    }),
                    Err(e) => Err(db_err(e)),
                    Ok(_) => Ok(stored),
                }
            })
        })
        .await;
    if let Some(c) = &store.records {
        c.plans.clear();
    }
    // After the plan cache forgot it (see the `terms` module).
    super::terms::moved();
    stored
}

pub(super) async fn get(store: &SqlStore, id: &str) -> Result<Plan> {
    let generation = match store.records.as_ref().map(|c| c.plans.get(id)) {
        Some(Ok(plan)) => return Ok(plan),
        Some(Err(generation)) => Some(generation),
        None => None,
    };
    let row = store.read_one("SELECT * FROM plans WHERE id = $1", id, "plan").await?;
    let plan = rows::plan(&row)?;
    if let (Some(c), Some(generation)) = (&store.records, generation) {
        c.plans.fill(generation, id, &plan);
    }
    Ok(plan)
}

pub(super) async fn list(store: &SqlStore, page: &PageRequest) -> Result<Page<Plan>> {
    let mut w = Where::new("SELECT * FROM plans");
    w.gt("id", page.after.as_deref());
    w.sql.push_str(&format!(" ORDER BY id LIMIT {}", page.limit + 1));
    let rows = w.query().fetch_all(&store.reader).await.map_err(db_err)?;
    let plans = rows.iter().map(rows::plan).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(plans, page.limit, |p| p.id.clone()))
}

pub(super) async fn delete(store: &SqlStore, id: &str, fx: &Effects) -> Result<()> {
    let (id, dialect) = (id.to_owned(), store.dialect);
    let deleted = store
        .writer
        .write(fx, move |c| {
            Box::pin(async move {
                super::terms::moved();
                let sql = format!("SELECT id FROM plans WHERE id = $1{}", dialect.for_update());
                if sqlx::query(&sql).bind(&id).fetch_optional(&mut *c).await.map_err(db_err)?.is_none() {
                    return Err(Error::not_found("plan", id));
                }
                let in_use = tenants_on_plan(c, &id).await?;
                if in_use > 0 {
                    return Err(Error::Conflict {
                        code: ErrorCode::PlanInUse,
                        message: format!("plan {id:?} is used by {in_use} tenant(s)"),
                    });
                }
                sqlx::query("DELETE FROM plans WHERE id = $1").bind(&id).execute(&mut *c).await.map_err(db_err)?;
                Ok(())
            })
        })
        .await;
    if let Some(c) = &store.records {
        c.plans.clear();
    }
    super::terms::moved();
    deleted
}
