//! The steps of a secret's rotation (`tenancy.secret.rotate`, [`super::rotation`]):
//!
//! | resource | parameters | result |
//! |---|---|---|
//! | `tenancy:secret.create` | `{tenant_id, name}` | `{version, target}` |
//! | `tenancy:secret.set` (also `.waitForTaskToken`) | `{tenant_id, name, version, token?}` | `{version}` |
//! | `tenancy:secret.test` (also `.waitForTaskToken`) | `{tenant_id, name, version, token?}` | `{version}` |
//! | `tenancy:secret.finish` | `{tenant_id, name, version}` | `{version, previous_version}` |
//! | `tenancy:secret.fail` | `{tenant_id, name, error: {Error, Cause}}` | `{name}` |
//!
//! Values never pass through the execution: the steps hand on the version number, and
//! each handler reads the value from the store (and opens it with the key provider)
//! when it needs it. Every step first checks that its execution is the secret's running
//! rotation (else `Tenancy.RotationSuperseded`), so a taken-over rotation changes
//! nothing. Each step is idempotent: create returns the pending version it made
//! before, finish and fail do nothing (and emit nothing) when their rotation already
//! ended, and the hook and queue calls carry keys derived from the attempt's key.
//!
//! The target's set and test are dispatched in one place, [`apply`].

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use tenancy_adapters::keys::envelope::KeyProvider;
use tenancy_asl::Failure;
use tenancy_domain::event::{names, Event};
use tenancy_domain::queue::SendMessage;
use tenancy_domain::secret::{Generator, LastRotation, RotationSpec, RotationTarget};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Error;
use tenancy_engine::{app_failure, failure, Registry, TaskCall, TaskHandler, TaskOutput, TaskResult};
use tenancy_store::{Effects, SecretRecord, Store};

use super::ops::{generate, open_version, seal_version};
use super::postgres::{PostgresCredentials, PostgresRotation};
use crate::hooks::tasks::CallHooks;
use crate::services::Services;

pub const CREATE: &str = "tenancy:secret.create";
pub const SET: &str = "tenancy:secret.set";
pub const TEST: &str = "tenancy:secret.test";
pub const FINISH: &str = "tenancy:secret.finish";
pub const FAIL: &str = "tenancy:secret.fail";

/// The error of a step whose rotation is no longer the secret's running one.
pub const SUPERSEDED: &str = "Tenancy.RotationSuperseded";
/// The error of a set or test against a target this build cannot rotate.
pub const TARGET_UNAVAILABLE: &str = "Tenancy.RotationTargetUnavailable";
/// The error of a set or test the target refused.
pub const TARGET_FAILED: &str = "Tenancy.RotationTargetFailed";

/// Registers the rotation steps, with the key provider and the hooks' caller.
pub fn register(r: &Registry, services: &Services) {
    let steps = Arc::new(Steps {
        keks: services.keks.clone(),
        hooks: CallHooks::new(services.outbound.clone(), services.secrets.clone()),
        postgres: services.data_plane.clone().and_then(|p| PostgresRotation::new(p).ok()),
    });
    r.register(CREATE, Create(steps.clone()));
    r.register(SET, Apply { steps: steps.clone(), action: Action::Set });
    r.register(TEST, Apply { steps: steps.clone(), action: Action::Test });
    r.register(FINISH, Finish);
    r.register(FAIL, Fail);
}

struct Steps {
    keks: Option<Arc<dyn KeyProvider>>,
    hooks: CallHooks,
    /// The data plane's logins, on the PostgreSQL data plane only.
    postgres: Option<PostgresRotation>,
}

impl Steps {
    fn kek(&self) -> Result<&dyn KeyProvider, Failure> {
        self.keks.as_deref().ok_or_else(|| app_failure(Error::Unavailable("no master key configured".into())))
    }

    fn postgres(&self) -> Result<&PostgresRotation, Failure> {
        self.postgres
            .as_ref()
            .ok_or_else(|| failure(TARGET_UNAVAILABLE, "the postgres rotation target needs the PostgreSQL data plane"))
    }

