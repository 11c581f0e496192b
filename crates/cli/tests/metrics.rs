//! `GET /metrics` from a real server on both backends, after the things an operator
//! watches happened: a tenant provisioned through a hook, queue messages sent and
//! received, a webhook delivered, quota consumes granted and refused. Checks the
//! families and values docs/operations.md tells an operator to look at.
//!
//! The two backends' tests run in one process, which has one metrics recorder: the
//! names of plans, queues and quotas are per backend, and shared counters are checked
//! with `>=`.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{Backend, TestServer};

both_backends!(metrics_show_what_happened);

/// One sample: the name and labels of a line of the exposition, and its value.
type Samples = Vec<(String, BTreeMap<String, String>, f64)>;

/// Parses Prometheus's text format (what this server writes of it: no escapes in
/// label values, no timestamps).
fn parse(text: &str) -> Samples {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a value: {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect("labels end with }");
                let labels = rest
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").unwrap_or_else(|| panic!("a label: {p:?}"));
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        out.push((name, labels, value));
    }
    out
}

/// The value of the one sample of `name` with (at least) `labels`.
fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| *v)
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?} matches {} samples", matching.len());
    matching.first().copied()
}

async fn scrape(s: &TestServer) -> (String, Samples) {
    let res = reqwest::get(format!("{}/metrics", s.url)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = res.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

/// Scrapes until `ok` holds (the gauges are collected at most once a second), for 20 s.
async fn scrape_until(s: &TestServer, what: &str, ok: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (text, samples) = scrape(s).await;
        if ok(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "never {what}; the last scrape:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A receiver answering 200 to every POST (a hook, a webhook).
async fn receiver() -> String {
    let app = axum::Router::new().route("/{*path}", axum::routing::post(|| async { StatusCode::OK }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn metrics_show_what_happened(backend: Backend) {
    let b = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let s = TestServer::start(backend).await;
    let hooks = receiver().await;
    let (plan, quota, orders, dlq) = (format!("m-{b}"), format!("{b}seats"), format!("orders-{b}"), format!("dlq-{b}"));

    // A provisioning hook, a webhook subscription, a plan with a quota of 2.
    let res = s
        .call(Method::PUT, "/v1/hooks/billing", Some(json!({"url": format!("{hooks}/hook"), "events": ["provision"]})))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let sub = json!({"name": "all", "pattern": {"detail-type": ["TenantCreated"]},
                     "target": {"type": "webhook", "url": format!("{hooks}/webhook")}});
    let res = s.call(Method::POST, "/v1/subscriptions", Some(sub)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let res = s
        .call(
            Method::PUT,
            &format!("/v1/plans/{plan}"),
            Some(json!({"name": plan, "isolation": "pool", "quotas": {quota.clone(): 2}})),
        )
        .await;
    assert!(res.status.is_success(), "{}", res.body);
    for t in ["t1", "t2"] {
        s.create_tenant(&format!("{t}-{b}"), &plan).await;
        s.wait_status(&format!("{t}-{b}"), "active").await;
    }
    let res = s.call(Method::POST, &format!("/v1/tenants/t1-{b}/suspend"), Some(json!({}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_status(&format!("t1-{b}"), "suspended").await;

    // Quotas: two granted, one refused.
    let consume = format!("/v1/tenants/t2-{b}/quotas/{quota}/consume");
    for expected in [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS] {
        let res = s.call(Method::POST, &consume, Some(json!({"amount": 1}))).await;
        assert_eq!(res.status, expected, "{}", res.body);
    }

    // A queue with a dead-letter queue: three messages sent, one of them received (in
    // flight); one message sent straight to the DLQ.
    for (name, spec) in [(&dlq, json!({})), (&orders, json!({"max_receive_count": 5, "dead_letter_queue": dlq}))] {
        let res = s.call(Method::PUT, &format!("/v1/queues/{name}"), Some(spec)).await;
        assert!(res.status.is_success(), "{}", res.body);
    }
    for n in 0..3 {
        let res = s.call(Method::POST, &format!("/v1/queues/{orders}/messages"), Some(json!({"body": {"n": n}}))).await;
        assert!(res.status.is_success(), "{}", res.body);
    }
    let res = s.call(Method::POST, &format!("/v1/queues/{dlq}/messages"), Some(json!({"body": {"dead": true}}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let res = s.call(Method::POST, &format!("/v1/queues/{orders}/receive"), Some(json!({"max": 1, "wait_s": 0}))).await;
    assert_eq!(res.body["messages"].as_array().map(Vec::len), Some(1), "{}", res.body);

    let m = scrape_until(&s, "the webhook deliveries and tenants counted", |m| {
        value(m, "tenancy_tenants", &[("plan", &plan), ("status", "active")]) == Some(1.0)
            && value(m, "tenancy_webhook_deliveries_total", &[("outcome", "delivered"), ("target", "http")])
                .is_some_and(|v| v >= 2.0)
    })
    .await;

    // Tenants by status and plan.
    assert_eq!(value(&m, "tenancy_tenants", &[("plan", &plan), ("status", "suspended")]), Some(1.0));
    // HTTP requests by route and status, with their latency.
    let created = [("method", "POST"), ("route", "/v1/tenants"), ("status", "202")];
    assert!(value(&m, "tenancy_http_requests_total", &created).unwrap() >= 2.0);
    assert!(value(&m, "tenancy_http_request_duration_seconds_count", &created).unwrap() >= 2.0);
    let refused = [("method", "POST"), ("route", "/v1/tenants/{id}/quotas/{name}/consume"), ("status", "429")];
    assert!(value(&m, "tenancy_http_requests_total", &refused).unwrap() >= 1.0);
    // Executions: the provisionings succeeded, their steps and transitions counted,
    // the hook's call among the steps; none running or stuck any more.
    let provision = [("state_machine", "tenancy.tenant.provision"), ("status", "SUCCEEDED")];
    assert!(value(&m, "tenancy_executions_finished_total", &provision).unwrap() >= 2.0);
    let machine = [("state_machine", "tenancy.tenant.provision")];
    assert!(value(&m, "tenancy_execution_state_transitions_total", &machine).unwrap() >= 2.0);
    let hook_step =
        [("state_machine", "tenancy.tenant.provision"), ("resource", "tenancy:hooks.call"), ("outcome", "succeeded")];
    assert!(value(&m, "tenancy_execution_step_duration_seconds_count", &hook_step).unwrap() >= 2.0);
    // Queues: depth, in flight, the oldest message's age, the DLQ's depth.
    let waiting = [("queue", orders.as_str()), ("state", "waiting")];
    assert_eq!(value(&m, "tenancy_queue_messages", &waiting), Some(2.0));
    let in_flight = [("queue", orders.as_str()), ("state", "in_flight")];
    assert_eq!(value(&m, "tenancy_queue_messages", &in_flight), Some(1.0));
    let age = value(&m, "tenancy_queue_oldest_message_age_seconds", &[("queue", &orders)]).unwrap();
    assert!((0.0..120.0).contains(&age), "{age}");
    assert_eq!(value(&m, "tenancy_dlq_messages", &[("queue", &dlq)]), Some(1.0));
    // The orders queue is no dead-letter queue.
    assert_eq!(value(&m, "tenancy_dlq_messages", &[("queue", &orders)]), None);
    // Webhook deliveries' latency; quota decisions.
    let delivered = [("outcome", "delivered"), ("target", "http")];
    assert!(value(&m, "tenancy_webhook_delivery_duration_seconds_count", &delivered).unwrap() >= 2.0);
    assert!(value(&m, "tenancy_webhook_deliveries", &[("status", "dead")]).is_some());
    assert_eq!(value(&m, "tenancy_quota_decisions_total", &[("quota", &quota), ("decision", "granted")]), Some(2.0));
    assert_eq!(value(&m, "tenancy_quota_decisions_total", &[("quota", &quota), ("decision", "refused")]), Some(1.0));
    // Store latency; the process.
    assert!(value(&m, "tenancy_store_query_duration_seconds_count", &[("op", "write")]).unwrap() > 0.0);
    assert!(value(&m, "tenancy_store_query_duration_seconds_count", &[("op", "execution_commit")]).unwrap() > 0.0);
    assert!(value(&m, "process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(value(&m, "process_open_fds", &[]).unwrap() > 0.0);

    // The message deleted and the tenant gone: the gauges follow (to 0, not stale).
    let receipt = res.body["messages"][0]["receipt"].as_str().unwrap().to_owned();
    let del = s.call(Method::DELETE, &format!("/v1/queues/{orders}/messages/{receipt}"), None).await;
    assert!(del.status.is_success(), "{}", del.body);
    let m =
        scrape_until(&s, "the in-flight message gone", |m| value(m, "tenancy_queue_messages", &in_flight) == Some(0.0))
            .await;
    assert_eq!(value(&m, "tenancy_queue_messages", &waiting), Some(2.0));
    s.stop().await;
}
