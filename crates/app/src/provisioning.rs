//! Tenants' data-plane databases in the lifecycle workflows.
//!
//! With a [`DataPlane`] set ([`App::set_provisioner`]; `tenancy serve` sets the
//! SQLite-file one on the embedded default and the PostgreSQL one on PostgreSQL), the
//! `database` steps of the lifecycle workflows (`tenancy:resource.create` /
//! `tenancy:resource.delete` with `kind: "database"`) create and delete a real database
//! for the tenant's isolation model (the plan's `isolation`) before recording or
//! forgetting the resource; the record's `detail` says where it is (`isolation`,
//! `engine`, and `host`/`database`/`schema`/`user` or `path`), never a password. A
//! provisioner that does not provision an isolation (the embedded default for `pool`)
//! leaves only the record.
//!
//! **Passwords.** A provisioner with logins ([`DatabaseProvisioner::uses_credentials`])
//! gets a password generated here once per tenant and isolation (32 random letters and
//! digits), sealed with the master key ([`SecretBox`], associated data
//! `tenant/<id>/database:<isolation>`) and stored in `tenant_secrets` *before* the
//! database is created, so a repeated step (after a crash) finds and reuses it. It is
//! never part of a resource, an event, an audit entry, a workflow's input or output, or
//! a log line; `GET /v1/tenants/{id}/database-credentials` returns it (audited).
//!
//! **Moves.** A plan change between a pool and a silo plan moves the database
//! (`tenant-change-plan.json`): `tenancy:database.move_create` creates the target
//! isolation's database, `tenancy:database.export` writes the old one to the blob store
//! (`tenants/<id>/exports/<execution id>-<isolation>.<ext>`), the plan is applied, and
//! `tenancy:database.finish_move` points the resource record at the new database and
//! deletes the old one. A failure before the plan is applied runs
//! `tenancy:database.undo_move`: the new database goes, the old one stays. Data is not
//! copied into the new database (the export is there to import from); the old database
//! is only deleted after its export landed, so nothing is lost.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use tenancy_adapters::dataplane::DatabaseProvisioner;
use tenancy_domain::plan::Isolation;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::{Effects, Store, TenantResource};
use tokio::io::AsyncWriteExt;

use crate::audit::BlobStore;
use crate::context::Permission;
use crate::engine::handlers::{app_failure, failure, Registry, TaskCall, TaskHandler, TaskOutput, TaskResult};
use crate::secretbox::SecretBox;
use crate::{App, OpContext};

const CREATE: &str = "tenancy:resource.create";
const DELETE: &str = "tenancy:resource.delete";
pub const MOVE_CREATE: &str = "tenancy:database.move_create";
pub const EXPORT: &str = "tenancy:database.export";
pub const UNDO_MOVE: &str = "tenancy:database.undo_move";
pub const FINISH_MOVE: &str = "tenancy:database.finish_move";

/// The provisioner with what its steps need from the app: the master key for
/// passwords, the blob store for exports.
pub struct DataPlane {
    pub provisioner: Arc<dyn DatabaseProvisioner>,
    secrets: Option<Arc<SecretBox>>,
    blobs: Option<BlobStore>,
}

fn secret_name(isolation: Isolation) -> String {
    format!("database:{}", isolation.as_str())
}

fn secret_owner(tenant_id: &str, isolation: Isolation) -> String {
    format!("tenant/{tenant_id}/{}", secret_name(isolation))
}

fn generate_password() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

/// The isolation a `database` resource record is for (records written before moves
/// existed have a `path` when they are a silo database).
pub fn record_isolation(detail: &Value) -> Option<Isolation> {
    match detail["isolation"].as_str() {
        Some(i) => Isolation::parse(i),
        None if detail.get("path").is_some() => Some(Isolation::Silo),
        None => None,
    }
}

async fn plan_isolation(store: &dyn Store, plan: &str) -> Result<Isolation> {
    Ok(store.plan_get(plan).await?.isolation)
}

async fn database_record(store: &dyn Store, tenant_id: &str) -> Result<Option<TenantResource>> {
    Ok(store.workflows().tenant_resource_list(tenant_id).await?.into_iter().find(|r| r.kind == "database"))
}

