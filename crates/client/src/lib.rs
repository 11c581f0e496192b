//! A typed async client of Tenancy's v1 API.
//!
//! One method per API operation, named resource first as the server's operations are
//! (`tenant_create`, `queue_receive`), taking and returning the server's own request
//! and response types: the records of `tenancy-domain` ([`Plan`], [`Tenant`],
//! [`ApiKey`], [`Page`], ...), the operation bodies of [`tenancy_domain::api`] and the
//! audit view of `tenancy-audit`. The wire shape is therefore written once, for the
//! server and every client (the CLI, the benchmarks, later the console). A failed call
//! is a [`ClientError`]: the server's problem document ([`ClientError::Api`], its
//! `code` as the domain's [`ErrorCode`] where this build knows it) or a transport
//! failure ([`ClientError::Unreachable`]).
//!
//! List filters are plain query strings ([`TenantListParams`], ...): the server parses
//! and validates them, as it does for any caller. Path segments (ids, names, receipts)
//! are percent-encoded, so any string reaches the server, which says why a bad one is
//! bad. The client never retries: API calls do not retry on their own.
//!
//! ```no_run
//! use tenancy_client::{Client, ClientError, TenantListParams};
//! use tenancy_domain::tenant::NewTenant;
//! use tenancy_domain::ErrorCode;
//!
//! # async fn example() -> Result<(), ClientError> {
//! let client = Client::new("http://127.0.0.1:8080", Some("tk_...".to_owned()));
//! let op = client
//!     .tenant_create(&NewTenant {
//!         id: Some("acme".into()),
//!         name: "Acme".into(),
//!         plan: "pro".into(),
//!         region: None,
//!         metadata: None,
//!     })
//!     .await?;
//! println!("{} is {:?}, execution {:?}", op.tenant.id, op.tenant.status, op.execution_id);
//!
//! // Every tenant on the plan, page by page.
//! let params = TenantListParams { plan: Some("pro".into()), ..Default::default() };
//! let all = tenancy_client::all_pages(|cursor| {
//!     let params = TenantListParams { cursor, ..params.clone() };
//!     let client = &client;
//!     async move { client.tenant_list(&params).await }
//! })
//! .await?;
//! println!("{} tenants", all.len());
//!
//! match client.tenant_get("ghost").await {
//!     Err(e) if e.code() == Some(ErrorCode::NotFound) => println!("no such tenant"),
//!     other => println!("{other:?}"),
//! }
//! # Ok(())
//! # }
//! ```

use std::future::Future;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tenancy_audit::AuditRecordView;
use tenancy_domain::api::ConnectionList;
use tenancy_domain::api::StorageReport;
use tenancy_domain::api::{
    CreatedKey, DeleteBatch, DeletedBatch, Drift, ExecutionView, FunctionList, FunctionWithSecret, HistoryEventView,
    HookList, HookWithSecret, PlanChange, Problem, QuotaBatchGranted, QuotaConsume, QuotaConsumeBatch, QuotaGranted,
    QuotaList, QuotaRelease, ReceiveRequest, ReceivedMessages, ReconciliationReport, Redriven, SendBatch, SentBatch,
    StartExecution, StateMachineSpec, StateMachineView, StopExecution, SubscriptionWithSecret, TaskFailure,
    TaskSuccess, TenantOperation, TenantResources, VisibilityChange,
};
use tenancy_domain::apikey::{ApiKey, NewApiKey, RotateKey};
use tenancy_domain::connection::{Connection, ConnectionSpec};
use tenancy_domain::event::Event;
use tenancy_domain::function::{Function, FunctionSpec};
use tenancy_domain::hook::{Hook, HookSpec};
use tenancy_domain::page::Page;
use tenancy_domain::plan::{Plan, PlanPatch, PlanSpec};
use tenancy_domain::policy::{Policy, PolicyCheck, PolicyDecision, PolicyList, PolicySpec};
use tenancy_domain::queue::{Queue, QueueInfo, QueueSpec, SendMessage, Sent};
use tenancy_domain::quota::QuotaUsage;
use tenancy_domain::release::{PinRequest, Release, ReleaseList, ReleaseSpec, UpgradeRequest};
pub use tenancy_domain::rollout::{
    Rollout, RolloutList, RolloutRequest, RolloutSelector, RolloutStarted, RolloutStrategy,
};
use tenancy_domain::signup::{ActivateRequest, Activated, SignupAccepted, SignupRequest};
use tenancy_domain::subscription::{Delivery, NewSubscription, Subscription, SubscriptionPatch};
use tenancy_domain::tenant::{NewTenant, Tenant, TenantPatch};
use tenancy_domain::ErrorCode;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a problem document (or, from something in between,
    /// an error without one: `code_text` is then `http-error`).
    #[error("{detail} ({code_text}, HTTP {})", status.as_u16())]
    Api {
        status: StatusCode,
        /// The problem's `code` as the domain knows it; `None` for a code this build
        /// does not know (a newer server) or an error without a problem document.
        code: Option<ErrorCode>,
        /// The problem's `code` as sent.
        code_text: String,
        detail: String,
    },
    /// The server could not be reached, or its answer not read.
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// A success whose body is not the operation's response type.
    #[error("unexpected response from the server: {0}")]
    Decode(String),
}

