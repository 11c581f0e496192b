//! Functions (the Lambda role, issue 12 item 2): the reference design's state machine
//! runs unchanged once `allocate` is registered; `lambda:invoke` puts the answer under
//! `Payload` (and waits for a task token with `.waitForTaskToken`); function errors
//! surface as their `errorType` for Retry and Catch; service errors, throttling,
//! timeouts and unreachable functions fail as Lambda's do; unregistered functions are
//! refused at PUT naming the state; the signing secret is shown once and never
//! again; the outbound policy applies.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};
use tenancy_events::webhook::{self, WebhookHeaders, WebhookSecret};

both_backends!(
    reference_definition_runs_unchanged,
    lambda_invoke_puts_the_answer_under_payload,
    function_errors_are_retried_and_caught_by_their_type,
    service_errors_throttling_timeouts_and_unreachable_functions,
    unregistered_functions_are_refused_at_put,
    the_secret_is_shown_once,
    invalid_functions_are_refused,
    the_outbound_policy_applies_to_functions,
);

const REFERENCE: &str = r#"{
  "Comment": "Reference tenant onboarding: allocate the tenant record, then queue bootstrap work",
  "StartAt": "AllocateTenantRecord",
  "States": {
    "AllocateTenantRecord": {
      "Type": "Task",
      "Resource": "arn:aws:lambda:us-east-1:123456789012:function:allocate",
      "ResultPath": "$.allocation",
      "Next": "QueueBootstrap"
    },
    "QueueBootstrap": {
      "Type": "Task",
      "Resource": "arn:aws:states:::sqs:sendMessage",
      "Parameters": {
        "QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/bootstrap",
        "MessageBody.$": "$"
      },
      "End": true
    }
  }
}"#;

