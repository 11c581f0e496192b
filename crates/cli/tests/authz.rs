//! Walks the whole route table with every role and asserts who may do what.
//!
//! Each route has a permission class; each role has an expected outcome per class:
//! allowed (anything but 401/403/404), forbidden (403) or hidden (404: a tenant-scoped
//! key asking about another tenant learns nothing). The table must cover every route
//! of the OpenAPI document, so a new route cannot skip this test. Every mutating route
//! is also tried with a malformed and an oversized body (and an Idempotency-Key): a
//! caller who may not call it gets the same 401, 403 or 404 as with a valid body.

mod support;

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    PlanRead,
    /// One plan: a tenant key reads its own tenant's current plan only (404 for any
    /// other, such as the fresh plan of each row).
    PlanGet,
    PlanWrite,
    TenantList,
    TenantRead,
    TenantWrite,
    TenantAdmin,
    TenantCreate,
    /// A plan change (to a plan not marked self_service here): admins, operators; a
    /// tenant key of its own tenant is refused by the app (403), of another hidden.
    PlanChange,
    /// Create a viewer key: admins only (a tenant key may create tenant keys only).
    KeyAdmin,
    /// List keys: admins all, a tenant key its own tenant's.
    KeyList,
    /// Revoke or rotate a viewer key: admins; a tenant key finds no such key of its
    /// tenant (404).
    KeyOne,
    /// Sign-up: no credentials needed, every caller (whatever it sends).
    Public,
    RecordsRead,
    SubscriptionRead,
    SubscriptionWrite,
    AuditExport,
    StateMachineRead,
    WorkflowWrite,
    ExecutionList,
    ExecutionRead,
    TaskCallback,
    QueueRead,
    QueueAdmin,
    QueueUse,
    HookRead,
    HookAdmin,
    FunctionRead,
    FunctionAdmin,
    /// A tenant's database credentials: admins, operators, the tenant's own key.
    DatabaseCredentials,
    /// Publish custom events: admins, operators, services, tenant keys.
    EventPut,
    /// Test a pattern against an event: every caller.
    PatternTest,
    /// A tenant's quotas and usage: every role but a tenant key of another tenant.
    QuotaRead,
    /// Consume and release quotas: admins, operators, services, the tenant's own key.
    QuotaUse,
    /// A tenant's secrets' metadata: every role but a tenant key of another tenant.
    SecretRead,
    /// A tenant's secrets' values: admins, operators, services, the tenant's own key.
    SecretValue,
    /// Put, delete, restore a tenant's secrets: admins, operators, the tenant's own key.
    SecretWrite,
    /// Platform secrets' metadata: admins, operators, viewers.
    PlatformSecretRead,
    /// Platform secrets' values and writes: admins and operators.
    PlatformSecretAdmin,
    /// Connections' metadata: admins, operators, viewers.
    ConnectionRead,
    /// Create, replace, delete connections: admins and operators.
    ConnectionAdmin,
    /// Evaluate feature flags (OFREP): every role; a tenant key naming another tenant
    /// is answered for its own (no 404: the target is in the body, not the path).
    FlagEvaluate,
    /// Read releases and download bundles: admins, operators, viewers, services.
    ReleaseRead,
    /// Create releases and upload bundles: admins and operators.
    ReleaseAdmin,
    /// Read policies and check decisions: admins, operators, viewers.
    PolicyRead,
    /// Put and delete policies: admins only.
    PolicyAdmin,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Allowed,
    Forbidden,
    Hidden,
    /// The caller may call the route, and the app refuses what the (valid) body asks
    /// (403): a tenant key asking for a wider key or a plan not marked self_service. A
    /// malformed body is a 400 for it, as for any caller of the route.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Admin,
    Operator,
    Viewer,
    Service,
    /// A tenant key acting on its own tenant.
    TenantOwn,
    /// A tenant key acting on another tenant.
    TenantOther,
}

