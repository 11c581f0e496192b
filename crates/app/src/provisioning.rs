//! Silo tenants' databases in the provisioning workflow.
//!
//! With a [`DatabaseProvisioner`] set (`tenancy serve` sets the SQLite-file one on the
//! embedded default), the `database` steps of the lifecycle workflows
//! (`tenancy:resource.create` / `tenancy:resource.delete` with `kind: "database"`)
//! create and delete a real database for tenants on a `silo` plan, before recording or
//! forgetting the resource. Pool tenants keep only the record. Both steps are
//! idempotent, as the engine requires.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tenancy_domain::plan::Isolation;
use tenancy_store::provision::DatabaseProvisioner;

use crate::engine::handlers::{app_failure, TaskCall, TaskHandler, TaskResult};
use crate::App;

const CREATE: &str = "tenancy:resource.create";
const DELETE: &str = "tenancy:resource.delete";

impl App {
    /// Sets the provisioner of silo databases and wraps the resource handlers with it.
    pub fn set_provisioner(&self, p: Arc<dyn DatabaseProvisioner>) {
        if self.provisioner.set(p.clone()).is_err() {
            return;
        }
        let handlers = self.engine().handlers();
        for (resource, create) in [(CREATE, true), (DELETE, false)] {
            if let Some(inner) = handlers.get(resource) {
                handlers.register(resource, WithDatabase { inner, provisioner: p.clone(), create });
            }
        }
    }

    pub fn provisioner(&self) -> Option<&Arc<dyn DatabaseProvisioner>> {
        self.provisioner.get()
    }
}

struct WithDatabase {
    inner: Arc<dyn TaskHandler>,
    provisioner: Arc<dyn DatabaseProvisioner>,
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
        if !self.create {
            self.provisioner.database_delete(tenant_id).await.map_err(app_failure)?;
            return self.inner.call(call).await;
        }
        let plan = match p["plan"].as_str() {
            Some(plan) => plan.to_owned(),
            None => call.store.tenant_get(tenant_id).await.map_err(app_failure)?.plan,
        };
        let silo = call.store.plan_get(&plan).await.map_err(app_failure)?.isolation == Isolation::Silo;
        if !silo {
            return self.inner.call(call).await;
        }
        let detail = self.provisioner.database_create(tenant_id).await.map_err(app_failure)?;
        let mut params = p.clone();
        if let (Value::Object(m), Value::Object(d)) = (&mut params, detail) {
            m.extend(d);
        }
        self.inner.call(TaskCall { parameters: &params, ..call }).await
    }
}
