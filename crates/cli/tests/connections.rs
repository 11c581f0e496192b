//! Connections (issue 15 item 6) on both backends: metadata only ever comes back;
//! `http:invoke` with `Authentication.ConnectionArn` carries the api key, the basic
//! credentials or an OAuth token (fetched by the client credentials grant, cached,
//! refetched after a 401 and after expiry) while the definition, the input, the output
//! and the whole history never contain the credential; hooks and webhook subscriptions
//! naming a connection send its header besides their signature; a connection in use
//! cannot be deleted; the CLI reads the credential from standard input.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer, ADMIN};

both_backends!(
    connections_show_metadata_only,
    http_invoke_carries_api_keys_and_basic_credentials,
    oauth_tokens_are_cached_and_refetched,
    hooks_and_subscriptions_carry_their_connection,
    the_cli_reads_the_credential_from_stdin
);

const API_KEY: &str = "ak-live-0123456789-distinctive";
const PASSWORD: &str = "pw-hunter2-distinctive";
const CLIENT_SECRET: &str = "cs-s3cr3t-distinctive";

/// What the receiver saw: every request to `/api` and `/hook` as (path, headers), the
/// token endpoint's requests as (authorization, body).
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(String, axum::http::HeaderMap)>>,
    token_requests: Mutex<Vec<(String, String)>>,
    /// Tokens `/api` answers 401 to.
    revoked: Mutex<HashSet<String>>,
    /// `expires_in` of the next tokens.
    expires_in: AtomicU64,
    issued: AtomicUsize,
}

impl Seen {
    fn fetches(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }

    fn last_header(&self, path: &str, header: &str) -> Option<String> {
        let requests = self.requests.lock().unwrap();
        let (_, h) = requests.iter().rev().find(|(p, _)| p == path)?;
        h.get(header).map(|v| v.to_str().unwrap().to_owned())
    }
}