impl DataPlane {
    fn secrets(&self) -> Result<&SecretBox> {
        self.secrets.as_deref().ok_or_else(|| Error::internal("no master key to seal database passwords with"))
    }

    /// The tenant's password for `isolation`, generated and stored sealed the first time.
    async fn password(&self, store: &dyn Store, tenant_id: &str, isolation: Isolation) -> Result<String> {
        let secrets = self.secrets()?;
        let owner = secret_owner(tenant_id, isolation);
        let w = store.workflows();
        let sealed = match w.tenant_secret_get(tenant_id, &secret_name(isolation)).await? {
            Some(s) => s,
            None => {
                let fresh = secrets.seal(&owner, &generate_password());
                // The first stored one wins when two attempts race.
                w.tenant_secret_put(tenant_id, &secret_name(isolation), &fresh).await?
            }
        };
        secrets.open(&owner, &sealed)
    }

    /// Creates (or finds) the tenant's database for `isolation`; its detail, or `None`
    /// when this provisioner keeps no database for that isolation.
    pub async fn ensure(&self, store: &dyn Store, tenant_id: &str, isolation: Isolation) -> Result<Option<Value>> {
        if !self.provisioner.provisions(isolation) {
            return Ok(None);
        }
        let password = match self.provisioner.uses_credentials() {
            true => Some(self.password(store, tenant_id, isolation).await?),
            false => None,
        };
        Ok(Some(self.provisioner.database_create(tenant_id, isolation, password.as_deref()).await?))
    }

    /// Deletes the tenant's database for `isolation` and its password.
    pub async fn remove(&self, store: &dyn Store, tenant_id: &str, isolation: Isolation) -> Result<()> {
        if !self.provisioner.provisions(isolation) {
            return Ok(());
        }
        self.provisioner.database_delete(tenant_id, isolation).await?;
        store.workflows().tenant_secret_delete(tenant_id, &secret_name(isolation)).await?;
        Ok(())
    }

    /// Exports the tenant's database for `isolation` to the blob store under `name`;
    /// `(location, bytes)`, or `None` when there is no database.
    async fn export(&self, tenant_id: &str, isolation: Isolation, name: &str) -> Result<Option<(String, u64)>> {
        if !self.provisioner.provisions(isolation) {
            return Ok(None);
        }
        let blobs = self.blobs.as_ref().ok_or_else(|| Error::Unavailable("no blob store configured".into()))?;
        let dir = tempfile::tempdir().map_err(|e| Error::Unavailable(format!("failed to create a temp dir: {e}")))?;
        let file = dir.path().join("export");
        if !self.provisioner.database_export(tenant_id, isolation, &file).await? {
            return Ok(None);
        }
        let path = format!("tenants/{tenant_id}/exports/{name}.{}", self.provisioner.export_extension());
        let unavailable =
            |e: std::io::Error| Error::Unavailable(format!("failed to write {path} to the blob store: {e}"));
        let mut snapshot = tokio::fs::File::open(&file)
            .await
            .map_err(|e| Error::Unavailable(format!("failed to read the export of {tenant_id:?}: {e}")))?;
        // Streamed: one `put` up to 10 MiB, a multipart upload of 10 MiB parts beyond,
        // so a large database never sits in memory. The same name on a repeated attempt:
        // the object is replaced by an equal copy.
        let mut upload =
            object_store::buffered::BufWriter::new(blobs.store.clone(), object_store::path::Path::from(path.as_str()));
        let copied = tokio::io::copy(&mut snapshot, &mut upload).await;
        let bytes = match copied {
            Ok(n) => n,
            Err(e) => {
                // Drops the parts uploaded so far instead of leaving them billed.
                let _ = upload.abort().await;
                return Err(unavailable(e));
            }
        };
        upload.shutdown().await.map_err(unavailable)?;
        Ok(Some((format!("{}/{path}", blobs.url.trim_end_matches('/')), bytes)))
    }
}

