//! Who may call which route, decided before anything reads the request body.
//!
//! Every `/v1` (and `/ofrep/v1`) request passes [`middleware`] first: it authenticates the bearer token
//! (401), takes a token from the caller's rate-limit buckets (429, see
//! [`crate::ratelimit`]), authorizes the caller for the matched route by its role (403; 404 when a
//! tenant key names another tenant in the path), and refuses a NUL character anywhere
//! in the path or query (400). Only then do the idempotency lookup, body extraction
//! and validation, and the handler run, so a caller who may not call a route never
//! learns how its body is validated, and a stranger never writes an idempotency row.
//!
//! The role check is the policies' decision (crate `tenancy_app::policies`, Cedar):
//! each route is an action (its OpenAPI `operationId`, see [`route_action`]) on a
//! resource (the tenant of the path, the named resource of the path, or the platform);
//! the built-in policies grant each role exactly the routes this table's permissions
//! allow it, operators' policies narrow that further (docs/policies.md).
//!
//! The app authorizes again when it acts (it sees the resources, such as the tenant of
//! an execution); this table is the coarse check by route. `routes_have_rules` proves
//! that every documented route has one; a route without one is refused.

use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestExt;
use tenancy_app::policies::engine::{ActionDef, Resource, PLATFORM};
use tenancy_app::{OpContext, Permission as P};

use crate::extract::request_id_of;
use crate::problem::ApiError;
use crate::server::ServerState;
use tenancy_domain::ErrorCode;

/// What a route demands: every permission in `perms`, on the tenant named by the path
/// parameter `tenant` when there is one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub perms: &'static [P],
    pub tenant: Option<&'static str>,
    /// The path parameter naming an API key: a tenant key may act only on its own
    /// tenant's keys (any other is 404, checked here, before the body is read).
    pub key: Option<&'static str>,
}

const fn any(perms: &'static [P]) -> Option<Rule> {
    Some(Rule { perms, tenant: None, key: None })
}

/// A route about one API key (`{id}`): for a tenant key, one of its own tenant's.
const fn of_key(perms: &'static [P]) -> Option<Rule> {
    Some(Rule { perms, tenant: None, key: Some("id") })
}

/// A route that needs no credentials (sign-up): mounted without this middleware
/// (`routes::public`); the rule says so for `routes_have_rules` and the reader.
const fn public() -> Option<Rule> {
    Some(Rule { perms: &[], tenant: None, key: None })
}

const fn of_tenant(perms: &'static [P]) -> Option<Rule> {
    Some(Rule { perms, tenant: Some("id"), key: None })
}

