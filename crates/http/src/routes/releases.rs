//! `/v1/releases` and the tenants' release routes (pin, unpin, upgrade).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::TryStreamExt;
use tenancy_app::TenantOperation;
use tenancy_domain::release::{PinRequest, Release, ReleaseList, ReleaseSpec, UpgradeRequest};
use tenancy_domain::tenant::Tenant;
use tenancy_domain::Error;

use crate::extract::{etag, record_tenant, Caller, Json, Path};
use crate::problem::ApiResult;
use crate::server::ServerState;

/// Whether a request path is a bundle upload or download: exempt from the small body
/// limit, the idempotency layer (which buffers bodies) and the short request timeout.
pub fn is_bundle_path(path: &str) -> bool {
    path.strip_prefix("/v1/releases/").and_then(|rest| rest.strip_suffix("/bundle")).is_some_and(|v| !v.contains('/'))
}

/// Create a release (201) or replace its description and upgrade workflow (200).
///
/// `default: true` makes it the fleet's default release (new tenants start on it) and
/// the previous default stops being it, in one transaction. `upgrade_workflow` names a
/// lifecycle state machine (`tenancy.lifecycle.*`, registered with `PUT
/// /v1/state-machines/{name}`) that replaces the built-in `tenancy.tenant.upgrade`.
/// Emits `ReleaseCreated` or `ReleaseUpdated`.
#[utoipa::path(put, path = "/v1/releases/{version}", tag = "releases", request_body = ReleaseSpec,
    params(("version" = String, Path, description = "Release version: 1-64 of A-Z a-z 0-9 . _ + -")),
    responses((status = 201, description = "Created", body = Release),
        (status = 200, description = "Replaced", body = Release)))]
pub async fn put_release(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(version): Path<String>,
    Json(spec): Json<ReleaseSpec>,
) -> ApiResult<impl IntoResponse> {
    let (release, created) = s.app.release_put(&ctx, &version, spec).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, [(header::LOCATION, format!("/v1/releases/{version}"))], axum::Json(release)))
}

/// A release, with its bundle's SHA-256, size and content type if it has one.
#[utoipa::path(get, path = "/v1/releases/{version}", tag = "releases",
    params(("version" = String, Path, description = "Release version")),
    responses((status = 200, body = Release)))]
pub async fn get_release(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(version): Path<String>,
) -> ApiResult<axum::Json<Release>> {
    Ok(axum::Json(s.app.release_get(&ctx, &version).await?))
}

/// Every release, by version.
#[utoipa::path(get, path = "/v1/releases", tag = "releases",
    responses((status = 200, body = ReleaseList)))]
pub async fn list_releases(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
) -> ApiResult<axum::Json<ReleaseList>> {
    Ok(axum::Json(ReleaseList { items: s.app.release_list(&ctx).await? }))
}

/// Upload a release's bundle: the request body (any bytes, any content type) is
/// streamed to the blob store, its SHA-256 computed on the way and recorded with its
/// size and `Content-Type`. Replaces an earlier bundle. Up to the server's bundle limit
/// (`serve --bundle-max-mib`, 512 MiB by default; 413 past it), not the 1 MiB of other
/// bodies. Emits `ReleaseBundleUploaded`.
#[utoipa::path(put, path = "/v1/releases/{version}/bundle", tag = "releases",
    request_body(content = String, content_type = "application/octet-stream", description = "The bundle's bytes"),
    params(("version" = String, Path, description = "Release version")),
    responses((status = 200, description = "Stored; the release with its bundle", body = Release)))]
pub async fn put_bundle(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<axum::Json<Release>> {
    let max = s.app.bundle_max_bytes();
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        // Refused before a byte is read.
        return Err(Error::TooLarge(format!("the bundle is larger than the limit of {max} bytes")).into());
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let release = s.app.release_bundle_put(&ctx, &version, content_type, Box::pin(stream)).await?;
    Ok(axum::Json(release))
}

/// Download a release's bundle, streamed from the blob store and checked against the
/// SHA-256 recorded at upload as it goes (`Repr-Digest: sha-256=:...:`, RFC 9530, and
/// the `ETag` carry it). Bytes that do not match are never completed: a size mismatch
/// is 500 `bundle-integrity` before the body, a content mismatch cuts the connection
/// before the last chunk (docs/releases.md).
#[utoipa::path(get, path = "/v1/releases/{version}/bundle", tag = "releases",
    params(("version" = String, Path, description = "Release version")),
    responses((status = 200, description = "The bundle's bytes", content_type = "application/octet-stream", body = String,
        headers(("Repr-Digest" = String, description = "sha-256=:<base64>: of the bytes"), ("ETag" = String)))))]
