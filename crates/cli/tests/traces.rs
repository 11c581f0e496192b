//! Traces (docs/operations.md "Traces"): a server exporting over OTLP/HTTP to a receiver
//! of this test, a provisioning started with the caller's `traceparent`, and the span
//! tree the receiver gets: one trace from the API request through the execution's
//! steps to the hook call, whose `traceparent` header continues it. Queue messages
//! carry the sending span's context as their `traceparent` attribute, and receiving
//! one records a `queue.message` span continuing it, linked to the receive request.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::process::{try_spawn, Spawn};
use support::TestServer;

/// One exported span, ids in lowercase hex (`parent` empty for a root).
#[derive(Debug, Clone)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: HashMap<String, String>,
    service: String,
    /// The span ids of its links.
    links: Vec<String>,
}

type Spans = Arc<Mutex<Vec<Span>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) keeping every span it gets.
async fn otlp_receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let s = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
                assert_eq!(ct, "application/x-protobuf", "OTLP/HTTP sends protobuf");
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP export request");
                let mut got = s.lock().unwrap();
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .map(|kv| text(kv.value.as_ref()))
                        .unwrap_or_default();
                    for span in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
                        got.push(Span {
                            trace: hex(&span.trace_id),
                            id: hex(&span.span_id),
                            parent: hex(&span.parent_span_id),
                            name: span.name,
                            attributes: span
                                .attributes
                                .iter()
                                .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                                .collect(),
                            service: service.clone(),
                            links: span.links.iter().map(|l| hex(&l.span_id)).collect(),
                        });
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::default()
                        .encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

/// The `traceparent` header and the JSON body of every call a receiver got.
type Calls = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

fn spans_now(spans: &Spans) -> Vec<Span> {
    spans.lock().unwrap().clone()
}