/// The rule of a route (its method and its matched path, as in the OpenAPI document).
pub(crate) fn rule(method: &Method, path: &str) -> Option<Rule> {
    match (method.as_str(), path) {
        // A tenant key lists its current plan and the self-service plans (the app filters).
        ("GET", "/v1/plans") => any(&[P::TenantRead]),
        // A tenant key reads its own tenant's current plan (the app checks which).
        ("GET", "/v1/plans/{id}") => any(&[P::TenantRead]),
        ("PUT" | "PATCH" | "DELETE", "/v1/plans/{id}") => any(&[P::PlanWrite]),
        ("GET", "/v1/tenants") => any(&[P::TenantRead]),
        ("POST", "/v1/tenants") => any(&[P::TenantAdmin]),
        ("GET", "/v1/tenants/{id}" | "/v1/tenants/{id}/resources") => of_tenant(&[P::TenantRead]),
        ("PATCH", "/v1/tenants/{id}") => of_tenant(&[P::TenantWrite]),
        ("POST", "/v1/tenants/{id}/suspend" | "/v1/tenants/{id}/resume" | "/v1/tenants/{id}/retry")
        | ("DELETE", "/v1/tenants/{id}") => of_tenant(&[P::TenantAdmin]),
        // A tenant key moves its own tenant to self-service plans (the app checks which).
        ("POST", "/v1/tenants/{id}/plan") => of_tenant(&[P::PlanChange]),
        ("GET", "/v1/tenants/{id}/overrides" | "/v1/tenants/{id}/entitlements") => of_tenant(&[P::TenantRead]),
        ("PUT" | "DELETE", "/v1/tenants/{id}/overrides") => of_tenant(&[P::TenantAdmin]),
        ("GET", "/v1/tenants/{id}/database-credentials") => of_tenant(&[P::DatabaseCredentials]),
        ("GET", "/v1/tenants/{id}/quotas") => of_tenant(&[P::QuotaRead]),
        (
            "POST",
            "/v1/tenants/{id}/quotas/consume"
            | "/v1/tenants/{id}/quotas/{name}/consume"
            | "/v1/tenants/{id}/quotas/{name}/release",
        ) => of_tenant(&[P::QuotaUse]),
        ("GET", "/v1/tenants/{id}/secrets") => of_tenant(&[P::SecretRead]),
        ("GET", "/v1/tenants/{id}/secrets/{name}") => of_tenant(&[P::SecretValue]),
        ("PUT" | "DELETE", "/v1/tenants/{id}/secrets/{name}")
        | ("POST", "/v1/tenants/{id}/secrets/{name}/restore" | "/v1/tenants/{id}/secrets/{name}/rotate") => {
            of_tenant(&[P::SecretWrite])
        }
        ("GET", "/v1/secrets") => any(&[P::PlatformSecretRead]),
        ("GET" | "PUT" | "DELETE", "/v1/secrets/{name}")
        | ("POST", "/v1/secrets/{name}/restore" | "/v1/secrets/{name}/rotate") => any(&[P::PlatformSecretAdmin]),
        // Admins any key; a tenant key its own tenant's, of role tenant (the app checks).
        ("GET" | "POST", "/v1/api-keys") => any(&[P::KeyOwn]),
        ("DELETE", "/v1/api-keys/{id}") | ("POST", "/v1/api-keys/{id}/rotate") => of_key(&[P::KeyOwn]),
        ("POST", "/v1/signup" | "/v1/signup/activate") => public(),
        ("GET", "/v1/events" | "/v1/audit" | "/v1/audit/verify" | "/v1/audit/export" | "/v1/reconciliation") => {
            any(&[P::RecordsRead])
        }
        ("GET", "/v1/storage") => any(&[P::StorageRead]),
        ("POST", "/v1/events") => any(&[P::EventPut]),
        ("POST", "/v1/events/test-pattern") => any(&[P::PatternTest]),
        ("POST", "/v1/reconciliation" | "/v1/reconciliation/{id}/repair") => any(&[P::TenantAdmin]),
        ("POST", "/v1/audit/exports") => any(&[P::AuditExport, P::RecordsRead]),
        ("GET", "/v1/subscriptions" | "/v1/subscriptions/{id}" | "/v1/subscriptions/{id}/deliveries") => {
            any(&[P::SubscriptionRead])
        }
        ("POST", "/v1/subscriptions")
        | ("PATCH" | "DELETE", "/v1/subscriptions/{id}")
        | (
            "POST",
            "/v1/subscriptions/{id}/rotate-secret"
            | "/v1/subscriptions/{id}/deliveries/{delivery_id}/retry"
            | "/v1/subscriptions/{id}/replay",
        ) => any(&[P::SubscriptionWrite]),
        ("GET", "/v1/state-machines" | "/v1/state-machines/{name}") => any(&[P::StateMachineRead]),
        ("PUT", "/v1/state-machines/{name}") => any(&[P::WorkflowWrite]),
        ("GET", "/v1/executions" | "/v1/executions/{id}" | "/v1/executions/{id}/history") => any(&[P::ExecutionRead]),
        ("POST", "/v1/executions" | "/v1/executions/{id}/stop" | "/v1/executions/{id}/redrive") => {
            any(&[P::WorkflowWrite])
        }
        (
            "POST",
            "/v1/task-tokens/{token}/success" | "/v1/task-tokens/{token}/failure" | "/v1/task-tokens/{token}/heartbeat",
        ) => any(&[P::TaskCallback]),
        ("GET", "/v1/hooks" | "/v1/hooks/{name}") => any(&[P::HookRead]),
        ("PUT" | "DELETE", "/v1/hooks/{name}") => any(&[P::HookAdmin]),
        ("GET", "/v1/connections" | "/v1/connections/{name}") => any(&[P::ConnectionRead]),
        ("PUT" | "DELETE", "/v1/connections/{name}") => any(&[P::ConnectionAdmin]),
        ("GET", "/v1/functions" | "/v1/functions/{name}") => any(&[P::FunctionRead]),
        ("PUT" | "DELETE", "/v1/functions/{name}") => any(&[P::FunctionAdmin]),
        ("GET", "/v1/queues" | "/v1/queues/{name}" | "/v1/queues/{name}/messages") => any(&[P::QueueRead]),
        ("PUT" | "DELETE", "/v1/queues/{name}") | ("POST", "/v1/queues/{name}/redrive") => any(&[P::QueueAdmin]),
        (
            "POST",
            "/v1/queues/{name}/messages"
            | "/v1/queues/{name}/messages/batch"
            | "/v1/queues/{name}/receive"
            | "/v1/queues/{name}/messages/delete"
            | "/v1/queues/{name}/messages/{receipt}/visibility",
        )
        | ("DELETE", "/v1/queues/{name}/messages/{receipt}") => any(&[P::QueueUse]),
        ("GET", "/v1/releases" | "/v1/releases/{version}" | "/v1/releases/{version}/bundle") => any(&[P::ReleaseRead]),
        ("PUT", "/v1/releases/{version}" | "/v1/releases/{version}/bundle") => any(&[P::ReleaseAdmin]),
        ("GET", "/v1/rollouts" | "/v1/rollouts/{id}") => any(&[P::ReleaseRead]),
        (
            "POST",
            "/v1/rollouts" | "/v1/rollouts/{id}/pause" | "/v1/rollouts/{id}/resume" | "/v1/rollouts/{id}/abort",
        ) => any(&[P::ReleaseAdmin]),
        ("GET", "/v1/policies" | "/v1/policies/{name}") | ("POST", "/v1/policies/check") => any(&[P::PolicyRead]),
        ("PUT" | "DELETE", "/v1/policies/{name}") => any(&[P::PolicyAdmin]),
        ("PUT" | "DELETE", "/v1/tenants/{id}/pin") | ("POST", "/v1/tenants/{id}/upgrade") => {
            of_tenant(&[P::TenantAdmin])
        }
        // The app targets a tenant key's own tenant whatever the body says.
        ("POST", "/ofrep/v1/evaluate/flags" | "/ofrep/v1/evaluate/flags/{key}") => any(&[P::FlagEvaluate]),
        _ => None,
    }
}

