//! RFC 9457 problem details for every error response.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tenancy_domain::{Error, ErrorCode};

pub use tenancy_domain::api::Problem;

/// An error on its way out as problem+json.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub detail: String,
    /// The `violations` extension member of `entitlement-violation`.
    pub violations: Option<Vec<tenancy_domain::entitlements::QuotaViolation>>,
}

impl ApiError {
    /// A problem with the status its code belongs to.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError::with_status(status_of_code(code), code, detail)
    }

    /// A problem whose status another layer decided (axum's body rejections).
    pub fn with_status(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError { status, code, detail: detail.into(), violations: None }
    }

    /// 413, whichever layer noticed: one code, `payload-too-large`.
    pub fn payload_too_large() -> Self {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {} bytes", crate::server::MAX_BODY_BYTES),
        )
    }
}

fn status_of_code(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status()).expect("an ErrorCode's status is a valid HTTP status")
}

/// The status of an error: the one its code belongs to.
pub fn status_of(e: &Error) -> StatusCode {
    status_of_code(e.code())
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
        let violations = match &e {
            Error::EntitlementViolation { violations, .. } => Some(violations.clone()),
            _ => None,
        };
        ApiError { status, code: e.code(), detail, violations }
    }
}

impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            self.code = ErrorCode::PayloadTooLarge;
        }
        let problem = Problem {
            type_: format!("https://tenancy.dev/problems/{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.as_str().to_owned(),
            violations: self.violations,
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
    use std::path::Path;

    /// Every code's status is one `status_of` gives, and a problem carries its code
    /// as the wire string in `code` and `type`.
    #[test]
    fn problem_carries_the_code_string_and_its_status() {
        for &code in tenancy_domain::ErrorCode::ALL {
            assert_eq!(super::status_of_code(code).as_u16(), code.status(), "{code}");
        }
        let e = tenancy_domain::Error::Conflict {
            code: tenancy_domain::ErrorCode::PlanInUse,
            message: "plan \"p\" is in use".into(),
        };
        assert_eq!(super::status_of(&e), axum::http::StatusCode::CONFLICT);
        let res = axum::response::IntoResponse::into_response(super::ApiError::from(e));
        assert_eq!(res.status(), 409);
    }

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// `ErrorCode` is the only source of codes: outside its declaration and test
    /// modules, no source file spells a code as a string literal (it would be a code
    /// the enum, and so docs/api.md, might not know).
    #[test]
    fn no_code_is_a_string_literal_outside_error_code() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for krate in std::fs::read_dir(&crates).unwrap() {
            let src = krate.unwrap().path().join("src");
            if src.is_dir() {
                rust_files(&src, &mut files);
            }
        }
        assert!(files.iter().any(|f| f.ends_with("app/src/workflows/ops.rs")), "the scan found the sources");
        let mut found = Vec::new();
        for file in files.iter().filter(|f| !f.ends_with("domain/src/error.rs")) {
            let text = std::fs::read_to_string(file).unwrap();
            let code_part = text.split("#[cfg(test)]").next().unwrap();
            for &code in tenancy_domain::ErrorCode::ALL {
                if code_part.contains(&format!("\"{code}\"")) {
                    found.push(format!("{}: \"{code}\"", file.display()));
                }
            }
        }
        assert!(found.is_empty(), "use ErrorCode instead of these literals: {found:#?}");
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