/// What `GET /v1/tenants/{id}/database-credentials` returns: how the tenant's service
/// connects to its database.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DatabaseCredentials {
    /// `postgres`.
    pub engine: String,
    /// `silo` (its own database) or `pool` (a schema in the shared database).
    pub isolation: Isolation,
    pub host: String,
    pub port: u16,
    pub database: String,
    /// The tenant's schema in the pool database (also the role's `search_path` there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub user: String,
    pub password: String,
    /// `postgres://user:password@host:port/database`.
    pub url: String,
}

impl App {
    /// Sets the provisioner of tenants' databases and wraps the resource handlers with
    /// it. Set the secret box and the blob store first: the steps take them from here.
    pub fn set_provisioner(&self, p: Arc<dyn DatabaseProvisioner>) {
        let plane = Arc::new(DataPlane {
            provisioner: p,
            secrets: self.secrets.get().cloned(),
            blobs: self.blobs.get().cloned(),
        });
        if self.provisioner.set(plane.clone()).is_err() {
            return;
        }
        let handlers = self.engine().handlers();
        for (resource, create) in [(CREATE, true), (DELETE, false)] {
            if let Some(inner) = handlers.get(resource) {
                handlers.register(resource, WithDatabase { inner, plane: plane.clone(), create });
            }
        }
        register_move_handlers(handlers, Some(plane));
    }

    pub fn provisioner(&self) -> Option<&Arc<dyn DatabaseProvisioner>> {
        self.provisioner.get().map(|d| &d.provisioner)
    }

    pub fn data_plane(&self) -> Option<&Arc<DataPlane>> {
        self.provisioner.get()
    }

    /// The connection info of the tenant's database, password included (admins,
    /// operators and the tenant's own key; every read is audited). 409
    /// `no-database-credentials` on the SQLite data plane (its databases are files
    /// without logins); 404 when the tenant has no database (yet).
    pub async fn tenant_database_credentials(&self, ctx: &OpContext, tenant_id: &str) -> Result<DatabaseCredentials> {
        ctx.authorize_tenant(Permission::DatabaseCredentials, tenant_id)?;
        self.store().tenant_get(tenant_id).await?;
        let none = || Error::not_found("database credentials", tenant_id);
        let plane = self.data_plane().ok_or_else(none)?;
        if !plane.provisioner.uses_credentials() {
            return Err(Error::Conflict {
                code: ErrorCode::NoDatabaseCredentials,
                message: format!(
                    "tenant {tenant_id:?} has no database credentials: the data plane is SQLite (a silo tenant's \
                     database is a file under the server's data directory, opened without a login; a pool \
                     tenant has none); run the server with --data-plane-url postgres://... for tenant \
                     databases with logins"
                ),
            });
        }
        let record = database_record(&**self.store(), tenant_id).await?.ok_or_else(none)?;
        let isolation = record_isolation(&record.detail).ok_or_else(none)?;
        let d = &record.detail;
        let sealed = self.store().workflows().tenant_secret_get(tenant_id, &secret_name(isolation)).await?;
        let (Some(sealed), Some(host), Some(database), Some(user)) =
            (sealed, d["host"].as_str(), d["database"].as_str(), d["user"].as_str())
        else {
            return Err(none());
        };
        let password = plane.secrets()?.open(&secret_owner(tenant_id, isolation), &sealed)?;
        let port = d["port"].as_u64().unwrap_or(5432) as u16;
        let audit = ctx.audit(
            "tenant.database_credentials.read",
            format!("tenant/{tenant_id}"),
            Some(tenant_id),
            json!({"isolation": isolation, "database": database, "user": user}),
        );
        self.store().commit_effects(&Effects::none().with_audit(audit)).await?;
        Ok(DatabaseCredentials {
            engine: d["engine"].as_str().unwrap_or("postgres").to_owned(),
            isolation,
            url: format!("postgres://{user}:{password}@{host}:{port}/{database}"),
            host: host.to_owned(),
            port,
            database: database.to_owned(),
            schema: d["schema"].as_str().map(str::to_owned),
            user: user.to_owned(),
            password,
        })
    }
}

