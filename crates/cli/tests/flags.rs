//! Feature flags over OFREP end to end: features and config values as flags, overrides,
//! the protocol's errors, a tenant key forced to its own tenant, bulk evaluation with
//! its ETag, disabled tenants, and who may evaluate.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, Res, TestServer, ADMIN};

both_backends!(
    features_and_config_values_are_flags,
    overrides_turn_features_off_and_on,
    bad_requests_get_ofreps_errors,
    a_tenant_key_is_forced_to_its_own_tenant,
    bulk_evaluation_with_its_etag,
    a_suspended_tenant_has_its_flags_disabled,
    who_may_evaluate,
);

async fn server(backend: Backend) -> TestServer {
    let s = TestServer::start(backend).await;
    let pro = json!({"name": "Pro", "isolation": "pool", "features": ["sso", "audit"],
        "config": {"theme": "dark", "max_upload_mb": 50, "ratio": 0.5, "banner": {"text": "hi", "level": 2}}});
    let free = json!({"name": "Free", "isolation": "pool", "features": ["sandbox"], "config": {"theme": "plain"}});
    for (id, plan) in [("pro", pro), ("free", free)] {
        let res = s.call(Method::PUT, &format!("/v1/plans/{id}"), Some(plan)).await;
        assert!(res.status.is_success(), "{}", res.body);
    }
    for (t, plan) in [("acme", "pro"), ("globex", "free")] {
        s.create_tenant(t, plan).await;
        s.wait_status(t, "active").await;
    }
    s
}

fn context(tenant: &str) -> Value {
    json!({"context": {"targetingKey": tenant, "email": "someone@example.com"}})
}

async fn flag_as(s: &TestServer, token: Option<&str>, key: &str, body: Value) -> Res {
    s.call_with(token, Method::POST, &format!("/ofrep/v1/evaluate/flags/{key}"), Some(body), &[]).await
}

async fn flag(s: &TestServer, tenant: &str, key: &str) -> Res {
    flag_as(s, Some(ADMIN), key, context(tenant)).await
}

/// `(value, reason, variant)` of a successful evaluation.
async fn value(s: &TestServer, tenant: &str, key: &str) -> (Value, String, String) {
    let res = flag(s, tenant, key).await;
    assert_eq!(res.status, StatusCode::OK, "{key}: {}", res.body);
    assert_eq!(res.body["key"], key);
    (res.body["value"].clone(), res.body["reason"].as_str().unwrap().to_owned(), res.body["variant"].to_string())
}

fn on(reason: &str) -> (Value, String, String) {
    (json!(true), reason.to_owned(), "\"on\"".to_owned())
}

fn off(reason: &str) -> (Value, String, String) {
    (json!(false), reason.to_owned(), "\"off\"".to_owned())
}

async fn bulk(s: &TestServer, tenant: &str, if_none_match: Option<&str>) -> Res {
    let headers: Vec<(&str, &str)> = if_none_match.map(|e| ("if-none-match", e)).into_iter().collect();
    s.call_with(Some(ADMIN), Method::POST, "/ofrep/v1/evaluate/flags", Some(context(tenant)), &headers).await
}

