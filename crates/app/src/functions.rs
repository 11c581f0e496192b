//! Functions (the Lambda role): HTTP endpoints registered by name that Task states
//! invoke with Lambda's contract, signed like webhooks.
//!
//! Operations: `PUT /v1/functions/{name}` creates a function (with a `whsec_` secret
//! shown in that response only, sealed at rest) or replaces its url and timeout
//! (keeping its secret); read, list and delete. Every change writes its audit entry in
//! the same transaction.
//!
//! Invocation (the task handlers, see docs/functions.md): the payload is `POST`ed as
//! JSON to the function's url with the Standard Webhooks headers (`webhook-id` = the
//! task's idempotency key, `webhook-timestamp`, `webhook-signature: v1,<HMAC-SHA256>`,
//! signed by [`tenancy_events::webhook::sign_all`] as deliveries are) and
//! `Idempotency-Key`; the response body is the result. Errors follow Lambda:
//!
//! | the function answers | the task fails with | cause |
//! |---|---|---|
//! | `X-Amz-Function-Error` (any status) or a 4xx but 429, body `{errorType, errorMessage}` | `errorType` (`Lambda.Unknown` without one) | the body |
//! | 429 | `Lambda.TooManyRequestsException` | fixed text |
//! | 5xx (or a 3xx: redirects are not followed) | `Lambda.ServiceException` | fixed text |
//! | nothing within `timeout_s` | `Lambda.Unknown` (Lambda's error for a function timeout) | `{"errorType": "Sandbox.Timedout", ...}` |
//! | no connection / a broken one | `Lambda.SdkClientException` | coarse text |
//! | a destination the outbound policy refuses | `Tenancy.DestinationNotAllowed` | fixed text |
//! | no function of that name | `Lambda.ResourceNotFoundException` | names it |

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tenancy_asl::Failure;
use tenancy_domain::function::{self, Function, FunctionSpec};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_events::webhook::{self, WebhookSecret};
use tenancy_store::{Effects, StoredFunction};

use crate::context::Permission as P;
use crate::engine::handlers::{app_failure, failure, Registry, TaskCall, TaskHandler, TaskOutput, TaskResult};
use crate::outbound::{self, OutboundPolicy, ReadError};
use crate::secretbox::SecretBox;
use crate::{App, OpContext};

/// Step Functions' optimized Lambda integration.
pub const INVOKE_RESOURCE: &str = "arn:aws:states:::lambda:invoke";
/// The registry entry serving every function ARN (`arn:<partition>:lambda:REGION:ACCOUNT:function:NAME`,
/// with or without a qualifier): [`Registry::get`] falls back to it for any resource
/// that [`function::name_of_arn`] takes. Written as a pattern so that no real ARN is it.
pub const ARN_RESOURCE: &str = "arn:aws:lambda:*:*:function:*";
/// The header a function sets to report an error (as Lambda's Invoke API does).
pub const FUNCTION_ERROR_HEADER: &str = "x-amz-function-error";
/// Step Functions' longest error cause (characters).
pub const MAX_CAUSE: usize = 32_768;
/// Step Functions' longest error name (characters): a longer `errorType` is cut.
pub const MAX_ERROR: usize = 256;

pub use tenancy_domain::api::FunctionWithSecret;

/// What a function's secret is sealed for (the associated data of its encryption).
fn secret_owner(name: &str) -> String {
    format!("function/{name}")
}

impl App {
    /// Creates a function (with a new secret, returned this once) or replaces its url
    /// and timeout (its secret stays); whether it was created.
    pub async fn function_put(
        &self,
        ctx: &OpContext,
        name: &str,
        spec: FunctionSpec,
    ) -> Result<(FunctionWithSecret, bool)> {
        ctx.authorize(P::FunctionAdmin)?;
        let f = spec.into_function(name, Timestamp::now())?;
        let secret = WebhookSecret::generate().expose();
        let sealed = self.secret_box()?.seal(&secret_owner(name), &secret);
        let audit = ctx.audit(
            "function.put",
            format!("function/{name}"),
            None,
            json!({"url": f.url, "timeout_s": f.timeout_s}),
        );
        let stored = StoredFunction { function: f, secret: sealed };
        let (stored, created) =
            self.store().functions().function_put(&stored, &Effects::none().with_audit(audit)).await?;
        Ok((FunctionWithSecret { function: stored.function, secret: created.then_some(secret) }, created))
    }

    pub async fn function_get(&self, ctx: &OpContext, name: &str) -> Result<Function> {
        ctx.authorize(P::FunctionRead)?;
        Ok(self.store().functions().function_get(name).await?.function)
    }

    pub async fn function_list(&self, ctx: &OpContext) -> Result<Vec<Function>> {
        ctx.authorize(P::FunctionRead)?;
        self.store().functions().function_list().await
    }

