//! Policies: put (validated against the schema), get, list, delete, check; and the
//! decision on the request path ([`App::authorize_action`]), made by the access
//! middleware for every `/v1` request after authentication.
//!
//! Roles: admins put and delete (operators cannot change what limits them); admins,
//! operators and viewers read and check. Operators' policies never apply to admins'
//! calls on policies themselves, so a policy that forbids too much can always be
//! deleted.

use serde_json::json;
use tenancy_domain::policy::{self, Policy, PolicyCheck, PolicyDecision, PolicySpec};
use tenancy_domain::tenant::Tenant;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::Effects;

use crate::context::Permission as P;
use crate::policies::engine::{ActionDef, PolicyEngine, Resource, ADMIN_TOKEN_ID};
use crate::{App, OpContext, Principal};

fn target(name: &str) -> String {
    format!("policy/{name}")
}

impl App {
    /// The actions of the API (one per operation, from the route table): the schema
    /// and the built-in policies are built from them. `serve` sets them before it
    /// shares the app; without them only the policies' own routes are known.
    pub fn set_policy_actions(&mut self, actions: Vec<ActionDef>) {
        self.policies = PolicyEngine::new(actions);
    }

    pub fn policy_engine(&self) -> &PolicyEngine {
        &self.policies
    }

    /// Creates or replaces policy `name`; 400 `invalid-policy` (line and column) when
    /// its text does not parse or validate. Whether it was created.
    pub async fn policy_put(&self, ctx: &OpContext, name: &str, spec: PolicySpec) -> Result<(Policy, bool)> {
        ctx.authorize(P::PolicyAdmin)?;
        policy::validate_name(name)?;
        spec.validate()?;
        let now = Timestamp::now();
        let p = Policy { name: name.to_owned(), cedar: spec.cedar, created_at: now, updated_at: now };
        self.policies.validate(&p)?;
        let audit = ctx.audit("policy.put", target(name), None, json!({"cedar": p.cedar}));
        let done = self.store.policies().policy_put(&p, &Effects::none().with_audit(audit)).await?;
        self.policies.refresh(self.store.as_ref()).await?;
        Ok(done)
    }

    pub async fn policy_get(&self, ctx: &OpContext, name: &str) -> Result<Policy> {
        ctx.authorize(P::PolicyRead)?;
        self.store.policies().policy_get(name).await
    }

    pub async fn policy_list(&self, ctx: &OpContext) -> Result<Vec<Policy>> {
        ctx.authorize(P::PolicyRead)?;
        self.store.policies().policy_list().await
    }

    pub async fn policy_delete(&self, ctx: &OpContext, name: &str) -> Result<()> {
        ctx.authorize(P::PolicyAdmin)?;
        let audit = ctx.audit("policy.delete", target(name), None, json!({}));
        self.store.policies().policy_delete(name, &Effects::none().with_audit(audit)).await?;
        self.policies.refresh(self.store.as_ref()).await?;
        Ok(())
    }

