//! Request and response bodies of the v1 API that are not records of their own: an
//! operation's answer (a tenant with the execution it started, a resource with its
//! secret shown once), a list wrapper, an action's body. The server (`tenancy-app`,
//! `tenancy-http`) and the typed client (`tenancy-client`) share them, so the wire
//! shape is written once; the server re-exports each where it used to be defined.
//! Their schemas (utoipa) are the server's OpenAPI document's.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::apikey::Role;
use crate::function::Function;
use crate::hook::Hook;
use crate::plan::Isolation;
use crate::queue::{Message, SendMessage, Sent};
use crate::subscription::Subscription;
use crate::tenant::Tenant;
use crate::time::Timestamp;

// Errors.

/// A problem document (`application/problem+json`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `https://tenancy.dev/problems/<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `not-found`, `invalid-body`.
    pub code: String,
    /// `entitlement-violation` only: each hard quota the tenant's usage is over on the
    /// plan it would move to (an RFC 9457 extension member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<Vec<crate::entitlements::QuotaViolation>>,
}

// Tenants.

/// A tenant and the id of the execution that carries out the operation started on it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantOperation {
    #[serde(flatten)]
    pub tenant: Tenant,
    pub execution_id: Option<String>,
}

/// The body of `POST /v1/tenants/{id}/plan`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanChange {
    pub plan: String,
    /// Move even when the tenant's usage is over a hard quota of the new plan (else
    /// 409 `entitlement-violation`); the audit record notes it. The plan's
    /// availability (regions, `max_tenants`) and the `validate` hooks still apply.
    #[serde(default)]
    pub force: bool,
}

// API keys.

/// A new API key with its plaintext `key`, shown this once.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub tenant_id: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// The key's own API rate limit; absent: its role's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::ratelimit::RateLimit>,
    /// Labels policies can match (`principal.labels`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The region policies can scope the key to (`principal.region`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// After a rotation: until when the secret it replaced still works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<Timestamp>,
    /// The key itself. It is stored only as a hash and cannot be shown again.
    pub key: String,
}

// Queues.

/// The body of `POST /v1/queues/{name}/receive`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveRequest {
    /// Most messages to return (1-100, default 1).
    #[serde(default)]
    pub max: Option<u32>,
    /// Seconds to wait for a message when none is visible (0-20, default 0).
    #[serde(default)]
    pub wait_s: Option<u64>,
}

/// Peeked messages (`GET /v1/queues/{name}/messages`): the first of the queue in send
/// order, none received.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeekedMessages {
    pub messages: Vec<crate::queue::PeekedMessage>,
}

/// Received messages.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReceivedMessages {
    pub messages: Vec<Message>,
}

/// The body of `POST /v1/queues/{name}/messages/batch`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBatch {
    /// 1-100 messages, enqueued in order in one transaction.
    pub entries: Vec<SendMessage>,
}

/// The result of a batch send, in the order of the entries.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SentBatch {
    pub messages: Vec<Sent>,
}

/// The body of `POST /v1/queues/{name}/messages/delete`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteBatch {
    /// 1-100 receipts.
    pub receipts: Vec<String>,
}

/// The result of a batch delete.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeletedBatch {
    pub deleted: Vec<String>,
    /// Receipts that named no message (deleted already, or stale: received again since).
    pub not_found: Vec<String>,
}

/// The body of `POST /v1/queues/{name}/messages/{receipt}/visibility`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisibilityChange {
    /// Seconds from now until the message is visible again (0: at once; at most 43200).
    pub visibility_timeout_s: u64,
}

/// The result of a redrive.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Redriven {
    pub moved: u64,
}

// Provisioning hooks and tenant resources.

/// Every hook.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HookList {
    pub items: Vec<Hook>,
}

/// A hook, with its signing secret when this response is the one that shows it: the
/// `PUT` that created the hook (or gave an older hook its first secret), or one with
/// `rotate_secret`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HookWithSecret {
    #[serde(flatten)]
    pub hook: Hook,
    /// `whsec_...`: shown this once; receivers verify the `webhook-signature` of every
    /// call with it (Standard Webhooks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A resource a lifecycle workflow created for a tenant (`GET /v1/tenants/{id}/resources`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantResourceView {
    /// `namespace`, `database`, `defaults`, ...
    pub kind: String,
    #[schema(value_type = Object)]
    pub detail: Value,
    pub created_at: Timestamp,
    /// For a tenant's database: what the provisioner sees now (drift shows here).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub observed: Option<Value>,
}

/// The resources of a tenant.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantResources {
    pub items: Vec<TenantResourceView>,
}

// Reconciliation.

/// One difference between what tenants need and what exists.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Drift {
    /// Stable id of this drift (the same in every pass while it lasts), for
    /// `POST /v1/reconciliation/{id}/repair`.
    #[serde(default)]
    pub id: String,
    /// The tenant concerned; `null` for an extra database that belongs to no tenant.
    pub tenant_id: Option<String>,
    /// The resource kind: `database` (a silo database), `schema` (a pool tenant's
    /// schema), `role` (a login) or `record` (a tenant resource record).
    pub resource: String,
    /// What is wrong: `missing` or `extra`.
    pub problem: String,
    /// Whether this pass recreated it (missing resources of the kinds of
    /// `--reconcile-repair`); `false` for extras, which are never deleted.
    pub repaired: bool,
    /// Whether an operator can have it recreated (`POST
    /// /v1/reconciliation/{id}/repair`): missing resources that were not repaired.
    #[serde(default)]
    pub repairable: bool,
    /// Why the repair failed, when it did.
    pub error: Option<String>,
    /// The isolation model of the database concerned.
    pub isolation: Option<Isolation>,
    /// The provisioner's key: a directory name, a database, a schema, a role, or the
    /// kind of a missing record.
    pub key: Option<String>,
    /// Where it is (a path or URL without credentials).
    pub location: Option<String>,
    /// Why an extra is extra: `no tenant`, `tenant offboarded`, `plan is pool`, `plan is silo`.
    pub reason: Option<String>,
    /// For a missing database or schema: the newest export of the tenant's data in the
    /// blob store written since the tenant was created (an offboarding's
    /// `database.<engine>` or a plan change's `exports/...`), to restore it from.
    #[serde(default)]
    pub restore_from: Option<String>,
    /// When that export was written.
    #[serde(default)]
    pub restore_from_at: Option<Timestamp>,
}