async fn features_and_config_values_are_flags(backend: Backend) {
    let s = server(backend).await;
    let res = flag(&s, "acme", "sso").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(
        res.body,
        json!({"key": "sso", "value": true, "reason": "TARGETING_MATCH", "variant": "on",
               "metadata": {"tenantId": "acme", "plan": "pro", "tenantStatus": "active"}})
    );
    assert_eq!(value(&s, "acme", "audit").await, on("TARGETING_MATCH"));
    // Another plan's feature is known, and off for a tenant whose plan lacks it.
    assert_eq!(value(&s, "acme", "sandbox").await, off("DEFAULT"));
    assert_eq!(value(&s, "globex", "sandbox").await, on("TARGETING_MATCH"));
    assert_eq!(value(&s, "globex", "sso").await, off("DEFAULT"));
    // Config values keep their JSON type.
    let config = (json!("dark"), "TARGETING_MATCH".to_owned(), "\"config\"".to_owned());
    assert_eq!(value(&s, "acme", "theme").await, config);
    assert_eq!(value(&s, "globex", "theme").await.0, json!("plain"));
    assert!(value(&s, "acme", "max_upload_mb").await.0.is_u64());
    assert_eq!(value(&s, "acme", "max_upload_mb").await.0, json!(50));
    assert_eq!(value(&s, "acme", "ratio").await.0, json!(0.5));
    assert_eq!(value(&s, "acme", "banner").await.0, json!({"text": "hi", "level": 2}));
    // Anything else: 404 FLAG_NOT_FOUND in OFREP's shape.
    let res = flag(&s, "acme", "no-such-flag").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(
        (res.body["key"].as_str(), res.body["errorCode"].as_str()),
        (Some("no-such-flag"), Some("FLAG_NOT_FOUND"))
    );
    assert!(res.body["errorDetails"].as_str().unwrap().contains("no-such-flag"), "{}", res.body);
    assert_eq!(res.body.as_object().unwrap().len(), 3, "{}", res.body);
    // A config key of another plan is no flag of this tenant.
    assert_eq!(flag(&s, "globex", "max_upload_mb").await.status, StatusCode::NOT_FOUND);
    // A feature added to a plan is a flag at once, for its tenants and the others.
    let res = s.call(Method::PATCH, "/v1/plans/free", Some(json!({"features": ["sandbox", "export"]}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(value(&s, "globex", "export").await, on("TARGETING_MATCH"));
    assert_eq!(value(&s, "acme", "export").await, off("DEFAULT"));
    let res = s.call(Method::PATCH, "/v1/plans/free", Some(json!({"features": ["sandbox"]}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(flag(&s, "acme", "export").await.status, StatusCode::NOT_FOUND, "gone with the last plan naming it");
}

async fn overrides_turn_features_off_and_on(backend: Backend) {
    let s = server(backend).await;
    let overrides = json!({"features": {"sso": false, "beta": true},
                           "config": {"theme": "light", "seats_shown": 7, "audit": {"mode": "full"}}});
    let res = s.call(Method::PUT, "/v1/tenants/acme/overrides", Some(overrides)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(value(&s, "acme", "sso").await, off("TARGETING_MATCH"), "turned off by its override");
    assert_eq!(value(&s, "acme", "beta").await, on("TARGETING_MATCH"), "a feature only the overrides name");
    assert_eq!(value(&s, "acme", "theme").await.0, json!("light"));
    assert_eq!(value(&s, "acme", "seats_shown").await.0, json!(7));
    assert_eq!(value(&s, "acme", "audit").await.0, json!({"mode": "full"}), "a config key wins over a feature");
    assert_eq!(value(&s, "acme", "max_upload_mb").await.0, json!(50), "the plan's other values stay");
    // Another tenant's overrides are not this one's flags.
    assert_eq!(flag(&s, "globex", "beta").await.status, StatusCode::NOT_FOUND);
    // Expired overrides stop applying.
    let expired = json!({"features": {"sso": false}, "expires_at": "2000-01-01T00:00:00Z"});
    let res = s.call(Method::PUT, "/v1/tenants/acme/overrides", Some(expired)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(value(&s, "acme", "sso").await, on("TARGETING_MATCH"));
    assert_eq!(value(&s, "acme", "theme").await.0, json!("dark"));
    // Cleared: the plan alone again, and `beta` no flag at all.
    let res = s.call(Method::PUT, "/v1/tenants/acme/overrides", Some(json!({"features": {"beta": true}}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(value(&s, "acme", "beta").await, on("TARGETING_MATCH"));
    let res = s.call(Method::DELETE, "/v1/tenants/acme/overrides", None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    assert_eq!(flag(&s, "acme", "beta").await.status, StatusCode::NOT_FOUND);
}

async fn bad_requests_get_ofreps_errors(backend: Backend) {
    let s = server(backend).await;
    let single = |body: &'static [u8]| {
        let s = &s;
        async move { s.send_bytes(Some(ADMIN), Method::POST, "/ofrep/v1/evaluate/flags/sso", body.to_vec(), &[]).await }
    };
    let bulk_of = |body: &'static [u8]| {
        let s = &s;
        async move { s.send_bytes(Some(ADMIN), Method::POST, "/ofrep/v1/evaluate/flags", body.to_vec(), &[]).await }
    };
    let cases: [(&[u8], &str); 7] = [
        (br#"{"context": {"email": "a@example.com"}}"#, "TARGETING_KEY_MISSING"),
        (br#"{"context": {"targetingKey": ""}}"#, "TARGETING_KEY_MISSING"),
        (b"{}", "TARGETING_KEY_MISSING"),
        (br#"{"context": "acme"}"#, "INVALID_CONTEXT"),
        (br#"{"context": {"targetingKey": 42}}"#, "INVALID_CONTEXT"),
        (br#"{"context": {"targetingKey": "no-such-tenant"}}"#, "INVALID_CONTEXT"),
        (br#"{"context": {"targetingKey": "acme""#, "PARSE_ERROR"),
    ];
    for (body, code) in cases {
        let text = String::from_utf8_lossy(body);
        let res = single(body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{text}: {}", res.body);
        assert_eq!(res.header("content-type"), Some("application/json"), "{text}");
        assert_eq!((res.body["key"].as_str(), res.body["errorCode"].as_str()), (Some("sso"), Some(code)), "{text}");
        assert!(res.body["errorDetails"].as_str().is_some_and(|d| !d.is_empty()), "{text}: {}", res.body);
        let res = bulk_of(body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{text}: {}", res.body);
        assert_eq!(res.body["errorCode"], code, "{text}: {}", res.body);
        assert!(res.body.get("key").is_none() && res.body["errorDetails"].is_string(), "{}", res.body);
    }
    let res = single(b"[1, 2]").await;
    assert_eq!((res.status, res.body["errorCode"].as_str()), (StatusCode::BAD_REQUEST, Some("PARSE_ERROR")));
    // Validation comes before the flag: an unknown flag without a tenant is still 400.
    let res = s.send_bytes(Some(ADMIN), Method::POST, "/ofrep/v1/evaluate/flags/nope", b"{}".to_vec(), &[]).await;
    assert_eq!(res.body["errorCode"], "TARGETING_KEY_MISSING", "{}", res.body);
    // An offboarded tenant's record stays: its flags are disabled, not unknown.
    let res = s.call(Method::DELETE, "/v1/tenants/globex", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_status("globex", "offboarded").await;
    let (v, reason, variant) = value(&s, "globex", "sandbox").await;
    assert_eq!((v, reason.as_str(), variant.as_str()), (json!(false), "DISABLED", "\"disabled\""));
}

async fn a_tenant_key_is_forced_to_its_own_tenant(backend: Backend) {
    let s = server(backend).await;
    let acme = s.key("tenant", Some("acme")).await;
    // It names another tenant, or none: acme's flags either way.
    for body in [context("globex"), json!({"context": {}}), json!({})] {
        let res = flag_as(&s, Some(&acme), "sso", body.clone()).await;
        assert_eq!(res.status, StatusCode::OK, "{body}: {}", res.body);
        assert_eq!(
            (res.body["value"].as_bool(), res.body["metadata"]["tenantId"].as_str()),
            (Some(true), Some("acme"))
        );
        let res = s.call_with(Some(&acme), Method::POST, "/ofrep/v1/evaluate/flags", Some(body.clone()), &[]).await;
        assert_eq!(res.status, StatusCode::OK, "{body}: {}", res.body);
        assert_eq!(res.body["metadata"]["tenantId"], "acme", "{body}");
        let sandbox = res.body["flags"].as_array().unwrap().iter().find(|f| f["key"] == "sandbox").unwrap().clone();
        assert_eq!(sandbox["value"], false, "acme's, not globex's: {}", res.body);
    }
    // A service key evaluates the tenant it names.
    let service = s.key("service", None).await;
    let res = flag_as(&s, Some(&service), "sso", context("globex")).await;
    assert_eq!((res.body["value"].as_bool(), res.body["metadata"]["tenantId"].as_str()), (Some(false), Some("globex")));
}

async fn bulk_evaluation_with_its_etag(backend: Backend) {
    let s = server(backend).await;
    let first = bulk(&s, "acme", None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.header("content-type"), Some("application/json"));
    let keys: Vec<&str> = first.body["flags"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["audit", "banner", "max_upload_mb", "ratio", "sandbox", "sso", "theme"]);
    assert_eq!(first.body["metadata"], json!({"tenantId": "acme", "plan": "pro", "tenantStatus": "active"}));
    let sso = first.body["flags"].as_array().unwrap().iter().find(|f| f["key"] == "sso").unwrap();
    assert_eq!(*sso, flag(&s, "acme", "sso").await.body, "a bulk item is the single evaluation");
    let etag = first.header("etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    // Unchanged: 304 for the ETag, a weak one and a list holding it; 200 for another.
    for tag in [etag.clone(), format!("W/{etag}"), format!("\"other\", {etag}")] {
        let res = bulk(&s, "acme", Some(&tag)).await;
        assert_eq!(res.status, StatusCode::NOT_MODIFIED, "{tag}: {}", res.body);
        assert_eq!((res.body.clone(), res.header("etag")), (Value::Null, Some(etag.as_str())));
    }
    assert_eq!(bulk(&s, "acme", Some("\"other\"")).await.status, StatusCode::OK);
    // Another tenant's answer is another ETag.
    let other = bulk(&s, "globex", Some(&etag)).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_ne!(other.header("etag"), Some(etag.as_str()));
    // Every change of what the tenant sees changes the ETag: its overrides...
    let res = s.call(Method::PUT, "/v1/tenants/acme/overrides", Some(json!({"features": {"sso": false}}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let after_override = bulk(&s, "acme", Some(&etag)).await;
    assert_eq!(after_override.status, StatusCode::OK, "an override change is no 304");
    let etag2 = after_override.header("etag").unwrap().to_owned();
    assert_ne!(etag2, etag);
    let sso = after_override.body["flags"].as_array().unwrap().iter().find(|f| f["key"] == "sso").unwrap().clone();
    assert_eq!(sso["value"], false);
    assert_eq!(bulk(&s, "acme", Some(&etag2)).await.status, StatusCode::NOT_MODIFIED);
    // ...its plan...
    let res = s.call(Method::PATCH, "/v1/plans/pro", Some(json!({"config": {"theme": "blue"}}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let after_plan = bulk(&s, "acme", Some(&etag2)).await;
    assert_eq!(after_plan.status, StatusCode::OK, "a plan change is no 304");
    let etag3 = after_plan.header("etag").unwrap().to_owned();
    assert_ne!(etag3, etag2);
    // ...another plan's new feature (a new `false` flag)...
    let res = s.call(Method::PATCH, "/v1/plans/free", Some(json!({"features": ["sandbox", "export"]}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let after_catalogue = bulk(&s, "acme", Some(&etag3)).await;
    assert_eq!(after_catalogue.status, StatusCode::OK, "{}", after_catalogue.body);
    assert!(after_catalogue.body["flags"].as_array().unwrap().iter().any(|f| f["key"] == "export"));
    let etag4 = after_catalogue.header("etag").unwrap().to_owned();
    // ...and its status.
    let res = s.call(Method::POST, "/v1/tenants/acme/suspend", None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let suspended = bulk(&s, "acme", Some(&etag4)).await;
    assert_eq!(suspended.status, StatusCode::OK, "a suspension is no 304");
    assert!(
        suspended.body["flags"].as_array().unwrap().iter().all(|f| f["reason"] == "DISABLED"),
        "{}",
        suspended.body
    );
    let res = s.call(Method::POST, "/v1/tenants/acme/resume", None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let resumed = bulk(&s, "acme", Some(&etag4)).await;
    assert_eq!(resumed.status, StatusCode::NOT_MODIFIED, "back as it was: the same flags, the same ETag");
}

async fn a_suspended_tenant_has_its_flags_disabled(backend: Backend) {
    let s = server(backend).await;
    let res = s.call(Method::POST, "/v1/tenants/acme/suspend", None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let disabled = |v: Value| (v, "DISABLED".to_owned(), "\"disabled\"".to_owned());
    assert_eq!(value(&s, "acme", "sso").await, disabled(json!(false)), "its features are off");
    assert_eq!(value(&s, "acme", "sandbox").await, disabled(json!(false)));
    // A config value defers to the caller's code default: no value.
    let res = flag(&s, "acme", "theme").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.get("value").is_none(), "{}", res.body);
    assert_eq!((res.body["reason"].as_str(), res.body["variant"].as_str()), (Some("DISABLED"), Some("disabled")));
    assert_eq!(res.body["metadata"]["tenantStatus"], "suspended");
    assert_eq!(flag(&s, "acme", "no-such-flag").await.status, StatusCode::NOT_FOUND);
    // The other tenant is served as before.
    assert_eq!(value(&s, "globex", "sandbox").await, on("TARGETING_MATCH"));
    let res = s.call(Method::POST, "/v1/tenants/acme/resume", None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(value(&s, "acme", "sso").await, on("TARGETING_MATCH"));
}

async fn who_may_evaluate(backend: Backend) {
    let s = server(backend).await;
    let res = flag_as(&s, None, "sso", context("acme")).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    assert_eq!(res.code(), "unauthenticated");
    let res = flag_as(&s, Some("tny_not-a-real-key"), "sso", context("acme")).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    let res = s.call_with(None, Method::POST, "/ofrep/v1/evaluate/flags", Some(context("acme")), &[]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    for role in ["viewer", "service", "operator"] {
        let key = s.key(role, None).await;
        let res = flag_as(&s, Some(&key), "sso", context("acme")).await;
        assert_eq!((res.status, res.body["value"].as_bool()), (StatusCode::OK, Some(true)), "{role}: {}", res.body);
        let res = s.call_with(Some(&key), Method::POST, "/ofrep/v1/evaluate/flags", Some(context("globex")), &[]).await;
        assert_eq!(res.status, StatusCode::OK, "{role}: {}", res.body);
    }
    // The flag routes take no other method.
    let res = s.call(Method::GET, "/ofrep/v1/evaluate/flags/sso", None).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED, "{}", res.body);
}

/// Two replicas on one PostgreSQL database: a feature one adds to a plan becomes a flag
/// on the other within the catalogue's refresh bound (1 s; polled here for up to 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_learns_of_another_replicas_plan_change() {
    let url = support::database_url(Backend::Postgres).await;
    let a = TestServer::start_replica(url.clone()).await;
    let b = TestServer::start_replica(url).await;
    let plan = json!({"name": "Pro", "isolation": "pool", "features": ["sso"]});
    assert!(a.call(Method::PUT, "/v1/plans/pro", Some(plan)).await.status.is_success());
    let plan = json!({"name": "Free", "isolation": "pool", "features": []});
    assert!(a.call(Method::PUT, "/v1/plans/free", Some(plan)).await.status.is_success());
    a.create_tenant("acme", "pro").await;
    b.wait_status("acme", "active").await;
    // b reads its catalogue: no `export` anywhere.
    assert_eq!(flag(&b, "acme", "export").await.status, StatusCode::NOT_FOUND);
    let res = a.call(Method::PATCH, "/v1/plans/free", Some(json!({"features": ["export"]}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(value(&a, "acme", "export").await, off("DEFAULT"), "the writing replica knows at once");
    let start = std::time::Instant::now();
    loop {
        let res = flag(&b, "acme", "export").await;
        if res.status == StatusCode::OK {
            assert_eq!((res.body["value"].as_bool(), res.body["reason"].as_str()), (Some(false), Some("DEFAULT")));
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "b never learned of export: {}", res.body);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