    /// The credentials of `version` of a `postgres`-target secret (a tenant's only).
    async fn credentials(
        &self,
        store: &dyn Store,
        p: &Params,
        version: i64,
    ) -> Result<(String, PostgresCredentials), Failure> {
        let tenant = p.scope().ok_or_else(|| {
            failure(TARGET_UNAVAILABLE, "the postgres rotation target rotates a tenant's database login")
        })?;
        self.postgres()?;
        let stored = store.secrets().secret_version_get(p.scope(), &p.name, version).await.map_err(app_failure)?;
        let text = open_version(self.kek()?, p.scope(), &p.name, stored).map_err(app_failure)?;
        let creds = PostgresCredentials::from_secret_text(&text).map_err(|_| {
            failure(
                TARGET_FAILED,
                format!(
                    "version {version} of secret {:?} is not database credentials (Secrets Manager's RDS JSON: \
                     engine, host, port, dbname, username, password)",
                    p.name
                ),
            )
        })?;
        Ok((tenant.to_owned(), creds))
    }
}

#[derive(Deserialize)]
struct Params {
    tenant_id: Option<String>,
    name: String,
    version: Option<i64>,
    /// The task token of a `.waitForTaskToken` step.
    token: Option<String>,
    /// The caught error of the fail step.
    error: Option<Value>,
}

impl Params {
    fn scope(&self) -> Option<&str> {
        self.tenant_id.as_deref()
    }

    fn version(&self) -> Result<i64, Failure> {
        self.version.ok_or_else(|| failure("States.Runtime", "a rotation step needs the version"))
    }
}

/// The secret, when `execution_id` is its running rotation and it is not deleted (a
/// secret deleted during its rotation fails it with `Tenancy.secret-deleted`).
async fn running(store: &dyn Store, p: &Params, execution_id: &str) -> Result<SecretRecord, Failure> {
    let rec = store.secrets().secret_get(p.scope(), &p.name).await.map_err(app_failure)?;
    if rec.deleted_at.is_some() {
        return Err(app_failure(super::ops::deleted_error(&rec)));
    }
    if rec.rotation_execution_id.as_deref() != Some(execution_id) {
        return Err(failure(
            SUPERSEDED,
            format!("execution {execution_id} is no longer the running rotation of secret {:?}", p.name),
        ));
    }
    Ok(rec)
}

fn spec_of(rec: &SecretRecord) -> RotationSpec {
    super::rotation::spec_of(rec)
}

fn target_type(t: &RotationTarget) -> &'static str {
    match t {
        RotationTarget::Generated {} => "generated",
        RotationTarget::Hook { .. } => "hook",
        RotationTarget::Queue { .. } => "queue",
        RotationTarget::Postgres { .. } => "postgres",
    }
}

fn event_resources(p: &Params) -> Vec<String> {
    vec![super::ops::target(p.scope(), &p.name)]
}

/// `tenancy:secret.create`: a new version from the secret's generator, labelled
/// `pending`; a re-run returns the pending version this rotation already made.
struct Create(Arc<Steps>);

#[async_trait::async_trait]
impl TaskHandler for Create {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let p: Params = call.params()?;
        let store = &**call.store;
        for _ in 0..5 {
            let rec = running(store, &p, call.execution_id).await?;
            let target = target_type(&spec_of(&rec).target());
            if let Some(version) = rec.pending_version {
                // A pending label exists only while a rotation runs: it is this one's.
                return Ok(TaskOutput::new(json!({"version": version, "target": target})));
            }
            let value = match spec_of(&rec).target() {
                // The login's next credentials follow from the current ones.
                RotationTarget::Postgres { strategy } => {
                    let (tenant, current) = self.0.credentials(store, &p, rec.current_version).await?;
                    let next = self.0.postgres()?.create(&tenant, strategy, &current).await.map_err(app_failure)?;
                    next.to_secret_text()
                }
                _ => {
                    let generator: Generator =
                        rec.generator.as_deref().and_then(|g| serde_json::from_str(g).ok()).ok_or_else(|| {
                            failure("Tenancy.invalid-rotation", format!("secret {:?} has no generator", p.name))
                        })?;
                    generate(&generator)
                }
            };
            let newest = rec.versions.first().map_or(rec.current_version, |v| v.0).max(rec.current_version);
            let version = newest + 1;
            let sealed = seal_version(self.0.kek()?, p.scope(), &p.name, version, &value).map_err(app_failure)?;
            match store.secrets().secret_pending_put(p.scope(), &p.name, call.execution_id, &sealed).await {
                Ok(()) => return Ok(TaskOutput::new(json!({"version": version, "target": target}))),
                // A put took that number meanwhile: seal for the next one.
                Err(Error::PreconditionFailed { .. }) => continue,
                Err(e) => return Err(app_failure(e)),
            }
        }
        Err(failure("Tenancy.conflict", format!("secret {:?} is being written concurrently", p.name)))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Set,
    Test,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Set => "set",
            Action::Test => "test",
        }
    }
}

