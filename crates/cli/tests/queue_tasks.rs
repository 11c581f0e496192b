//! State machines sending to queues: `arn:aws:states:::sqs:sendMessage` and
//! `tenancy:queue.send`, with `.waitForTaskToken` completed by a worker over HTTP.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};

both_backends!(wait_for_task_token_through_a_queue, heartbeat_timeout_fails_the_task, plain_send);

async fn setup(s: &TestServer, machine: &str, task: Value) {
    let res = s.call(Method::PUT, "/v1/queues/work", Some(json!({"visibility_timeout_s": 60}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let definition = json!({"StartAt": "Send", "States": {"Send": task}});
    let res =
        s.call(Method::PUT, &format!("/v1/state-machines/{machine}"), Some(json!({"definition": definition}))).await;
    assert!(res.status.is_success(), "{}", res.body);
}

async fn start(s: &TestServer, machine: &str, input: Value) -> String {
    let res = s.call(Method::POST, "/v1/executions", Some(json!({"state_machine": machine, "input": input}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

/// A worker's receive (long poll): the one message the execution sent.
async fn receive_one(s: &TestServer, token: &str) -> Value {
    let res = s
        .call_with(Some(token), Method::POST, "/v1/queues/work/receive", Some(json!({"max": 10, "wait_s": 20})), &[])
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let messages = res.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{}", res.body);
    messages[0].clone()
}

async fn wait_for_task_token_through_a_queue(backend: Backend) {
    let s = TestServer::start(backend).await;
    let task = json!({"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": "https://sqs.local/000000000000/work",
                       "MessageBody": {"token.$": "$$.Task.Token", "order.$": "$.order"}},
        "TimeoutSeconds": 600, "End": true});
    setup(&s, "ship", task).await;
    let id = start(&s, "ship", json!({"order": 42})).await;
    // A worker in any language: a service key, plain HTTP.
    let worker = s.key("service", None).await;
    let message = receive_one(&s, &worker).await;
    assert_eq!(message["body"]["order"], 42);
    let token = message["body"]["token"].as_str().unwrap().to_owned();
    let res = s.call_with(Some(&worker), Method::POST, &format!("/v1/task-tokens/{token}/heartbeat"), None, &[]).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    let res = s
        .call_with(
            Some(&worker),
            Method::POST,
            &format!("/v1/task-tokens/{token}/success"),
            Some(json!({"output": {"shipped": true, "order": 42}})),
            &[],
        )
        .await;
    assert!(res.status.is_success(), "{}", res.body);
    let path = format!("/v1/queues/work/messages/{}", message["receipt"].as_str().unwrap());
    assert_eq!(s.call_with(Some(&worker), Method::DELETE, &path, None, &[]).await.status, StatusCode::NO_CONTENT);
    let done = s.wait_execution(&id, "SUCCEEDED").await;
    assert_eq!(done["output"], json!({"shipped": true, "order": 42}));
    s.stop().await;
}

async fn heartbeat_timeout_fails_the_task(backend: Backend) {
    let s = TestServer::start(backend).await;
    let task = json!({"Type": "Task", "Resource": "tenancy:queue.send.waitForTaskToken",
        "Parameters": {"QueueName": "work", "MessageBody": {"token.$": "$$.Task.Token"}},
        "TimeoutSeconds": 600, "HeartbeatSeconds": 1, "End": true});
    setup(&s, "quiet", task).await;
    let id = start(&s, "quiet", json!({})).await;
    // The worker takes the message and then says nothing.
    let message = receive_one(&s, support::ADMIN).await;
    assert!(message["body"]["token"].is_string());
    let failed = s.wait_execution(&id, "FAILED").await;
    assert_eq!(failed["error"], "States.HeartbeatTimeout", "{failed}");
    s.stop().await;
}

async fn plain_send(backend: Backend) {
    let s = TestServer::start(backend).await;
    let task = json!({"Type": "Task", "Resource": "tenancy:queue.send",
        "Parameters": {"QueueName": "work", "MessageBody.$": "$.payload", "MessageGroupId": "g"}, "End": true});
    setup(&s, "send", task).await;
    let id = start(&s, "send", json!({"payload": "hello"})).await;
    let done = s.wait_execution(&id, "SUCCEEDED").await;
    assert!(done["output"]["MessageId"].as_str().unwrap().starts_with("msg_"), "{done}");
    let message = receive_one(&s, support::ADMIN).await;
    assert_eq!((message["body"].clone(), message["group_id"].clone()), (json!("hello"), json!("g")));
    assert_eq!(message["id"], done["output"]["MessageId"]);
    // A missing queue fails the task with the store's code.
    let task = json!({"Type": "Task", "Resource": "tenancy:queue.send",
        "Parameters": {"QueueName": "missing", "MessageBody": 1}, "End": true});
    let definition = json!({"StartAt": "Send", "States": {"Send": task}});
    s.call(Method::PUT, "/v1/state-machines/bad", Some(json!({"definition": definition}))).await;
    let id = start(&s, "bad", json!({})).await;
    assert_eq!(s.wait_execution(&id, "FAILED").await["error"], "Tenancy.not-found");
    s.stop().await;
}
