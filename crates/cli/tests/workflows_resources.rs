//! A Task resource no registered handler serves is refused at `PUT` naming the state
//! and the resource (issue 12, item 2), at top level and inside Parallel branches and
//! Map processors, in JSONPath and JSONata definitions; known resources and pure
//! callback waits (`<anything>.waitForTaskToken`) are accepted. (Function ARNs are
//! served by the function handler; an unregistered function is `unknown-function`,
//! tested in functions.rs.)

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};

both_backends!(unknown_task_resources_are_refused_at_put, known_resources_and_callbacks_are_accepted);

async fn put(s: &TestServer, name: &str, definition: Value) -> support::Res {
    s.call(Method::PUT, &format!("/v1/state-machines/{name}"), Some(json!({"definition": definition}))).await
}

fn task(resource: &str) -> Value {
    json!({"Type": "Task", "Resource": resource, "End": true})
}

const LAMBDA: &str = "arn:aws:lambda:us-east-1:123456789012:function:allocate";

async fn unknown_task_resources_are_refused_at_put(backend: Backend) {
    let s = TestServer::start(backend).await;
    for resource in [
        "tenancy:nope",
        "arn:aws:states:::states:startExecution.sync",
        "arn:aws:states:::http:invoke.sync",
        "arn:aws:lambda:us-east-1:123456789012:layer:allocate",
    ] {
        let top = json!({"StartAt": "Allocate", "States": {
            "Before": {"Type": "Pass", "End": true},
            "Allocate": {"Type": "Task", "Resource": resource, "Next": "Before"}}});
        let in_map = json!({"StartAt": "Each", "States": {"Each": {"Type": "Map", "End": true, "ItemProcessor":
            {"StartAt": "Allocate", "States": {"Allocate": task(resource)}}}}});
        let in_parallel = json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "Fine", "States": {"Fine": task("tenancy:noop")}},
            {"StartAt": "Allocate", "States": {"Allocate": task(resource)}}]}}});
        let jsonata = json!({"QueryLanguage": "JSONata", "StartAt": "Allocate", "States": {
            "Allocate": {"Type": "Task", "Resource": resource, "Arguments": {"id": "{% $states.input.id %}"}, "End": true}}});
        for definition in [top, in_map, in_parallel, jsonata] {
            let res = put(&s, "reference", definition.clone()).await;
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{resource}: {}", res.body);
            assert_eq!(res.header("content-type"), Some("application/problem+json"));
            assert_eq!(res.code(), "unknown-resource", "{definition}: {}", res.body);
            let detail = res.body["detail"].as_str().unwrap();
            assert!(detail.contains("\"Allocate\"") && detail.contains(resource), "{detail}");
        }
    }
    let res = put(&s, "reference", json!({"StartAt": "Allocate", "States": {"Allocate": task(LAMBDA)}})).await;
    assert_eq!(res.code(), "unknown-function", "{}", res.body);
    assert_eq!(s.get("/v1/state-machines/reference").await.status, StatusCode::NOT_FOUND, "nothing was stored");
    s.stop().await;
}

async fn known_resources_and_callbacks_are_accepted(backend: Backend) {
    let s = TestServer::start(backend).await;
    for resource in [
        "tenancy:noop",
        "tenancy:fail",
        "tenancy:events.put",
        "arn:aws:states:::events:putEvents",
        "arn:aws:states:::http:invoke",
        "arn:aws:states:::sqs:sendMessage",
        "tenancy:queue.send",
    ] {
        let definition = json!({"StartAt": "Each", "States": {"Each": {"Type": "Map", "Next": "Top", "ItemProcessor":
            {"StartAt": "Inner", "States": {"Inner": task(resource)}}}, "Top": task(resource)}});
        let res = put(&s, "known", definition).await;
        assert!(res.status.is_success(), "{resource}: {}", res.body);
    }
    // A callback on any name is a pure wait (or runs its base's handler first).
    for resource in [
        "tenancy:callback.waitForTaskToken",
        "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "arn:aws:states:::http:invoke.waitForTaskToken",
    ] {
        let res = put(&s, "callback", json!({"StartAt": "Wait", "States": {"Wait": task(resource)}})).await;
        assert!(res.status.is_success(), "{resource}: {}", res.body);
    }
    s.stop().await;
}