/// The result of one reconciliation pass.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReconciliationReport {
    /// The replica that made the pass (its `--node-id`).
    pub node: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// Active and suspended tenants whose databases were observed.
    pub tenants_checked: u64,
    pub drift: Vec<Drift>,
}

// Connections.

/// `GET /v1/connections`: every connection by name (metadata only).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionList {
    pub items: Vec<crate::connection::Connection>,
}

// Functions.

/// Every function.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionList {
    pub items: Vec<Function>,
}

/// A function with its signing secret: the answer of the `PUT` that created it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionWithSecret {
    #[serde(flatten)]
    pub function: Function,
    /// `whsec_...`: in the response that created the function only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

// Subscriptions.

/// A subscription with its signing secret, returned by create and rotate only.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubscriptionWithSecret {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// `whsec_...`: shown this once.
    pub secret: Option<String>,
}

// State machines, executions and task tokens.

/// `PUT /v1/state-machines/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateMachineSpec {
    /// The Amazon States Language definition.
    #[schema(value_type = Object)]
    pub definition: Value,
    /// How many days this state machine's finished executions and their history are
    /// kept (0 to 36500), instead of the server's `--execution-retention`. Absent: the
    /// server's. A PUT sets it as sent (absent clears it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// A state machine version.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StateMachineView {
    pub name: String,
    pub version: i64,
    #[schema(value_type = Object)]
    pub definition: Value,
    pub created_at: Timestamp,
    /// Its own retention of finished executions in days, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// `GET /v1/storage`: the control plane's tables and what the next prune removes.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StorageReport {
    pub tables: Vec<TableStorage>,
    /// The server's retention of finished executions, in days (`--execution-retention`).
    pub execution_retention_days: u32,
    /// The server's retention of events and finished deliveries, in days.
    pub event_retention_days: u32,
    /// Every state machine with a retention of its own, by name, in days.
    pub state_machine_retention: std::collections::BTreeMap<String, u32>,
}

/// One table in a [`StorageReport`].
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TableStorage {
    pub table: String,
    pub rows: u64,
    /// Bytes with its indexes (PostgreSQL's `pg_total_relation_size`, SQLite's `dbstat`
    /// pages); `null` where the engine cannot tell.
    pub bytes: Option<u64>,
    /// Rows a prune run now would delete (0 for tables it never prunes, such as the
    /// audit log).
    pub next_prune_rows: u64,
}

/// `POST /v1/executions`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartExecution {
    pub state_machine: String,
    /// The execution's input (default `{}`; at most 256 KiB of JSON, else 400
    /// `data-limit-exceeded`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input: Option<Value>,
    /// Unique per state machine: starting a name again returns that execution.
    pub name: Option<String>,
    /// The tenant the execution acts for: an existing tenant (else 400
    /// `unknown-tenant`). A start beyond the caps on RUNNING executions of the state
    /// machine or the tenant is 429 `too-many-requests`.
    pub tenant_id: Option<String>,
}

/// An execution.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionView {
    pub id: String,
    pub name: String,
    pub state_machine: String,
    pub version: i64,
    pub tenant_id: Option<String>,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
    pub status: String,
    #[schema(value_type = Object)]
    pub input: Value,
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub redrive_count: i64,
    pub started_at: Timestamp,
    pub stopped_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// One history event, with Step Functions' type names.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEventView {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: Option<String>,
    #[schema(value_type = Object)]
    pub details: Value,
    pub timestamp: Timestamp,
}

/// `POST /v1/executions/{id}/stop`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopExecution {
    pub error: Option<String>,
    pub cause: Option<String>,
}

/// `POST /v1/task-tokens/{token}/success`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSuccess {
    #[schema(value_type = Object)]
    pub output: Value,
}

/// `POST /v1/task-tokens/{token}/failure`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskFailure {
    pub error: Option<String>,
    pub cause: Option<String>,
}

// Quotas.

/// The body of `POST /v1/tenants/{id}/quotas/{name}/consume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaConsume {
    /// At least 1.
    pub amount: u64,
    /// A repeat with the same key counts once and answers as the first time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// The body of `POST /v1/tenants/{id}/quotas/consume`: several quotas, all or nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaConsumeBatch {
    /// Quota name to amount (each at least 1).
    pub items: std::collections::BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// The body of `POST /v1/tenants/{id}/quotas/{name}/release`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaRelease {
    /// At least 1.
    pub amount: u64,
}

/// A granted consume of one quota: `allowed` is always true (a refusal is 429
/// `quota-exceeded`); a soft quota may be over (`used > limit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaGranted {
    pub allowed: bool,
    #[serde(flatten)]
    pub usage: crate::quota::QuotaUsage,
}

/// A granted batch: every quota's usage after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaBatchGranted {
    pub allowed: bool,
    pub items: Vec<crate::quota::QuotaUsage>,
}

/// `GET /v1/tenants/{id}/quotas`: every quota of the tenant's plan, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaList {
    pub items: Vec<crate::quota::QuotaUsage>,
}
