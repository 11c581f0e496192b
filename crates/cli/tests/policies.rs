//! Operators' Cedar policies end to end over HTTP (docs/policies.md): the issue's
//! example policies, list filtering with pagination, validation errors with line and
//! column, `check`, and the CLI.

mod support;

use std::io::Write;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer, ADMIN};

both_backends!(
    region_limited_operator,
    support_key_reads_enterprise_tenants_only,
    suspend_but_not_offboard,
    invalid_policies_are_refused_with_line_and_column,
    deeply_nested_policies_are_refused
);

/// A key of `role` with `labels` and `region`: (id, token).
async fn key(s: &TestServer, role: &str, labels: &[&str], region: Option<&str>) -> (String, String) {
    let mut body = json!({"name": format!("{role} key"), "role": role, "labels": labels});
    if let Some(r) = region {
        body["region"] = json!(r);
    }
    let res = s.call(Method::POST, "/v1/api-keys", Some(body)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    if !labels.is_empty() {
        assert_eq!(res.body["labels"], json!(labels), "{}", res.body);
    }
    (res.body["id"].as_str().unwrap().to_owned(), res.body["key"].as_str().unwrap().to_owned())
}

async fn tenant(s: &TestServer, id: &str, plan: &str, region: &str) {
    let body = json!({"id": id, "name": id, "plan": plan, "region": region});
    let res = s.call(Method::POST, "/v1/tenants", Some(body)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    s.wait_status(id, "active").await;
}

async fn put_policy(s: &TestServer, name: &str, cedar: &str) {
    let res = s.call(Method::PUT, &format!("/v1/policies/{name}"), Some(json!({"cedar": cedar}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
}

/// Every tenant id `token` lists, page by page of `limit`.
async fn list_all(s: &TestServer, token: &str, limit: u32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/tenants?limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let res = s.call_with(Some(token), Method::GET, &path, None, &[]).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let items = res.body["items"].as_array().unwrap();
        assert!(items.len() <= limit as usize);
        ids.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        match res.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

async fn check(s: &TestServer, principal: &str, action: &str, tenant: &str) -> Value {
    let body = json!({"principal": principal, "action": action, "resource": format!("Tenancy::Tenant::\"{tenant}\"")});
    let res = s.call(Method::POST, "/v1/policies/check", Some(body)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body
}

async fn region_limited_operator(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    for (id, region) in [("a-us", "us-east-1"), ("b-eu", "eu-west-1"), ("c-us", "us-east-1"), ("d-eu", "eu-west-1")] {
        tenant(&s, id, "basic", region).await;
    }
    tenant(&s, "e-us", "basic", "us-east-1").await;
    let (eu_id, eu) = key(&s, "operator", &[], Some("eu-west-1")).await;
    let (_, anywhere) = key(&s, "operator", &[], None).await;
    put_policy(
        &s,
        "region-scoped",
        "// Keys with a region act only on tenants in it.\n\
         forbid (principal, action, resource is Tenancy::Tenant)\n\
         when { principal has region && resource.region != principal.region };",
    )
    .await;

    let get = |t: &'static str, token: &str| {
        let token = token.to_owned();
        let s = &s;
        async move { s.call_with(Some(&token), Method::GET, &format!("/v1/tenants/{t}"), None, &[]).await.status }
    };
    assert_eq!(get("b-eu", &eu).await, StatusCode::OK);
    assert_eq!(get("a-us", &eu).await, StatusCode::NOT_FOUND, "hidden, as from its list");
    assert_eq!(get("a-us", &anywhere).await, StatusCode::OK, "a key without a region is not limited");
    let res = s.call_with(Some(&eu), Method::POST, "/v1/tenants/c-us/suspend", None, &[]).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    let res = s.call_with(Some(&eu), Method::POST, "/v1/tenants/d-eu/suspend", None, &[]).await;
    assert!(res.status.is_success(), "{}", res.body);

    // Lists show what the key may see, and pages stay whole.
    for limit in [1, 2, 10] {
        assert_eq!(list_all(&s, &eu, limit).await, ["b-eu", "d-eu"], "limit {limit}");
    }
    assert_eq!(list_all(&s, &anywhere, 2).await.len(), 5);
    assert_eq!(list_all(&s, ADMIN, 2).await.len(), 5);

    let denied = check(&s, &eu_id, "get_tenant", "a-us").await;
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["policies"], json!(["region-scoped"]));
    let allowed = check(&s, &eu_id, "get_tenant", "b-eu").await;
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["policies"], json!(["builtin.role.operator"]));

    // Deleted: in force no more, at once.
    let res = s.call(Method::DELETE, "/v1/policies/region-scoped", None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(get("a-us", &eu).await, StatusCode::OK);
    assert_eq!(list_all(&s, &eu, 2).await.len(), 5);
    s.stop().await;
}

async fn support_key_reads_enterprise_tenants_only(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.put_plan("enterprise", "pool").await;
    tenant(&s, "big", "enterprise", "default").await;
    tenant(&s, "small", "basic", "default").await;
    let (_, support) = key(&s, "operator", &["support"], None).await;
    put_policy(
        &s,
        "support",
        "forbid (principal, action, resource)\n\
         when { principal.labels.contains(\"support\") }\n\
         unless { action in Tenancy::Action::\"read\" };\n\
         forbid (principal, action, resource is Tenancy::Tenant)\n\
         when { principal.labels.contains(\"support\") && resource.plan != \"enterprise\" };",
    )
    .await;
    let call = |m: Method, p: &str, b: Option<Value>| {
        let (s, support, p) = (&s, support.clone(), p.to_owned());
        async move { s.call_with(Some(&support), m, &p, b, &[]).await }
    };
    assert_eq!(call(Method::GET, "/v1/tenants/big", None).await.status, StatusCode::OK);
    assert_eq!(call(Method::GET, "/v1/tenants/big/entitlements", None).await.status, StatusCode::OK);
    assert_eq!(call(Method::GET, "/v1/tenants/small", None).await.status, StatusCode::NOT_FOUND);
    let res = call(Method::POST, "/v1/tenants/big/suspend", None).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().contains("support[0]"), "{}", res.body);
    let res = call(Method::PATCH, "/v1/tenants/big", Some(json!({"name": "Big"}))).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let res = call(Method::PUT, "/v1/plans/x", Some(json!({"name": "X", "isolation": "pool"}))).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert_eq!(list_all(&s, &support, 1).await, ["big"]);
    // The admin is untouched; the tenant still active.
    assert_eq!(s.get("/v1/tenants/big").await.body["status"], "active");
    s.stop().await;
}

async fn suspend_but_not_offboard(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    tenant(&s, "acme", "basic", "default").await;
    let (id, k) = key(&s, "operator", &["no-offboard"], None).await;
    put_policy(
        &s,
        "no-offboard",
        "forbid (principal, action == Tenancy::Action::\"delete_tenant\", resource)\n\
         when { principal.labels.contains(\"no-offboard\") };",
    )
    .await;
    let res = s.call_with(Some(&k), Method::POST, "/v1/tenants/acme/suspend", None, &[]).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_status("acme", "suspended").await;
    let res = s.call_with(Some(&k), Method::DELETE, "/v1/tenants/acme", None, &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().contains("no-offboard"), "{}", res.body);
    assert_eq!(s.get("/v1/tenants/acme").await.body["status"], "suspended");
    let res = s.call_with(Some(&k), Method::POST, "/v1/tenants/acme/resume", None, &[]).await;
    assert!(res.status.is_success(), "{}", res.body);
    let decided = check(&s, &id, "delete_tenant", "acme").await;
    assert_eq!(decided, json!({"decision": "deny", "policies": ["no-offboard"]}));
    s.stop().await;
}

async fn invalid_policies_are_refused_with_line_and_column(backend: Backend) {
    let s = TestServer::start(backend).await;
    let put = |cedar: &str| {
        let s = &s;
        let body = json!({"cedar": cedar});
        async move { s.call(Method::PUT, "/v1/policies/bad", Some(body)).await }
    };
    let res = put("permit (principal, action, resource)\nwhen { principal.role == };").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.code(), "invalid-policy");
    assert!(res.body["detail"].as_str().unwrap().starts_with("line 2, column "), "{}", res.body);
    let res =
        put("forbid (principal, action, resource is Tenancy::Tenant)\n  when { resource.colour == \"red\" };").await;
    assert_eq!(res.code(), "invalid-policy", "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().starts_with("line 2, column 10"), "{}", res.body);
    let res = put("forbid (principal, action == Tenancy::Action::\"fly\", resource);").await;
    assert_eq!(res.code(), "invalid-policy", "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().starts_with("line 1, column "), "{}", res.body);
    let res = s
        .call(Method::PUT, "/v1/policies/builtin.x", Some(json!({"cedar": "permit(principal, action, resource);"})))
        .await;
    assert_eq!(res.code(), "invalid-policy");
    assert_eq!(s.call(Method::GET, "/v1/policies/bad", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.call(Method::GET, "/v1/policies", None).await.body["items"], json!([]));
    // Authorize before validate: an operator learns nothing of the text's errors.
    let op = s.key("operator", None).await;
    let res = s.call_with(Some(&op), Method::PUT, "/v1/policies/bad", Some(json!({"cedar": "nonsense"})), &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    // The CLI: put from standard input, list, get, check, delete.
    let text = "forbid (principal, action == Tenancy::Action::\"delete_tenant\", resource)\nwhen { principal.labels.contains(\"x\") };\n";
    let (code, out, err) = cli(&s.url, &["policies", "put", "cli-one", "--file", "-"], text);
    assert_eq!(code, 0, "{out} {err}");
    let (code, out, _) = cli(&s.url, &["--output", "json", "policies", "list"], "");
    assert_eq!(code, 0);
    assert!(out.contains("cli-one"), "{out}");
    let (code, out, _) = cli(&s.url, &["--output", "json", "policies", "get", "cli-one"], "");
    assert_eq!(code, 0);
    assert!(out.contains("delete_tenant"), "{out}");
    let args = ["--output", "json", "policies", "check", "--principal", "admin-token", "--action", "list_tenants"];
    let (code, out, err) = cli(&s.url, &[&args[..], &["--resource", "Tenancy::Platform::\"tenancy\""]].concat(), "");
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, json!({"decision": "allow", "policies": ["builtin.role.admin"]}));
    let (code, _, err) = cli(&s.url, &["policies", "put", "cli-two", "--file", "-"], "permit (");
    assert_ne!(code, 0);
    assert!(err.contains("line 1, column"), "{err}");
    let (code, _, _) = cli(&s.url, &["policies", "delete", "cli-one", "--yes"], "");
    assert_eq!(code, 0);
    assert_eq!(s.call(Method::GET, "/v1/policies/cli-one", None).await.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// Hostile input: a policy text that nests expressions as deep as the size limit
/// allows is refused with `invalid-policy` (never a crashed server), and nothing is
/// stored.
async fn deeply_nested_policies_are_refused(backend: Backend) {
    let s = TestServer::start(backend).await;
    let depth = 30_000;
    let texts = [
        format!("forbid (principal, action, resource) when {{ {}true{} }};", "(".repeat(depth), ")".repeat(depth)),
        format!("forbid (principal, action, resource) when {{ {}true }};", "!".repeat(depth * 2)),
        format!("forbid (principal, action, resource) when {{ {}1{} == 1 }};", "[".repeat(depth), "]".repeat(depth)),
        format!(
            "forbid (principal, action, resource) when {{ {}true{} }};",
            "if true then ".repeat(depth / 10),
            " else false".repeat(depth / 10)
        ),
        format!("forbid (principal, action, resource) when {{ true{} }};", " && true".repeat(depth / 5)),
        // Within the lexical bounds, but a tree deeper than the engine takes.
        format!("forbid (principal, action, resource) when {{ true{} }};", " && true".repeat(600)),
    ];
    for text in &texts {
        let res = s.call(Method::PUT, "/v1/policies/deep", Some(json!({"cedar": text}))).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
        assert_eq!(res.code(), "invalid-policy", "{}", res.body);
    }
    assert_eq!(s.call(Method::GET, "/v1/policies/deep", None).await.status, StatusCode::NOT_FOUND);

    // The deepest chain the engine takes is evaluated on every request, on a
    // request's thread, without reaching Cedar's recursion limit (a forbid that
    // errors would be ignored).
    let wide = |n: usize| {
        let terms: Vec<String> = (0..n).map(|i| format!("principal.labels.contains(\"l{i}\")")).collect();
        json!({"cedar": format!("forbid (principal, action, resource) when {{ {} }};", terms.join(" || "))})
    };
    let mut n = 5;
    loop {
        let res = s.call(Method::PUT, "/v1/policies/wide", Some(wide(n + 5))).await;
        if res.status == StatusCode::BAD_REQUEST {
            assert_eq!(res.code(), "invalid-policy", "{}", res.body);
            break;
        }
        assert!(res.status.is_success(), "{}", res.body);
        n += 5;
        assert!(n < 1_000, "no chain is refused");
    }
    assert!(n >= 20, "a chain of {n} terms is too short a limit");
    let res = s.call(Method::PUT, "/v1/policies/wide", Some(wide(n))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let (id, labelled) = key(&s, "operator", &[&format!("l{}", n - 1)], None).await;
    let res = s.call_with(Some(&labelled), Method::GET, "/v1/plans", None, &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let body = json!({"principal": id, "action": "list_plans", "resource": "Tenancy::Platform::\"tenancy\""});
    let res = s.call(Method::POST, "/v1/policies/check", Some(body)).await;
    assert_eq!(res.body, json!({"decision": "deny", "policies": ["wide"]}));
    let (_, plain) = key(&s, "operator", &["other"], None).await;
    let res = s.call_with(Some(&plain), Method::GET, "/v1/plans", None, &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    s.stop().await;
}

/// Runs the CLI with `stdin`; exit code, stdout, stderr.
fn cli(url: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .args(["--server", url, "--token", ADMIN])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tenancy");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