/// `tenancy:secret.set` and `tenancy:secret.test`: apply or verify the pending value
/// at the secret's target ([`apply`]).
struct Apply {
    steps: Arc<Steps>,
    action: Action,
}

#[async_trait::async_trait]
impl TaskHandler for Apply {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let p: Params = call.params()?;
        let version = p.version()?;
        let rec = running(&**call.store, &p, call.execution_id).await?;
        if rec.pending_version != Some(version) {
            return Err(failure(SUPERSEDED, format!("version {version} of secret {:?} is no longer pending", p.name)));
        }
        apply(&self.steps, &call, &p, version, self.action, &spec_of(&rec).target()).await?;
        Ok(TaskOutput::new(json!({"version": version})))
    }
}

/// The one dispatch of set and test by target type.
async fn apply(
    steps: &Steps,
    call: &TaskCall<'_>,
    p: &Params,
    version: i64,
    action: Action,
    target: &RotationTarget,
) -> Result<(), Failure> {
    match target {
        RotationTarget::Generated {} => Ok(()),
        RotationTarget::Hook { hook } => hook_apply(steps, call, p, version, action, hook).await,
        RotationTarget::Queue { queue } => queue_apply(call, p, version, action, queue).await,
        RotationTarget::Postgres { strategy } => {
            let (tenant, pending) = steps.credentials(&**call.store, p, version).await?;
            let rotation = steps.postgres()?;
            let done = match action {
                Action::Set => rotation.set(&tenant, *strategy, &pending).await,
                Action::Test => rotation.test(&tenant, &pending).await,
            };
            done.map_err(|e| failure(TARGET_FAILED, format!("{} of the database login: {e}", action.as_str())))
        }
    }
}

/// Calls the hook (signed, retried like a provisioning hook) with `{action,
/// tenant_id, secret, version, value, execution_id}`: the hook needs the pending value
/// to apply or verify it, and gets it over this call only.
async fn hook_apply(
    steps: &Steps,
    call: &TaskCall<'_>,
    p: &Params,
    version: i64,
    action: Action,
    hook: &str,
) -> Result<(), Failure> {
    let store = &**call.store;
    let h = store.hooks().hook_get(hook).await.map_err(|e| failure(TARGET_FAILED, format!("hook {hook:?}: {e}")))?;
    if !h.events.contains(&tenancy_domain::hook::HookEvent::SecretRotation) {
        return Err(failure(TARGET_FAILED, format!("hook {hook:?} no longer subscribes to secret_rotation")));
    }
    let stored = store.secrets().secret_version_get(p.scope(), &p.name, version).await.map_err(app_failure)?;
    let value = open_version(steps.kek()?, p.scope(), &p.name, stored).map_err(app_failure)?;
    let key = format!("{}-{}", call.idempotency_key, action.as_str());
    let body = json!({
        "action": action.as_str(),
        "tenant_id": p.tenant_id,
        "secret": p.name,
        "version": version,
        "value": value.as_str(),
        "execution_id": call.execution_id,
        "idempotency_key": key,
    });
    steps.hooks.call_one(store, &h, &body, &key).await.map_err(|f| Failure {
        error: Some(TARGET_FAILED.into()),
        cause: Some(format!("{} of version {version} failed: {}", action.as_str(), f.cause.unwrap_or_default())),
    })
}

/// Hands the worker on `queue` `{action, task_token, tenant_id, secret, version,
/// execution_id}` (no value: the worker reads the pending version with its own key);
/// the step then waits for the token.
async fn queue_apply(
    call: &TaskCall<'_>,
    p: &Params,
    version: i64,
    action: Action,
    queue: &str,
) -> Result<(), Failure> {
    let Some(token) = &p.token else {
        return Err(failure(
            TARGET_FAILED,
            "the secret's rotation target changed to a queue during the rotation: rotate it again",
        ));
    };
    let key = format!("{}-{}", call.idempotency_key, action.as_str());
    let body = json!({
        "action": action.as_str(),
        "task_token": token,
        "tenant_id": p.tenant_id,
        "secret": p.name,
        "version": version,
        "execution_id": call.execution_id,
    });
    let send = SendMessage { body, delay_s: None, group_id: None, dedup_id: Some(key), attributes: Default::default() };
    let message = send.into_new().map_err(app_failure)?.with_traceparent(tenancy_trace::traceparent());
    call.store
        .queues()
        .message_send(queue, &[message], Timestamp::now())
        .await
        .map_err(|e| failure(TARGET_FAILED, format!("queue {queue:?}: {e}")))?;
    Ok(())
}