/// Registers the move steps; without a data plane they do nothing (`moved: false`).
pub fn register_move_handlers(r: &Registry, plane: Option<Arc<DataPlane>>) {
    r.register(MOVE_CREATE, MoveStep { plane: plane.clone(), op: MoveOp::Create });
    r.register(EXPORT, MoveStep { plane: plane.clone(), op: MoveOp::Export });
    r.register(UNDO_MOVE, MoveStep { plane: plane.clone(), op: MoveOp::Undo });
    r.register(FINISH_MOVE, MoveStep { plane, op: MoveOp::Finish });
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
        let p = call.parameters;
        let tenant_id = p["tenant_id"].as_str();
        let (Some(tenant_id), true) = (tenant_id, p["kind"] == "database") else {
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
        let plan = match p["plan"].as_str() {
            Some(plan) => plan.to_owned(),
            None => store.tenant_get(tenant_id).await.map_err(app_failure)?.plan,
        };
        let isolation = plan_isolation(store, &plan).await.map_err(app_failure)?;
        let mut params = p.clone();
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

fn str_param<'a>(call: &'a TaskCall<'_>, name: &str) -> Result<&'a str, tenancy_asl::Failure> {
    call.parameters[name]
        .as_str()
        .ok_or_else(|| failure("States.Runtime", format!("{}: parameter {name:?} must be a string", call.resource)))
}

fn isolation_param(call: &TaskCall<'_>, name: &str) -> Result<Option<Isolation>, tenancy_asl::Failure> {
    match call.parameters.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(Isolation::parse)
            .map(Some)
            .ok_or_else(|| failure("States.Runtime", format!("{}: {name:?} must be pool or silo", call.resource))),
    }
}

impl MoveStep {
    /// `(from, to)`: the isolation of the tenant's database now (its record, else the
    /// previous plan's) and the one `plan` needs.
    async fn direction(&self, call: &TaskCall<'_>, tenant_id: &str) -> Result<(Isolation, Isolation)> {
        let store = &**call.store;
        let to = plan_isolation(store, call.parameters["plan"].as_str().unwrap_or_default()).await?;
        let from = match database_record(store, tenant_id).await?.and_then(|r| record_isolation(&r.detail)) {
            Some(i) => i,
            None => match call.parameters["previous_plan"].as_str() {
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
        let tenant_id = str_param(&call, "tenant_id")?;
        let Some(plane) = &self.plane else {
            return Ok(TaskOutput::new(json!({"moved": false, "exported": false})));
        };
        let store = &**call.store;
        match self.op {
            // `{tenant_id, plan, previous_plan}` -> `{moved, from, to, detail}`.
            MoveOp::Create => {
                let (from, to) = self.direction(&call, tenant_id).await.map_err(app_failure)?;
                if from == to {
                    return Ok(TaskOutput::new(json!({"moved": false, "from": from, "to": to})));
                }
                let detail = plane.ensure(store, tenant_id, to).await.map_err(app_failure)?;
                tracing::info!(tenant_id, from = from.as_str(), to = to.as_str(), "moving a tenant's database");
                Ok(TaskOutput::new(json!({"moved": true, "from": from, "to": to, "detail": detail})))
            }
            // `{tenant_id, isolation?}` -> `{exported, location?, bytes?}`.
            MoveOp::Export => {
                let isolation = match isolation_param(&call, "isolation")? {
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
                let (from, to) = self.direction(&call, tenant_id).await.map_err(app_failure)?;
                if from == to {
                    return Ok(TaskOutput::new(json!({"removed": false})));
                }
                plane.remove(store, tenant_id, to).await.map_err(app_failure)?;
                Ok(TaskOutput::new(json!({"removed": true, "isolation": to})))
            }
            // `{tenant_id, plan, move: {from, to, detail}}`: the record now names the new
            // database; the old one is deleted.
            MoveOp::Finish => {
                let mv = &call.parameters["move"];
                let (Some(from), Some(to)) =
                    (mv["from"].as_str().and_then(Isolation::parse), mv["to"].as_str().and_then(Isolation::parse))
                else {
                    return Err(failure("States.Runtime", "database.finish_move needs move.from and move.to"));
                };
                let mut detail = json!({"tenant_id": tenant_id, "kind": "database",
                                        "plan": call.parameters["plan"], "isolation": to});
                if let (Value::Object(m), Value::Object(d)) = (&mut detail, mv["detail"].clone()) {
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
