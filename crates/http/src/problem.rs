//! RFC 9457 problem details for every error response.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tenancy_domain::Error;

/// A problem document (`application/problem+json`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `https://tenancy.dev/problems/<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `not-found`, `invalid-body`.
    pub code: String,
}

/// An error on its way out as problem+json.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        ApiError { status, code: code.to_owned(), detail: detail.into() }
    }

    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, detail)
    }
}

pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::AlreadyExists { .. } | Error::Conflict { .. } => StatusCode::CONFLICT,
        Error::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
        Error::Unauthenticated => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
        Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = status_of(&e);
        let detail = match &e {
            // Internal details stay in the logs; the caller gets the request id to quote.
            Error::Internal(_) => {
                tracing::error!(error = %e, "internal error");
                "internal error; the server log has the details under this request's id".to_owned()
            }
            Error::Unavailable(_) => {
                tracing::warn!(error = %e, "dependency unavailable");
                "the store is unavailable; retry later".to_owned()
            }
            _ => e.to_string(),
        };
        ApiError { status, code: e.code().to_owned(), detail }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            type_: format!("https://tenancy.dev/problems/{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
        };
        let body = serde_json::to_vec(&problem).expect("problem serializes");
        let mut res = (self.status, body).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