fn expected(who: Who, class: Class) -> Outcome {
    use Class::*;
    use Outcome::*;
    match (who, class) {
        (Who::Admin, _) => Allowed,
        (_, PatternTest | FlagEvaluate | Public) => Allowed,
        (Who::TenantOwn | Who::TenantOther, KeyList) => Allowed,
        (Who::TenantOwn | Who::TenantOther, KeyOne) => Hidden,
        (Who::TenantOwn, PlanChange) => Refused,
        (Who::TenantOwn | Who::TenantOther, KeyAdmin) => Refused,
        (Who::TenantOther, PlanChange) => Hidden,
        (Who::Operator, KeyList | KeyOne) => Forbidden,
        (_, PlanChange) => expected(who, TenantAdmin),
        (Who::Viewer, EventPut) => Forbidden,
        (_, EventPut) => Allowed,
        (Who::Operator, KeyAdmin | PolicyAdmin) => Forbidden,
        (Who::Operator, _) => Allowed,
        (Who::TenantOwn | Who::TenantOther, PlanGet) => Hidden,
        (Who::TenantOwn | Who::TenantOther, PlanRead) => Allowed,
        (_, PlanGet) => expected(who, PlanRead),
        (Who::Viewer, PlanRead | TenantList | TenantRead | RecordsRead | SubscriptionRead) => Allowed,
        (Who::Viewer, StateMachineRead | ExecutionList | ExecutionRead | QueueRead | HookRead) => Allowed,
        (Who::Viewer, FunctionRead | QuotaRead) => Allowed,
        (Who::Viewer, SecretRead | PlatformSecretRead | ConnectionRead | PolicyRead) => Allowed,
        (Who::Viewer | Who::Service, ReleaseRead) => Allowed,
        (Who::Service, SecretRead | SecretValue) => Allowed,
        (Who::TenantOwn, SecretRead | SecretValue | SecretWrite) => Allowed,
        (Who::TenantOther, SecretRead | SecretValue | SecretWrite) => Hidden,
        (Who::Viewer, _) => Forbidden,
        (Who::Service, PlanRead | TenantList | TenantRead | TaskCallback) => Allowed,
        (Who::Service, QueueRead | QueueUse | QuotaRead | QuotaUse) => Allowed,
        (Who::Service, _) => Forbidden,
        (Who::TenantOwn, TenantList | TenantRead | TenantWrite | ExecutionList | ExecutionRead) => Allowed,
        (Who::TenantOwn, DatabaseCredentials | QuotaRead | QuotaUse) => Allowed,
        (Who::TenantOwn, _) => Forbidden,
        (Who::TenantOther, TenantRead | TenantWrite | TenantAdmin | ExecutionRead | DatabaseCredentials) => Hidden,
        (Who::TenantOther, QuotaRead | QuotaUse) => Hidden,
        (Who::TenantOther, TenantList | ExecutionList) => Allowed,
        (Who::TenantOther, _) => Forbidden,
    }
}

struct Route {
    method: Method,
    /// `{tenant}`, `{plan}`, `{key}`, `{sub}`, `{execution}` (of `{tenant}`, waiting for a
    /// callback) and `{token}` (its task token) are filled in per call.
    path: &'static str,
    body: Option<Value>,
    class: Class,
}

/// An operator policy that applies to no key of the walk.
fn policy_text() -> &'static str {
    "forbid (principal, action, resource) when { principal.labels.contains(\"authz-nobody\") };"
}

/// A rollout over no tenant (see the `{rollout}` set-up).
fn rollout_body() -> Value {
    json!({"release": "{release}", "selector": {"plans": ["authz-none"]}, "strategy": {"canary": 1}})
}

fn route(method: Method, path: &'static str, body: Option<Value>, class: Class) -> Route {
    Route { method, path, body, class }
}