impl ClientError {
    /// The problem's code, when the server sent one this build knows.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => *code,
            _ => None,
        }
    }

    /// The HTTP status of a problem.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn unreachable(e: reqwest::Error) -> Self {
        ClientError::Unreachable(e.to_string())
    }

    /// The error of a failed response (`status` not a success) with its body.
    fn from_problem(status: StatusCode, body: &[u8]) -> Self {
        let (code_text, detail) = match serde_json::from_slice::<Problem>(body) {
            Ok(p) => (Some(p.code), Some(p.detail)),
            // Read leniently: an error from something in between may lack members.
            Err(_) => match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(v) => {
                    let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str).map(str::to_owned);
                    (field("code"), field("detail"))
                }
                Err(_) => (None, None),
            },
        };
        let code_text = code_text.unwrap_or_else(|| "http-error".to_owned());
        ClientError::Api {
            status,
            code: ErrorCode::parse(&code_text),
            code_text,
            detail: detail.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()),
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A page of any list: at most `limit` items after `cursor` (the previous page's
/// `next_cursor`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PageParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The query of `GET /v1/tenants`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantListParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// A tenant status (`active`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The tenants on this release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The query of `GET /v1/events`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventListParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// RFC 3339: events at or after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The query of `GET /v1/subscriptions/{id}/deliveries`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryListParams {
    /// `pending`, `delivered` or `dead`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The query of `GET /v1/audit`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditListParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The actor's API key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// RFC 3339: records at or after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The query of `GET /v1/audit/export`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditExportParams {
    /// RFC 3339: from the first record at or after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// RFC 3339: to the last record before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// The query of `GET /v1/executions`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExecutionListParams {
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT` or `ABORTED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_machine: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Only RUNNING executions without progress for a while.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stuck: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Every item of a paged list: calls `page` with `None`, then with each page's
/// `next_cursor` until a page has none.
pub async fn all_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>>>,
{
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let p = page(cursor).await?;
        items.extend(p.items);
        match p.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(items),
        }
    }
}

/// A path segment: anything but unreserved characters percent-encoded (receipts are
/// opaque; a bad name still reaches the server, which says why it is bad).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A streamed `GET /v1/audit/export`: NDJSON chunks as they arrive.
pub struct AuditExport {
    res: reqwest::Response,
}

impl AuditExport {
    /// The next chunk of NDJSON, `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(self.res.chunk().await.map_err(ClientError::unreachable)?.map(|b| b.to_vec()))
    }
}

/// A streamed `GET /v1/releases/{version}/bundle`: the bytes as they arrive, checked
/// by the server against the recorded SHA-256 (a mismatch cuts the stream: `chunk`
/// fails before the end).
pub struct BundleDownload {
    res: reqwest::Response,
}

impl BundleDownload {
    /// The bundle's SHA-256 from `Repr-Digest` (base64, as RFC 9530 writes it).
    pub fn repr_digest(&self) -> Option<&str> {
        self.res.headers().get("repr-digest").and_then(|v| v.to_str().ok())
    }

    /// The bundle's size, from `Content-Length`.
    pub fn size(&self) -> Option<u64> {
        self.res.content_length()
    }

    /// The next chunk, `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(self.res.chunk().await.map_err(ClientError::unreachable)?.map(|b| b.to_vec()))
    }
}

/// No query parameters.
const NO_QUERY: &[(&str, &str); 0] = &[];

