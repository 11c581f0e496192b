//! `lambda:invoke` and function ARNs: a Task state invokes a function with Lambda's contract.

use crate::services::Services;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tenancy_adapters::keys::SecretBox;
use tenancy_adapters::outbound::{self, OutboundPolicy, ReadError};
use tenancy_asl::Failure;
use tenancy_domain::function::{self};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode};
use tenancy_engine::{app_failure, failure, Registry, TaskCall, TaskHandler, TaskOutput, TaskResult};
use tenancy_events::webhook::{self, WebhookSecret};
use tenancy_store::StoredFunction;

/// Step Functions' optimized Lambda integration.
pub const INVOKE_RESOURCE: &str = "arn:aws:states:::lambda:invoke";
/// The header a function sets to report an error (as Lambda's Invoke API does).
pub const FUNCTION_ERROR_HEADER: &str = "x-amz-function-error";
/// Step Functions' longest error cause (characters).
pub const MAX_CAUSE: usize = 32_768;
/// Step Functions' longest error name (characters): a longer `errorType` is cut.
pub const MAX_ERROR: usize = 256;

/// What a function's secret is sealed for (the associated data of its encryption).
pub(crate) fn secret_owner(name: &str) -> String {
    format!("function/{name}")
}

/// Registers `lambda:invoke` and a route for every function ARN, calling out under the
/// services' outbound policy and signing with the master key's box.
pub fn register(registry: &Registry, services: &Services) {
    let invoker = Arc::new(Invoker::new(services.outbound.clone(), services.secrets.clone()));
    let is_function_arn = |resource: &str| function::name_of_arn(resource).is_some();
    registry.route(is_function_arn, InvokeFunction { invoker: invoker.clone(), optimized: false });
    registry.register(INVOKE_RESOURCE, InvokeFunction { invoker, optimized: true });
}

/// The parameters of `lambda:invoke`, named as Step Functions names them.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InvokeParams {
    function_name: Option<String>,
    invocation_type: Option<String>,
    #[serde(default)]
    payload: Value,
}

/// Calls functions: the HTTP client under the outbound policy and the secret box.
struct Invoker {
    client: reqwest::Client,
    policy: Arc<OutboundPolicy>,
    secrets: Option<Arc<SecretBox>>,
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
    fn new(policy: Arc<OutboundPolicy>, secrets: Option<Arc<SecretBox>>) -> Self {
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
            .as_ref()
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
        let res = outbound::traced(self.client.post(url))
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
        let p: InvokeParams = call.params()?;
        let written = p
            .function_name
            .as_deref()
            .ok_or_else(|| failure("States.Runtime", "lambda:invoke needs FunctionName (a name or an ARN)"))?;
        let name = function::name_of_function_name(written).ok_or_else(|| {
            failure("Lambda.ResourceNotFoundException", format!("{written:?} is not a function name or ARN"))
        })?;
        match p.invocation_type.as_deref() {
            None | Some("RequestResponse") => {}
            Some(other) => {
                return Err(failure(
                    "States.Runtime",
                    format!("InvocationType {other:?} is not supported: functions are invoked with RequestResponse"),
                ))
            }
        }
        let payload = match p.payload {
            Value::Null => json!({}),
            v => v,
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
