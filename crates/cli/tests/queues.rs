//! Queues over HTTP on both backends: settings, send/receive/delete, long polling
//! woken by sends, visibility, dead-lettering and redrive, depth, audit, roles, and
//! event subscriptions delivering into a queue.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};

both_backends!(
    queue_lifecycle,
    empty_settings_are_sqs_defaults,
    long_poll_is_woken_by_a_send,
    dead_letters_and_redrive,
    events_into_a_queue,
    attributes_and_peek
);

async fn put(s: &TestServer, name: &str, spec: Value) -> support::Res {
    s.call(Method::PUT, &format!("/v1/queues/{name}"), Some(spec)).await
}

async fn receive(s: &TestServer, token: &str, q: &str, max: u32, wait_s: u64) -> Vec<Value> {
    let res = s
        .call_with(
            Some(token),
            Method::POST,
            &format!("/v1/queues/{q}/receive"),
            Some(json!({"max": max, "wait_s": wait_s})),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["messages"].as_array().unwrap().clone()
}

async fn queue_lifecycle(backend: Backend) {
    let s = TestServer::start(backend).await;
    // Bad settings are 400 with a code and a detail naming the problem; nothing is stored.
    for (name, spec, code, says) in [
        ("q", json!({"visibility_timeout_s": 99999}), "invalid-queue-settings", "visibility_timeout_s"),
        (
            "q",
            json!({"visibility_timeout_s": 5, "max_receive_count": 3}),
            "invalid-queue-settings",
            "dead_letter_queue",
        ),
        (
            "q",
            json!({"visibility_timeout_s": 5, "max_receive_count": 3, "dead_letter_queue": "nope"}),
            "unknown-queue",
            "nope",
        ),
        ("bad name!", json!({"visibility_timeout_s": 5}), "invalid-queue-name", "queue name"),
        ("q", json!({"visibility_timeout_s": 5, "colour": "blue"}), "invalid-body", "colour"),
    ] {
        let res = put(&s, &urlencode(name), spec.clone()).await;
        assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, code), "{spec}: {}", res.body);
        assert!(res.body["detail"].as_str().unwrap().contains(says), "{}", res.body);
    }
    assert_eq!(s.get("/v1/queues").await.body["items"], json!([]));

    let res = put(&s, "jobs", json!({"visibility_timeout_s": 30})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(put(&s, "jobs", json!({"visibility_timeout_s": 30})).await.status, StatusCode::OK);

    // Workers are services: they send, receive and delete; viewers only read.
    let service = s.key("service", None).await;
    let viewer = s.key("viewer", None).await;
    let sent = s
        .call_with(Some(&service), Method::POST, "/v1/queues/jobs/messages", Some(json!({"body": {"n": 1}})), &[])
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.body);
    let forbidden =
        s.call_with(Some(&viewer), Method::POST, "/v1/queues/jobs/messages", Some(json!({"body": 1})), &[]).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let entries: Vec<Value> = (2..=4).map(|n| json!({"body": {"n": n}})).collect();
    let batch = s.call(Method::POST, "/v1/queues/jobs/messages/batch", Some(json!({"entries": entries}))).await;
    assert_eq!(batch.status, StatusCode::CREATED, "{}", batch.body);
    assert_eq!(batch.body["messages"].as_array().unwrap().len(), 3);
    let too_many: Vec<Value> = (0..101).map(|n| json!({"body": n})).collect();
    let res = s.call(Method::POST, "/v1/queues/jobs/messages/batch", Some(json!({"entries": too_many}))).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-batch"));
    // Dedup: accepted, not enqueued twice.
    for _ in 0..2 {
        let res =
            s.call(Method::POST, "/v1/queues/jobs/messages", Some(json!({"body": {"n": 5}, "dedup_id": "five"}))).await;
        assert_eq!(res.status, StatusCode::CREATED);
    }
    let info = s.call_with(Some(&viewer), Method::GET, "/v1/queues/jobs", None, &[]).await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!((info.body["visible"].clone(), info.body["in_flight"].clone()), (json!(5), json!(0)), "{}", info.body);

    let got = receive(&s, &service, "jobs", 10, 0).await;
    let ns: Vec<Value> = got.iter().map(|m| m["body"]["n"].clone()).collect();
    assert_eq!(ns, [json!(1), json!(2), json!(3), json!(4), json!(5)]);
    assert!(got.iter().all(|m| m["receive_count"] == 1));
    let info = s.get("/v1/queues/jobs").await;
    assert_eq!((info.body["visible"].clone(), info.body["in_flight"].clone()), (json!(0), json!(5)));

    // One deleted alone, two in a batch (with a stale receipt), one made visible again.
    let receipt = |i: usize| got[i]["receipt"].as_str().unwrap().to_owned();
    let path = format!("/v1/queues/jobs/messages/{}", receipt(0));
    let res = s.call_with(Some(&service), Method::DELETE, &path, None, &[]).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let res = s.call(Method::DELETE, &format!("/v1/queues/jobs/messages/{}", receipt(0)), None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "deleted already");
    let res = s
        .call(
            Method::POST,
            "/v1/queues/jobs/messages/delete",
            Some(json!({"receipts": [receipt(1), receipt(2), receipt(0)]})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["not_found"], json!([receipt(0)]));
    let res = s
        .call(
            Method::POST,
            &format!("/v1/queues/jobs/messages/{}/visibility", receipt(3)),
            Some(json!({"visibility_timeout_s": 0})),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    let again = receive(&s, &service, "jobs", 10, 0).await;
    assert_eq!((again.len(), again[0]["receive_count"].clone()), (1, json!(2)));
    let res = s.call(Method::DELETE, "/v1/queues/jobs/messages/not-a-receipt", None).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-receipt"));

    let res = s.call(Method::POST, "/v1/queues/jobs/receive", Some(json!({"max": 0}))).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = s.call(Method::POST, "/v1/queues/jobs/receive", Some(json!({"wait_s": 21}))).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.call(Method::POST, "/v1/queues/missing/receive", Some(json!({}))).await.status, StatusCode::NOT_FOUND);

    assert_eq!(s.call(Method::DELETE, "/v1/queues/jobs", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(s.get("/v1/queues/jobs").await.status, StatusCode::NOT_FOUND);
    let actions: Vec<String> = s.get("/v1/audit?limit=1000").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .filter(|a| a.starts_with("queue."))
        .collect();
    assert_eq!(actions, ["queue.put", "queue.put", "queue.delete"], "queue changes are audited, messages are not");
    s.stop().await;
}

fn urlencode(s: &str) -> String {
    s.replace(' ', "%20").replace('!', "%21")
}

async fn long_poll_is_woken_by_a_send(backend: Backend) {
    let s = TestServer::start(backend).await;
    put(&s, "work", json!({"visibility_timeout_s": 30})).await;
    let started = Instant::now();
    let url = s.url.clone();
    let poll = tokio::spawn(async move {
        let res = reqwest::Client::new()
            .post(format!("{url}/v1/queues/work/receive"))
            .bearer_auth(support::ADMIN)
            .json(&json!({"max": 10, "wait_s": 20}))
            .send()
            .await
            .unwrap();
        (res.json::<Value>().await.unwrap(), started.elapsed())
    });
    // Send only once the poll is waiting: its depth is empty and it has not returned.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the receive waits while the queue is empty");
    let res = s.call(Method::POST, "/v1/queues/work/messages", Some(json!({"body": "wake up"}))).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let (body, elapsed) = poll.await.unwrap();
    assert_eq!(body["messages"][0]["body"], "wake up");
    assert!(elapsed < Duration::from_secs(5), "woken by the send, not by the 20 s timeout: {elapsed:?}");

    // A delayed message ends a long poll when it becomes visible.
    s.call(Method::POST, "/v1/queues/work/messages", Some(json!({"body": "later", "delay_s": 1}))).await;
    let started = Instant::now();
    let got = receive(&s, support::ADMIN, "work", 1, 10).await;
    assert_eq!(got[0]["body"], "later");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // An empty queue returns after wait_s.
    let started = Instant::now();
    assert!(receive(&s, support::ADMIN, "work", 1, 1).await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
    s.stop().await;
}

async fn dead_letters_and_redrive(backend: Backend) {
    let s = TestServer::start(backend).await;
    assert_eq!(put(&s, "dlq", json!({"visibility_timeout_s": 30})).await.status, StatusCode::CREATED);
    let spec = json!({"visibility_timeout_s": 0, "max_receive_count": 2, "dead_letter_queue": "dlq"});
    assert_eq!(put(&s, "work", spec).await.status, StatusCode::CREATED);
    let res = s.call(Method::DELETE, "/v1/queues/dlq", None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "queue-in-use"));
    s.call(Method::POST, "/v1/queues/work/messages", Some(json!({"body": "poison"}))).await;
    // Visibility timeout 0: each receive sees it again, until the third moves it.
    assert_eq!(receive(&s, support::ADMIN, "work", 1, 0).await[0]["receive_count"], 1);
    assert_eq!(receive(&s, support::ADMIN, "work", 1, 0).await[0]["receive_count"], 2);
    assert!(receive(&s, support::ADMIN, "work", 1, 0).await.is_empty());
    let info = s.get("/v1/queues/work").await.body;
    assert_eq!((info["visible"].clone(), info["dead_lettered"].clone()), (json!(0), json!(1)), "{info}");
    let dlq = s.get("/v1/queues/dlq").await.body;
    assert_eq!(dlq["visible"], 1, "{dlq}");

    let res = s.call(Method::POST, "/v1/queues/dlq/redrive", None).await;
    assert_eq!((res.status, res.body["moved"].clone()), (StatusCode::OK, json!(1)), "{}", res.body);
    let back = receive(&s, support::ADMIN, "work", 1, 0).await;
    assert_eq!((back[0]["body"].clone(), back[0]["receive_count"].clone()), (json!("poison"), json!(1)));
    let audited = s.get("/v1/audit?action=queue.redrive").await.body;
    assert_eq!(audited["items"].as_array().unwrap().len(), 1);
    s.stop().await;
}

async fn events_into_a_queue(backend: Backend) {
    let s = TestServer::start(backend).await;
    let body = json!({"name": "to-queue", "pattern": {"detail-type": ["TenantCreated"]},
                      "target": {"type": "queue", "queue": "tenant-events"}});
    let res = s.call(Method::POST, "/v1/subscriptions", Some(body.clone())).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "unknown-queue"), "{}", res.body);
    put(&s, "tenant-events", json!({"visibility_timeout_s": 30})).await;
    let res = s.call(Method::POST, "/v1/subscriptions", Some(body)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    let got = receive(&s, support::ADMIN, "tenant-events", 10, 20).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body"]["detail-type"], "TenantCreated");
    assert_eq!(got[0]["body"]["tenant_id"], "acme");
    s.stop().await;
}

/// `PUT /v1/queues/{name}` with `{}` creates a queue with SQS's defaults: visibility
/// timeout 30 s, retention 4 days, no delay, no dead-letter queue.
async fn empty_settings_are_sqs_defaults(backend: Backend) {
    let s = TestServer::start(backend).await;
    let res = put(&s, "work", json!({})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let got = s.get("/v1/queues/work").await.body;
    assert_eq!(got["visibility_timeout_s"], 30, "{got}");
    assert_eq!(got["retention_s"], 345_600, "{got}");
    assert_eq!(got["delay_s"], 0, "{got}");
    assert!(got["dead_letter_queue"].is_null(), "{got}");
    s.stop().await;
}

/// Message attributes: stored with the message and returned on receive and peek;
/// bad ones are 400 `invalid-message-attributes` and enqueue nothing (the whole batch
/// neither). A peek shows the first messages with their state and never receives
/// them; viewers may peek, not receive.
async fn attributes_and_peek(backend: Backend) {
    let s = TestServer::start(backend).await;
    assert_eq!(put(&s, "jobs", json!({"visibility_timeout_s": 30})).await.status, StatusCode::CREATED);
    let eleven: serde_json::Map<String, Value> = (0..11).map(|i| (format!("a{i}"), json!("v"))).collect();
    for (attributes, says) in [
        (Value::Object(eleven), "at most 10"),
        (json!({"bad name": "v"}), "bad name"),
        (json!({"big": "x".repeat(1025)}), "1024"),
    ] {
        let res =
            s.call(Method::POST, "/v1/queues/jobs/messages", Some(json!({"body": 1, "attributes": attributes}))).await;
        assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-message-attributes"), "{}", res.body);
        assert!(res.body["detail"].as_str().unwrap().contains(says), "{}", res.body);
    }
    let entries = json!([{"body": 1}, {"body": 2, "attributes": {"bad name": "v"}}]);
    let res = s.call(Method::POST, "/v1/queues/jobs/messages/batch", Some(json!({"entries": entries}))).await;
    assert_eq!(res.code(), "invalid-message-attributes", "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().starts_with("entries[1]"), "{}", res.body);
    let res = s.call(Method::POST, "/v1/queues/jobs/messages", Some(json!({"body": 1, "attributes": {"n": 1}}))).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-body"), "values are strings: {}", res.body);
    assert_eq!(s.get("/v1/queues/jobs").await.body["visible"], 0, "nothing was enqueued");

    let attrs = json!({"tenant": "acme", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"});
    let res =
        s.call(Method::POST, "/v1/queues/jobs/messages", Some(json!({"body": {"n": 1}, "attributes": attrs}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let res = s.call(Method::POST, "/v1/queues/jobs/messages", Some(json!({"body": {"n": 2}, "delay_s": 600}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);

    let viewer = s.key("viewer", None).await;
    let peek = |limit: &'static str| {
        let viewer = viewer.clone();
        let s = &s;
        async move {
            let res =
                s.call_with(Some(&viewer), Method::GET, &format!("/v1/queues/jobs/messages{limit}"), None, &[]).await;
            assert_eq!(res.status, StatusCode::OK, "{}", res.body);
            res.body["messages"].as_array().unwrap().clone()
        }
    };
    let peeked = peek("").await;
    assert_eq!(peeked.len(), 2);
    assert_eq!((peeked[0]["state"].clone(), peeked[0]["attributes"].clone()), (json!("visible"), attrs.clone()));
    assert_eq!((peeked[1]["state"].clone(), peeked[1]["attributes"].clone()), (json!("delayed"), json!({})));
    assert!(peeked[0].get("receipt").is_none(), "a peek hands out no receipt");
    assert_eq!(peek("?limit=1").await.len(), 1);
    for bad in ["?limit=0", "?limit=101", "?colour=blue"] {
        let res = s.get(&format!("/v1/queues/jobs/messages{bad}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.body);
    }
    assert_eq!(s.get("/v1/queues/nope/messages").await.status, StatusCode::NOT_FOUND);
    // Peeking received nothing: the message is still there, with its attributes.
    let service = s.key("service", None).await;
    let got = receive(&s, &service, "jobs", 10, 0).await;
    assert_eq!((got.len(), got[0]["attributes"].clone(), got[0]["receive_count"].clone()), (1, attrs, json!(1)));
    assert_eq!(peek("").await[0]["state"], "in_flight");
    let res = s.call_with(Some(&viewer), Method::POST, "/v1/queues/jobs/receive", Some(json!({"max": 1})), &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "a viewer peeks but does not receive");
}
