//! The router and its layers.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tenancy_app::App;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::problem::ApiError;
use crate::ratelimit::{RateLimiters, RateLimits, SignupLimiters, SignupLimits};
use crate::{access, idempotency, routes};
use tenancy_domain::ErrorCode;

pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A request that has not been answered after this long is 503 (its body included:
/// a body sent slowly is cut off here).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A bundle upload or download (`/v1/releases/{version}/bundle`): up to hundreds of MB
/// streamed, so its request gets an hour rather than [`REQUEST_TIMEOUT`] (a download's
/// body streams after the response head, which no timeout covers).
pub const BUNDLE_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// What one process accepts of its clients' connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// A connection must deliver a complete request head within this long of waiting
    /// for it: for its first request, and for each next one on a kept-alive connection
    /// (so it is the keep-alive idle timeout too). Else it is closed.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits { max_connections: DEFAULT_MAX_CONNECTIONS, header_read_timeout: HEADER_READ_TIMEOUT }
    }
}

pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// An open connection: holds its permit, counted in `tenancy_http_connections_open`.
struct OpenConnection {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        metrics::gauge!("tenancy_http_connections_open").increment(1.0);
        OpenConnection { _permit: permit }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("tenancy_http_connections_open").decrement(1.0);
    }
}

/// Serves `router` on `listener` (HTTP/1.1) within `limits` until `shutdown` resolves,
/// then lets open requests finish and returns when every connection has closed.
///
/// axum's own `serve` has neither a header read timeout nor a connection cap, so
/// 2,000 connections that each sent half a request head were held forever.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let max = limits.max_connections.max(1);
    let permits = Arc::new(tokio::sync::Semaphore::new(max));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A permit first, then the connection: past the cap, clients wait in the backlog.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = router.clone().map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            req.map(axum::body::Body::new)
        });
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _open = OpenConnection::new(permit);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended");
                    }
                    return;
                }
                _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it closes.
    let _ = permits.acquire_many(max as u32).await;
}

/// What handlers share.
pub struct ServerState {
    pub app: Arc<App>,
    pub metrics: PrometheusHandle,
    /// This process's rate-limit buckets.
    pub rate_limits: RateLimiters,
    /// The sign-up routes' buckets (per client address, per email domain).
    pub signup_limits: SignupLimiters,
}

impl ServerState {
    /// With the default rate limits.
    pub fn new(app: Arc<App>) -> Arc<Self> {
        ServerState::with_rate_limits(app, RateLimits::default())
    }

    pub fn with_rate_limits(app: Arc<App>, limits: RateLimits) -> Arc<Self> {
        ServerState::with_limits(app, limits, SignupLimits::default())
    }

    pub fn with_limits(app: Arc<App>, limits: RateLimits, signup: SignupLimits) -> Arc<Self> {
        Arc::new(ServerState {
            app,
            metrics: prometheus(),
            rate_limits: RateLimiters::new(limits),
            signup_limits: SignupLimiters::new(signup),
        })
    }
}

/// The buckets of the histograms of outbound calls (seconds).
const SLOW_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// How often the recorder's histograms are drained into their buckets
/// ([`prometheus`]).
pub const METRICS_UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The process-wide Prometheus recorder (the `metrics` facade has one global recorder),
/// and the thread that keeps it.
///
/// The recorder keeps every value a histogram records until it is drained into the
/// histogram's buckets. Rendering `/metrics` drains them, and nothing else did: a server
/// nobody scraped grew by 8 bytes per sample, about 48 bytes per request, without bound
/// (found by a heap profile of the soak, docs/BENCHMARKS.md). The exporter's own
/// `install` runs this upkeep from a task; the recorder here is built bare (the server
/// serves `/metrics` itself), so a thread of its own drains it every
/// [`METRICS_UPKEEP_INTERVAL`]: a thread, not a task, because the recorder outlives
/// any one Tokio runtime (tests start several).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
                .expect("valid buckets")
                // Steps (a hook, an `http:invoke`) and webhook deliveries take up to
                // their timeouts: seconds, not milliseconds.
                .set_buckets_for_metric(Matcher::Full("tenancy_execution_step_duration_seconds".into()), SLOW_BUCKETS)
                .expect("valid buckets")
                .set_buckets_for_metric(Matcher::Full("tenancy_webhook_delivery_duration_seconds".into()), SLOW_BUCKETS)
                .expect("valid buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests embedding several servers).
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                })
                .expect("spawn the metrics upkeep thread");
            handle
        })
        .clone()
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this route does not take this method")
}