/// A loopback receiver: `/api` (200, or 401 to a revoked bearer token), `/hook` (200)
/// and `/token` (an OAuth token endpoint issuing `tok-1`, `tok-2`, ...).
async fn receiver() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    seen.expires_in.store(3600, Ordering::SeqCst);
    let (a, h, t) = (seen.clone(), seen.clone(), seen.clone());
    let app = axum::Router::new()
        .route(
            "/api",
            axum::routing::any(move |headers: axum::http::HeaderMap| {
                let seen = a.clone();
                async move {
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    seen.requests.lock().unwrap().push(("/api".into(), headers));
                    let token = auth.strip_prefix("Bearer ").unwrap_or("");
                    if seen.revoked.lock().unwrap().contains(token) {
                        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "revoked"})));
                    }
                    (StatusCode::OK, axum::Json(json!({"ok": true})))
                }
            }),
        )
        .route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let seen = h.clone();
                async move {
                    seen.requests.lock().unwrap().push(("/hook".into(), headers));
                    StatusCode::OK
                }
            }),
        )
        .route(
            "/token",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let seen = t.clone();
                async move {
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    seen.token_requests.lock().unwrap().push((auth, body));
                    let n = seen.issued.fetch_add(1, Ordering::SeqCst) + 1;
                    axum::Json(json!({"access_token": format!("tok-{n}"), "token_type": "Bearer",
                                      "expires_in": seen.expires_in.load(Ordering::SeqCst)}))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

async fn put_connection(s: &TestServer, name: &str, auth: Value) -> Value {
    let res = s.call(Method::PUT, &format!("/v1/connections/{name}"), Some(json!({"auth": auth}))).await;
    assert!(res.status.is_success(), "{} {}", res.status, res.body);
    res.body
}

/// A state machine calling `url` with `Authentication: {ConnectionArn: arn}` and a
/// user header `X-Api-Key: from-the-definition`.
async fn put_invoke(s: &TestServer, name: &str, url: &str, arn: &str) -> Value {
    let definition = json!({"StartAt": "Call", "States": {"Call": {"Type": "Task",
        "Resource": "arn:aws:states:::http:invoke",
        "Parameters": {"ApiEndpoint": url, "Method": "POST", "Authentication": {"ConnectionArn": arn},
                       "Headers": {"X-Api-Key": "from-the-definition", "Authorization": "Bearer from-the-definition"},
                       "RequestBody": {"hello.$": "$.hello"}},
        "End": true}}});
    let res = s.call(Method::PUT, &format!("/v1/state-machines/{name}"), Some(json!({"definition": definition}))).await;
    assert!(res.status.is_success(), "{} {}", res.status, res.body);
    res.body
}

/// Runs `machine` to its end; the execution and its whole history.
async fn run(s: &TestServer, machine: &str) -> (Value, Value) {
    let body = json!({"state_machine": machine, "input": {"hello": "world"}});
    let res = s.call(Method::POST, "/v1/executions", Some(body)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let e = s.get(&format!("/v1/executions/{id}")).await.body;
        if e["status"] != "RUNNING" {
            let history = s.get(&format!("/v1/executions/{id}/history?limit=1000")).await.body;
            return (e, history);
        }
        assert!(Instant::now() < deadline, "execution {id} never stopped: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn assert_absent(what: &str, v: &Value, secrets: &[&str]) {
    let text = v.to_string();
    for secret in secrets {
        assert!(!text.contains(secret), "{what} contains a credential: {text}");
    }
}

async fn connections_show_metadata_only(backend: Backend) {
    let s = TestServer::start(backend).await;
    let res = s
        .call(
            Method::PUT,
            "/v1/connections/crm",
            Some(json!({"auth": {"type": "api_key", "header": "X-Api-Key", "value": API_KEY},
                        "description": "the CRM"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["auth"], json!({"type": "api_key", "header": "X-Api-Key"}));
    let res = s
        .call(
            Method::PUT,
            "/v1/connections/crm",
            Some(json!({"auth": {"type": "basic", "username": "svc", "password": PASSWORD}})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "a replace is 200: {}", res.body);
    put_connection(
        &s,
        "idp",
        json!({"type": "oauth_client_credentials", "token_url": "https://idp.example/token",
               "client_id": "tenancy", "client_secret": CLIENT_SECRET, "scope": "crm.write"}),
    )
    .await;
    let viewer = s.key("viewer", None).await;
    let got = s.call_with(Some(&viewer), Method::GET, "/v1/connections/idp", None, &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.body["auth"],
        json!({"type": "oauth_client_credentials", "token_url": "https://idp.example/token",
               "client_id": "tenancy", "scope": "crm.write"})
    );
    let list = s.call_with(Some(&viewer), Method::GET, "/v1/connections", None, &[]).await;
    let names: Vec<&str> = list.body["items"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["crm", "idp"]);
    assert_eq!(list.body["items"][0]["auth"], json!({"type": "basic", "username": "svc"}));
    let secrets = [API_KEY, PASSWORD, CLIENT_SECRET];
    assert_absent("the list", &list.body, &secrets);
    // A viewer reads, never writes; tenant and service keys see nothing.
    let body = json!({"auth": {"type": "api_key", "header": "X-A", "value": "v"}});
    let res = s.call_with(Some(&viewer), Method::PUT, "/v1/connections/v", Some(body.clone()), &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    let tenant = s.key("tenant", Some("acme")).await;
    assert_eq!(
        s.call_with(Some(&tenant), Method::GET, "/v1/connections", None, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    // The credential's platform secret is the connections' own.
    for (method, body) in [(Method::GET, None), (Method::PUT, Some(json!({"value": "x"}))), (Method::DELETE, None)] {
        let res = s.call(method.clone(), "/v1/secrets/connection.crm", body).await;
        assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-connection"), "{method}");
    }
    // Validation: an RFC 9110 token for the header, a header value, http(s) token URLs.
    for auth in [
        json!({"type": "api_key", "header": "X Api", "value": "v"}),
        json!({"type": "api_key", "header": "X-Api", "value": "a\r\nInjected: 1"}),
        json!({"type": "api_key", "header": "Host", "value": "v"}),
        json!({"type": "basic", "username": "a:b", "password": "p"}),
        json!({"type": "oauth_client_credentials", "token_url": "file:///etc/passwd", "client_id": "c",
               "client_secret": "s"}),
    ] {
        let res = s.call(Method::PUT, "/v1/connections/bad", Some(json!({ "auth": auth }))).await;
        assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-connection"), "{auth}");
    }
    let res = s.call(Method::PUT, "/v1/connections/bad%20name", Some(body)).await;
    assert_eq!(res.code(), "invalid-connection");
    assert_eq!(s.get("/v1/connections/bad").await.status, StatusCode::NOT_FOUND);
    // Audited, never with the credential.
    let audit = s.get("/v1/audit?limit=1000").await.body;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().filter_map(|a| a["action"].as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "connection.put").count(), 3, "{actions:?}");
    assert_absent("the audit log", &audit, &secrets);
    assert_absent("the events", &s.get("/v1/events?limit=1000").await.body, &secrets);
    let res = s.call(Method::DELETE, "/v1/connections/crm", None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    assert_eq!(s.get("/v1/connections/crm").await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.call(Method::DELETE, "/v1/connections/crm", None).await.status, StatusCode::NOT_FOUND);
    // Its credential went with it.
    let platform = s.get("/v1/secrets").await.body;
    let names: Vec<&str> = platform["items"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["connection.idp"]);
}

async fn http_invoke_carries_api_keys_and_basic_credentials(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (base, seen) = receiver().await;
    let api = format!("{base}/api");
    put_connection(&s, "crm", json!({"type": "api_key", "header": "X-Api-Key", "value": API_KEY})).await;
    put_connection(&s, "billing", json!({"type": "basic", "username": "svc", "password": PASSWORD})).await;
    let secrets = [API_KEY, PASSWORD, "c3ZjOnB3"];

    // An ARN with the trailing id, as Step Functions writes it; the connection's header
    // wins over the definition's.
    let definition =
        put_invoke(&s, "crm-call", &api, "arn:aws:events:us-east-1:123456789012:connection/crm/81210c42-8af1").await;
    let (e, history) = run(&s, "crm-call").await;
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    assert_eq!(seen.last_header("/api", "x-api-key").as_deref(), Some(API_KEY));
    {
        let requests = seen.requests.lock().unwrap();
        let (_, h) = requests.last().unwrap();
        assert_eq!(h.get_all("x-api-key").iter().count(), 1, "one X-Api-Key: the connection's");
    }
    assert_absent("the definition", &definition, &secrets);
    assert_absent("the stored definition", &s.get("/v1/state-machines/crm-call").await.body, &secrets);
    assert_absent("the execution", &e, &secrets);
    assert_absent("the history", &history, &secrets);

    put_invoke(&s, "billing-call", &api, "billing").await;
    let (e, history) = run(&s, "billing-call").await;
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("svc:{PASSWORD}"));
    assert_eq!(seen.last_header("/api", "authorization"), Some(format!("Basic {basic}")));
    assert_absent("the history", &history, &[PASSWORD, &basic]);
    assert_absent("the audit log", &s.get("/v1/audit?limit=1000").await.body, &[PASSWORD, &basic, API_KEY]);

    // Nor is it anywhere on disk (the SQLite database, its WAL, the data directory).
    if backend == Backend::Sqlite {
        let mut paths = Vec::new();
        files(s.dir.path(), &mut paths);
        assert!(!paths.is_empty());
        for p in paths {
            let bytes = std::fs::read(&p).unwrap_or_default();
            for secret in [API_KEY, PASSWORD] {
                let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
                assert!(!found, "{} holds a credential in plaintext", p.display());
            }
        }
    }

    // An unknown connection fails the task, saying which (a definition naming one is
    // accepted: connections may come and go after it).
    put_invoke(&s, "nobody-call", &api, "arn:aws:events:us-east-1:123456789012:connection/nobody").await;
    let before = seen.requests.lock().unwrap().len();
    let (e, _) = run(&s, "nobody-call").await;
    assert_eq!(e["status"], "FAILED", "{e}");
    assert_eq!(e["error"], "Tenancy.ConnectionNotFound", "{e}");
    assert!(e["cause"].as_str().unwrap().contains("\"nobody\""), "{e}");
    assert_eq!(seen.requests.lock().unwrap().len(), before, "nothing was sent");
}

async fn oauth_tokens_are_cached_and_refetched(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (base, seen) = receiver().await;
    put_connection(
        &s,
        "idp",
        json!({"type": "oauth_client_credentials", "token_url": format!("{base}/token"),
               "client_id": "tenancy app", "client_secret": CLIENT_SECRET, "scope": "crm.read crm.write"}),
    )
    .await;
    put_invoke(&s, "oauth-call", &format!("{base}/api"), "idp").await;
    let mut histories = Vec::new();
    for _ in 0..3 {
        let (e, history) = run(&s, "oauth-call").await;
        assert_eq!(e["status"], "SUCCEEDED", "{e}");
        histories.push(history);
    }
    assert_eq!(seen.fetches(), 1, "one token for three calls");
    assert_eq!(seen.last_header("/api", "authorization").as_deref(), Some("Bearer tok-1"));
    {
        // RFC 6749 4.4: a form body, the client authenticated with HTTP Basic over the
        // form-encoded id and secret.
        let tokens = seen.token_requests.lock().unwrap();
        let (auth, body) = &tokens[0];
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("tenancy+app:{CLIENT_SECRET}"));
        assert_eq!(auth, &format!("Basic {basic}"));
        assert_eq!(body, "grant_type=client_credentials&scope=crm.read+crm.write");
    }
    // A refused token is fetched anew and the request sent once more.
    seen.revoked.lock().unwrap().insert("tok-1".into());
    let (e, history) = run(&s, "oauth-call").await;
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    histories.push(history);
    assert_eq!(seen.fetches(), 2);
    assert_eq!(seen.last_header("/api", "authorization").as_deref(), Some("Bearer tok-2"));
    // A short-lived token is refetched once it expires.
    seen.expires_in.store(1, Ordering::SeqCst);
    seen.revoked.lock().unwrap().insert("tok-2".into());
    run(&s, "oauth-call").await;
    assert_eq!(seen.fetches(), 3);
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.fetches() == 3 {
        assert!(Instant::now() < deadline, "the expired token was never refetched");
        let (e, _) = run(&s, "oauth-call").await;
        assert_eq!(e["status"], "SUCCEEDED", "{e}");
    }
    for h in &histories {
        assert_absent("the history", h, &[CLIENT_SECRET, "tok-1", "tok-2"]);
    }
    // Replacing the connection drops its token; tasks running at once share one fetch.
    seen.expires_in.store(3600, Ordering::SeqCst);
    put_connection(
        &s,
        "idp",
        json!({"type": "oauth_client_credentials", "token_url": format!("{base}/token"),
               "client_id": "tenancy app", "client_secret": CLIENT_SECRET}),
    )
    .await;
    let before = seen.fetches();
    let runs: Vec<_> = (0..4).map(|_| run(&s, "oauth-call")).collect();
    for (e, _) in futures::future::join_all(runs).await {
        assert_eq!(e["status"], "SUCCEEDED", "{e}");
    }
    assert_eq!(seen.fetches(), before + 1, "one fetch for the replaced connection and four concurrent calls");
    assert_eq!(seen.token_requests.lock().unwrap().last().unwrap().1, "grant_type=client_credentials", "no scope now");
    // A token endpoint the outbound policy refuses fails the task in a fixed text.
    put_connection(
        &s,
        "metadata",
        json!({"type": "oauth_client_credentials", "token_url": "http://169.254.169.254/token",
               "client_id": "c", "client_secret": CLIENT_SECRET}),
    )
    .await;
    put_invoke(&s, "refused-call", &format!("{base}/api"), "metadata").await;
    let (e, _) = run(&s, "refused-call").await;
    assert_eq!((e["status"].as_str(), e["error"].as_str()), (Some("FAILED"), Some("Tenancy.ConnectionFailed")), "{e}");
    assert!(e["cause"].as_str().unwrap().contains("destination not allowed by the outbound policy"), "{e}");
}

async fn hooks_and_subscriptions_carry_their_connection(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (base, seen) = receiver().await;
    let hook_url = format!("{base}/hook");
    // Naming a connection that does not exist is refused.
    let res = s
        .call(
            Method::PUT,
            "/v1/hooks/crm",
            Some(json!({"url": hook_url, "events": ["provision"], "connection": "crm"})),
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-connection"), "{}", res.body);
    put_connection(&s, "crm", json!({"type": "api_key", "header": "X-Api-Key", "value": API_KEY})).await;
    let res = s
        .call(
            Method::PUT,
            "/v1/hooks/crm",
            Some(json!({"url": hook_url, "events": ["provision"], "connection": "crm"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["connection"], "crm");
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    assert_eq!(seen.last_header("/hook", "x-api-key").as_deref(), Some(API_KEY), "the hook got the credential");
    assert!(seen.last_header("/hook", "webhook-signature").is_some_and(|s| s.starts_with("v1,")), "and its signature");

    // A webhook subscription naming the connection.
    let body = json!({"name": "crm", "pattern": {"detail-type": ["TenantCreated"]},
                      "target": {"type": "webhook", "url": format!("{base}/api"), "connection": "crm", "max_attempts": 1}});
    let res = s.call(Method::POST, "/v1/subscriptions", Some(body)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let sub = res.body["id"].as_str().unwrap().to_owned();
    let before = seen.requests.lock().unwrap().iter().filter(|(p, _)| p == "/api").count();
    s.create_tenant("globex", "basic").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.requests.lock().unwrap().iter().filter(|(p, _)| p == "/api").count() == before {
        assert!(Instant::now() < deadline, "no delivery arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.last_header("/api", "x-api-key").as_deref(), Some(API_KEY));
    assert!(seen.last_header("/api", "webhook-signature").is_some());
    assert_absent("the deliveries", &s.get(&format!("/v1/subscriptions/{sub}/deliveries")).await.body, &[API_KEY]);
    assert_absent("the subscription", &s.get(&format!("/v1/subscriptions/{sub}")).await.body, &[API_KEY]);

    // In use: 409 naming the users; free again once they are gone.
    let res = s.call(Method::DELETE, "/v1/connections/crm", None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "connection-in-use"), "{}", res.body);
    let detail = res.body["detail"].as_str().unwrap();
    assert!(detail.contains("hook/crm") && detail.contains(&format!("subscription/{sub}")), "{detail}");
    assert_eq!(s.get("/v1/connections/crm").await.status, StatusCode::OK);
    assert_eq!(s.call(Method::DELETE, "/v1/hooks/crm", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(s.call(Method::DELETE, &format!("/v1/subscriptions/{sub}"), None).await.status, StatusCode::NO_CONTENT);
    let res = s.call(Method::DELETE, "/v1/connections/crm", None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
}

/// Runs the CLI with `stdin`; exit code, stdout, stderr.
fn cli_with_stdin(url: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
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

async fn the_cli_reads_the_credential_from_stdin(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (base, seen) = receiver().await;
    let url = s.url.clone();
    let u = url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        cli_with_stdin(
            &u,
            &["connections", "put", "crm", "--api-key-header", "X-Api-Key", "-o", "json"],
            &format!("{API_KEY}\n"),
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(API_KEY), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["auth"], json!({"type": "api_key", "header": "X-Api-Key"}));
    let u = url.clone();
    let token_url = format!("{base}/token");
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        cli_with_stdin(
            &u,
            &["connections", "put", "idp", "--oauth-token-url", &token_url, "--client-id", "c1", "--scope", "read"],
            CLIENT_SECRET,
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        cli_with_stdin(&url, &["connections", "put", "x", "--basic-username", "u", "--client-id", "c"], "p")
    })
    .await
    .unwrap();
    assert_ne!(code, 0, "--client-id needs --oauth-token-url: {err}");

    // The stored value is the one from stdin, less its newline.
    put_invoke(&s, "crm-call", &format!("{base}/api"), "crm").await;
    let (e, _) = run(&s, "crm-call").await;
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    assert_eq!(seen.last_header("/api", "x-api-key").as_deref(), Some(API_KEY));

    let (code, out, err) = support::run_cli(&s.url, &["connections", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("crm") && out.contains("idp") && out.contains("oauth_client_credentials"), "{out}");
    assert!(!out.contains(API_KEY) && !out.contains(CLIENT_SECRET), "{out}");
    let (code, out, err) = support::run_cli(&s.url, &["connections", "get", "idp", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["auth"]["scope"], "read");
    let (code, _, err) = support::run_cli(&s.url, &["connections", "delete", "idp", "--yes"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = support::run_cli(&s.url, &["connections", "get", "idp"]);
    assert_ne!(code, 0);
}