/// A route as a policy action: the action and the path parameter naming its resource
/// (none for tenant routes, whose rule names it, and for the platform's).
pub(crate) struct RouteAction {
    pub def: ActionDef,
    pub param: Option<String>,
}

/// The resource type of a path about one named resource, by its first segment.
fn resource_kind(segment: &str) -> Option<&'static str> {
    Some(match segment {
        "plans" => "Plan",
        "api-keys" => "Key",
        "subscriptions" => "Subscription",
        "state-machines" => "StateMachine",
        "executions" => "Execution",
        "task-tokens" => "TaskToken",
        "hooks" => "Hook",
        "connections" => "Connection",
        "functions" => "Function",
        "queues" => "Queue",
        "releases" => "Release",
        "rollouts" => "Rollout",
        "secrets" => "Secret",
        "reconciliation" => "Drift",
        "policies" => "Policy",
        "evaluate" => "Flag",
        _ => return None,
    })
}

/// Every authenticated route as a policy action, keyed by method and matched path,
/// derived once from the OpenAPI document and the rules above.
fn route_actions() -> &'static std::collections::HashMap<(String, String), RouteAction> {
    static ACTIONS: std::sync::OnceLock<std::collections::HashMap<(String, String), RouteAction>> =
        std::sync::OnceLock::new();
    ACTIONS.get_or_init(|| {
        let doc: serde_json::Value = serde_json::from_str(&crate::openapi_json()).expect("the OpenAPI document");
        let mut out = std::collections::HashMap::new();
        for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in ops.as_object().into_iter().flatten() {
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
                let (Some(rule), Some(name)) = (rule(&m, path), op["operationId"].as_str()) else { continue };
                if rule.perms.is_empty() {
                    continue; // public: no caller to authorize
                }
                let rest = path.strip_prefix("/v1/").or_else(|| path.strip_prefix("/ofrep/v1/")).unwrap_or(path);
                let first = rest.split('/').next().unwrap_or_default();
                let param = rest
                    .split('/')
                    .find_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                    .map(str::to_owned);
                let (resource, param) = if rule.tenant.is_some() {
                    ("Tenant".to_owned(), None)
                } else {
                    match (resource_kind(first), param) {
                        (Some(kind), Some(p)) => (kind.to_owned(), Some(p)),
                        _ => (PLATFORM.to_owned(), None),
                    }
                };
                let def =
                    ActionDef { name: name.to_owned(), perms: rule.perms.to_vec(), resource, read: m == Method::GET };
                out.insert((m.as_str().to_owned(), path.clone()), RouteAction { def, param });
            }
        }
        out
    })
}

