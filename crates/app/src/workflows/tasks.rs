//! `arn:aws:states:::http:invoke`: an HTTP request from a Task state.
//!
//! Parameters: `ApiEndpoint` (URL), `Method`, `Headers`, `QueryParameters`,
//! `RequestBody` (JSON, or a string sent as is). Result: `StatusCode`, `StatusText`,
//! `Headers`, `ResponseBody` (parsed JSON when it parses, else the text). A non-2xx
//! answer fails the task with `States.Http.StatusCode.<code>`; a transport error with
//! `States.Http.Socket`. The request carries `Idempotency-Key: <task idempotency key>`.
//!
//! Requests obey the [outbound policy](tenancy_adapters::outbound): a refused destination fails
//! with `Tenancy.DestinationNotAllowed`; redirects are not followed (a 3xx fails like
//! any non-2xx); a response body over 256 KiB fails with `States.DataLimitExceeded`
//! (read no further); only [`KEPT_HEADERS`] of the response are kept, each cut at
//! [`MAX_HEADER_VALUE`] bytes.
//!
//! `Authentication: {ConnectionArn}` names a connection (docs/connections.md): a bare
//! name or an EventBridge connection ARN (`arn:aws:events:REGION:ACCOUNT:connection/NAME[/ID]`).
//! Its credential is added at call time by the [`Connector`] and is never part of the
//! parameters, the result or the history. A header in `Headers` with the name the
//! connection sets (`Authorization` for basic and OAuth) is dropped: the connection
//! wins. An unknown connection fails the task with `Tenancy.ConnectionNotFound` (at run
//! time: a definition naming one is accepted, as a connection may be created or
//! deleted later); a connection that cannot be used (its token endpoint fails or is
//! refused) with `Tenancy.ConnectionFailed`. A `401` answering a cached OAuth token
//! fetches a new token and sends the request once more.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use tenancy_engine::{failure, Registry, TaskCall, TaskHandler, TaskOutput, TaskResult};

use crate::connections::auth::{Connector, Credential};
use crate::services::Services;
use tenancy_adapters::outbound::{self, OutboundPolicy, ReadError};

pub const RESOURCE: &str = "arn:aws:states:::http:invoke";

/// The response headers kept in the result (and so in the execution's history):
/// descriptive ones only, never cookies or credentials.
pub const KEPT_HEADERS: &[&str] = &[
    "cache-control",
    "content-encoding",
    "content-language",
    "content-length",
    "content-type",
    "date",
    "etag",
    "expires",
    "last-modified",
    "location",
    "retry-after",
    "x-request-id",
];
/// Registers `http:invoke` under the services' outbound policy.
pub fn register(r: &Registry, services: &Services) {
    r.register(RESOURCE, HttpInvoke::with_policy(services.outbound.clone()).with_connector(services.connector.clone()));
}

/// A kept header value longer than this is cut.
pub const MAX_HEADER_VALUE: usize = 1024;

pub struct HttpInvoke {
    client: reqwest::Client,
    policy: Arc<OutboundPolicy>,
    connector: Option<Arc<Connector>>,
}

impl HttpInvoke {
    /// A handler under the default outbound policy (internal addresses refused).
    pub fn new() -> Self {
        HttpInvoke::with_policy(Arc::new(OutboundPolicy::default()))
    }

    pub fn with_policy(policy: Arc<OutboundPolicy>) -> Self {
        HttpInvoke { client: policy.client(), policy, connector: None }
    }

    /// Resolves `Authentication.ConnectionArn` with `connector` (without one, a task
    /// naming a connection fails with `Tenancy.ConnectionNotFound`).
    pub fn with_connector(mut self, connector: Arc<Connector>) -> Self {
        self.connector = Some(connector);
        self
    }
}

impl Default for HttpInvoke {
    fn default() -> Self {
        HttpInvoke::new()
    }
}

fn refused() -> tenancy_asl::Failure {
    failure("Tenancy.DestinationNotAllowed", outbound::REFUSED)
}