/// The client: cheap to clone (one connection pool).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Never the token: keys are never logged.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// How long a pooled connection may sit idle before the client closes it: below the
/// server's keep-alive idle timeout (10 s, `tenancy_http::HEADER_READ_TIMEOUT`). A
/// client that kept connections longer (reqwest's default is 90 s) would now and then
/// send a request on a connection the server was closing at that moment, and get
/// `IncompleteMessage` instead of an answer (seen in the replica tests, whose requests
/// pause for about 10 s while tenants provision).
pub const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A `reqwest::Client` set up for a Tenancy server: pooled connections closed after
/// [`POOL_IDLE_TIMEOUT`] idle.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().pool_idle_timeout(POOL_IDLE_TIMEOUT).build().expect("an HTTP client")
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`), calling with
    /// `token` as its bearer API key.
    pub fn new(base: &str, token: Option<String>) -> Self {
        Client::with_http(http_client(), base, token)
    }

    /// A client over a configured `reqwest::Client` (timeouts, pool size).
    pub fn with_http(http: reqwest::Client, base: &str, token: Option<String>) -> Self {
        Client { http, base: base.trim_end_matches('/').to_owned(), token }
    }

    /// The server's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends `req`; the body of a success, or the problem of a failure.
    async fn send(&self, req: RequestBuilder) -> Result<(StatusCode, Vec<u8>)> {
        let res = req.send().await.map_err(ClientError::unreachable)?;
        let status = res.status();
        let body = res.bytes().await.map_err(ClientError::unreachable)?;
        if !status.is_success() {
            return Err(ClientError::from_problem(status, &body));
        }
        Ok((status, body.to_vec()))
    }

    /// A call whose success has a JSON body of type `T`.
    async fn call<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let (_, body) = self.send(req).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// A call whose success has no body worth reading (204).
    async fn call_empty(&self, req: RequestBuilder) -> Result<()> {
        self.send(req).await.map(|_| ())
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &impl Serialize) -> Result<T> {
        self.call(self.request(Method::GET, path).query(query)).await
    }

    async fn with_body<T: DeserializeOwned>(&self, method: Method, path: &str, body: &impl Serialize) -> Result<T> {
        self.call(self.request(method, path).json(body)).await
    }

    async fn without_body<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T> {
        self.call(self.request(method, path)).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.call_empty(self.request(Method::DELETE, path)).await
    }

    // Plans.

    /// `PUT /v1/plans/{id}`: create or replace a plan.
    pub async fn plan_put(&self, id: &str, spec: &PlanSpec) -> Result<Plan> {
        self.with_body(Method::PUT, &format!("/v1/plans/{}", segment(id)), spec).await
    }

    /// `PATCH /v1/plans/{id}`: change the members given (a JSON merge patch).
    pub async fn plan_patch(&self, id: &str, patch: &PlanPatch) -> Result<Plan> {
        self.with_body(Method::PATCH, &format!("/v1/plans/{}", segment(id)), patch).await
    }

    pub async fn plan_get(&self, id: &str) -> Result<Plan> {
        self.get(&format!("/v1/plans/{}", segment(id)), NO_QUERY).await
    }

    pub async fn plan_list(&self, page: &PageParams) -> Result<Page<Plan>> {
        self.get("/v1/plans", page).await
    }

    pub async fn plan_delete(&self, id: &str) -> Result<()> {
        self.delete(&format!("/v1/plans/{}", segment(id))).await
    }

    // Tenants.

    /// `POST /v1/tenants`: provisioning starts in the background.
    pub async fn tenant_create(&self, tenant: &NewTenant) -> Result<TenantOperation> {
        self.with_body(Method::POST, "/v1/tenants", tenant).await
    }

    pub async fn tenant_list(&self, params: &TenantListParams) -> Result<Page<Tenant>> {
        self.get("/v1/tenants", params).await
    }

    pub async fn tenant_get(&self, id: &str) -> Result<Tenant> {
        self.get(&format!("/v1/tenants/{}", segment(id)), NO_QUERY).await
    }

    /// `PATCH /v1/tenants/{id}`: name, region or metadata.
    pub async fn tenant_update(&self, id: &str, patch: &TenantPatch) -> Result<Tenant> {
        self.with_body(Method::PATCH, &format!("/v1/tenants/{}", segment(id)), patch).await
    }

    pub async fn tenant_suspend(&self, id: &str) -> Result<TenantOperation> {
        self.without_body(Method::POST, &format!("/v1/tenants/{}/suspend", segment(id))).await
    }

    pub async fn tenant_resume(&self, id: &str) -> Result<TenantOperation> {
        self.without_body(Method::POST, &format!("/v1/tenants/{}/resume", segment(id))).await
    }

    /// `POST /v1/tenants/{id}/retry`: provision a failed tenant again.
    pub async fn tenant_retry(&self, id: &str) -> Result<TenantOperation> {
        self.without_body(Method::POST, &format!("/v1/tenants/{}/retry", segment(id))).await
    }

    /// `POST /v1/tenants/{id}/plan`: move a tenant to another plan.
    pub async fn tenant_change_plan(&self, id: &str, change: &PlanChange) -> Result<TenantOperation> {
        self.with_body(Method::POST, &format!("/v1/tenants/{}/plan", segment(id)), change).await
    }

    /// `DELETE /v1/tenants/{id}`: offboard a tenant (in the background).
    pub async fn tenant_offboard(&self, id: &str) -> Result<TenantOperation> {
        self.without_body(Method::DELETE, &format!("/v1/tenants/{}", segment(id))).await
    }

    /// `DELETE /v1/tenants/{id}?format=ndjson|parquet`: offboard, the export's events
    /// and audit records in that format.
    pub async fn tenant_offboard_as(&self, id: &str, format: &str) -> Result<TenantOperation> {
        let req = self.request(Method::DELETE, &format!("/v1/tenants/{}", segment(id))).query(&[("format", format)]);
        self.call(req).await
    }

    /// `DELETE /v1/tenants/{id}?purge=true`: release an offboarded tenant's id.
    pub async fn tenant_purge(&self, id: &str) -> Result<()> {
        let req = self.request(Method::DELETE, &format!("/v1/tenants/{}", segment(id))).query(&[("purge", "true")]);
        self.call_empty(req).await
    }

    /// How the tenant's service connects to its database (the password included).
    pub async fn tenant_database_credentials(&self, id: &str) -> Result<serde_json::Value> {
        self.get(&format!("/v1/tenants/{}/database-credentials", segment(id)), NO_QUERY).await
    }

    /// What the lifecycle workflows created for a tenant.
    pub async fn tenant_resources(&self, id: &str) -> Result<TenantResources> {
        self.get(&format!("/v1/tenants/{}/resources", segment(id)), NO_QUERY).await
    }

    // API keys.

    /// `POST /v1/api-keys`: the key is in the answer, this once.
    pub async fn key_create(&self, key: &NewApiKey) -> Result<CreatedKey> {
        self.with_body(Method::POST, "/v1/api-keys", key).await
    }

    pub async fn key_list(&self, page: &PageParams) -> Result<Page<ApiKey>> {
        self.get("/v1/api-keys", page).await
    }

    pub async fn key_delete(&self, id: &str) -> Result<()> {
        self.delete(&format!("/v1/api-keys/{}", segment(id))).await
    }

    /// `POST /v1/api-keys/{id}/rotate`: the new secret is in the answer, this once; the
    /// old one works until `previous_secret_expires_at`.
    pub async fn key_rotate(&self, id: &str, rotate: &RotateKey) -> Result<CreatedKey> {
        self.with_body(Method::POST, &format!("/v1/api-keys/{}/rotate", segment(id)), rotate).await
    }

    // Self-service sign-up (no credentials needed).

    /// `POST /v1/signup`: the same answer whatever the email; the activation token goes
    /// out in a `SignupRequested` event.
    pub async fn signup(&self, req: &SignupRequest) -> Result<SignupAccepted> {
        self.with_body(Method::POST, "/v1/signup", req).await
    }

    /// `POST /v1/signup/activate`: the new tenant and its first tenant key, this once.
    pub async fn signup_activate(&self, req: &ActivateRequest) -> Result<Activated> {
        self.with_body(Method::POST, "/v1/signup/activate", req).await
    }

    // Events and subscriptions.

    /// The event archive, oldest first.
    pub async fn event_list(&self, params: &EventListParams) -> Result<Page<Event>> {
        self.get("/v1/events", params).await
    }

    /// `POST /v1/subscriptions`: the signing secret is in the answer, this once.
    pub async fn subscription_create(&self, sub: &NewSubscription) -> Result<SubscriptionWithSecret> {
        self.with_body(Method::POST, "/v1/subscriptions", sub).await
    }

    pub async fn subscription_list(&self, page: &PageParams) -> Result<Page<Subscription>> {
        self.get("/v1/subscriptions", page).await
    }

    pub async fn subscription_get(&self, id: &str) -> Result<Subscription> {
        self.get(&format!("/v1/subscriptions/{}", segment(id)), NO_QUERY).await
    }

    pub async fn subscription_delete(&self, id: &str) -> Result<()> {
        self.delete(&format!("/v1/subscriptions/{}", segment(id))).await
    }

    /// `PATCH /v1/subscriptions/{id}`: replace the name, pattern or target given.
    pub async fn subscription_patch(&self, id: &str, patch: &SubscriptionPatch) -> Result<Subscription> {
        self.with_body(Method::PATCH, &format!("/v1/subscriptions/{}", segment(id)), patch).await
    }

    /// `POST /v1/subscriptions/{id}/rotate-secret`: the new secret is in the answer,
    /// this once; the old one signs beside it for 24 hours.
    pub async fn subscription_rotate_secret(&self, id: &str) -> Result<SubscriptionWithSecret> {
        self.without_body(Method::POST, &format!("/v1/subscriptions/{}/rotate-secret", segment(id))).await
    }

    /// A subscription's deliveries with their attempts, oldest first.
    pub async fn delivery_list(&self, id: &str, params: &DeliveryListParams) -> Result<Page<Delivery>> {
        self.get(&format!("/v1/subscriptions/{}/deliveries", segment(id)), params).await
    }

    /// `POST .../deliveries/{delivery_id}/retry`: queue a dead delivery again.
    pub async fn delivery_retry(&self, id: &str, delivery_id: &str) -> Result<Delivery> {
        let path = format!("/v1/subscriptions/{}/deliveries/{}/retry", segment(id), segment(delivery_id));
        self.without_body(Method::POST, &path).await
    }

    /// `POST /v1/subscriptions/{id}/replay`: deliver the archived events with
    /// `from <= time < to` (RFC 3339) that match again; answers `{"count": N}`.
    pub async fn subscription_replay(&self, id: &str, from: &str, to: &str) -> Result<serde_json::Value> {
        let body = serde_json::json!({"from": from, "to": to});
        self.with_body(Method::POST, &format!("/v1/subscriptions/{}/replay", segment(id)), &body).await
    }

    /// `POST /v1/events`: publish custom events (EventBridge's PutEvents body and answer).
    pub async fn events_put(&self, request: &serde_json::Value) -> Result<serde_json::Value> {
        self.with_body(Method::POST, "/v1/events", request).await
    }

    /// `POST /v1/events/test-pattern`: whether `event` matches `pattern` (`{"result": bool}`).
    pub async fn events_test_pattern(
        &self,
        pattern: &serde_json::Value,
        event: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        let body = serde_json::json!({"pattern": pattern, "event": event});
        self.with_body(Method::POST, "/v1/events/test-pattern", &body).await
    }

    // Audit.

    /// Audit records, oldest first (unsealed ones without `seq` and hashes).
    pub async fn audit_list(&self, params: &AuditListParams) -> Result<Page<AuditRecordView>> {
        self.get("/v1/audit", params).await
    }

    /// `GET /v1/audit/export`: sealed records as NDJSON, streamed.
    pub async fn audit_export(&self, params: &AuditExportParams) -> Result<AuditExport> {
        let res = self.request(Method::GET, "/v1/audit/export").query(params).send().await;
        let res = res.map_err(ClientError::unreachable)?;
        let status = res.status();
        if !status.is_success() {
            let body = res.bytes().await.unwrap_or_default();
            return Err(ClientError::from_problem(status, &body));
        }
        Ok(AuditExport { res })
    }

    /// `GET /v1/audit/verify`: the server's check of its sealed chain and checkpoint.
    pub async fn audit_verify(&self) -> Result<serde_json::Value> {
        self.get("/v1/audit/verify", NO_QUERY).await
    }

    /// `GET /v1/audit/verify?archive=true`: the chain and the Parquet archive in the
    /// blob store verified against it.
    pub async fn audit_verify_archive(&self) -> Result<serde_json::Value> {
        self.get("/v1/audit/verify", &[("archive", "true")]).await
    }

    /// `POST /v1/audit/exports`: an NDJSON export written to the blob store.
    pub async fn audit_export_create(&self, from: Option<&str>, to: Option<&str>) -> Result<serde_json::Value> {
        let body = serde_json::json!({"from": from, "to": to});
        self.with_body(Method::POST, "/v1/audit/exports", &body).await
    }

    // Queues.

    /// `PUT /v1/queues/{name}`: create a queue or change its settings.
    pub async fn queue_put(&self, name: &str, spec: &QueueSpec) -> Result<Queue> {
        self.with_body(Method::PUT, &format!("/v1/queues/{}", segment(name)), spec).await
    }

    pub async fn queue_list(&self, page: &PageParams) -> Result<Page<Queue>> {
        self.get("/v1/queues", page).await
    }

    /// A queue's settings and depth.
    pub async fn queue_get(&self, name: &str) -> Result<QueueInfo> {
        self.get(&format!("/v1/queues/{}", segment(name)), NO_QUERY).await
    }

    pub async fn queue_delete(&self, name: &str) -> Result<()> {
        self.delete(&format!("/v1/queues/{}", segment(name))).await
    }

    pub async fn queue_send(&self, name: &str, message: &SendMessage) -> Result<Sent> {
        self.with_body(Method::POST, &format!("/v1/queues/{}/messages", segment(name)), message).await
    }

    pub async fn queue_send_batch(&self, name: &str, batch: &SendBatch) -> Result<SentBatch> {
        self.with_body(Method::POST, &format!("/v1/queues/{}/messages/batch", segment(name)), batch).await
    }

    /// Receive messages (long polling up to `wait_s`).
    pub async fn queue_receive(&self, name: &str, req: &ReceiveRequest) -> Result<ReceivedMessages> {
        self.with_body(Method::POST, &format!("/v1/queues/{}/receive", segment(name)), req).await
    }

    /// Delete a received message by its receipt.
    pub async fn queue_ack(&self, name: &str, receipt: &str) -> Result<()> {
        self.delete(&format!("/v1/queues/{}/messages/{}", segment(name), segment(receipt))).await
    }

    /// `GET /v1/queues/{name}/messages`: the first `limit` messages, not received.
    pub async fn queue_peek(&self, name: &str, limit: Option<u32>) -> Result<tenancy_domain::api::PeekedMessages> {
        #[derive(Serialize)]
        struct Q {
            #[serde(skip_serializing_if = "Option::is_none")]
            limit: Option<u32>,
        }
        self.get(&format!("/v1/queues/{}/messages", segment(name)), &Q { limit }).await
    }

    pub async fn queue_ack_batch(&self, name: &str, batch: &DeleteBatch) -> Result<DeletedBatch> {
        self.with_body(Method::POST, &format!("/v1/queues/{}/messages/delete", segment(name)), batch).await
    }

    /// Move a dead-letter queue's messages back to their source queues.
    /// Change how long a received message stays invisible.
    pub async fn queue_change_visibility(&self, name: &str, receipt: &str, change: &VisibilityChange) -> Result<()> {
        let path = format!("/v1/queues/{}/messages/{}/visibility", segment(name), segment(receipt));
        self.call_empty(self.request(Method::POST, &path).json(change)).await
    }

    pub async fn queue_redrive(&self, name: &str) -> Result<Redriven> {
        self.without_body(Method::POST, &format!("/v1/queues/{}/redrive", segment(name))).await
    }

    // Provisioning hooks.

    /// `PUT /v1/hooks/{name}`: a new secret is in the answer, this once.
    pub async fn hook_put(&self, name: &str, spec: &HookSpec) -> Result<HookWithSecret> {
        self.with_body(Method::PUT, &format!("/v1/hooks/{}", segment(name)), spec).await
    }

    pub async fn hook_list(&self) -> Result<HookList> {
        self.get("/v1/hooks", NO_QUERY).await
    }

    pub async fn hook_get(&self, name: &str) -> Result<Hook> {
        self.get(&format!("/v1/hooks/{}", segment(name)), NO_QUERY).await
    }

    pub async fn hook_delete(&self, name: &str) -> Result<()> {
        self.delete(&format!("/v1/hooks/{}", segment(name))).await
    }

    // Reconciliation.

    /// The last pass, whichever replica made it (`None` before the first).
    pub async fn reconciliation_get(&self) -> Result<Option<ReconciliationReport>> {
        self.get("/v1/reconciliation", NO_QUERY).await
    }

    /// A pass now.
    pub async fn reconciliation_run(&self) -> Result<ReconciliationReport> {
        self.without_body(Method::POST, "/v1/reconciliation").await
    }

    /// Recreate a missing resource of the last pass by its drift id.
    pub async fn reconciliation_repair(&self, drift_id: &str) -> Result<Drift> {
        self.without_body(Method::POST, &format!("/v1/reconciliation/{}/repair", segment(drift_id))).await
    }

    // Storage.

    /// The tables' rows and bytes, and what the next prune removes (`GET /v1/storage`).
    pub async fn storage_report(&self) -> Result<StorageReport> {
        self.get("/v1/storage", NO_QUERY).await
    }

    // State machines, executions and task tokens.

    /// `PUT /v1/state-machines/{name}`: create it or add a version.
    pub async fn state_machine_put(&self, name: &str, spec: &StateMachineSpec) -> Result<StateMachineView> {
        self.with_body(Method::PUT, &format!("/v1/state-machines/{}", segment(name)), spec).await
    }

    pub async fn state_machine_list(&self, page: &PageParams) -> Result<Page<StateMachineView>> {
        self.get("/v1/state-machines", page).await
    }

    pub async fn state_machine_get(&self, name: &str) -> Result<StateMachineView> {
        self.get(&format!("/v1/state-machines/{}", segment(name)), NO_QUERY).await
    }

    pub async fn execution_start(&self, start: &StartExecution) -> Result<ExecutionView> {
        self.with_body(Method::POST, "/v1/executions", start).await
    }

    pub async fn execution_list(&self, params: &ExecutionListParams) -> Result<Page<ExecutionView>> {
        self.get("/v1/executions", params).await
    }

    pub async fn execution_get(&self, id: &str) -> Result<ExecutionView> {
        self.get(&format!("/v1/executions/{}", segment(id)), NO_QUERY).await
    }

    /// An execution's history events, oldest first.
    pub async fn execution_history(&self, id: &str, page: &PageParams) -> Result<Page<HistoryEventView>> {
        self.get(&format!("/v1/executions/{}/history", segment(id)), page).await
    }

    pub async fn execution_stop(&self, id: &str, stop: &StopExecution) -> Result<ExecutionView> {
        self.with_body(Method::POST, &format!("/v1/executions/{}/stop", segment(id)), stop).await
    }

    /// Resume a FAILED execution from the step that failed it.
    pub async fn execution_redrive(&self, id: &str) -> Result<ExecutionView> {
        self.without_body(Method::POST, &format!("/v1/executions/{}/redrive", segment(id))).await
    }

    /// Report a waiting task's success through its task token.
    pub async fn task_success(&self, token: &str, success: &TaskSuccess) -> Result<()> {
        let req = self.request(Method::POST, &format!("/v1/task-tokens/{}/success", segment(token))).json(success);
        self.call_empty(req).await
    }

    /// Report that a waiting task is still working (pushes its heartbeat deadline).
    pub async fn task_heartbeat(&self, token: &str) -> Result<()> {
        let req = self.request(Method::POST, &format!("/v1/task-tokens/{}/heartbeat", segment(token)));
        self.call_empty(req).await
    }

    /// Report a waiting task's failure through its task token.
    pub async fn task_failure(&self, token: &str, failure: &TaskFailure) -> Result<()> {
        let req = self.request(Method::POST, &format!("/v1/task-tokens/{}/failure", segment(token))).json(failure);
        self.call_empty(req).await
    }

    // Rollouts.

    /// `POST /v1/rollouts`: start a rollout.
    pub async fn rollout_start(&self, req: &RolloutRequest) -> Result<RolloutStarted> {
        self.with_body(Method::POST, "/v1/rollouts", req).await
    }

    pub async fn rollout_get(&self, id: &str) -> Result<Rollout> {
        self.get(&format!("/v1/rollouts/{}", segment(id)), NO_QUERY).await
    }

    pub async fn rollout_list(&self) -> Result<RolloutList> {
        self.get("/v1/rollouts", NO_QUERY).await
    }

    /// `POST /v1/rollouts/{id}/{op}` with `op` one of `pause`, `resume`, `abort`.
    pub async fn rollout_operate(&self, id: &str, op: &str) -> Result<Rollout> {
        let req = self.request(Method::POST, &format!("/v1/rollouts/{}/{}", segment(id), segment(op)));
        self.call(req).await
    }

    // Releases.

    /// `PUT /v1/releases/{version}`: create or replace a release.
    pub async fn release_put(&self, version: &str, spec: &ReleaseSpec) -> Result<Release> {
        self.with_body(Method::PUT, &format!("/v1/releases/{}", segment(version)), spec).await
    }

    pub async fn release_get(&self, version: &str) -> Result<Release> {
        self.get(&format!("/v1/releases/{}", segment(version)), NO_QUERY).await
    }

    pub async fn release_list(&self) -> Result<ReleaseList> {
        self.get("/v1/releases", NO_QUERY).await
    }

    /// `PUT /v1/releases/{version}/bundle`: uploads `body` (a `tokio::fs::File` streams)
    /// as the release's bundle.
    pub async fn release_bundle_put(
        &self,
        version: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<Release> {
        let req = self
            .request(Method::PUT, &format!("/v1/releases/{}/bundle", segment(version)))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.call(req).await
    }

    /// `GET /v1/releases/{version}/bundle`, streamed.
    pub async fn release_bundle_get(&self, version: &str) -> Result<BundleDownload> {
        let req = self.request(Method::GET, &format!("/v1/releases/{}/bundle", segment(version)));
        let res = req.send().await.map_err(ClientError::unreachable)?;
        let status = res.status();
        if !status.is_success() {
            let body = res.bytes().await.map_err(ClientError::unreachable)?;
            return Err(ClientError::from_problem(status, &body));
        }
        Ok(BundleDownload { res })
    }

    /// `PUT /v1/tenants/{id}/pin`.
    pub async fn tenant_pin(&self, id: &str, reason: &str) -> Result<Tenant> {
        let body = PinRequest { reason: reason.to_owned() };
        self.with_body(Method::PUT, &format!("/v1/tenants/{}/pin", segment(id)), &body).await
    }

    /// `DELETE /v1/tenants/{id}/pin`.
    pub async fn tenant_unpin(&self, id: &str) -> Result<Tenant> {
        self.without_body(Method::DELETE, &format!("/v1/tenants/{}/pin", segment(id))).await
    }

    /// `POST /v1/tenants/{id}/upgrade`: the upgrade runs in the background.
    pub async fn tenant_upgrade(&self, id: &str, req: &UpgradeRequest) -> Result<TenantOperation> {
        self.with_body(Method::POST, &format!("/v1/tenants/{}/upgrade", segment(id)), req).await
    }

    // Functions.

    /// `PUT /v1/functions/{name}`: the signing secret is in the answer that created it.
    pub async fn function_put(&self, name: &str, spec: &FunctionSpec) -> Result<FunctionWithSecret> {
        self.with_body(Method::PUT, &format!("/v1/functions/{}", segment(name)), spec).await
    }

    pub async fn function_list(&self) -> Result<FunctionList> {
        self.get("/v1/functions", NO_QUERY).await
    }

    pub async fn function_get(&self, name: &str) -> Result<Function> {
        self.get(&format!("/v1/functions/{}", segment(name)), NO_QUERY).await
    }

    pub async fn function_delete(&self, name: &str) -> Result<()> {
        self.delete(&format!("/v1/functions/{}", segment(name))).await
    }

    // Policies: operators' Cedar authorization policies.

    pub async fn policy_put(&self, name: &str, spec: &PolicySpec) -> Result<Policy> {
        self.with_body(Method::PUT, &format!("/v1/policies/{}", segment(name)), spec).await
    }

    pub async fn policy_list(&self) -> Result<PolicyList> {
        self.get("/v1/policies", NO_QUERY).await
    }

    pub async fn policy_get(&self, name: &str) -> Result<Policy> {
        self.get(&format!("/v1/policies/{}", segment(name)), NO_QUERY).await
    }

    pub async fn policy_delete(&self, name: &str) -> Result<()> {
        self.delete(&format!("/v1/policies/{}", segment(name))).await
    }

    pub async fn policy_check(&self, check: &PolicyCheck) -> Result<PolicyDecision> {
        self.with_body(Method::POST, "/v1/policies/check", check).await
    }

    // Connections: metadata only comes back, never the credential.

    pub async fn connection_put(&self, name: &str, spec: &ConnectionSpec) -> Result<Connection> {
        self.with_body(Method::PUT, &format!("/v1/connections/{}", segment(name)), spec).await
    }

    pub async fn connection_list(&self) -> Result<ConnectionList> {
        self.get("/v1/connections", NO_QUERY).await
    }

    pub async fn connection_get(&self, name: &str) -> Result<Connection> {
        self.get(&format!("/v1/connections/{}", segment(name)), NO_QUERY).await
    }

    pub async fn connection_delete(&self, name: &str) -> Result<()> {
        self.delete(&format!("/v1/connections/{}", segment(name))).await
    }

    // Secrets: a tenant's (`Some(tenant)`) or the platform's (`None`).

    fn secret_path(tenant: Option<&str>, name: Option<&str>) -> String {
        let base = match tenant {
            Some(t) => format!("/v1/tenants/{}/secrets", segment(t)),
            None => "/v1/secrets".to_owned(),
        };
        match name {
            Some(n) => format!("{base}/{}", segment(n)),
            None => base,
        }
    }

    /// `PUT .../secrets/{name}`: a new version (the secret when it is new).
    pub async fn secret_put(
        &self,
        tenant: Option<&str>,
        name: &str,
        body: &tenancy_domain::secret::SecretPut,
    ) -> Result<tenancy_domain::secret::SecretMeta> {
        self.with_body(Method::PUT, &Client::secret_path(tenant, Some(name)), body).await
    }

    /// A secret's value: current, or the version of `stage` or `version`.
    pub async fn secret_get(
        &self,
        tenant: Option<&str>,
        name: &str,
        stage: Option<&str>,
        version: Option<i64>,
    ) -> Result<tenancy_domain::secret::SecretValue> {
        #[derive(Serialize)]
        struct Q<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            stage: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            version: Option<i64>,
        }
        self.get(&Client::secret_path(tenant, Some(name)), &Q { stage, version }).await
    }

    /// Secrets' metadata, never values.
    pub async fn secret_list(
        &self,
        tenant: Option<&str>,
        page: &PageParams,
    ) -> Result<Page<tenancy_domain::secret::SecretMeta>> {
        self.get(&Client::secret_path(tenant, None), page).await
    }

    /// Schedules a deletion (the secret with its `purge_at`), or deletes at once with
    /// `force` (`None`).
    pub async fn secret_delete(
        &self,
        tenant: Option<&str>,
        name: &str,
        recovery_days: Option<u32>,
        force: bool,
    ) -> Result<Option<tenancy_domain::secret::SecretMeta>> {
        #[derive(Serialize)]
        struct Q {
            #[serde(skip_serializing_if = "Option::is_none")]
            recovery_days: Option<u32>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            force: bool,
        }
        let req =
            self.request(Method::DELETE, &Client::secret_path(tenant, Some(name))).query(&Q { recovery_days, force });
        let (status, body) = self.send(req).await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        serde_json::from_slice(&body).map(Some).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Cancels a scheduled deletion.
    pub async fn secret_restore(&self, tenant: Option<&str>, name: &str) -> Result<tenancy_domain::secret::SecretMeta> {
        self.without_body(Method::POST, &format!("{}/restore", Client::secret_path(tenant, Some(name)))).await
    }

    /// `POST .../secrets/{name}/rotate`: starts a rotation (its execution id).
    pub async fn secret_rotate(
        &self,
        tenant: Option<&str>,
        name: &str,
    ) -> Result<tenancy_domain::secret::RotationStarted> {
        self.without_body(Method::POST, &format!("{}/rotate", Client::secret_path(tenant, Some(name)))).await
    }

    // Quotas.

    /// Every quota of the tenant's plan with its usage.
    pub async fn quota_list(&self, tenant: &str) -> Result<QuotaList> {
        self.get(&format!("/v1/tenants/{}/quotas", segment(tenant)), NO_QUERY).await
    }

    /// Consume from one quota: a hard quota over its limit is `quota-exceeded` (429).
    pub async fn quota_consume(&self, tenant: &str, name: &str, body: &QuotaConsume) -> Result<QuotaGranted> {
        let path = format!("/v1/tenants/{}/quotas/{}/consume", segment(tenant), segment(name));
        self.with_body(Method::POST, &path, body).await
    }

    /// Consume from several quotas, all or nothing.
    pub async fn quota_consume_batch(&self, tenant: &str, body: &QuotaConsumeBatch) -> Result<QuotaBatchGranted> {
        self.with_body(Method::POST, &format!("/v1/tenants/{}/quotas/consume", segment(tenant)), body).await
    }

    /// Give back usage of a quota (never below 0).
    pub async fn quota_release(&self, tenant: &str, name: &str, body: &QuotaRelease) -> Result<QuotaUsage> {
        let path = format!("/v1/tenants/{}/quotas/{}/release", segment(tenant), segment(name));
        self.with_body(Method::POST, &path, body).await
    }

    // Entitlements.

    pub async fn overrides_put(
        &self,
        tenant_id: &str,
        spec: &tenancy_domain::entitlements::OverridesSpec,
    ) -> Result<tenancy_domain::entitlements::Overrides> {
        self.with_body(Method::PUT, &format!("/v1/tenants/{}/overrides", segment(tenant_id)), spec).await
    }

    pub async fn overrides_get(&self, tenant_id: &str) -> Result<tenancy_domain::entitlements::Overrides> {
        self.get(&format!("/v1/tenants/{}/overrides", segment(tenant_id)), NO_QUERY).await
    }

    pub async fn overrides_clear(&self, tenant_id: &str) -> Result<()> {
        self.delete(&format!("/v1/tenants/{}/overrides", segment(tenant_id))).await
    }

    pub async fn entitlements_get(&self, tenant_id: &str) -> Result<tenancy_domain::entitlements::Entitlements> {
        self.get(&format!("/v1/tenants/{}/entitlements", segment(tenant_id)), NO_QUERY).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let c = Client::new("http://h/", Some("tny_secret".into()));
        assert!(!format!("{c:?}").contains("tny_secret"));
        assert_eq!(c.base(), "http://h");
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("abc-DEF_1.2~"), "abc-DEF_1.2~");
        assert_eq!(segment("a/b+c="), "a%2Fb%2Bc%3D");
    }

    #[test]
    fn problems_carry_their_code() {
        let body = br#"{"type":"https://tenancy.dev/problems/not-found","title":"Not Found","status":404,"detail":"tenant \"x\" not found","code":"not-found"}"#;
        let e = ClientError::from_problem(StatusCode::NOT_FOUND, body);
        assert_eq!(e.code(), Some(ErrorCode::NotFound));
        assert_eq!(e.to_string(), "tenant \"x\" not found (not-found, HTTP 404)");
        let e = ClientError::from_problem(StatusCode::BAD_GATEWAY, b"<html>");
        assert_eq!(e.code(), None);
        assert_eq!(e.to_string(), "Bad Gateway (http-error, HTTP 502)");
    }
}