/// A hook (or webhook) receiver answering 200 and keeping every call.
async fn hook_receiver() -> (String, Calls) {
    let calls: Calls = Arc::default();
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::Json<serde_json::Value>| {
            let c = c.clone();
            async move {
                let tp = headers.get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                c.lock().unwrap().push((tp, body.0));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

/// The caller's trace and span: the provisioning's request continues them.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioning_is_one_trace_from_the_request_to_its_hook_and_deliveries() {
    let (otlp, received) = otlp_receiver().await;
    let (hook_url, hook_calls) = hook_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let how = Spawn {
        env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT", otlp), ("OTEL_BSP_SCHEDULE_DELAY", "100".into())],
        ..Spawn::default()
    };
    let (_server, url) = try_spawn(dir.path(), how).unwrap_or_else(|(code, err)| panic!("exited {code}: {err}"));
    let s = TestServer::attach(url);
    let res = s.call(Method::PUT, "/v1/hooks/billing", Some(json!({"url": hook_url, "events": ["provision"]}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    // A webhook subscription to an event the request emits and one a step emits.
    let (webhook_url, deliveries) = hook_receiver().await;
    let pattern = json!({"detail-type": ["TenantCreated", "TenantProvisioned"]});
    let body = json!({"name": "w", "pattern": pattern, "target": {"type": "webhook", "url": webhook_url}});
    let res = s.call(Method::POST, "/v1/subscriptions", Some(body)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    s.put_plan("basic", "pool").await;
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let res = s
        .call_with(
            Some(support::ADMIN),
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": "acme", "name": "acme", "plan": "basic"})),
            &[("traceparent", &traceparent)],
        )
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    s.wait_status("acme", "active").await;
    // A malformed traceparent is ignored: the request starts a trace of its own.
    let bad = format!("00-{TRACE}-{CALLER_SPAN}");
    let res = s.call_with(Some(support::ADMIN), Method::GET, "/v1/tenants/acme", None, &[("traceparent", &bad)]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);

    // The hook was called with the trace context of the step calling it.
    let calls = hook_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let parts: Vec<&str> = calls[0].0.split('-').collect();
    assert_eq!((parts.len(), parts[0], parts[1]), (4, "00", TRACE), "the hook's traceparent: {}", calls[0].0);
    let hook_parent = parts[2].to_owned();
    // Both webhook deliveries continue the trace of the span that emitted their event.
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        let got = deliveries.lock().unwrap().clone();
        if got.len() >= 2 {
            break got;
        }
        assert!(Instant::now() < deadline, "the deliveries never came: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut delivery_parents = Vec::new();
    for (tp, event) in &delivered {
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!((parts.len(), parts[1]), (4, TRACE), "the delivery of {}: {tp:?}", event["detail-type"]);
        delivery_parents.push(parts[2].to_owned());
    }

    // Wait for the spans: the step that called the hook, and its execution's.
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let got = spans_now(&received);
        let step = got.iter().find(|s| s.id == hook_parent);
        if step.is_some_and(|step| got.iter().any(|s| s.id == step.parent)) {
            break got;
        }
        assert!(Instant::now() < deadline, "the hook's span never arrived: {got:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by_id: HashMap<&str, &Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    assert!(spans.iter().all(|s| s.service == "tenancy"), "the default service name");

    // The API request continues the caller's span.
    let request = spans
        .iter()
        .find(|s| s.name == "request" && s.attributes.get("path").map(String::as_str) == Some("/v1/tenants"))
        .filter(|s| s.attributes.get("method").map(String::as_str) == Some("POST"))
        .expect("the POST /v1/tenants request span");
    assert_eq!((request.trace.as_str(), request.parent.as_str()), (TRACE, CALLER_SPAN));

    // Every execution and step span of the provisioning is in that trace, below the
    // request: executions' spans are children of the request's, steps' of theirs.
    let executions: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "execution" && s.attributes.get("tenant_id").map(String::as_str) == Some("acme"))
        .collect();
    assert!(!executions.is_empty(), "{spans:#?}");
    let descends = |s: &Span| {
        let mut at = s;
        while let Some(parent) = by_id.get(at.parent.as_str()) {
            if parent.id == request.id {
                return true;
            }
            at = parent;
        }
        false
    };
    for e in &executions {
        assert_eq!(e.trace, TRACE, "{e:#?}");
        assert!(descends(e), "below the request: {e:#?}");
    }
    let provision: Vec<&&Span> = executions
        .iter()
        .filter(|e| e.attributes.get("state_machine").map(String::as_str) == Some("tenancy.tenant.provision"))
        .collect();
    assert!(!provision.is_empty(), "{executions:#?}");
    let parents: Vec<&str> = provision.iter().map(|e| by_id[e.parent.as_str()].name.as_str()).collect();
    assert!(provision.iter().all(|e| e.parent == request.id), "the request started it: {parents:?}");
    let steps: Vec<&Span> =
        spans.iter().filter(|s| s.name == "task" && by_id.contains_key(s.parent.as_str())).collect();
    let steps: Vec<&Span> = steps.into_iter().filter(|s| executions.iter().any(|e| e.id == s.parent)).collect();
    assert!(steps.len() >= 2, "the provisioning's steps: {steps:#?}");
    assert!(steps.iter().all(|s| s.trace == TRACE));
    // The hook's header names the step that called it.
    let hook_step = by_id[hook_parent.as_str()];
    assert_eq!(hook_step.name, "task", "{hook_step:#?}");
    assert!(executions.iter().any(|e| e.id == hook_step.parent), "{hook_step:#?}");
    // The deliveries' spans (named in their headers) descend from the request too.
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let got = spans_now(&received);
        if delivery_parents.iter().all(|id| got.iter().any(|s| &s.id == id)) {
            break got;
        }
        assert!(Instant::now() < deadline, "the deliveries' spans never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by_id: HashMap<&str, &Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let descends = |s: &Span| {
        let mut at = s;
        while let Some(parent) = by_id.get(at.parent.as_str()) {
            if parent.id == request.id {
                return true;
            }
            at = parent;
        }
        false
    };
    for id in &delivery_parents {
        let d = by_id[id.as_str()];
        assert_eq!((d.name.as_str(), d.trace.as_str()), ("delivery", TRACE), "{d:#?}");
        assert!(descends(d), "below the request: {d:#?}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let get = loop {
        let got = spans_now(&received);
        let path = |s: &Span| s.attributes.get("path").map(String::as_str) == Some("/v1/tenants/{id}");
        if let Some(get) = got.iter().find(|s| s.name == "request" && path(s)) {
            break get.clone();
        }
        assert!(Instant::now() < deadline, "the GET's span never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(get.trace != TRACE && get.parent.is_empty(), "{get:#?}");
    // Nothing else of the provisioning went into another trace.
    let stray: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace != TRACE && s.attributes.get("tenant_id").map(String::as_str) == Some("acme"))
        .filter(|s| s.name == "execution")
        .collect();
    assert!(stray.is_empty(), "{stray:#?}");
}

/// Waits until the receiver holds a span matching `f`.
async fn wait_span(spans: &Spans, what: &str, f: impl Fn(&Span) -> bool) -> Span {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = spans_now(spans).into_iter().find(|s| f(s)) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} never arrived: {:#?}", spans_now(spans));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn path_is(s: &Span, method: &str, path: &str) -> bool {
    s.name == "request"
        && s.attributes.get("method").map(String::as_str) == Some(method)
        && s.attributes.get("path").map(String::as_str) == Some(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_messages_carry_the_trace_of_their_sender() {
    let (otlp, received) = otlp_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let how = Spawn {
        env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT", otlp), ("OTEL_BSP_SCHEDULE_DELAY", "100".into())],
        ..Spawn::default()
    };
    let (_server, url) = try_spawn(dir.path(), how).unwrap_or_else(|(code, err)| panic!("exited {code}: {err}"));
    let s = TestServer::attach(url);
    let res = s.call(Method::PUT, "/v1/queues/work", Some(json!({}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);

    // Sent through the API in the caller's trace: the attribute names the send
    // request's span.
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let res = s
        .call_with(
            Some(support::ADMIN),
            Method::POST,
            "/v1/queues/work/messages",
            Some(json!({"body": {"n": 1}})),
            &[("traceparent", &traceparent)],
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    // Sent by a workflow's step: the attribute names the step's span.
    let def = json!({"StartAt": "Send", "States": {"Send": {"Type": "Task", "Resource": "tenancy:queue.send",
        "Parameters": {"QueueName": "work", "MessageBody": {"n": 2},
                       "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "step"}}}, "End": true}}});
    let res = s.call(Method::PUT, "/v1/state-machines/sender", Some(json!({"definition": def}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let res = s.call(Method::POST, "/v1/executions", Some(json!({"state_machine": "sender"}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_execution(res.body["id"].as_str().unwrap(), "SUCCEEDED").await;

    let res = s.call(Method::POST, "/v1/queues/work/receive", Some(json!({"max": 10}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let messages = res.body["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    let parent_of = |m: &serde_json::Value| {
        let tp = m["attributes"]["traceparent"].as_str().unwrap_or_else(|| panic!("no traceparent: {m}"));
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        (parts[1].to_owned(), parts[2].to_owned())
    };
    let (api_trace, api_parent) = parent_of(&messages[0]);
    assert_eq!(api_trace, TRACE, "the caller's trace");
    let (step_trace, step_parent) = parent_of(&messages[1]);
    assert_eq!(messages[1]["attributes"]["kind"], "step", "the step's own attributes stay");

    let send =
        wait_span(&received, "the send request's span", |s| path_is(s, "POST", "/v1/queues/{name}/messages")).await;
    assert_eq!((send.trace.as_str(), send.id.as_str()), (TRACE, api_parent.as_str()), "{send:#?}");
    let step = wait_span(&received, "the step's span", |s| s.id == step_parent).await;
    assert_eq!((step.name.as_str(), step.trace.as_str()), ("task", step_trace.as_str()), "{step:#?}");

    // Each received message is a `queue.message` span below its sender's span, linked
    // to the receive request's span.
    let receive = wait_span(&received, "the receive's span", |s| path_is(s, "POST", "/v1/queues/{name}/receive")).await;
    for (trace, parent) in [(&api_trace, &api_parent), (&step_trace, &step_parent)] {
        let got =
            wait_span(&received, "a queue.message span", |s| s.name == "queue.message" && &s.parent == parent).await;
        assert_eq!(&got.trace, trace, "{got:#?}");
        assert_eq!(got.attributes.get("queue").map(String::as_str), Some("work"), "{got:#?}");
        assert_eq!(got.links, std::slice::from_ref(&receive.id), "linked to the receive: {got:#?}");
    }
}
