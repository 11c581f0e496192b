//! The one application error type.
//!
//! It knows nothing about HTTP: only the `http` crate maps a variant to a status
//! code, a stable `code` string and an RFC 9457 problem document.

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
    InvalidRequest { code: &'static str, message: String },
    #[error("missing or invalid credentials")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with the current state (illegal transition, resource in use).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// `If-Match` did not match the current version.
    #[error("{kind} {id:?} was modified: expected version {expected}, found {found}")]
    PreconditionFailed { kind: Kind, id: String, expected: i64, found: i64 },
    /// A repeated idempotency key carried a different request.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// A dependency (the store) is unreachable or overloaded; retrying may succeed.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidRequest { code: "invalid-request", message: message.into() }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict { code: "conflict", message: message.into() }
    }

    pub fn not_found(kind: Kind, id: impl Into<String>) -> Self {
        Error::NotFound { kind, id: id.into() }
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Error::Internal(message.to_string())
    }

    /// Stable machine-readable code, used by the HTTP layer and the CLI.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not-found",
            Error::AlreadyExists { .. } => "already-exists",
            Error::InvalidRequest { code, .. } => code,
            Error::Unauthenticated => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            Error::Conflict { code, .. } => code,
            Error::PreconditionFailed { .. } => "precondition-failed",
            Error::Unprocessable(_) => "idempotency-key-reused",
            Error::TooManyRequests(_) => "too-many-requests",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }
}