    /// Evaluates `check` with the policies in force: the decision and the policies
    /// that decided it. The principal is an API key's id (or `admin-token`); the
    /// action an operation id; the resource a Cedar entity id (a tenant's attributes
    /// are read from the store).
    pub async fn policy_check(&self, ctx: &OpContext, check: PolicyCheck) -> Result<PolicyDecision> {
        ctx.authorize(P::PolicyRead)?;
        let bad = |m: String| Error::InvalidRequest { code: ErrorCode::InvalidPolicy, message: m };
        let principal = if check.principal == ADMIN_TOKEN_ID {
            Principal {
                key_id: None,
                role: tenancy_domain::apikey::Role::Admin,
                tenant_id: None,
                rate_limit: None,
                labels: vec![],
                region: None,
            }
        } else {
            let key = match self.store.api_key_get(&check.principal).await {
                Ok(k) => k,
                Err(Error::NotFound { .. }) => return Err(bad(format!("no API key {:?}", check.principal))),
                Err(e) => return Err(e),
            };
            Principal {
                key_id: Some(key.id),
                role: key.role,
                tenant_id: key.tenant_id,
                rate_limit: None,
                labels: key.labels,
                region: key.region,
            }
        };
        let Some(def) = self.policies.catalogue().action(&check.action) else {
            return Err(bad(format!("no action {:?}: use an operation id such as get_tenant", check.action)));
        };
        let (kind, id) = parse_resource(&check.resource).ok_or_else(|| {
            bad(format!("resource {:?}: use a Cedar entity id such as Tenancy::Tenant::\"acme\"", check.resource))
        })?;
        if kind != def.resource {
            return Err(bad(format!("action {} applies to {} resources, not {kind}", def.name, def.resource)));
        }
        let store = self.store.as_ref();
        match kind.as_str() {
            "Tenant" => {
                let tenant = match self.store.tenant_get(&id).await {
                    Ok(t) => Some(t),
                    Err(Error::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                };
                self.policies.check(store, &principal, &check.action, Resource::Tenant(&id), tenant.as_ref()).await
            }
            "Platform" => self.policies.check(store, &principal, &check.action, Resource::Platform, None).await,
            k => {
                self.policies.check(store, &principal, &check.action, Resource::Named { kind: k, id: &id }, None).await
            }
        }
    }

    /// The policies' decision on the request path: `action` (an operation id) on
    /// `resource` for the caller. Called by the access middleware after the caller is
    /// authenticated and a tenant key's scope checked, before anything else. A denial
    /// is 403, or 404 when the resource is a tenant the caller may not even read
    /// (operators' policies hide it as they hide it from lists).
    pub async fn authorize_action(&self, ctx: &OpContext, action: &str, resource: Resource<'_>) -> Result<()> {
        let store = self.store.as_ref();
        let policy_route = self.policies.catalogue().action(action).is_some_and(|d| d.resource == "Policy");
        let tenant = match resource {
            Resource::Tenant(id) if self.policies.has_operator_policies(store).await? => {
                match self.tenant_terms(id).await {
                    Ok(terms) => Some(terms.tenant.clone()),
                    Err(Error::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                }
            }
            _ => None,
        };
        if policy_route && ctx.principal.role == tenancy_domain::apikey::Role::Admin {
            return Ok(());
        }
        let verdict = self.policies.decide(store, &ctx.principal, action, resource, tenant.as_ref()).await?;
        if verdict.allow {
            return Ok(());
        }
        if let (Resource::Tenant(id), Some(_)) = (resource, &tenant) {
            if action != "get_tenant" {
                let read = self.policies.decide(store, &ctx.principal, "get_tenant", resource, tenant.as_ref()).await?;
                if !read.allow && !read.by.is_empty() {
                    return Err(Error::not_found("tenant", id));
                }
            } else if !verdict.by.is_empty() {
                return Err(Error::not_found("tenant", id));
            }
        }
        Err(Error::Forbidden(if verdict.by.is_empty() {
            format!("role {} may not do this", ctx.principal.role.as_str())
        } else {
            format!("denied by policy {}", verdict.by.join(", "))
        }))
    }

    /// Whether the caller may see `tenant` (the policies' `get_tenant`): what a tenant
    /// list keeps.
    pub(crate) async fn may_see_tenant(&self, ctx: &OpContext, tenant: &Tenant) -> Result<bool> {
        let store = self.store.as_ref();
        if !self.policies.has_operator_policies(store).await? {
            return Ok(true);
        }
        let v = self
            .policies
            .decide(store, &ctx.principal, "get_tenant", Resource::Tenant(&tenant.id), Some(tenant))
            .await?;
        Ok(v.allow)
    }
}

/// `Tenancy::Kind::"id"` as (kind, id).
fn parse_resource(s: &str) -> Option<(String, String)> {
    let uid: cedar_policy::EntityUid = s.trim().parse().ok()?;
    let ty = uid.type_name().to_string();
    let kind = ty.strip_prefix("Tenancy::")?.to_owned();
    Some((kind, uid.id().unescaped().to_owned()))
}