/// `tenancy:secret.finish`: pending -> current, current -> previous, with
/// `SecretRotated`, in one transaction, only if the version is still pending.
struct Finish;

#[async_trait::async_trait]
impl TaskHandler for Finish {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let p: Params = call.params()?;
        let version = p.version()?;
        let store = &**call.store;
        let rec = store.secrets().secret_get(p.scope(), &p.name).await.map_err(app_failure)?;
        let last = LastRotation {
            status: "succeeded".into(),
            execution_id: call.execution_id.to_owned(),
            version: Some(version),
            error: None,
            at: Timestamp::now(),
        };
        let event = Event::new(
            names::SECRET_ROTATED,
            p.scope(),
            event_resources(&p),
            json!({"name": p.name, "version": version, "previous_version": rec.current_version,
                   "execution_id": call.execution_id}),
        );
        let fx = Effects::none().with_event(event);
        let last_json = serde_json::to_string(&last).map_err(|e| app_failure(Error::internal(e)))?;
        let ended = store
            .secrets()
            .secret_rotation_end(p.scope(), &p.name, call.execution_id, Some(version), &last_json, &fx)
            .await
            .map_err(app_failure)?;
        let mut previous = rec.current_version;
        if !ended {
            // Done before by this execution (a re-run), or taken over.
            let rec = store.secrets().secret_get(p.scope(), &p.name).await.map_err(app_failure)?;
            let done: Option<LastRotation> = rec.last_rotation.as_deref().and_then(|l| serde_json::from_str(l).ok());
            if !done.is_some_and(|d| d.execution_id == call.execution_id && d.status == "succeeded") {
                return Err(failure(SUPERSEDED, format!("the rotation of secret {:?} was taken over", p.name)));
            }
            previous = rec.previous_version.unwrap_or(previous);
        }
        Ok(TaskOutput::new(json!({"version": version, "previous_version": previous})))
    }
}

/// `tenancy:secret.fail`: drops the pending label, records the reason as
/// `last_rotation`, with `SecretRotationFailed`, in one transaction; current stays.
struct Fail;

#[async_trait::async_trait]
impl TaskHandler for Fail {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let p: Params = call.params()?;
        let store = &**call.store;
        let err = p.error.clone().unwrap_or(Value::Null);
        let reason = match (err["Error"].as_str(), err["Cause"].as_str()) {
            (Some(e), Some(c)) => format!("{e}: {c}"),
            (Some(e), None) => e.to_owned(),
            _ => "unknown".to_owned(),
        };
        let rec = store.secrets().secret_get(p.scope(), &p.name).await.map_err(app_failure)?;
        // The result is the same whether this run ended the rotation or an earlier one
        // did (a re-run), or it was taken over meanwhile.
        let out = TaskOutput::new(json!({"name": p.name}));
        if rec.rotation_execution_id.as_deref() != Some(call.execution_id) {
            return Ok(out);
        }
        let version = rec.pending_version;
        let last = LastRotation {
            status: "failed".into(),
            execution_id: call.execution_id.to_owned(),
            version,
            error: Some(reason.clone()),
            at: Timestamp::now(),
        };
        let event = Event::new(
            names::SECRET_ROTATION_FAILED,
            p.scope(),
            event_resources(&p),
            json!({"name": p.name, "version": version, "current_version": rec.current_version,
                   "reason": reason, "execution_id": call.execution_id}),
        );
        let last_json = serde_json::to_string(&last).map_err(|e| app_failure(Error::internal(e)))?;
        let fx = Effects::none().with_event(event);
        store
            .secrets()
            .secret_rotation_end(p.scope(), &p.name, call.execution_id, None, &last_json, &fx)
            .await
            .map_err(app_failure)?;
        Ok(out)
    }
}
