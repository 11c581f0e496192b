//! The data plane's task handlers: a tenant's database created and deleted with its
//! resource record, and moved between pool and silo.

use crate::dataplane::plane::{
    database_record, plan_isolation, record_isolation, DataPlane, EXPORT, FINISH_MOVE, MOVE_CREATE, UNDO_MOVE,
};
use crate::OpContext;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tenancy_domain::plan::Isolation;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;
use tenancy_engine::{app_failure, failure, Registry, TaskCall, TaskHandler, TaskOutput, TaskResult};
use tenancy_store::{Effects, TenantResource};

/// Registers the steps of moves between isolation models (without a data plane they
/// are no-ops: there is no database to move).
pub fn register(r: &Registry, plane: Option<&Arc<DataPlane>>) {
    let plane = plane.cloned();
    r.register(MOVE_CREATE, MoveStep { plane: plane.clone(), op: MoveOp::Create });
    r.register(EXPORT, MoveStep { plane: plane.clone(), op: MoveOp::Export });
    r.register(UNDO_MOVE, MoveStep { plane: plane.clone(), op: MoveOp::Undo });
    r.register(FINISH_MOVE, MoveStep { plane, op: MoveOp::Finish });
}

/// `inner` (the lifecycle's resource record step), creating (or deleting) the
/// tenant's database first when the resource is a `database`.
pub(crate) fn with_database(inner: Arc<dyn TaskHandler>, plane: Arc<DataPlane>, create: bool) -> impl TaskHandler {
    WithDatabase { inner, plane, create }
}

/// What [`WithDatabase`] reads of a resource step's parameters (the inner step reads
/// them again, whole).
#[derive(Deserialize)]
struct DatabaseParams {
    tenant_id: Option<String>,
    kind: Option<String>,
    /// The plan whose isolation the database follows (by default the tenant's).
    plan: Option<String>,
}

struct WithDatabase {
    inner: Arc<dyn TaskHandler>,
    plane: Arc<DataPlane>,
    create: bool,
}

#[async_trait]
impl TaskHandler for WithDatabase {
    /// Creating or deleting a database is local and idempotent too.
    fn inline(&self) -> bool {
        self.inner.inline()
    }

    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let p: DatabaseParams = call.params()?;
        let (Some(tenant_id), Some("database")) = (p.tenant_id.as_deref(), p.kind.as_deref()) else {
            return self.inner.call(call).await;
        };
        let store = &**call.store;
        if !self.create {
            // The undo of provisioning and offboarding: whatever exists, of either model.
            for isolation in [Isolation::Silo, Isolation::Pool] {
                self.plane.remove(store, tenant_id, isolation).await.map_err(app_failure)?;
            }
            return self.inner.call(call).await;
        }
        let plan = match p.plan {
            Some(plan) => plan,
            None => store.tenant_get(tenant_id).await.map_err(app_failure)?.plan,
        };
        let isolation = plan_isolation(store, &plan).await.map_err(app_failure)?;
        let mut params = call.parameters.clone();
        params["isolation"] = json!(isolation);
        if let Some(Value::Object(d)) = self.plane.ensure(store, tenant_id, isolation).await.map_err(app_failure)? {
            if let Value::Object(m) = &mut params {
                m.extend(d);
            }
        }
        self.inner.call(TaskCall { parameters: &params, ..call }).await
    }
}

#[derive(Clone, Copy)]
enum MoveOp {
    Create,
    Export,
    Undo,
    Finish,
}

/// The steps of a move between isolation models (see the module docs). Each is
/// idempotent: creating finds the database, exporting rewrites the same object,
/// undoing and finishing delete what may already be gone.
struct MoveStep {
    plane: Option<Arc<DataPlane>>,
    op: MoveOp,
}

/// The parameters of the move steps (each uses the members its docs name).
#[derive(Deserialize)]
struct MoveParams {
    tenant_id: String,
    /// The plan the tenant moves to.
    #[serde(default)]
    plan: Option<String>,
    /// The plan it moves from (when its database has no record yet).
    #[serde(default)]
    previous_plan: Option<String>,
    /// `database.export`: the database to export (by default its record's).
    #[serde(default)]
    isolation: Option<Isolation>,
    /// `database.finish_move`: what `database.move_create` returned.
    #[serde(default, rename = "move")]
    done: Option<MoveDone>,
}

/// The result of `database.move_create`, as `database.finish_move` gets it back.
#[derive(Deserialize)]
struct MoveDone {
    from: Option<Isolation>,
    to: Option<Isolation>,
    #[serde(default)]
    detail: Value,
}

