//! The one application error type and the one list of error codes.
//!
//! [`ErrorCode`] is the only source of the stable machine-readable `code` a problem
//! carries: every error is built with one of its variants, and docs/api.md's error
//! table is generated from it (a test fails when they differ). Each code belongs to
//! one HTTP status, given as a number; the `http` crate turns an error into an
//! RFC 9457 problem document.

/// Declares [`ErrorCode`]: each variant with its wire string, HTTP status and doc line.
macro_rules! error_codes {
    ($($variant:ident = ($code:literal, $status:literal, $doc:literal),)*) => {
        /// A stable machine-readable error code: the `code` of a problem document.
        ///
        /// The only source of codes. `as_str` is the wire format and never changes for
        /// an existing variant; docs/api.md's error table is generated from `ALL`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $(#[doc = $doc] $variant,)*
        }

        impl ErrorCode {
            /// Every code, in the order of docs/api.md's table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code on the wire, e.g. `invalid-transition`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The code of a wire string (`None` for a code this build does not know).
            pub fn parse(code: &str) -> Option<ErrorCode> {
                ErrorCode::ALL.iter().copied().find(|c| c.as_str() == code)
            }

            /// The HTTP status of a problem with this code.
            pub const fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }

            /// One line on what the code means, as docs/api.md shows it.
            pub const fn description(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $doc,)*
                }
            }
        }
    };
}