fn table() -> Vec<Route> {
    use Class::*;
    vec![
        route(Method::GET, "/v1/plans", None, PlanRead),
        route(Method::GET, "/v1/plans/{plan}", None, PlanGet),
        route(Method::PUT, "/v1/plans/{plan}", Some(json!({"name": "P", "isolation": "pool"})), PlanWrite),
        route(Method::PATCH, "/v1/plans/{plan}", Some(json!({"name": "P2"})), PlanWrite),
        route(Method::DELETE, "/v1/plans/{plan}", None, PlanWrite),
        route(Method::GET, "/v1/tenants", None, TenantList),
        route(Method::POST, "/v1/tenants", Some(json!({"name": "New", "plan": "basic"})), TenantCreate),
        route(Method::GET, "/v1/tenants/{tenant}", None, TenantRead),
        route(Method::PATCH, "/v1/tenants/{tenant}", Some(json!({"metadata": {"k": "v"}})), TenantWrite),
        route(Method::POST, "/v1/tenants/{tenant}/suspend", None, TenantAdmin),
        route(Method::POST, "/v1/tenants/{tenant}/resume", None, TenantAdmin),
        route(Method::POST, "/v1/tenants/{tenant}/retry", None, TenantAdmin),
        route(Method::POST, "/v1/tenants/{tenant}/plan", Some(json!({"plan": "pro"})), PlanChange),
        route(Method::DELETE, "/v1/tenants/{tenant}", None, TenantAdmin),
        route(Method::GET, "/v1/api-keys", None, KeyList),
        route(Method::POST, "/v1/api-keys", Some(json!({"name": "k", "role": "viewer"})), KeyAdmin),
        route(Method::DELETE, "/v1/api-keys/{key}", None, KeyOne),
        route(Method::POST, "/v1/api-keys/{key}/rotate", Some(json!({"grace_s": 0})), KeyOne),
        route(Method::POST, "/v1/signup", Some(json!({"email": "a@example.com", "org_name": "A"})), Public),
        route(Method::POST, "/v1/signup/activate", Some(json!({"token": "act_x"})), Public),
        route(Method::GET, "/v1/events", None, RecordsRead),
        route(
            Method::POST,
            "/v1/events",
            Some(json!({"Entries": [{"Source": "billing", "DetailType": "Usage", "Detail": "{\"units\": 1}"}]})),
            EventPut,
        ),
        route(
            Method::POST,
            "/v1/events/test-pattern",
            Some(json!({"pattern": {"source": ["billing"]}, "event": {"source": "billing"}})),
            PatternTest,
        ),
        route(Method::GET, "/v1/audit", None, RecordsRead),
        route(Method::GET, "/v1/reconciliation", None, RecordsRead),
        route(Method::POST, "/v1/reconciliation", None, PlanWrite),
        route(Method::POST, "/v1/reconciliation/{drift}/repair", None, PlanWrite),
        // Admins and operators, as plan writes.
        route(Method::GET, "/v1/storage", None, PlanWrite),
        route(Method::GET, "/v1/audit/verify", None, RecordsRead),
        route(Method::GET, "/v1/audit/export", None, RecordsRead),
        route(Method::POST, "/v1/audit/exports", Some(json!({})), AuditExport),
        route(Method::GET, "/v1/subscriptions", None, SubscriptionRead),
        route(Method::POST, "/v1/subscriptions", Some(subscription_body()), SubscriptionWrite),
        route(Method::GET, "/v1/subscriptions/{sub}", None, SubscriptionRead),
        route(Method::PATCH, "/v1/subscriptions/{sub}", Some(json!({"name": "renamed"})), SubscriptionWrite),
        route(Method::DELETE, "/v1/subscriptions/{sub}", None, SubscriptionWrite),
        route(Method::POST, "/v1/subscriptions/{sub}/rotate-secret", None, SubscriptionWrite),
        route(Method::GET, "/v1/subscriptions/{sub}/deliveries", None, SubscriptionRead),
        route(Method::POST, "/v1/subscriptions/{sub}/deliveries/{delivery}/retry", None, SubscriptionWrite),
        route(
            Method::POST,
            "/v1/subscriptions/{sub}/replay",
            Some(json!({"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"})),
            SubscriptionWrite,
        ),
        route(Method::GET, "/v1/state-machines", None, StateMachineRead),
        route(Method::GET, "/v1/state-machines/{sm}", None, StateMachineRead),
        route(Method::PUT, "/v1/state-machines/{sm}", Some(json!({"definition": callback_machine()})), WorkflowWrite),
        route(Method::POST, "/v1/executions", Some(json!({"state_machine": "authz-callback"})), WorkflowWrite),
        route(Method::GET, "/v1/executions", None, ExecutionList),
        route(Method::GET, "/v1/executions/{execution}", None, ExecutionRead),
        route(Method::GET, "/v1/executions/{execution}/history", None, ExecutionRead),
        route(Method::POST, "/v1/executions/{execution}/stop", None, WorkflowWrite),
        route(Method::POST, "/v1/executions/{execution}/redrive", None, WorkflowWrite),
        route(Method::POST, "/v1/task-tokens/{token}/success", Some(json!({"output": {}})), TaskCallback),
        route(Method::POST, "/v1/task-tokens/{token}/failure", Some(json!({"error": "E"})), TaskCallback),
        route(Method::POST, "/v1/task-tokens/{token}/heartbeat", None, TaskCallback),
        route(Method::GET, "/v1/tenants/{tenant}/resources", None, TenantRead),
        route(Method::GET, "/v1/tenants/{tenant}/database-credentials", None, DatabaseCredentials),
        route(Method::GET, "/v1/tenants/{tenant}/entitlements", None, TenantRead),
        route(Method::GET, "/v1/tenants/{tenant}/overrides", None, TenantRead),
        route(
            Method::PUT,
            "/v1/tenants/{tenant}/overrides",
            Some(json!({"features": {"beta": true}, "quotas": {"seats": 3}})),
            TenantAdmin,
        ),
        route(Method::DELETE, "/v1/tenants/{tenant}/overrides", None, TenantAdmin),
        route(Method::GET, "/v1/hooks", None, HookRead),
        route(Method::GET, "/v1/hooks/{hook}", None, HookRead),
        route(Method::PUT, "/v1/hooks/{hook}", Some(hook_body()), HookAdmin),
        route(Method::DELETE, "/v1/hooks/{hook}", None, HookAdmin),
        route(Method::GET, "/v1/tenants/{tenant}/quotas", None, QuotaRead),
        route(Method::POST, "/v1/tenants/{tenant}/quotas/{quota}/consume", Some(json!({"amount": 1})), QuotaUse),
        route(Method::POST, "/v1/tenants/{tenant}/quotas/consume", Some(json!({"items": {"seats": 1}})), QuotaUse),
        route(Method::POST, "/v1/tenants/{tenant}/quotas/{quota}/release", Some(json!({"amount": 1})), QuotaUse),
        route(Method::GET, "/v1/tenants/{tenant}/secrets", None, SecretRead),
        route(Method::GET, "/v1/tenants/{tenant}/secrets/{secret}", None, SecretValue),
        route(Method::PUT, "/v1/tenants/{tenant}/secrets/{secret}", Some(json!({"value": "v"})), SecretWrite),
        route(Method::DELETE, "/v1/tenants/{tenant}/secrets/{secret}", None, SecretWrite),
        route(Method::POST, "/v1/tenants/{tenant}/secrets/{secret}/restore", None, SecretWrite),
        route(Method::POST, "/v1/tenants/{tenant}/secrets/{secret}/rotate", None, SecretWrite),
        route(Method::GET, "/v1/secrets", None, PlatformSecretRead),
        route(Method::GET, "/v1/secrets/{secret}", None, PlatformSecretAdmin),
        route(Method::PUT, "/v1/secrets/{secret}", Some(json!({"value": "v"})), PlatformSecretAdmin),
        route(Method::DELETE, "/v1/secrets/{secret}", None, PlatformSecretAdmin),
        route(Method::POST, "/v1/secrets/{secret}/restore", None, PlatformSecretAdmin),
        route(Method::POST, "/v1/secrets/{secret}/rotate", None, PlatformSecretAdmin),
        route(
            Method::POST,
            "/ofrep/v1/evaluate/flags/{flag}",
            Some(json!({"context": {"targetingKey": "{tenant}"}})),
            FlagEvaluate,
        ),
        route(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            Some(json!({"context": {"targetingKey": "{tenant}"}})),
            FlagEvaluate,
        ),
        route(Method::GET, "/v1/policies", None, PolicyRead),
        route(Method::GET, "/v1/policies/{policy}", None, PolicyRead),
        route(Method::PUT, "/v1/policies/{policy}", Some(json!({"cedar": policy_text()})), PolicyAdmin),
        route(Method::DELETE, "/v1/policies/{policy}", None, PolicyAdmin),
        route(
            Method::POST,
            "/v1/policies/check",
            Some(
                json!({"principal": "admin-token", "action": "get_tenant", "resource": "Tenancy::Tenant::\"{tenant}\""}),
            ),
            PolicyRead,
        ),
        route(Method::GET, "/v1/connections", None, ConnectionRead),
        route(Method::GET, "/v1/connections/{connection}", None, ConnectionRead),
        route(Method::PUT, "/v1/connections/{connection}", Some(connection_body()), ConnectionAdmin),
        route(Method::DELETE, "/v1/connections/{connection}", None, ConnectionAdmin),
        route(Method::GET, "/v1/functions", None, FunctionRead),
        route(Method::GET, "/v1/functions/{function}", None, FunctionRead),
        route(Method::PUT, "/v1/functions/{function}", Some(function_body()), FunctionAdmin),
        route(Method::DELETE, "/v1/functions/{function}", None, FunctionAdmin),
        route(Method::GET, "/v1/releases", None, ReleaseRead),
        route(Method::GET, "/v1/releases/{release}", None, ReleaseRead),
        route(Method::PUT, "/v1/releases/{release}", Some(json!({"description": "authz"})), ReleaseAdmin),
        route(Method::GET, "/v1/releases/{release}/bundle", None, ReleaseRead),
        route(Method::PUT, "/v1/releases/{release}/bundle", Some(json!({"bundle": "authz"})), ReleaseAdmin),
        route(Method::PUT, "/v1/tenants/{tenant}/pin", Some(json!({"reason": "authz"})), TenantAdmin),
        route(Method::DELETE, "/v1/tenants/{tenant}/pin", None, TenantAdmin),
        route(Method::POST, "/v1/tenants/{tenant}/upgrade", Some(json!({"version": "{release}"})), TenantAdmin),
        route(Method::GET, "/v1/rollouts", None, ReleaseRead),
        route(Method::POST, "/v1/rollouts", Some(rollout_body()), ReleaseAdmin),
        route(Method::GET, "/v1/rollouts/{rollout}", None, ReleaseRead),
        route(Method::POST, "/v1/rollouts/{rollout}/pause", None, ReleaseAdmin),
        route(Method::POST, "/v1/rollouts/{rollout}/resume", None, ReleaseAdmin),
        route(Method::POST, "/v1/rollouts/{rollout}/abort", None, ReleaseAdmin),
        route(Method::GET, "/v1/queues", None, QueueRead),
        route(Method::GET, "/v1/queues/{queue}", None, QueueRead),
        route(Method::PUT, "/v1/queues/{queue}", Some(json!({"visibility_timeout_s": 30})), QueueAdmin),
        route(Method::DELETE, "/v1/queues/{queue}", None, QueueAdmin),
        route(Method::POST, "/v1/queues/{queue}/redrive", None, QueueAdmin),
        route(Method::GET, "/v1/queues/{queue}/messages", None, QueueRead),
        route(Method::POST, "/v1/queues/{queue}/messages", Some(json!({"body": 1})), QueueUse),
        route(Method::POST, "/v1/queues/{queue}/messages/batch", Some(json!({"entries": [{"body": 1}]})), QueueUse),
        route(Method::POST, "/v1/queues/{queue}/receive", Some(json!({"max": 1})), QueueUse),
        route(Method::DELETE, "/v1/queues/{queue}/messages/{receipt}", None, QueueUse),
        route(Method::POST, "/v1/queues/{queue}/messages/delete", Some(json!({"receipts": ["{receipt}"]})), QueueUse),
        route(
            Method::POST,
            "/v1/queues/{queue}/messages/{receipt}/visibility",
            Some(json!({"visibility_timeout_s": 0})),
            QueueUse,
        ),
    ]
}

