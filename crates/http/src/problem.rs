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

/// The code of every 413.
pub const PAYLOAD_TOO_LARGE: &str = "payload-too-large";

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

    /// 413, whichever layer noticed: one code, `payload-too-large`.
    pub fn payload_too_large() -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {} bytes", crate::server::MAX_BODY_BYTES),
        )
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
    fn into_response(mut self) -> Response {
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            self.code = PAYLOAD_TOO_LARGE.to_owned();
        }
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The string literal at the start of `s` (after blanks), if it looks like a code.
    fn code_at(s: &str) -> Option<&str> {
        let s = s.trim_start().strip_prefix('"')?;
        let code = &s[..s.find('"')?];
        let ok = !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        ok.then_some(code)
    }

    /// Every problem code the source can produce: `code: "..."` of the error kinds,
    /// `ApiError::new(status, "...")`, `bad_request("...")` and `Error::code`'s own.
    fn codes_in_source() -> std::collections::BTreeSet<String> {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for krate in std::fs::read_dir(&crates).unwrap() {
            let src = krate.unwrap().path().join("src");
            if src.is_dir() {
                rust_files(&src, &mut files);
            }
        }
        let mut codes = std::collections::BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (marker, skip_arg) in [("code: ", false), ("bad_request(", false), ("ApiError::new(", true)] {
                for (at, _) in text.match_indices(marker) {
                    let mut rest = &text[at + marker.len()..];
                    if skip_arg {
                        rest = &rest[rest.find(',').unwrap_or(0) + 1..];
                    }
                    if let Some(code) = code_at(rest) {
                        codes.insert(code.to_owned());
                    }
                }
            }
            if file.ends_with("domain/src/error.rs") {
                let body = &text[text.find("pub fn code(&self)").unwrap()..];
                for (at, _) in body.match_indices("=> ") {
                    if let Some(code) = code_at(&body[at + 3..]) {
                        codes.insert(code.to_owned());
                    }
                }
            }
        }
        codes.insert(super::PAYLOAD_TOO_LARGE.to_owned());
        codes
    }

    /// docs/api.md lists every code a problem can carry.
    #[test]
    fn every_problem_code_is_documented() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md")).unwrap();
        let codes = codes_in_source();
        for sure in ["plan-in-use", "not-found", "unsupported-media-type", "idempotency-key-in-use", "malformed-json"] {
            assert!(codes.contains(sure), "the scan missed {sure}: {codes:?}");
        }
        // Internal: the store's marker of drift reported before never leaves it.
        let missing: Vec<_> =
            codes.iter().filter(|c| c.as_str() != "drift-reported" && !doc.contains(&format!("`{c}`"))).collect();
        assert!(missing.is_empty(), "codes missing from docs/api.md's Errors table: {missing:?}");
    }

    /// docs/api.md's relative links resolve inside the repository, and it points at
    /// nothing outside it (`../shared` is not part of the repository).
    #[test]
    fn api_doc_links_resolve() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        let doc = std::fs::read_to_string(docs.join("api.md")).unwrap();
        assert!(!doc.contains("../shared"), "docs/api.md refers to ../shared, outside the repository");
        for (at, _) in doc.match_indices("](") {
            let target = &doc[at + 2..];
            let target = &target[..target.find(')').unwrap()];
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let path = target.split('#').next().unwrap();
            assert!(docs.join(path).exists(), "docs/api.md links to {target}, which does not exist");
        }
    }
}