error_codes! {
    InvalidRequest = ("invalid-request", 400, "The request breaks a rule no more specific code names; also a NUL character anywhere: `%00` in the path or query, `\\u0000` in the body."),
    MalformedJson = ("malformed-json", 400, "The request body is not valid JSON."),
    InvalidBody = ("invalid-body", 400, "The request body does not fit the operation's schema; the detail names the offending field."),
    InvalidPath = ("invalid-path", 400, "A path parameter does not parse."),
    InvalidQuery = ("invalid-query", 400, "A query parameter does not parse, or is unknown."),
    InvalidHeader = ("invalid-header", 400, "A header does not parse (`If-Match`, `Idempotency-Key`)."),
    UnknownPlan = ("unknown-plan", 400, "A tenant names a plan that does not exist."),
    UnknownTenant = ("unknown-tenant", 400, "A request names a tenant that does not exist (or is offboarded)."),
    InvalidQueueName = ("invalid-queue-name", 400, "A queue name breaks the naming rules."),
    InvalidQueueSettings = ("invalid-queue-settings", 400, "A queue's settings are out of range or inconsistent."),
    UnknownQueue = ("unknown-queue", 400, "A request names a queue that does not exist."),
    InvalidBatch = ("invalid-batch", 400, "A batch of queue messages or receipts is empty or over the batch limit."),
    InvalidReceipt = ("invalid-receipt", 400, "A queue message receipt is malformed."),
    MessageTooLarge = ("message-too-large", 400, "A queue message body is over the size limit."),
    InvalidMessageAttributes = ("invalid-message-attributes", 400, "A queue message's attributes are over the count or size limits, or a name is malformed."),
    InvalidUrl = ("invalid-url", 400, "A URL is invalid: a subscription, hook, function or HTTP target."),
    InvalidPattern = ("invalid-pattern", 400, "An event pattern is invalid."),
    InvalidHook = ("invalid-hook", 400, "A hook is invalid; also one with both or neither of `url` and `queue`, a queue hook with `mode: \"sync\"` or `rotate_secret`."),
    InvalidFunction = ("invalid-function", 400, "A function's name or `timeout_s` is invalid."),
    UnsupportedConnection = ("unsupported-connection", 400, "A function's `connection`: connections do not exist yet."),
    InvalidConnection = ("invalid-connection", 400, "A connection's name, auth or description is invalid; also a hook or subscription naming a connection that does not exist, and any request through `/v1/secrets` for the platform secrets `connection.*` that hold connections' credentials."),
    InvalidRotation = ("invalid-rotation", 400, "A secret's rotation spec is invalid (schedule, target), or a rotation of a secret with no generator."),
    InvalidSecret = ("invalid-secret", 400, "A secret's name, generator or recovery window is invalid, or a put with both or neither of `value` and `generate`."),
    InvalidRelease = ("invalid-release", 400, "A release version breaks the naming rules (1-64 of `A-Za-z0-9._+-`), a release's fields are invalid, or an upgrade names a release that does not exist."),
    InvalidPolicy = ("invalid-policy", 400, "A policy's name is invalid, or its Cedar text does not parse or does not validate against the schema; the detail names the line and column (docs/policies.md)."),
    InvalidRollout = ("invalid-rollout", 400, "A rollout's selector or strategy is invalid (wave sizes, concurrency, tolerated failure percent, bake time) (docs/releases.md, \"Rollouts\")."),
    InvalidDefinition = ("invalid-definition", 400, "An ASL definition is invalid; the detail names the state."),
    UnknownStateMachine = ("unknown-state-machine", 400, "A request names a state machine that does not exist; also a plan's `workflows` naming one."),
    InvalidPlanWorkflow = ("invalid-plan-workflow", 400, "A plan's `workflows` names a state machine outside `tenancy.lifecycle.`."),
    ReservedName = ("reserved-name", 400, "The `tenancy.` state machines: a user cannot name or start one; admins name their lifecycle state machines `tenancy.lifecycle.*`, which only the lifecycle starts."),
    ReservedResource = ("reserved-resource", 400, "The built-in `tenancy:` lifecycle task resources in a definition other than a lifecycle one."),
    UnknownResource = ("unknown-resource", 400, "A Task resource no handler serves; the detail names the state and the resource."),
    UnknownFunction = ("unknown-function", 400, "A Task names a function that is not registered; the detail names the state and the function."),
    ReservedEventSource = ("reserved-event-source", 400, "The `tenancy` event source is reserved for Tenancy's own events."),
    ActivationInvalid = ("activation-invalid", 400, "A sign-up activation token that is unknown, already used or expired; the detail says when it expired, while it is still stored (docs/self-service.md)."),
    DataLimitExceeded = ("data-limit-exceeded", 400, "A workflow input or output is over 256 KiB."),
    Unauthenticated = ("unauthenticated", 401, "Missing or invalid credentials."),
    KeyExpired = ("key-expired", 401, "An API key presented with its right secret after its `expires_at` (a wrong or unknown key stays `unauthenticated`)."),
    Forbidden = ("forbidden", 403, "The caller's role does not allow the operation."),
    NotFound = ("not-found", 404, "The resource, or the route, does not exist."),
    MethodNotAllowed = ("method-not-allowed", 405, "The route does not take this method."),
    AlreadyExists = ("already-exists", 409, "A resource with this id already exists."),
    InvalidTransition = ("invalid-transition", 409, "The tenant's status does not allow this lifecycle transition."),
    TenantNotActive = ("tenant-not-active", 409, "A quota consumed or released for a tenant that is not active (or updating)."),
    PlanInUse = ("plan-in-use", 409, "Deleting a plan, or changing its isolation, while tenants hold it."),
    PlanUnavailable = ("plan-unavailable", 409, "A tenant created on, or moved to, a plan not offered in its region (the detail names the region and the plan's regions) or holding its `max_tenants` already (docs/entitlements.md)."),
    EntitlementViolation = ("entitlement-violation", 409, "A plan change the tenant's current usage does not fit: `violations` lists each hard quota over the new limit as `{quota, used, limit}`; nothing changed (send `force: true` to move anyway)."),
    Conflict = ("conflict", 409, "The request conflicts with the current state in a way no more specific code names."),
    IdempotencyKeyInUse = ("idempotency-key-in-use", 409, "A request with this `Idempotency-Key` is still in progress."),
    QueueInUse = ("queue-in-use", 409, "Deleting a queue that is another queue's dead-letter queue."),
    NoDatabaseCredentials = ("no-database-credentials", 409, "The tenant has no database logins (the SQLite data plane has none)."),
    ExecutionNotRunning = ("execution-not-running", 409, "The execution is not running (stopping it, or sending it a task result)."),
    NotRedrivable = ("not-redrivable", 409, "Only a FAILED execution that got past its first step, and not at the history limit, can be redriven."),
    DeliveryNotDead = ("delivery-not-dead", 409, "A retry of a delivery that has not failed for good."),
    RetentionNotPassed = ("retention-not-passed", 409, "A purge of an offboarded tenant before its export retention has passed; says from when."),
    DriftGone = ("drift-gone", 409, "A repair of drift that is no longer there."),
    DriftNotRepairable = ("drift-not-repairable", 409, "A repair of an extra, which Tenancy never deletes."),
    ExecutionMoved = ("execution-moved", 409, "Internal, never in a response: an execution changed under a request, which then retries."),
    DriftReported = ("drift-reported", 409, "Internal, never in a response: the store's marker of drift reported before."),
    ConnectionInUse = ("connection-in-use", 409, "Deleting a connection that hooks or webhook subscriptions name; the detail lists them."),
    SecretDeleted = ("secret-deleted", 409, "The secret is scheduled for deletion: reads and puts are refused until it is restored (`POST .../restore`) or purged; the detail says when."),
    RotationInProgress = ("rotation-in-progress", 409, "A rotation of the secret is already running; the detail names its execution."),
    SecretNotDeleted = ("secret-not-deleted", 409, "A restore of a secret that is not scheduled for deletion."),
    TenantPinned = ("tenant-pinned", 409, "An upgrade of a tenant pinned to its release (`PUT /v1/tenants/{id}/pin`); send `force: true` to upgrade it anyway (docs/releases.md)."),
    LifecycleEndsAtStart = ("lifecycle-ends-at-start", 409, "A tenant operation whose lifecycle state machine (a plan's or a release's own) would end at its first step, before any task, so it could never settle the tenant: nothing changed; the detail names the machine and its end."),
    RolloutConflict = ("rollout-conflict", 409, "A rollout would take tenants that a running, paused or halted rollout holds; abort that one or leave its tenants out."),
    PreconditionFailed = ("precondition-failed", 412, "`If-Match` did not match the current version."),
    PayloadTooLarge = ("payload-too-large", 413, "A body over 1 MiB, whichever layer notices; a secret value over 64 KiB; a release bundle over the server's bundle limit (512 MiB by default)."),
    UnsupportedMediaType = ("unsupported-media-type", 415, "A request body that is not `application/json`."),
    IdempotencyKeyReused = ("idempotency-key-reused", 422, "A repeated `Idempotency-Key` carried a different request."),
    ValidationRefused = ("validation-refused", 422, "A `validate` hook refused the tenant create or plan change; the detail carries its reason, and nothing changed (docs/entitlements.md)."),
    TooManyRequests = ("too-many-requests", 429, "Running executions over a cap (docs/workflows.md)."),
    QuotaExceeded = ("quota-exceeded", 429, "A consume over a hard quota's limit; the detail names the quota, and nothing was consumed (docs/entitlements.md)."),
    RateLimited = ("rate-limited", 429, "The API key's or its tenant's request rate is over its limit; `Retry-After` says when to retry (docs/rate-limits.md)."),
    Internal = ("internal", 500, "An internal error; details only in the log, under the request id."),
    BundleIntegrity = ("bundle-integrity", 500, "A release bundle's bytes read back from the blob store do not match the SHA-256 (or size) recorded at upload: nothing corrupt is served (docs/releases.md)."),
    Unavailable = ("unavailable", 503, "A dependency (the store) is unreachable or overloaded; retrying may succeed."),
    HookUnavailable = ("hook-unavailable", 503, "A `validate` hook could not be asked (unreachable, timed out, refused by the outbound policy, or an answer other than a 2xx with a JSON object): the tenant create or plan change fails closed and nothing changed; the detail names the hook."),
}