pub async fn get_bundle(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(version): Path<String>,
) -> ApiResult<Response> {
    let (bundle, stream) = s.app.release_bundle_get(&ctx, &version).await?;
    let raw = hex_decode(&bundle.sha256);
    let digest = format!("sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode(raw));
    let mut res = Body::from_stream(stream).into_response();
    let h = res.headers_mut();
    let ct = bundle.content_type.parse().unwrap_or(header::HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, ct);
    h.insert(header::CONTENT_LENGTH, bundle.size.into());
    if let Ok(v) = format!("\"sha256-{}\"", bundle.sha256).parse() {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = digest.parse() {
        h.insert("repr-digest", v);
    }
    Ok(res)
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

/// Pin a tenant to its release: upgrades are refused (409 `tenant-pinned`) unless
/// they say `force`, and rollouts skip it. A repeated pin replaces the reason. Emits
/// `TenantPinned`.
#[utoipa::path(put, path = "/v1/tenants/{id}/pin", tag = "releases", request_body = PinRequest,
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Tenant, headers(("ETag" = String)))))]
pub async fn pin_tenant(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    Json(req): Json<PinRequest>,
) -> ApiResult<impl IntoResponse> {
    record_tenant(&id);
    let t = s.app.tenant_pin(&ctx, &id, req).await?;
    Ok(([etag(t.version)], axum::Json(t)))
}

/// Unpin a tenant (one that is not pinned is left as it is). Emits `TenantUnpinned`.
#[utoipa::path(delete, path = "/v1/tenants/{id}/pin", tag = "releases",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Tenant, headers(("ETag" = String)))))]
pub async fn unpin_tenant(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    record_tenant(&id);
    let t = s.app.tenant_unpin(&ctx, &id).await?;
    Ok(([etag(t.version)], axum::Json(t)))
}

/// Upgrade a tenant to a release; runs in the background (`status: updating`).
///
/// The release's `upgrade_workflow`, or the built-in `tenancy.tenant.upgrade`: the
/// `upgrade_pre_check`, `upgrade_apply` and `upgrade_verify` hooks in turn (an event
/// without hooks is skipped); after a failed apply or verify the `upgrade_rollback`
/// hooks. The tenant ends `active` on the release (`TenantUpgraded`) or on its old one
/// (`TenantUpgradeFailed` with the step and the reason). 400 `invalid-release` for a
/// release that does not exist, 409 `tenant-pinned` for a pinned tenant without
/// `force`, 409 `invalid-transition` unless the tenant is `active` (an upgrade already
/// running) or when it is on the release already.
#[utoipa::path(post, path = "/v1/tenants/{id}/upgrade", tag = "releases", request_body = UpgradeRequest,
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 202, description = "Upgrade started", body = TenantOperation)))]
pub async fn upgrade_tenant(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    Json(req): Json<UpgradeRequest>,
) -> ApiResult<impl IntoResponse> {
    record_tenant(&id);
    let op = s.app.tenant_upgrade(&ctx, &id, req).await?;
    let location = format!("/v1/tenants/{}", op.tenant.id);
    Ok((StatusCode::ACCEPTED, [etag(op.tenant.version), (header::LOCATION, location)], axum::Json(op)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn bundle_paths() {
        assert!(super::is_bundle_path("/v1/releases/1.2.3/bundle"));
        assert!(!super::is_bundle_path("/v1/releases/1.2.3"));
        assert!(!super::is_bundle_path("/v1/releases/a/b/bundle"));
        assert!(!super::is_bundle_path("/v1/tenants/x/bundle"));
    }
}