fn transport(e: &reqwest::Error) -> tenancy_asl::Failure {
    if outbound::is_refused(e) {
        refused()
    } else {
        failure("States.Http.Socket", outbound::describe(e))
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The parameters of `http:invoke`, named as Step Functions names them.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InvokeParams {
    authentication: Option<Authentication>,
    api_endpoint: Option<String>,
    method: Option<String>,
    headers: Option<Map<String, Value>>,
    query_parameters: Option<Map<String, Value>>,
    #[serde(default)]
    request_body: Value,
}

/// `Authentication`: the connection whose credential the request carries.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Authentication {
    connection_arn: Option<String>,
}

impl HttpInvoke {
    /// Sends the request once, with `cred` (replacing any header of its name).
    async fn send(
        &self,
        call: &TaskCall<'_>,
        method: &reqwest::Method,
        url: &reqwest::Url,
        p: &InvokeParams,
        cred: Option<&Credential>,
    ) -> Result<reqwest::Response, tenancy_asl::Failure> {
        let mut req = self.client.request(method.clone(), url.clone()).header("Idempotency-Key", call.idempotency_key);
        // The state machine's own `traceparent`, if it sets one, wins.
        let own_trace = p.headers.as_ref().is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("traceparent")));
        if !own_trace {
            req = tenancy_adapters::outbound::traced(req);
        }
        if let Some(headers) = &p.headers {
            for (k, v) in headers {
                if cred.is_some_and(|c| c.header.as_str().eq_ignore_ascii_case(k)) {
                    continue;
                }
                req = req.header(k.as_str(), text(v));
            }
        }
        if let Some(c) = cred {
            req = req.header(c.header.clone(), c.value.clone());
        }
        if let Some(q) = &p.query_parameters {
            let pairs: Vec<(String, String)> = q.iter().map(|(k, v)| (k.clone(), text(v))).collect();
            req = req.query(&pairs);
        }
        match &p.request_body {
            Value::Null => {}
            Value::String(s) => req = req.body(s.clone()),
            v => req = req.json(v),
        }
        req.send().await.map_err(|e| transport(&e))
    }
}

#[async_trait]
impl TaskHandler for HttpInvoke {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let p: InvokeParams = call.params()?;
        let url = p
            .api_endpoint
            .as_deref()
            .ok_or_else(|| failure("States.Runtime", "http:invoke needs ApiEndpoint (a URL string)"))?;
        let method = p.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| failure("States.Runtime", format!("invalid Method {method:?}")))?;
        let url = reqwest::Url::parse(url)
            .map_err(|_| failure("States.Runtime", format!("ApiEndpoint {url:?} is not a valid URL")))?;
        self.policy.check_url(&url).map_err(|_| refused())?;
        let connection = match p.authentication.as_ref().map(|a| a.connection_arn.as_deref()) {
            None => None,
            Some(arn) => {
                let arn = arn.ok_or_else(|| failure("States.Runtime", "Authentication needs ConnectionArn"))?;
                let name = tenancy_domain::connection::name_of_arn(arn).ok_or_else(|| {
                    failure(
                        "States.Runtime",
                        format!("ConnectionArn {arn:?} is not a connection name nor arn:aws:events:REGION:ACCOUNT:connection/NAME"),
                    )
                })?;
                Some(name)
            }
        };
        let mut cred = match connection {
            None => None,
            Some(name) => {
                let connector = self.connector.as_ref().ok_or_else(|| {
                    failure("Tenancy.ConnectionNotFound", format!("connection {name:?} does not exist"))
                })?;
                Some(connector.credential(name).await.map_err(|e| e.failure())?)
            }
        };
        let mut res = self.send(&call, &method, &url, &p, cred.as_ref()).await?;
        if let (Some(name), Some(c)) = (connection, cred.as_ref()) {
            if res.status() == reqwest::StatusCode::UNAUTHORIZED && c.cached_token {
                let connector = self.connector.as_ref().expect("a credential came from it");
                let fresh = connector.refresh(name, c).await.map_err(|e| e.failure())?;
                res = self.send(&call, &method, &url, &p, Some(&fresh)).await?;
                cred = Some(fresh);
            }
        }
        drop(cred);
        let status = res.status();
        let mut headers = Map::new();
        for (k, v) in res.headers() {
            if KEPT_HEADERS.contains(&k.as_str()) && !headers.contains_key(k.as_str()) {
                let v = String::from_utf8_lossy(v.as_bytes());
                let cut = v.char_indices().nth(MAX_HEADER_VALUE).map_or(v.len(), |(i, _)| i);
                headers.insert(k.as_str().to_owned(), json!(&v[..cut]));
            }
        }
        let body = match outbound::read_capped(res, outbound::MAX_RESPONSE_BYTES).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(ReadError::TooLarge) => {
                return Err(failure(
                    "States.DataLimitExceeded",
                    format!("the response body exceeds {} bytes (256 KiB)", outbound::MAX_RESPONSE_BYTES),
                ))
            }
            Err(ReadError::Transport(e)) => return Err(transport(&e)),
        };
        let body_value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        let result = json!({
            "StatusCode": status.as_u16(),
            "StatusText": status.canonical_reason().unwrap_or(""),
            "Headers": headers,
            "ResponseBody": body_value,
        });
        if !status.is_success() {
            return Err(failure(&format!("States.Http.StatusCode.{}", status.as_u16()), result.to_string()));
        }
        Ok(TaskOutput::new(result))
    }
}