    /// Deletes a function. State machines naming it are not checked: their tasks then
    /// fail with `Lambda.ResourceNotFoundException` (as in AWS, where a deleted
    /// function does not stop a state machine from being defined or started).
    pub async fn function_delete(&self, ctx: &OpContext, name: &str) -> Result<()> {
        ctx.authorize(P::FunctionAdmin)?;
        let audit = ctx.audit("function.delete", format!("function/{name}"), None, json!({}));
        self.store().functions().function_delete(name, &Effects::none().with_audit(audit)).await
    }

    /// Refuses (400 `unknown-function`, naming the state) a definition whose tasks name
    /// a function that is not registered: `(state, function name as written)` pairs
    /// from the definition's walk.
    pub(crate) async fn check_functions(&self, used: &[(String, String)]) -> Result<()> {
        for (state, written) in used {
            let unknown = |why: &str| Error::InvalidRequest {
                code: ErrorCode::UnknownFunction,
                message: format!("state {state:?}: {why}; register it with PUT /v1/functions/{{name}}"),
            };
            if written.is_empty() {
                return Err(unknown("lambda:invoke needs a FunctionName (a function name or ARN)"));
            }
            let Some(name) = function::name_of_function_name(written) else {
                return Err(unknown(&format!("{written:?} is not a function name or ARN")));
            };
            match self.store().functions().function_get(name).await {
                Ok(_) => {}
                Err(Error::NotFound { .. }) => {
                    return Err(unknown(&format!("the function {name:?} is not registered")));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The function a Task state names statically, if any: the function ARN resource, or
/// a `lambda:invoke` task's `FunctionName` written in `Parameters` or `Arguments` (not
/// `FunctionName.$` nor a JSONata expression, known at run time only). An empty name
/// when a `lambda:invoke` task has no `FunctionName` in any form (nor arguments
/// computed whole by a JSONata expression).
pub fn named_function(resource: &str, state: &Value) -> Option<String> {
    let base = resource.strip_suffix(crate::engine::WAIT_FOR_TASK_TOKEN).unwrap_or(resource);
    if function::name_of_arn(base).is_some() {
        return Some(base.to_owned());
    }
    if base != INVOKE_RESOURCE {
        return None;
    }
    let args = [&state["Parameters"], &state["Arguments"]];
    if args.iter().any(|a| a.is_string() || a.get("FunctionName.$").is_some()) {
        return None;
    }
    match args.iter().find_map(|a| a.get("FunctionName")) {
        Some(Value::String(n)) if n.trim_start().starts_with("{%") => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => None,
        None => Some(String::new()),
    }
}

/// Registers the function handlers (a function ARN and `lambda:invoke`) with clients
/// under `policy`, opening secrets with the registry's secret box.
pub fn register(registry: &Registry, policy: Arc<OutboundPolicy>) {
    let invoker = Arc::new(Invoker::new(policy, registry.secret_box_cell()));
    registry.register(ARN_RESOURCE, InvokeFunction { invoker: invoker.clone(), optimized: false });
    registry.register(INVOKE_RESOURCE, InvokeFunction { invoker, optimized: true });
}

/// Calls functions: the HTTP client under the outbound policy and the secret box.
struct Invoker {
    client: reqwest::Client,
    policy: Arc<OutboundPolicy>,
    secrets: Arc<OnceLock<Arc<SecretBox>>>,
}

/// The task handler of a function ARN (`optimized: false`: the result is the
/// function's answer) or of `lambda:invoke` (`optimized: true`: the answer under
/// `Payload`, beside `StatusCode` and `ExecutedVersion` as Step Functions gives them).
struct InvokeFunction {
    invoker: Arc<Invoker>,
    optimized: bool,
}

fn cut(mut s: String) -> String {
    if let Some((i, _)) = s.char_indices().nth(MAX_CAUSE) {
        s.truncate(i);
    }
    s
}

impl Invoker {
    fn new(policy: Arc<OutboundPolicy>, secrets: Arc<OnceLock<Arc<SecretBox>>>) -> Self {
        let client = policy
            .client_builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .user_agent(concat!("tenancy-functions/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        Invoker { client, policy, secrets }
    }

    /// The function's secret, opened.
    fn secret(&self, stored: &StoredFunction) -> std::result::Result<WebhookSecret, Failure> {
        let b = self
            .secrets
            .get()
            .ok_or_else(|| failure(&format!("Tenancy.{}", ErrorCode::Unavailable), "no master key configured"))?;
        let name = &stored.function.name;
        let plain = b.open(&secret_owner(name), &stored.secret).map_err(app_failure)?;
        WebhookSecret::parse(&plain)
            .map_err(|e| app_failure(Error::internal(format!("corrupt secret of function {name:?}: {e}"))))
    }

    /// Invokes function `name` with `payload`: its answer (parsed JSON; text that is
    /// not JSON as a string; `null` when empty) or the failure of the table above.
    async fn invoke(&self, call: &TaskCall<'_>, name: &str, payload: &Value) -> std::result::Result<Value, Failure> {
        let stored = match call.store.functions().function_get(name).await {
            Ok(f) => f,
            Err(Error::NotFound { .. }) => {
                return Err(failure(
                    "Lambda.ResourceNotFoundException",
                    format!("Function not found: {name:?} is not registered (PUT /v1/functions/{name})"),
                ))
            }
            Err(e) => return Err(app_failure(e)),
        };
        let secret = self.secret(&stored)?;
        let f = &stored.function;
        let refused = || failure("Tenancy.DestinationNotAllowed", outbound::REFUSED);
        let url = reqwest::Url::parse(&f.url).map_err(|_| refused())?;
        self.policy.check_url(&url).map_err(|_| refused())?;
        let body = serde_json::to_vec(payload).map_err(|e| app_failure(Error::internal(e)))?;
        let ts = Timestamp::now().millis() / 1000;
        let id = call.idempotency_key;
        let timed_out = || {
            let cause = json!({"errorType": "Sandbox.Timedout",
                               "errorMessage": format!("Task timed out after {}.00 seconds", f.timeout_s)});
            failure("Lambda.Unknown", cause.to_string())
        };
        let transport = |e: &reqwest::Error| {
            if outbound::is_refused(e) {
                refused()
            } else if e.is_timeout() {
                timed_out()
            } else {
                failure("Lambda.SdkClientException", format!("function {name:?}: {}", outbound::describe(e)))
            }
        };
        let res = self
            .client
            .post(url)
            .timeout(Duration::from_secs(f.timeout_s))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", id)
            .header(webhook::HEADER_ID, id)
            .header(webhook::HEADER_TIMESTAMP, ts.to_string())
            .header(webhook::HEADER_SIGNATURE, webhook::sign_all(&secret, id, ts, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = res.status();
        let function_error = res.headers().contains_key(FUNCTION_ERROR_HEADER);
        let text = match outbound::read_capped(res, outbound::MAX_RESPONSE_BYTES).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(ReadError::TooLarge) => {
                return Err(failure(
                    "States.DataLimitExceeded",
                    format!("the answer of function {name:?} exceeds {} bytes (256 KiB)", outbound::MAX_RESPONSE_BYTES),
                ))
            }
            Err(ReadError::Transport(e)) => return Err(transport(&e)),
        };
        let code = status.as_u16();
        if function_error || (status.is_client_error() && code != 429) {
            // The function's own error: its errorType is the task's error, the whole
            // body its cause (as Step Functions reports a Lambda function's error).
            let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let error = parsed["errorType"].as_str().filter(|e| !e.is_empty()).unwrap_or("Lambda.Unknown");
            let error: String = error.chars().take(MAX_ERROR).collect();
            return Err(failure(&error, cut(text)));
        }
        if code == 429 {
            return Err(failure(
                "Lambda.TooManyRequestsException",
                format!("function {name:?} answered HTTP 429 (Too Many Requests)"),
            ));
        }
        if !status.is_success() {
            return Err(failure("Lambda.ServiceException", format!("function {name:?} answered HTTP {code}")));
        }
        Ok(if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        })
    }
}

#[async_trait]
impl TaskHandler for InvokeFunction {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        if !self.optimized {
            let name = function::name_of_arn(call.resource)
                .ok_or_else(|| failure("States.Runtime", format!("{:?} is not a function ARN", call.resource)))?;
            return Ok(TaskOutput::new(self.invoker.invoke(&call, name, call.parameters).await?));
        }
        let p = call.parameters;
        let written = p["FunctionName"]
            .as_str()
            .ok_or_else(|| failure("States.Runtime", "lambda:invoke needs FunctionName (a name or an ARN)"))?;
        let name = function::name_of_function_name(written).ok_or_else(|| {
            failure("Lambda.ResourceNotFoundException", format!("{written:?} is not a function name or ARN"))
        })?;
        match p["InvocationType"].as_str() {
            None | Some("RequestResponse") => {}
            Some(other) => {
                return Err(failure(
                    "States.Runtime",
                    format!("InvocationType {other:?} is not supported: functions are invoked with RequestResponse"),
                ))
            }
        }
        let payload = match p.get("Payload") {
            None | Some(Value::Null) => json!({}),
            Some(v) => v.clone(),
        };
        let answer = self.invoker.invoke(&call, name, &payload).await?;
        let request_id = uuid::Uuid::new_v4().to_string();
        let headers = json!({"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST",
                             "x-amzn-RequestId": request_id});
        let all_headers: serde_json::Map<String, Value> =
            headers.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), json!([v]))).collect();
        Ok(TaskOutput::new(json!({
            "ExecutedVersion": "$LATEST",
            "Payload": answer,
            "SdkHttpMetadata": {"AllHttpHeaders": all_headers, "HttpHeaders": headers, "HttpStatusCode": 200},
            "SdkResponseMetadata": {"RequestId": request_id},
            "StatusCode": 200,
        })))
    }
}