/// A hook that provisioning never calls (this test creates tenants throughout).
fn hook_body() -> Value {
    json!({"url": "http://127.0.0.1:9/hook", "events": ["offboard"]})
}

/// A connection nothing of this test uses.
fn connection_body() -> Value {
    json!({"auth": {"type": "api_key", "header": "X-Api-Key", "value": "authz-key"}})
}

/// A function no state machine of this test invokes.
fn function_body() -> Value {
    json!({"url": "http://127.0.0.1:9/fn", "timeout_s": 5})
}

/// A fresh queue holding a received message; returns the queue and the receipt.
async fn queue_with_receipt(s: &TestServer) -> (String, String) {
    let queue = format!("q-{}", uuid::Uuid::new_v4().simple());
    let res = s.call(Method::PUT, &format!("/v1/queues/{queue}"), Some(json!({"visibility_timeout_s": 300}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    s.call(Method::POST, &format!("/v1/queues/{queue}/messages"), Some(json!({"body": "x"}))).await;
    let res = s.call(Method::POST, &format!("/v1/queues/{queue}/receive"), Some(json!({"max": 1}))).await;
    (queue, res.body["messages"][0]["receipt"].as_str().unwrap().to_owned())
}

fn subscription_body() -> Value {
    json!({"name": "s", "pattern": {"source": ["nobody"]}, "target": {"type": "webhook", "url": "http://127.0.0.1:9/x"}})
}

fn callback_machine() -> Value {
    json!({"StartAt": "Wait", "States": {"Wait": {"Type": "Task", "Resource": "tenancy:callback.waitForTaskToken",
        "Parameters": {"token.$": "$$.Task.Token"}, "TimeoutSeconds": 3600, "End": true}}})
}

/// Starts an execution of `tenant` waiting for a callback; returns its id and token.
async fn waiting_execution(s: &TestServer, tenant: &str) -> (String, String) {
    let body = json!({"state_machine": "authz-callback", "tenant_id": tenant});
    let res = s.call(Method::POST, "/v1/executions", Some(body)).await;
    let id = res.body["id"].as_str().unwrap().to_owned();
    let history = s.get(&format!("/v1/executions/{id}/history")).await;
    let token = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "TaskScheduled")
        .map(|e| e["details"]["parameters"]["token"].as_str().unwrap().to_owned())
        .unwrap();
    (id, token)
}

/// Every (method, path) of the OpenAPI document, with `{...}` parameters normalized.
fn documented_routes() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(&tenancy_http::openapi_json()).unwrap();
    let mut out = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), normalize(path)));
        }
    }
    out
}