async fn openapi() -> impl IntoResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(crate::openapi_json).clone();
    ([(header::CONTENT_TYPE, "application/json")], doc)
}

/// Counts requests and their latency per route and status.
async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let path =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let res = next.run(req).await;
    let labels = [("method", method), ("route", path), ("status", res.status().as_u16().to_string())];
    metrics::counter!("tenancy_http_requests_total", &labels).increment(1);
    metrics::histogram!("tenancy_http_request_duration_seconds", &labels).record(start.elapsed().as_secs_f64());
    res
}

fn panic_response(_: Box<dyn std::any::Any + Send>) -> Response {
    tracing::error!("handler panicked");
    ApiError::new(ErrorCode::Internal, "internal error").into_response()
}

fn request_span(req: &Request) -> tracing::Span {
    let path = req.extensions().get::<MatchedPath>().map(|p| p.as_str()).unwrap_or(req.uri().path());
    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %path,
        request_id = %request_id,
        tenant_id = tracing::field::Empty,
    );
    // A caller's W3C trace context: the request (and the executions it starts) joins
    // the caller's trace. A malformed one is ignored (docs/operations.md "Traces").
    if let Some(tp) = req.headers().get(tenancy_trace::TRACEPARENT).and_then(|v| v.to_str().ok()) {
        tenancy_trace::continue_from(&span, tp);
    }
    span
}

/// The longest `X-Request-Id` a caller may choose.
const MAX_REQUEST_ID: usize = 128;

/// Drops an incoming `X-Request-Id` that is empty, longer than [`MAX_REQUEST_ID`] bytes
/// or holds anything but visible ASCII, so the server generates one instead (it goes
/// into every log line and audit entry of the request).
async fn drop_unfit_request_id(mut req: Request) -> Request {
    let fit = |v: &HeaderValue| {
        !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b))
    };
    let ids = req.headers().get_all("x-request-id");
    if ids.iter().count() > 1 || ids.iter().any(|v| !fit(v)) {
        req.headers_mut().remove("x-request-id");
    }
    req
}

/// 503 for a request not answered within [`REQUEST_TIMEOUT`] ([`BUNDLE_REQUEST_TIMEOUT`]
/// for a bundle's). The bundle routes are also the only ones whose bodies the
/// [`DefaultBodyLimit`] does not bound: they read the raw body stream, which the app
/// bounds by the bundle limit.
async fn request_timeout(req: Request, next: Next) -> Response {
    let limit =
        if routes::releases::is_bundle_path(req.uri().path()) { BUNDLE_REQUEST_TIMEOUT } else { REQUEST_TIMEOUT };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The whole HTTP API.
pub fn router(state: Arc<ServerState>) -> Router {
    let (api, _) = routes::api().split_for_parts();
    // Outermost first: who is calling and may they (access), then the idempotency key,
    // then the handler and its extractors (the body is read only after access).
    let api = api
        .route_layer(middleware::from_fn_with_state(state.clone(), idempotency::middleware))
        .route_layer(middleware::from_fn_with_state(state.clone(), access::middleware));
    // The unauthenticated routes (sign-up): no access middleware, no idempotency keys;
    // their handlers rate-limit by client address first (docs/self-service.md).
    let (public, _) = routes::public().split_for_parts();
    Router::new()
        .merge(api)
        .merge(public)
        .route_layer(middleware::from_fn(record_metrics))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(openapi))
        // The web console authenticates its own session cookie (not the bearer
        // token of the access middleware) and calls the same app operations.
        .nest_service("/console", tenancy_console::router(state.app.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(request_timeout))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::map_request(drop_unfit_request_id))
        .layer(middleware::map_response(|mut res: Response| async move {
            res.headers_mut().entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
            res
        }))
        .with_state(state)
}
