//! `/ofrep/v1/evaluate/flags`: feature flags over the OpenFeature Remote Evaluation
//! Protocol (OFREP, docs/flags.md), so OpenFeature SDKs read them with the stock OFREP
//! provider.
//!
//! These routes answer in OFREP's wire format, not problem+json: an evaluation failure
//! is `{key, errorCode, errorDetails}` (400, or 404 `FLAG_NOT_FOUND`), a bulk one
//! `{errorCode, errorDetails}`, a server error `{errorDetails}`. What the access
//! middleware refuses before (401, 403, 429), a malformed path and a body too large
//! (413) stay problem+json like everywhere else.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tenancy_domain::flags::{
    targeting_key, BulkEvaluation, BulkEvaluationFailure, EvaluationFailure, EvaluationRequest, EvaluationSuccess,
    Failure,
};

use crate::extract::{record_tenant, Caller, Path, RawBody};
use crate::problem::{ApiError, Problem};
use crate::server::ServerState;

/// OFREP's answer to a server error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneralErrorResponse {
    pub error_details: String,
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    let body = serde_json::to_vec(body).expect("an OFREP body serializes");
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

fn failed(code: tenancy_domain::flags::FlagErrorCode, body: &impl Serialize) -> Response {
    json(StatusCode::from_u16(code.status()).expect("an OFREP status is valid"), body)
}

/// An error of the app that is no evaluation failure: a server error is OFREP's
/// `{errorDetails}`, anything else (never reached behind the access middleware) a
/// problem.
fn general(e: tenancy_domain::Error) -> Response {
    let e = ApiError::from(e);
    if e.status.is_server_error() {
        return json(e.status, &GeneralErrorResponse { error_details: e.detail });
    }
    e.into_response()
}

/// Evaluate one flag for the tenant `context.targetingKey` names (a tenant key: its own
/// tenant, whatever the context says). A feature is a boolean, a config value its own
/// type; a key that is neither is 404 `FLAG_NOT_FOUND`. Admins, operators, viewers,
/// services and tenant keys.
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags/{key}", tag = "flags", request_body = EvaluationRequest,
    params(("key" = String, Path, description = "Flag key: a feature or a config key")),
    responses(
        (status = 200, body = EvaluationSuccess),
        (status = 400, description = "PARSE_ERROR, TARGETING_KEY_MISSING or INVALID_CONTEXT (a malformed path: a problem)",
            content((EvaluationFailure = "application/json"), (Problem = "application/problem+json"))),
        (status = 404, description = "FLAG_NOT_FOUND", body = EvaluationFailure),
        (status = 500, description = "Server error", body = GeneralErrorResponse),
    ))]
pub async fn evaluate_flag(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(key): Path<String>,
    RawBody(body): RawBody,
) -> Response {
    let answer = match targeting_key(&body) {
        Ok(target) => s.app.flag_evaluate(&ctx, &key, target.as_deref()).await,
        Err(failure) => Ok(Err(failure)),
    };
    match answer {
        Ok(Ok(success)) => {
            if let Some(t) = success.metadata.get("tenantId") {
                record_tenant(t);
            }
            json(StatusCode::OK, &success)
        }
        Ok(Err(failure)) => failed(failure.code, &failure.for_flag(&key)),
        Err(e) => general(e),
    }
}

/// Evaluate every flag of the tenant `context.targetingKey` names (a tenant key: its
/// own tenant), by key. The `ETag` changes whenever any of them would (the plan, the
/// overrides, the tenant's status): send it back as `If-None-Match` to get 304 while
/// nothing changed.
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags", tag = "flags", request_body = EvaluationRequest,
    params(("If-None-Match" = Option<String>, Header, description = "The ETag of an earlier answer: 304 while it is current")),
    responses(
        (status = 200, body = BulkEvaluation, headers(("ETag" = String, description = "Changes with any flag's evaluation"))),
        (status = 304, description = "The flags are those of the ETag sent", headers(("ETag" = String))),
        (status = 400, description = "PARSE_ERROR, TARGETING_KEY_MISSING or INVALID_CONTEXT",
            content((BulkEvaluationFailure = "application/json"), (Problem = "application/problem+json"))),
        (status = 500, description = "Server error", body = GeneralErrorResponse),
    ))]
pub async fn evaluate_flags(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let answer = match targeting_key(&body) {
        Ok(target) => s.app.flags_evaluate_all(&ctx, target.as_deref()).await,
        Err(failure) => Ok(Err(failure)),
    };
    match answer {
        Ok(Ok(all)) => bulk(&all, headers.get(header::IF_NONE_MATCH)),
        Ok(Err(failure)) => bulk_failed(failure),
        Err(e) => general(e),
    }
}

fn bulk_failed(failure: Failure) -> Response {
    let code = failure.code;
    let body: BulkEvaluationFailure = failure.for_bulk();
    failed(code, &body)
}

/// The bulk answer with its `ETag` (a hash of the answer itself, so it changes exactly
/// when the answer does), or 304 when `if_none_match` names it.
fn bulk(all: &BulkEvaluation, if_none_match: Option<&HeaderValue>) -> Response {
    if let Some(t) = all.metadata.get("tenantId") {
        record_tenant(t);
    }
    let body = serde_json::to_vec(all).expect("an OFREP body serializes");
    let digest = Sha256::digest(&body);
    let etag = format!("\"{}\"", digest[..16].iter().map(|b| format!("{b:02x}")).collect::<String>());
    let etag_header = HeaderValue::from_str(&etag).expect("hex digits in quotes are a header value");
    if if_none_match.and_then(|v| v.to_str().ok()).is_some_and(|v| names_etag(v, &etag)) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_header)]).into_response();
    }
    let content_type = HeaderValue::from_static("application/json");
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type), (header::ETAG, etag_header)], body).into_response()
}

/// Whether an `If-None-Match` value names `etag` (RFC 9110 §13.1.2: `*`, or a list of
/// entity tags compared weakly; an unquoted tag is taken as quoted).
fn names_etag(if_none_match: &str, etag: &str) -> bool {
    let inner = etag.trim_matches('"');
    if_none_match.trim() == "*"
        || if_none_match.split(',').map(str::trim).any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag == etag || tag == inner
        })
}

#[cfg(test)]
mod tests {
    use super::names_etag;

    #[test]
    fn if_none_match_forms() {
        let etag = "\"0a1b\"";
        assert!(names_etag("\"0a1b\"", etag));
        assert!(names_etag("W/\"0a1b\"", etag));
        assert!(names_etag("\"ffff\", \"0a1b\"", etag));
        assert!(names_etag("*", etag));
        assert!(names_etag("0a1b", etag), "unquoted");
        assert!(!names_etag("\"ffff\"", etag));
        assert!(!names_etag("", etag));
    }
}