fn normalize(path: &str) -> String {
    path.split('/').map(|seg| if seg.starts_with('{') { "{}" } else { seg }).collect::<Vec<_>>().join("/")
}

#[test]
fn table_covers_every_documented_route() {
    let covered: BTreeSet<(String, String)> =
        table().iter().map(|r| (r.method.to_string(), normalize(r.path))).collect();
    assert_eq!(covered, documented_routes(), "the authorization table and the route table differ");
}

both_backends!(every_role_on_every_route);

async fn every_role_on_every_route(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.put_plan("pro", "pool").await;
    let mut tokens = Vec::new();
    for who in [Who::Admin, Who::Operator, Who::Viewer, Who::Service, Who::TenantOwn, Who::TenantOther] {
        let own = format!("own-{}", format!("{who:?}").to_lowercase());
        s.create_tenant(&own, "basic").await;
        s.wait_status(&own, "active").await;
        let token = match who {
            Who::Admin => support::ADMIN.to_owned(),
            Who::Operator => s.key("operator", None).await,
            Who::Viewer => s.key("viewer", None).await,
            Who::Service => s.key("service", None).await,
            // Both tenant keys belong to the tenant named after them: "own" acts on
            // its own tenant, "other" acts on a tenant that is not its own.
            Who::TenantOwn | Who::TenantOther => s.key("tenant", Some(&own)).await,
        };
        tokens.push((who, own, token));
    }
    s.create_tenant("victim", "basic").await;
    s.wait_status("victim", "active").await;
    let res =
        s.call(Method::PUT, "/v1/state-machines/authz-callback", Some(json!({"definition": callback_machine()}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);

    let mut failures = Vec::new();
    for r in table() {
        for (who, own, token) in &tokens {
            let tenant = if *who == Who::TenantOther { "victim".to_owned() } else { own.clone() };
            // Fresh resources for the routes that name them, so an allowed call finds
            // what it acts on (made only where named: the walk is the suite's longest).
            let plan = format!("p-{}", uuid::Uuid::new_v4().simple());
            if r.path.contains("{plan}") {
                s.put_plan(&plan, "pool").await;
            }
            let mut key = String::new();
            if r.path.contains("{key}") {
                let body = json!({"name": "victim", "role": "viewer"});
                let key_res = s.call(Method::POST, "/v1/api-keys", Some(body)).await;
                key = key_res.body["id"].as_str().unwrap().to_owned();
            }
            let mut sub = String::new();
            if r.path.contains("{sub}") {
                let sub_res = s.call(Method::POST, "/v1/subscriptions", Some(subscription_body())).await;
                sub = sub_res.body["id"].as_str().unwrap().to_owned();
            }
            let (execution, task_token) = if r.path.contains("{execution}") || r.path.contains("{token}") {
                waiting_execution(&s, &tenant).await
            } else {
                Default::default()
            };
            let (queue, receipt) =
                if r.path.contains("{queue}") { queue_with_receipt(&s).await } else { Default::default() };
            // A fresh release with a bundle.
            let release = format!("r-{}", uuid::Uuid::new_v4().simple());
            if r.path.contains("{release}") || r.path.ends_with("/upgrade") || r.path.starts_with("/v1/rollouts") {
                let res = s.call(Method::PUT, &format!("/v1/releases/{release}"), Some(json!({}))).await;
                assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
                let bundle = format!("/v1/releases/{release}/bundle");
                let res = s.send_bytes(Some(support::ADMIN), Method::PUT, &bundle, b"authz".to_vec(), &[]).await;
                assert_eq!(res.status, StatusCode::OK, "{}", res.body);
            }
            let body = r.body.as_ref().map(|b| {
                let text = b.to_string().replace("{receipt}", &receipt).replace("{tenant}", &tenant);
                serde_json::from_str(&text.replace("{release}", &release)).unwrap()
            });
            // A rollout selecting no tenant (it completes at once: nothing is upgraded).
            let rollout = if r.path.contains("{rollout}") {
                let body = json!({"release": release, "selector": {"plans": ["authz-none"]}});
                let res = s.call(Method::POST, "/v1/rollouts", Some(body)).await;
                assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
                res.body["id"].as_str().unwrap().to_owned()
            } else {
                String::new()
            };
            let hook = format!("h-{}", uuid::Uuid::new_v4().simple());
            if r.path.contains("{hook}") {
                let res = s.call(Method::PUT, &format!("/v1/hooks/{hook}"), Some(hook_body())).await;
                assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
            }
            let function = format!("f-{}", uuid::Uuid::new_v4().simple());
            if r.path.contains("{function}") {
                let res = s.call(Method::PUT, &format!("/v1/functions/{function}"), Some(function_body())).await;
                assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
            }
            let connection = format!("c-{}", uuid::Uuid::new_v4().simple());
            if r.path.contains("{connection}") {
                let res = s.call(Method::PUT, &format!("/v1/connections/{connection}"), Some(connection_body())).await;
                assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
            }
            // A policy that forbids nothing any caller here does: from the first one
            // on, the walk also runs with operators' policies in force.
            let policy = format!("p-{}", uuid::Uuid::new_v4().simple());
            if r.path.contains("{policy}") {
                let res =
                    s.call(Method::PUT, &format!("/v1/policies/{policy}"), Some(json!({"cedar": policy_text()}))).await;
                assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
            }
            let secret = format!("s-{}", uuid::Uuid::new_v4().simple());
            if r.path.contains("{secret}") {
                for p in [format!("/v1/tenants/{tenant}/secrets/{secret}"), format!("/v1/secrets/{secret}")] {
                    let res = s.call(Method::PUT, &p, Some(json!({"value": "authz"}))).await;
                    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
                }
            }
            let path = r
                .path
                .replace("{secret}", &secret)
                .replace("{connection}", &connection)
                .replace("{policy}", &policy)
                .replace("{release}", &release)
                .replace("{rollout}", &rollout)
                .replace("{hook}", &hook)
                .replace("{function}", &function)
                .replace("{queue}", &queue)
                .replace("{receipt}", &receipt)
                .replace("{tenant}", &tenant)
                .replace("{quota}", "seats")
                .replace("{flag}", "sso")
                .replace("{plan}", &plan)
                .replace("{key}", &key)
                .replace("{sub}", &sub)
                .replace("{delivery}", "dlv_missing")
                .replace("{drift}", "drift_missing")
                .replace("{execution}", &execution)
                .replace("{token}", &task_token)
                .replace("{sm}", "authz-callback");
            let res = s.call_with(Some(token), r.method.clone(), &path, body, &[]).await;
            let want = expected(*who, r.class);
            let ok = match want {
                // A retry of a delivery that does not exist is let through to a 404.
                // Authorized, but the tenant may have no database login: none for pool
                // tenants on the embedded default, none after an earlier row offboarded it.
                Outcome::Allowed if path.ends_with("/database-credentials") && res.status == StatusCode::NOT_FOUND => {
                    res.body["detail"].as_str().unwrap_or("").contains("database credentials")
                }
                // No drift: authorized, then 404 for the unknown id.
                Outcome::Allowed if path.contains("/drift_missing/") => {
                    res.status == StatusCode::NOT_FOUND && res.body["detail"].as_str().unwrap_or("").contains("drift")
                }
                Outcome::Allowed if path.contains("/dlv_missing/") => {
                    res.status == StatusCode::NOT_FOUND
                        && res.body["detail"].as_str().unwrap_or("").contains("delivery")
                }
                Outcome::Allowed => {
                    !matches!(res.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND)
                }
                Outcome::Forbidden | Outcome::Refused => res.status == StatusCode::FORBIDDEN,
                Outcome::Hidden => res.status == StatusCode::NOT_FOUND,
            };
            if !ok {
                failures
                    .push(format!("{who:?} {} {path}: expected {want:?}, got {} {}", r.method, res.status, res.body));
            }
            // Authenticate, authorize, then validate: a caller who may not make the
            // request gets the same answer whatever its body (malformed, too large) and
            // whatever its Idempotency-Key; so does a caller without credentials (401).
            if r.method != Method::GET {
                let denied = match want {
                    Outcome::Forbidden => Some(StatusCode::FORBIDDEN),
                    Outcome::Hidden => Some(StatusCode::NOT_FOUND),
                    Outcome::Allowed | Outcome::Refused => None,
                };
                let mut callers = vec![];
                if let Some(status) = denied {
                    callers.push((Some(token.as_str()), status));
                }
                if *who == Who::Admin && r.class != Class::Public {
                    callers.push((None, StatusCode::UNAUTHORIZED));
                }
                for (caller, status) in callers {
                    let key = [("idempotency-key", "authz-invalid")];
                    let bad = s.send_bytes(caller, r.method.clone(), &path, b"{\"bogus\": ".to_vec(), &key).await;
                    if bad.status != status {
                        failures.push(format!(
                            "{who:?} {} {path} with a malformed body: expected {status}, got {} {}",
                            r.method, bad.status, bad.body
                        ));
                    }
                    let large = s.status_of_large(caller, r.method.as_str(), &path, (1 << 20) + 100).await;
                    if large != status.as_u16() {
                        failures.push(format!(
                            "{who:?} {} {path} with a body too large: expected {status}, got {large}",
                            r.method
                        ));
                    }
                }
            }
            // A tenant key's evaluation is its own tenant's, whatever tenant the body names.
            if r.class == Class::FlagEvaluate
                && matches!(who, Who::TenantOwn | Who::TenantOther)
                && res.body["metadata"]["tenantId"] != own.as_str()
            {
                failures.push(format!("{who:?} {path} evaluated {}", res.body["metadata"]));
            }
            // A tenant key's listing holds its own tenant and nothing else.
            if r.class == Class::TenantList && matches!(who, Who::TenantOwn | Who::TenantOther) {
                let ids: Vec<&str> =
                    res.body["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
                if ids != [own.as_str()] {
                    failures.push(format!("{who:?} listed {ids:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "authorization mismatches:\n{}", failures.join("\n"));
    s.stop().await;
}