impl ErrorCode {
    /// Internal codes never leave the server: a caller inside it handles them.
    pub fn is_internal(self) -> bool {
        matches!(self, ErrorCode::ExecutionMoved | ErrorCode::DriftReported)
    }

    /// docs/api.md's error table, generated from [`ErrorCode::ALL`].
    pub fn markdown_table() -> String {
        let mut out = String::from("| status | code | meaning |\n|---|---|---|\n");
        for code in ErrorCode::ALL {
            out.push_str(&format!("| {} | `{}` | {} |\n", code.status(), code.as_str(), code.description()));
        }
        out
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of resource an error is about, for messages ("tenant \"acme\" not found").
pub type Kind = &'static str;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    #[error("{kind} {id:?} not found")]
    NotFound { kind: Kind, id: String },
    #[error("{kind} {id:?} already exists")]
    AlreadyExists { kind: Kind, id: String },
    /// The request is malformed or violates a rule; `code` is a stable machine-readable
    /// identifier such as `invalid-request` or `invalid-pattern`.
    #[error("{message}")]
    InvalidRequest { code: ErrorCode, message: String },
    #[error("missing or invalid credentials")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with the current state (illegal transition, resource in use).
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    /// `If-Match` did not match the current version.
    #[error("{kind} {id:?} was modified: expected version {expected}, found {found}")]
    PreconditionFailed { kind: Kind, id: String, expected: i64, found: i64 },
    /// A repeated idempotency key carried a different request.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// A plan change the tenant's usage does not fit (`entitlement-violation`): each
    /// hard quota over its new limit.
    #[error("{message}")]
    EntitlementViolation { message: String, violations: Vec<crate::entitlements::QuotaViolation> },
    /// A product service's answer to a change it was asked to validate: a refusal
    /// (`validation-refused`, its reason in `message`) or none (`hook-unavailable`).
    #[error("{message}")]
    Hook { code: ErrorCode, message: String },
    /// A dependency (the store) is unreachable or overloaded; retrying may succeed.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// Stored bytes do not match the digest recorded when they were written
    /// (`bundle-integrity`); the message names the object, never its content.
    #[error("{0}")]
    Integrity(String),
    /// A body over a limit the operation itself enforces (a release bundle's size):
    /// `payload-too-large`.
    #[error("{0}")]
    TooLarge(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidRequest { code: ErrorCode::InvalidRequest, message: message.into() }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict { code: ErrorCode::Conflict, message: message.into() }
    }

    pub fn not_found(kind: Kind, id: impl Into<String>) -> Self {
        Error::NotFound { kind, id: id.into() }
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Error::Internal(message.to_string())
    }

    /// Stable machine-readable code, used by the HTTP layer and the CLI.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NotFound { .. } => ErrorCode::NotFound,
            Error::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            Error::InvalidRequest { code, .. } => *code,
            Error::Unauthenticated => ErrorCode::Unauthenticated,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::Conflict { code, .. } => *code,
            Error::PreconditionFailed { .. } => ErrorCode::PreconditionFailed,
            Error::Unprocessable(_) => ErrorCode::IdempotencyKeyReused,
            Error::TooManyRequests(_) => ErrorCode::TooManyRequests,
            Error::EntitlementViolation { .. } => ErrorCode::EntitlementViolation,
            Error::Hook { code, .. } => *code,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Internal(_) => ErrorCode::Internal,
            Error::Integrity(_) => ErrorCode::BundleIntegrity,
            Error::TooLarge(_) => ErrorCode::PayloadTooLarge,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- error-codes: generated from ErrorCode (crates/domain/src/error.rs) -->\n";
    const END: &str = "<!-- /error-codes -->";

    /// docs/api.md's error table is exactly `ErrorCode::markdown_table()`: every code is
    /// documented and nothing else is. `UPDATE_DOCS=1` rewrites the table.
    #[test]
    // A test switch: the domain crate cannot reach tenancy's config module.
    #[allow(clippy::disallowed_methods)]
    fn api_doc_error_table_is_generated_from_error_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let start = doc.find(BEGIN).expect("docs/api.md has the error-codes marker") + BEGIN.len();
        let end = start + doc[start..].find(END).expect("docs/api.md closes the error-codes block");
        let table = ErrorCode::markdown_table();
        if std::env::var_os("UPDATE_DOCS").is_some() && doc[start..end] != table {
            std::fs::write(path, format!("{}{table}{}", &doc[..start], &doc[end..])).unwrap();
            return;
        }
        assert!(
            doc[start..end] == table,
            "docs/api.md's error table differs from ErrorCode: regenerate it with \
             UPDATE_DOCS=1 cargo test -p tenancy-domain --lib error\n--- expected ---\n{table}"
        );
        // Nowhere else in the page names a code that does not exist.
        for (at, _) in doc.match_indices("problems/") {
            let rest = &doc[at + "problems/".len()..];
            let code: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '-').collect();
            assert!(code.is_empty() || ErrorCode::ALL.iter().any(|c| c.as_str() == code), "unknown code {code}");
        }
    }

    #[test]
    fn codes_are_unique_kebab_case_and_ordered_by_status() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(!s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{s}");
            assert!((400..600).contains(&code.status()), "{s}");
            assert!(!code.description().is_empty() && !code.description().contains('|'), "{s}");
            assert_eq!(code.to_string(), s);
        }
        assert!(ErrorCode::ALL.windows(2).all(|w| w[0].status() <= w[1].status()), "the table is ordered by status");
        // The wire format of a few codes, pinned: renaming a variant must not rename a code.
        assert_eq!(ErrorCode::InvalidTransition.as_str(), "invalid-transition");
        assert_eq!(ErrorCode::IdempotencyKeyReused.as_str(), "idempotency-key-reused");
        assert_eq!(ErrorCode::PayloadTooLarge.status(), 413);
    }

    /// An error's code carries the status the variant stands for.
    #[test]
    fn fixed_codes_of_the_error_variants() {
        let status = |e: Error| e.code().status();
        assert_eq!(status(Error::not_found("tenant", "a")), 404);
        assert_eq!(status(Error::AlreadyExists { kind: "tenant", id: "a".into() }), 409);
        assert_eq!(status(Error::invalid("x")), 400);
        assert_eq!(status(Error::conflict("x")), 409);
        assert_eq!(status(Error::Unauthenticated), 401);
        assert_eq!(status(Error::Forbidden("x".into())), 403);
        let stale = Error::PreconditionFailed { kind: "plan", id: "p".into(), expected: 1, found: 2 };
        assert_eq!(status(stale), 412);
        assert_eq!(status(Error::Unprocessable("x".into())), 422);
        assert_eq!(status(Error::TooManyRequests("x".into())), 429);
        assert_eq!(status(Error::Unavailable("x".into())), 503);
        assert_eq!(status(Error::internal("x")), 500);
    }
}