impl MoveStep {
    /// `(from, to)`: the isolation of the tenant's database now (its record, else the
    /// previous plan's) and the one `plan` needs.
    async fn direction(&self, call: &TaskCall<'_>, p: &MoveParams) -> Result<(Isolation, Isolation)> {
        let store = &**call.store;
        let to = plan_isolation(store, p.plan.as_deref().unwrap_or_default()).await?;
        let from = match database_record(store, &p.tenant_id).await?.and_then(|r| record_isolation(&r.detail)) {
            Some(i) => i,
            None => match p.previous_plan.as_deref() {
                Some(p) => plan_isolation(store, p).await?,
                None => to,
            },
        };
        Ok((from, to))
    }
}

#[async_trait]
impl TaskHandler for MoveStep {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let params: MoveParams = call.params()?;
        let tenant_id = params.tenant_id.as_str();
        let Some(plane) = &self.plane else {
            return Ok(TaskOutput::new(json!({"moved": false, "exported": false})));
        };
        let store = &**call.store;
        match self.op {
            // `{tenant_id, plan, previous_plan}` -> `{moved, from, to, detail}`.
            MoveOp::Create => {
                let (from, to) = self.direction(&call, &params).await.map_err(app_failure)?;
                if from == to {
                    return Ok(TaskOutput::new(json!({"moved": false, "from": from, "to": to})));
                }
                let detail = plane.ensure(store, tenant_id, to).await.map_err(app_failure)?;
                tracing::info!(tenant_id, from = from.as_str(), to = to.as_str(), "moving a tenant's database");
                Ok(TaskOutput::new(json!({"moved": true, "from": from, "to": to, "detail": detail})))
            }
            // `{tenant_id, isolation?}` -> `{exported, location?, bytes?}`.
            MoveOp::Export => {
                let isolation = match params.isolation {
                    Some(i) => i,
                    None => match database_record(store, tenant_id).await.map_err(app_failure)? {
                        Some(r) => match record_isolation(&r.detail) {
                            Some(i) => i,
                            None => return Ok(TaskOutput::new(json!({"exported": false}))),
                        },
                        None => return Ok(TaskOutput::new(json!({"exported": false}))),
                    },
                };
                let name = format!("{}-{}", call.execution_id, isolation.as_str());
                let Some((location, bytes)) = plane.export(tenant_id, isolation, &name).await.map_err(app_failure)?
                else {
                    return Ok(TaskOutput::new(json!({"exported": false})));
                };
                let audit = OpContext::system().audit(
                    "tenant.export_database",
                    format!("tenant/{tenant_id}"),
                    Some(tenant_id),
                    json!({"isolation": isolation, "location": location, "bytes": bytes,
                           "execution_id": call.execution_id}),
                );
                let mut out = TaskOutput::new(json!({"exported": true, "location": location, "bytes": bytes}));
                out.effects = Effects::none().with_audit(audit);
                Ok(out)
            }
            // `{tenant_id, plan, previous_plan}`: removes the target database unless the
            // record already points at it (then the move is past undoing).
            MoveOp::Undo => {
                let (from, to) = self.direction(&call, &params).await.map_err(app_failure)?;
                if from == to {
                    return Ok(TaskOutput::new(json!({"removed": false})));
                }
                plane.remove(store, tenant_id, to).await.map_err(app_failure)?;
                Ok(TaskOutput::new(json!({"removed": true, "isolation": to})))
            }
            // `{tenant_id, plan, move: {from, to, detail}}`: the record now names the new
            // database; the old one is deleted.
            MoveOp::Finish => {
                let Some(MoveDone { from: Some(from), to: Some(to), detail: moved }) = &params.done else {
                    return Err(failure("States.Runtime", "database.finish_move needs move.from and move.to"));
                };
                let (from, to) = (*from, *to);
                let mut detail = json!({"tenant_id": tenant_id, "kind": "database",
                                        "plan": params.plan, "isolation": to});
                if let (Value::Object(m), Value::Object(d)) = (&mut detail, moved.clone()) {
                    m.extend(d);
                }
                let record = TenantResource {
                    tenant_id: tenant_id.to_owned(),
                    kind: "database".into(),
                    detail,
                    created_by: call.idempotency_key.to_owned(),
                    created_at: Timestamp::now(),
                };
                store.workflows().tenant_resource_replace(&record).await.map_err(app_failure)?;
                plane.remove(store, tenant_id, from).await.map_err(app_failure)?;
                Ok(TaskOutput::new(json!({"moved": true, "from": from, "to": to})))
            }
        }
    }
}
