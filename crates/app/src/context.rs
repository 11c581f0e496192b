//! Who is calling and for which request.

use serde_json::Value;
use tenancy_audit::AuditEntry;
use tenancy_domain::apikey::Role;
use tenancy_domain::ratelimit::RateLimit;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The API key's id; `None` for the bootstrap admin token and the system itself.
    pub key_id: Option<String>,
    pub role: Role,
    /// Set for tenant-scoped keys: the only tenant this caller may see.
    pub tenant_id: Option<String>,
    /// The key's own API rate limit, when it has one (its role's otherwise): the
    /// access middleware sizes the key's bucket with it.
    pub rate_limit: Option<RateLimit>,
    /// The key's labels, for policies (`principal.labels`).
    pub labels: Vec<String>,
    /// The key's region, for policies (`principal.region`).
    pub region: Option<String>,
}

/// The context of one operation: the caller and the request it came in.
#[derive(Debug, Clone)]
pub struct OpContext {
    pub principal: Principal,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

/// What an operation needs to be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read plans (the catalog).
    PlanRead,
    PlanWrite,
    /// Read tenants (scoped keys: their own only).
    TenantRead,
    /// Create tenants and run lifecycle operations on them.
    TenantAdmin,
    /// Change a tenant's own fields (name, region, metadata).
    TenantWrite,
    KeyAdmin,
    /// Create, list, rotate and revoke API keys: admins any key; a tenant key its own
    /// tenant's, of role `tenant` only (the app checks which).
    KeyOwn,
    /// Move a tenant to another plan: admins and operators any plan; a tenant key its
    /// own tenant, to plans marked `self_service` only (the app checks which).
    PlanChange,
    /// The event archive and the audit log.
    RecordsRead,
    /// Subscriptions and their deliveries, never their secrets.
    SubscriptionRead,
    /// Create, change, delete subscriptions; rotate secrets; retry and replay.
    SubscriptionWrite,
    /// Write audit exports to the blob store.
    AuditExport,
    /// Read state machines (not for tenant keys).
    StateMachineRead,
    /// Read executions and their history (tenant keys: their tenant's only).
    ExecutionRead,
    /// Define state machines, start, stop and redrive executions.
    WorkflowWrite,
    /// Complete callback tasks (`/v1/task-tokens/...`).
    TaskCallback,
    /// Read queues' settings and depth.
    QueueRead,
    /// Create, change and delete queues; redrive dead-letter queues.
    QueueAdmin,
    /// Send, receive and delete messages, change their visibility (workers).
    QueueUse,
    /// Read provisioning hooks.
    HookRead,
    /// Create, change and delete provisioning hooks.
    HookAdmin,
    /// Read functions (never their secrets).
    FunctionRead,
    /// Create, replace and delete functions.
    FunctionAdmin,
    /// Read a tenant's database credentials (admins, operators, the tenant's own key).
    DatabaseCredentials,
    /// Publish custom events (`POST /v1/events`): admins, operators, services, tenant
    /// keys (for their own tenant).
    EventPut,
    /// Test a pattern against an event: any caller.
    PatternTest,
    /// Read operators' authorization policies and check decisions: admins, operators,
    /// viewers.
    PolicyRead,
    /// Put and delete operators' authorization policies: admins only.
    PolicyAdmin,
    /// Release an offboarded tenant's id (`DELETE /v1/tenants/{id}?purge=true`):
    /// admins only.
    TenantPurge,
    /// Read a tenant's quotas and their usage (tenant keys: their own).
    QuotaRead,
    /// Consume and release a tenant's quotas: admins, operators, services, tenant keys
    /// (their own).
    QuotaUse,
    /// A tenant's secrets' metadata, never values (tenant keys: their own).
    SecretRead,
    /// A tenant's secrets' values: admins, operators, services, tenant keys (their own).
    SecretValue,
    /// Put, delete and restore a tenant's secrets: admins, operators, tenant keys
    /// (their own).
    SecretWrite,
    /// Platform secrets' metadata: admins, operators, viewers.
    PlatformSecretRead,
    /// Platform secrets' values and writes: admins and operators.
    PlatformSecretAdmin,
    /// Connections' metadata, never their credentials: admins, operators, viewers.
    ConnectionRead,
    /// Create, replace and delete connections: admins and operators.
    ConnectionAdmin,
    /// Evaluate feature flags (OFREP): admins, operators, viewers and services for any
    /// tenant; tenant keys for their own only (the app targets it whatever they send).
    FlagEvaluate,
    /// Read releases and download their bundles: admins, operators, viewers, services
    /// (a product service applying an upgrade fetches the bundle).
    ReleaseRead,
    /// Create and change releases, upload bundles: admins and operators.
    ReleaseAdmin,
    /// The storage report (`GET /v1/storage`): admins and operators.
    StorageRead,
}

impl OpContext {
    /// The context of work Tenancy does on its own (background workers).
    pub fn system() -> Self {
        OpContext {
            principal: Principal {
                key_id: None,
                role: Role::Admin,
                tenant_id: None,
                rate_limit: None,
                labels: vec![],
                region: None,
            },
            request_id: None,
            source_ip: None,
        }
    }

    pub fn is_system(&self) -> bool {
        self.principal.key_id.is_none() && self.request_id.is_none()
    }