/// The policy action of a route (its method and matched path).
pub(crate) fn route_action(method: &Method, path: &str) -> Option<&'static RouteAction> {
    route_actions().get(&(method.as_str().to_owned(), path.to_owned()))
}

/// Every API operation as a policy action: what `serve` gives the app
/// ([`tenancy_app::App::set_policy_actions`]) to build the schema and the built-in
/// policies from.
pub fn policy_actions() -> Vec<ActionDef> {
    let mut defs: Vec<ActionDef> = route_actions().values().map(|a| a.def.clone()).collect();
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    defs
}

/// The bearer token of a request, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

/// Authenticates the caller, applies its rate limits, authorizes it for the route,
/// refuses NUL in the URI, and
/// hands the caller's [`OpContext`] to what follows (the `Caller` extractor).
pub async fn middleware(State(state): State<Arc<ServerState>>, req: Request, next: Next) -> Response {
    let token = match bearer(req.headers()) {
        Some(t) => t.to_owned(),
        None => return ApiError::from(tenancy_domain::Error::Unauthenticated).into_response(),
    };
    let principal = match state.app.auth.authenticate(&token).await {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if let Some(t) = &principal.tenant_id {
        tracing::Span::current().record("tenant_id", t.as_str());
    }
    // Rate limits: the caller is known; nothing else has run yet. A tenant key's tenant
    // bucket is sized by its plan's limit, read with the tenant's terms (the one door
    // to them, `App::tenant_terms`); a tenant gone meanwhile gets the server's size.
    let terms = match &principal.tenant_id {
        Some(t) => match state.app.tenant_terms(t).await {
            Ok(terms) => Some(terms),
            Err(tenancy_domain::Error::NotFound { .. }) => None,
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => None,
    };
    let plan = terms
        .as_ref()
        .and_then(|t| t.rate_limit.map(|limit| crate::ratelimit::PlanLimit { plan: t.tenant.plan.as_str(), limit }));
    let checked = state.rate_limits.check(&principal, plan);
    if let Some(refusal) = checked.refusal {
        let mut res = ApiError::new(ErrorCode::RateLimited, refusal.detail()).into_response();
        res.headers_mut().insert(header::RETRY_AFTER, refusal.retry_after_s().into());
        crate::ratelimit::set_headers(res.headers_mut(), &checked.verdicts);
        return res;
    }
    let mut res = authorize_and_run(&state.app, principal, req, next).await;
    crate::ratelimit::set_headers(res.headers_mut(), &checked.verdicts);
    res
}

/// Authorizes the authenticated `principal` for the route, refuses NUL in the URI, and
/// runs the rest with the caller's [`OpContext`].
async fn authorize_and_run(
    app: &tenancy_app::App,
    principal: tenancy_app::Principal,
    mut req: Request,
    next: Next,
) -> Response {
    let source_ip = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
    let ctx = OpContext { principal, request_id: request_id_of(req.headers()), source_ip };

    let Some(path) = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()) else {
        return ApiError::from(tenancy_domain::Error::internal("a /v1 request without a matched route"))
            .into_response();
    };
    let Some(rule) = rule(req.method(), &path) else {
        let e = tenancy_domain::Error::internal(format!("no access rule for {} {path}", req.method()));
        return ApiError::from(e).into_response();
    };
    let Some(action) = route_action(req.method(), &path) else {
        let e = tenancy_domain::Error::internal(format!("no policy action for {} {path}", req.method()));
        return ApiError::from(e).into_response();
    };
    let param = |params: &RawPathParams, name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_owned());
    let (tenant, key, named) = match (rule.tenant, rule.key, &action.param) {
        (None, None, None) => (None, None, None),
        (t, k, n) => match req.extract_parts::<RawPathParams>().await {
            Ok(params) => (
                t.and_then(|n| param(&params, n)),
                k.and_then(|n| param(&params, n)),
                n.as_deref().and_then(|n| param(&params, n)),
            ),
            Err(e) => return ApiError::new(ErrorCode::InvalidPath, e.body_text()).into_response(),
        },
    };
    // A tenant key asking about another tenant learns nothing (404), before any policy.
    if let (Some(t), Some(own)) = (&tenant, &ctx.principal.tenant_id) {
        if t != own {
            return ApiError::from(tenancy_domain::Error::not_found("tenant", t.as_str())).into_response();
        }
    }
    let resource = match (&tenant, &named) {
        (Some(t), _) => Resource::Tenant(t),
        (None, Some(id)) => Resource::Named { kind: &action.def.resource, id },
        (None, None) => Resource::Platform,
    };
    if let Err(e) = app.authorize_action(&ctx, &action.def.name, resource).await {
        return ApiError::from(e).into_response();
    }
    // A tenant key names one of its own tenant's keys, or learns nothing (404).
    if let (Some(id), Some(_)) = (&key, ctx.own_tenant()) {
        if let Err(e) = app.managed_key(&ctx, id).await {
            return ApiError::from(e).into_response();
        }
    }
    if has_nul(req.uri().path()) || req.uri().query().is_some_and(has_nul) {
        return ApiError::new(ErrorCode::InvalidRequest, "the request's path or query contains a NUL character (%00)")
            .into_response();
    }
    req.extensions_mut().insert(ctx);
    next.run(req).await
}

/// Whether URI text carries a percent-encoded NUL (a raw one cannot pass the HTTP parser).
fn has_nul(s: &str) -> bool {
    s.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_have_rules() {
        let doc: serde_json::Value = serde_json::from_str(&crate::openapi_json()).unwrap();
        let mut missing = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                if rule(&m, path).is_none() {
                    missing.push(format!("{m} {path}"));
                }
            }
        }
        assert!(missing.is_empty(), "routes without an access rule: {missing:?}");
    }

    #[test]
    fn nul_in_uri() {
        assert!(has_nul("/v1/tenants/a%00b"));
        assert!(!has_nul("/v1/tenants/a%200"));
        assert!(!has_nul("/v1/tenants/%2500"), "an encoded percent sign followed by 00 is not NUL");
    }
}