/// One request a function endpoint got.
#[derive(Clone)]
struct Call {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Call {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// A loopback endpoint serving the functions of these tests, recording every call:
/// `/allocate` answers a tenant record, `/echo` its body, `/flaky` a function error
/// (`X-Amz-Function-Error`, status 200) on its first call and success after,
/// `/exists` always a 400 function error, `/unavailable` 503, `/throttled` 429,
/// `/slow` after 5 s.
struct Receiver {
    port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Receiver {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
    fn calls(&self, path: &str) -> Vec<Call> {
        self.calls.lock().unwrap().iter().filter(|c| c.path == format!("/{path}")).cloned().collect()
    }
}

const TENANT_EXISTS: &str = r#"{"errorType":"TenantExists","errorMessage":"tenant acme exists","trace":[]}"#;

async fn receiver() -> Receiver {
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let flaky = Arc::new(AtomicUsize::new(0));
    let recorded = calls.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
        let (calls, flaky) = (recorded.clone(), flaky.clone());
        async move {
            let path = uri.path().to_owned();
            calls.lock().unwrap().push(Call { path: path.clone(), headers, body: body.to_vec() });
            let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match path.as_str() {
                "/allocate" => {
                    axum::Json(json!({"tenant_id": input["tenant_id"], "record": "rec-1", "shard": 3})).into_response()
                }
                "/echo" => ([("content-type", "application/json")], body).into_response(),
                "/flaky" if flaky.fetch_add(1, Ordering::SeqCst) == 0 => {
                    ([("x-amz-function-error", "Unhandled")], TENANT_EXISTS).into_response()
                }
                "/flaky" => axum::Json(json!({"flaky": "ok"})).into_response(),
                "/exists" => (StatusCode::BAD_REQUEST, TENANT_EXISTS).into_response(),
                "/unavailable" => (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
                "/throttled" => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
                "/slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    axum::Json(json!({"late": true})).into_response()
                }
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { port, calls }
}

/// Registers a function; returns the create response's body (with the secret).
async fn put_function(s: &TestServer, name: &str, body: Value) -> Value {
    let res = s.call(Method::PUT, &format!("/v1/functions/{name}"), Some(body)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body
}

async fn put_machine(s: &TestServer, name: &str, definition: Value) {
    let res = s.call(Method::PUT, &format!("/v1/state-machines/{name}"), Some(json!({"definition": definition}))).await;
    assert!(res.status.is_success(), "{}", res.body);
}

/// Starts an execution and waits until it stops; returns it.
async fn run(s: &TestServer, machine: &str, input: Value) -> Value {
    let res = s.call(Method::POST, "/v1/executions", Some(json!({"state_machine": machine, "input": input}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    wait_stopped(s, &id).await
}

async fn wait_stopped(s: &TestServer, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = s.get(&format!("/v1/executions/{id}")).await;
        if res.body["status"] != "RUNNING" {
            return res.body;
        }
        assert!(Instant::now() < deadline, "execution {id} is still running: {}", res.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn task(resource: &str) -> Value {
    json!({"Type": "Task", "Resource": resource, "End": true})
}

fn arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:123456789012:function:{name}")
}

/// Checks a call's Standard Webhooks signature under `secret`.
fn verify(secret: &str, call: &Call) {
    let secret = WebhookSecret::parse(secret).unwrap();
    let (id, ts, sig) = (call.header("webhook-id"), call.header("webhook-timestamp"), call.header("webhook-signature"));
    assert!(sig.starts_with("v1,"), "{sig}");
    let headers = WebhookHeaders { id, timestamp: ts, signature: sig };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    webhook::verify(&secret, &headers, &call.body, now, webhook::DEFAULT_TOLERANCE).expect("the signature verifies");
    let other = WebhookSecret::generate();
    assert!(webhook::verify(&other, &headers, &call.body, now, webhook::DEFAULT_TOLERANCE).is_err());
}

async fn reference_definition_runs_unchanged(backend: Backend) {
    let s = TestServer::start(backend).await;
    let r = receiver().await;
    let created = put_function(&s, "allocate", json!({"url": r.url("allocate")})).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let res = s.call(Method::PUT, "/v1/queues/bootstrap", Some(json!({"visibility_timeout_s": 30}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let definition: Value = serde_json::from_str(REFERENCE).unwrap();
    put_machine(&s, "onboarding", definition).await;

    let input = json!({"tenant_id": "acme", "plan": "pro"});
    let done = run(&s, "onboarding", input.clone()).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert!(done["output"]["MessageId"].as_str().unwrap().starts_with("msg_"), "{done}");

    // The function got the state's input, signed, with the task's idempotency key.
    let calls = r.calls("allocate");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].json(), input);
    assert_eq!(calls[0].header("content-type"), "application/json");
    verify(&secret, &calls[0]);
    let key = calls[0].header("idempotency-key");
    assert!(!key.is_empty() && key == calls[0].header("webhook-id"), "{key}");

    // The queue named by the QueueUrl holds the state's input with the allocation.
    let res = s.call(Method::POST, "/v1/queues/bootstrap/receive", Some(json!({"max": 10}))).await;
    let messages = res.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{}", res.body);
    assert_eq!(
        messages[0]["body"],
        json!({"tenant_id": "acme", "plan": "pro",
               "allocation": {"tenant_id": "acme", "record": "rec-1", "shard": 3}})
    );
    assert_eq!(messages[0]["id"], done["output"]["MessageId"]);
    s.stop().await;
}

async fn lambda_invoke_puts_the_answer_under_payload(backend: Backend) {
    let s = TestServer::start(backend).await;
    let r = receiver().await;
    put_function(&s, "echo", json!({"url": r.url("echo"), "timeout_s": 10})).await;
    let invoke = "arn:aws:states:::lambda:invoke";
    let definition = json!({"StartAt": "FullArn", "States": {
        "FullArn": {"Type": "Task", "Resource": invoke, "ResultPath": "$.full",
            "Parameters": {"FunctionName": format!("{}:prod", arn("echo")), "Payload": {"tenant.$": "$.tenant"}},
            "Next": "ByName"},
        "ByName": {"Type": "Task", "Resource": invoke, "ResultPath": "$.by_name",
            "Parameters": {"FunctionName": "echo", "Payload.$": "$.tenant"}, "Next": "Partial"},
        "Partial": {"Type": "Task", "Resource": invoke, "ResultPath": "$.partial",
            "Parameters": {"FunctionName": "123456789012:function:echo"}, "Next": "ArnWithParameters"},
        "ArnWithParameters": {"Type": "Task", "Resource": arn("echo"), "ResultPath": "$.arn",
            "Parameters": {"only.$": "$.tenant"}, "Next": "Dynamic"},
        "Dynamic": {"Type": "Task", "Resource": invoke, "ResultPath": "$.dynamic",
            "Parameters": {"FunctionName.$": "$.missing", "Payload": {}},
            "Catch": [{"ErrorEquals": ["Lambda.ResourceNotFoundException"], "ResultPath": "$.missing_error",
                       "Next": "Done"}],
            "End": true},
        "Done": {"Type": "Pass", "End": true}}});
    put_machine(&s, "invoke", definition).await;
    let done = run(&s, "invoke", json!({"tenant": "acme", "missing": "nobody"})).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let out = &done["output"];
    let full = &out["full"];
    assert_eq!(full["Payload"], json!({"tenant": "acme"}), "{full}");
    assert_eq!(full["StatusCode"], 200);
    assert_eq!(full["ExecutedVersion"], "$LATEST");
    assert_eq!(full["SdkHttpMetadata"]["HttpStatusCode"], 200, "{full}");
    assert_eq!(full["SdkResponseMetadata"]["RequestId"], full["SdkHttpMetadata"]["HttpHeaders"]["x-amzn-RequestId"]);
    assert_eq!(out["by_name"]["Payload"], "acme", "a JSON string payload is sent and answered as JSON");
    assert_eq!(out["partial"]["Payload"], json!({}), "no Payload: an empty object, as Lambda gets");
    assert_eq!(out["arn"], json!({"only": "acme"}), "a function ARN's result is the answer itself");
    assert_eq!(out["missing_error"]["Error"], "Lambda.ResourceNotFoundException", "{out}");
    assert!(out["missing_error"]["Cause"].as_str().unwrap().contains("\"nobody\""), "{out}");
    assert_eq!(r.calls("echo").len(), 4);

    // .waitForTaskToken: the function gets the token, the execution waits for it.
    let definition = json!({"StartAt": "Review", "States": {"Review": {"Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "TimeoutSeconds": 60,
        "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token", "tenant.$": "$.tenant"}},
        "End": true}}});
    put_machine(&s, "review", definition).await;
    let res =
        s.call(Method::POST, "/v1/executions", Some(json!({"state_machine": "review", "input": {"tenant": "t"}})));
    let id = res.await.body["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    while r.calls("echo").len() < 5 {
        assert!(Instant::now() < deadline, "the function was not invoked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token = r.calls("echo")[4].json()["token"].as_str().unwrap().to_owned();
    assert_eq!(s.get(&format!("/v1/executions/{id}")).await.body["status"], "RUNNING");
    let path = format!("/v1/task-tokens/{token}/success");
    let res = s.call(Method::POST, &path, Some(json!({"output": {"approved": true}}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let done = wait_stopped(&s, &id).await;
    assert_eq!((done["status"].clone(), done["output"].clone()), (json!("SUCCEEDED"), json!({"approved": true})));
    s.stop().await;
}

async fn function_errors_are_retried_and_caught_by_their_type(backend: Backend) {
    let s = TestServer::start(backend).await;
    let r = receiver().await;
    put_function(&s, "flaky", json!({"url": r.url("flaky")})).await;
    put_function(&s, "exists", json!({"url": r.url("exists")})).await;
    let definition = json!({"StartAt": "Flaky", "States": {
        "Flaky": {"Type": "Task", "Resource": arn("flaky"), "Next": "Exists",
            "Retry": [{"ErrorEquals": ["TenantExists"], "IntervalSeconds": 1, "MaxAttempts": 2}]},
        "Exists": {"Type": "Task", "Resource": arn("exists"), "Next": "Unreachable",
            "Catch": [{"ErrorEquals": ["TenantExists"], "ResultPath": "$.error", "Next": "Handled"}]},
        "Unreachable": {"Type": "Fail", "Error": "Unreachable"},
        "Handled": {"Type": "Pass", "End": true}}});
    put_machine(&s, "errors", definition).await;
    let done = run(&s, "errors", json!({"tenant_id": "acme"})).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(r.calls("flaky").len(), 2, "the function error was retried once");
    assert_eq!(done["output"]["flaky"], "ok", "{done}");
    let error = &done["output"]["error"];
    assert_eq!(error["Error"], "TenantExists", "{done}");
    let cause: Value = serde_json::from_str(error["Cause"].as_str().unwrap()).unwrap();
    assert_eq!(cause, serde_json::from_str::<Value>(TENANT_EXISTS).unwrap(), "the cause is the function's error");

    // Uncaught, the execution fails with the function's error type.
    let definition = json!({"StartAt": "Exists", "States": {"Exists": task(&arn("exists"))}});
    put_machine(&s, "uncaught", definition).await;
    let failed = run(&s, "uncaught", json!({})).await;
    assert_eq!((failed["status"].as_str(), failed["error"].as_str()), (Some("FAILED"), Some("TenantExists")));
    assert!(failed["cause"].as_str().unwrap().contains("tenant acme exists"), "{failed}");
    s.stop().await;
}

async fn service_errors_throttling_timeouts_and_unreachable_functions(backend: Backend) {
    let s = TestServer::start(backend).await;
    let r = receiver().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    put_function(&s, "unavailable", json!({"url": r.url("unavailable")})).await;
    put_function(&s, "throttled", json!({"url": r.url("throttled")})).await;
    put_function(&s, "slow", json!({"url": r.url("slow"), "timeout_s": 1})).await;
    put_function(&s, "gone", json!({"url": format!("http://127.0.0.1:{closed}/gone")})).await;
    for (name, error, cause) in [
        ("unavailable", "Lambda.ServiceException", "HTTP 503"),
        ("throttled", "Lambda.TooManyRequestsException", "HTTP 429"),
        ("slow", "Lambda.Unknown", "Sandbox.Timedout"),
        ("gone", "Lambda.SdkClientException", "connection failed"),
    ] {
        put_machine(&s, name, json!({"StartAt": "Call", "States": {"Call": task(&arn(name))}})).await;
        let started = Instant::now();
        let failed = run(&s, name, json!({})).await;
        assert_eq!(failed["status"], "FAILED", "{name}: {failed}");
        assert_eq!(failed["error"], error, "{name}: {failed}");
        assert!(failed["cause"].as_str().unwrap().contains(cause), "{name}: {failed}");
        if name == "slow" {
            assert!(started.elapsed() < Duration::from_secs(4), "the 1 s timeout applied: {:?}", started.elapsed());
            let cause: Value = serde_json::from_str(failed["cause"].as_str().unwrap()).unwrap();
            assert_eq!(cause["errorMessage"], "Task timed out after 1.00 seconds");
        }
    }
    // Service errors are retried like any error named in a Retry.
    let definition = json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": arn("unavailable"),
        "Retry": [{"ErrorEquals": ["Lambda.ServiceException"], "IntervalSeconds": 1, "MaxAttempts": 1}],
        "End": true}}});
    put_machine(&s, "retried", definition).await;
    let before = r.calls("unavailable").len();
    assert_eq!(run(&s, "retried", json!({})).await["error"], "Lambda.ServiceException");
    assert_eq!(r.calls("unavailable").len(), before + 2);
    s.stop().await;
}

async fn unregistered_functions_are_refused_at_put(backend: Backend) {
    let s = TestServer::start(backend).await;
    let r = receiver().await;
    let refused = |res: &support::Res, state: &str, function: &str| {
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
        assert_eq!(res.code(), "unknown-function", "{}", res.body);
        let detail = res.body["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("{state:?}")) && detail.contains(function), "{detail}");
    };
    let put = |name: &'static str, definition: Value| {
        let s = &s;
        async move {
            s.call(Method::PUT, &format!("/v1/state-machines/{name}"), Some(json!({"definition": definition}))).await
        }
    };
    let reference: Value = serde_json::from_str(REFERENCE).unwrap();
    refused(&put("onboarding", reference.clone()).await, "AllocateTenantRecord", "\"allocate\"");
    assert_eq!(s.get("/v1/state-machines/onboarding").await.status, StatusCode::NOT_FOUND, "nothing was stored");

    let invoke = |function_name: Value| {
        json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
               "Parameters": {"FunctionName": function_name, "Payload": {}}, "End": true})
    };
    let in_map = json!({"StartAt": "Each", "States": {"Each": {"Type": "Map", "End": true, "ItemProcessor":
        {"StartAt": "Notify", "States": {"Notify": invoke(json!(arn("notify")))}}}}});
    refused(&put("map", in_map).await, "Notify", "\"notify\"");
    let in_parallel = json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "Notify", "States": {"Notify": invoke(json!("notify:prod"))}}]}}});
    refused(&put("parallel", in_parallel).await, "Notify", "\"notify\"");
    let jsonata = json!({"QueryLanguage": "JSONata", "StartAt": "Notify", "States": {"Notify": {"Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke", "Arguments": {"FunctionName": "notify"}, "End": true}}});
    refused(&put("jsonata", jsonata).await, "Notify", "\"notify\"");
    let callback = json!({"StartAt": "Notify", "States": {"Notify": {"Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "notify", "Payload": {"t.$": "$$.Task.Token"}}, "End": true}}});
    refused(&put("callback", callback).await, "Notify", "\"notify\"");
    let nameless = json!({"StartAt": "Notify", "States": {"Notify": task("arn:aws:states:::lambda:invoke")}});
    refused(&put("nameless", nameless).await, "Notify", "needs a FunctionName");
    refused(
        &put("malformed", json!({"StartAt": "Notify", "States": {"Notify": invoke(json!("a:b:c"))}})).await,
        "Notify",
        "\"a:b:c\"",
    );

    // Names known only at run time pass PUT.
    let dynamic = json!({"StartAt": "Notify", "States": {"Notify": {"Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName.$": "$.fn"}, "End": true}}});
    assert_eq!(put("dynamic", dynamic).await.status, StatusCode::CREATED);
    let jsonata = json!({"QueryLanguage": "JSONata", "StartAt": "Notify", "States": {"Notify": {"Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke", "Arguments": {"FunctionName": "{% $states.input.fn %}"},
        "End": true}}});
    assert_eq!(put("dynamic-jsonata", jsonata).await.status, StatusCode::CREATED);

    // Registered, the reference passes; deleting the function later is allowed and
    // its tasks then fail with Lambda.ResourceNotFoundException.
    put_function(&s, "allocate", json!({"url": r.url("allocate")})).await;
    assert_eq!(put("onboarding", reference).await.status, StatusCode::CREATED);
    let res = s.call(Method::DELETE, "/v1/functions/allocate", None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    assert_eq!(s.call(Method::DELETE, "/v1/functions/allocate", None).await.status, StatusCode::NOT_FOUND);
    let failed = run(&s, "onboarding", json!({"tenant_id": "acme"})).await;
    assert_eq!(failed["error"], "Lambda.ResourceNotFoundException", "{failed}");
    assert!(r.calls("allocate").is_empty());
    s.stop().await;
}

async fn the_secret_is_shown_once(backend: Backend) {
    let s = TestServer::start(backend).await;
    let r = receiver().await;
    let created = put_function(&s, "allocate", json!({"url": r.url("allocate")})).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    assert_eq!((created["name"].clone(), created["timeout_s"].clone()), (json!("allocate"), json!(30)));

    // Replacing keeps the secret and does not show it.
    let res = s.call(Method::PUT, "/v1/functions/allocate", Some(json!({"url": r.url("echo"), "timeout_s": 60}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.get("secret").is_none(), "{}", res.body);
    assert_eq!(
        (res.body["timeout_s"].clone(), res.body["created_at"].clone()),
        (json!(60), created["created_at"].clone())
    );
    let got = s.get("/v1/functions/allocate").await;
    assert_eq!(got.body["url"], r.url("echo"));
    let list = s.get("/v1/functions").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1, "{}", list.body);

    put_machine(&s, "call", json!({"StartAt": "Call", "States": {"Call": task(&arn("allocate"))}})).await;
    let done = run(&s, "call", json!({"tenant_id": "acme"})).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    verify(&secret, &r.calls("echo")[0]);
    let id = done["id"].as_str().unwrap();

    let history = s.get(&format!("/v1/executions/{id}/history?limit=1000")).await;
    let audit = s.get("/v1/audit?limit=1000").await;
    for (what, text) in [
        ("get", got.body.to_string()),
        ("list", list.body.to_string()),
        ("history", history.body.to_string()),
        ("audit", audit.body.to_string()),
        ("execution", done.to_string()),
    ] {
        assert!(!text.contains(&secret) && !text.contains("whsec_"), "the secret is in the {what}: {text}");
    }
    let actions: Vec<&str> =
        audit.body["items"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "function.put").count(), 2, "{actions:?}");
    // At rest the secret is sealed.
    let db = s.raw_db().await;
    let sealed: String = sqlx::Row::get(&sqlx::query("SELECT secret FROM functions").fetch_one(&db).await.unwrap(), 0);
    assert!(sealed.starts_with("v1:") && !sealed.contains(&secret[6..]), "{sealed}");

    // The CLI prints the secret on create only.
    let url = s.url.clone();
    let fn_url = r.url("echo");
    let out = tokio::task::spawn_blocking(move || {
        let put = support::run_cli(
            &url,
            &["--output", "json", "functions", "put", "notify", "--url", &fn_url, "--timeout-s", "5"],
        );
        let again = support::run_cli(&url, &["--output", "json", "functions", "put", "notify", "--url", &fn_url]);
        let get = support::run_cli(&url, &["--output", "json", "functions", "get", "notify"]);
        let list = support::run_cli(&url, &["functions", "list"]);
        let delete = support::run_cli(&url, &["functions", "delete", "notify", "--yes"]);
        let missing = support::run_cli(&url, &["functions", "get", "notify"]);
        [put, again, get, list, delete, missing]
    })
    .await
    .unwrap();
    let [put, again, get, list, delete, missing] = out;
    assert_eq!(put.0, 0, "{put:?}");
    let put_json: Value = serde_json::from_str(&put.1).unwrap();
    assert!(put_json["secret"].as_str().unwrap().starts_with("whsec_"), "{put:?}");
    assert_eq!(put_json["timeout_s"], 5);
    assert!(put.2.contains("shown this once"), "{put:?}");
    assert_eq!(again.0, 0, "{again:?}");
    assert!(!again.1.contains("whsec_") && !get.1.contains("whsec_"), "{again:?} {get:?}");
    assert_eq!(serde_json::from_str::<Value>(&get.1).unwrap()["timeout_s"], 30, "a replace is a full replacement");
    assert!(list.1.contains("notify") && list.1.contains("allocate"), "{list:?}");
    assert_eq!(delete.0, 0, "{delete:?}");
    assert_ne!(missing.0, 0, "{missing:?}");
    s.stop().await;
}

async fn invalid_functions_are_refused(backend: Backend) {
    let s = TestServer::start(backend).await;
    for (name, body, code) in [
        ("a.b", json!({"url": "http://h.example"}), "invalid-function"),
        (&*"x".repeat(65), json!({"url": "http://h.example"}), "invalid-function"),
        ("f", json!({"url": "ftp://h.example"}), "invalid-url"),
        ("f", json!({"url": "h.example/x"}), "invalid-url"),
        ("f", json!({"url": "http://h.example", "timeout_s": 0}), "invalid-function"),
        ("f", json!({"url": "http://h.example", "timeout_s": 901}), "invalid-function"),
        ("f", json!({"url": "http://h.example", "connection": "crm"}), "unsupported-connection"),
        ("f", json!({"url": "http://h.example", "memory_mb": 128}), "invalid-body"),
        ("f", json!({}), "invalid-body"),
    ] {
        let res = s.call(Method::PUT, &format!("/v1/functions/{name}"), Some(body.clone())).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{name} {body}: {}", res.body);
        assert_eq!(res.code(), code, "{name} {body}: {}", res.body);
    }
    let res = s.call(Method::PUT, "/v1/functions/f", Some(json!({"url": "http://h.example", "timeout_s": 900}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(s.get("/v1/functions").await.body["items"].as_array().unwrap().len(), 1, "only the valid one");
    assert_eq!(s.get("/v1/functions/missing").await.status, StatusCode::NOT_FOUND);
    // A viewer reads, may not write.
    let viewer = s.key("viewer", None).await;
    let res = s.call_with(Some(&viewer), Method::GET, "/v1/functions/f", None, &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = s.call_with(Some(&viewer), Method::DELETE, "/v1/functions/f", None, &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    s.stop().await;
}

async fn the_outbound_policy_applies_to_functions(backend: Backend) {
    let db = support::database_url(backend).await;
    let s = TestServer::start_configured(db, |o| o.outbound_allow.clear()).await;
    let r = receiver().await;
    for (name, url) in [
        ("by-address", r.url("allocate")),
        ("by-name", format!("http://localhost:{}/allocate", r.port)),
        ("metadata", "http://169.254.169.254/latest/meta-data/".to_owned()),
    ] {
        put_function(&s, name, json!({"url": url})).await;
        put_machine(&s, name, json!({"StartAt": "Call", "States": {"Call": task(&arn(name))}})).await;
        let failed = run(&s, name, json!({})).await;
        assert_eq!(failed["error"], "Tenancy.DestinationNotAllowed", "{name}: {failed}");
        assert_eq!(failed["cause"], "destination not allowed by the outbound policy", "{name}: {failed}");
    }
    assert!(r.calls.lock().unwrap().is_empty(), "nothing reached the loopback receiver");
    s.stop().await;
}