    /// Checks a permission that is not about one tenant.
    pub fn authorize(&self, p: Permission) -> Result<()> {
        use Permission as P;
        use Role as R;
        let allowed = match (self.principal.role, p) {
            (R::Admin, _) => true,
            (R::Operator, P::KeyAdmin | P::KeyOwn | P::TenantPurge | P::PolicyAdmin) => false,
            (R::Operator, _) => true,
            (R::Viewer, P::PlanRead | P::TenantRead | P::RecordsRead | P::SubscriptionRead) => true,
            (R::Viewer, P::QuotaRead) => true,
            (R::Viewer, P::SecretRead | P::PlatformSecretRead | P::ConnectionRead | P::PolicyRead) => true,
            (R::Service, P::SecretRead | P::SecretValue) => true,
            (R::Tenant, P::SecretRead | P::SecretValue | P::SecretWrite) => true,
            (R::Service | R::Tenant, P::QuotaRead | P::QuotaUse) => true,
            (R::Viewer, P::StateMachineRead | P::ExecutionRead | P::QueueRead | P::HookRead | P::FunctionRead) => true,
            (R::Service, P::PlanRead | P::TenantRead | P::TaskCallback) => true,
            (R::Service, P::QueueRead | P::QueueUse) => true,
            (R::Tenant, P::TenantRead | P::TenantWrite | P::ExecutionRead | P::DatabaseCredentials) => true,
            (R::Tenant, P::KeyOwn | P::PlanChange) => true,
            (R::Service | R::Tenant, P::EventPut) => true,
            (R::Viewer | R::Service | R::Tenant, P::FlagEvaluate) => true,
            (R::Viewer | R::Service, P::ReleaseRead) => true,
            (_, P::PatternTest) => true,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(Error::Forbidden(format!("role {} may not do this", self.principal.role.as_str())))
        }
    }

    /// Checks a permission on one tenant. A tenant-scoped caller asking about another
    /// tenant learns nothing, not even that it exists: `NotFound`.
    pub fn authorize_tenant(&self, p: Permission, tenant_id: &str) -> Result<()> {
        if let Some(own) = &self.principal.tenant_id {
            if own != tenant_id {
                return Err(Error::not_found("tenant", tenant_id));
            }
        }
        self.authorize(p)
    }

    /// The tenant of a tenant-scoped caller (a `tenant` key), `None` for the others.
    pub fn own_tenant(&self) -> Option<&str> {
        match self.principal.role {
            Role::Tenant => self.principal.tenant_id.as_deref(),
            _ => None,
        }
    }

    /// An audit entry for an action of this caller.
    pub fn audit(&self, action: &str, target: String, tenant_id: Option<&str>, detail: Value) -> AuditEntry {
        AuditEntry {
            id: tenancy_domain::ids::new_id("aud"),
            time: Timestamp::now(),
            actor_key_id: self.principal.key_id.clone(),
            actor_role: if self.is_system() { "system".into() } else { self.principal.role.as_str().into() },
            action: action.into(),
            target,
            tenant_id: tenant_id.map(str::to_owned),
            request_id: self.request_id.clone(),
            source_ip: self.source_ip.clone(),
            outcome: "success".into(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(role: Role, tenant: Option<&str>) -> OpContext {
        OpContext {
            principal: Principal {
                key_id: Some("key_x".into()),
                role,
                tenant_id: tenant.map(Into::into),
                rate_limit: None,
                labels: vec![],
                region: None,
            },
            request_id: Some("r".into()),
            source_ip: None,
        }
    }

    #[test]
    fn tenant_keys_see_only_their_tenant() {
        let c = ctx(Role::Tenant, Some("acme"));
        c.authorize_tenant(Permission::TenantRead, "acme").unwrap();
        assert!(matches!(c.authorize_tenant(Permission::TenantRead, "other"), Err(Error::NotFound { .. })));
        assert!(matches!(c.authorize_tenant(Permission::TenantAdmin, "acme"), Err(Error::Forbidden(_))));
        assert!(matches!(c.authorize(Permission::PlanRead), Err(Error::Forbidden(_))));
    }

    #[test]
    fn roles() {
        assert!(ctx(Role::Operator, None).authorize(Permission::KeyAdmin).is_err());
        assert!(ctx(Role::Viewer, None).authorize(Permission::TenantAdmin).is_err());
        ctx(Role::Viewer, None).authorize(Permission::RecordsRead).unwrap();
        assert!(ctx(Role::Service, None).authorize(Permission::RecordsRead).is_err());
        ctx(Role::Admin, None).authorize(Permission::KeyAdmin).unwrap();
    }

    #[test]
    fn quota_roles() {
        for role in [Role::Admin, Role::Operator, Role::Service] {
            ctx(role, None).authorize_tenant(Permission::QuotaUse, "acme").unwrap();
        }
        ctx(Role::Viewer, None).authorize_tenant(Permission::QuotaRead, "acme").unwrap();
        assert!(matches!(ctx(Role::Viewer, None).authorize(Permission::QuotaUse), Err(Error::Forbidden(_))));
        let own = ctx(Role::Tenant, Some("acme"));
        own.authorize_tenant(Permission::QuotaUse, "acme").unwrap();
        own.authorize_tenant(Permission::QuotaRead, "acme").unwrap();
        assert!(matches!(own.authorize_tenant(Permission::QuotaUse, "globex"), Err(Error::NotFound { .. })));
    }

    #[test]
    fn every_role_evaluates_flags() {
        for role in [Role::Admin, Role::Operator, Role::Viewer, Role::Service] {
            ctx(role, None).authorize(Permission::FlagEvaluate).unwrap();
        }
        ctx(Role::Tenant, Some("acme")).authorize(Permission::FlagEvaluate).unwrap();
    }
}
