//! The web console in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) with fantoccini. `scripts/test` installs Debian's `chromium` and
//! `chromium-driver` when they are missing.
//!
//! Sign-in, a tenant's detail page, a redrive of a failed execution, a viewer refused
//! an action (no button, and a forged POST refused). With `UPDATE_SCREENSHOTS=1` the
//! test also saves the main pages as PNGs under docs/images/ (shown in the README).

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fantoccini::{Client, ClientBuilder, Locator};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::Sha256;
use support::{Backend, TestServer, ADMIN};

/// chromedriver on a free port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn driver() -> Driver {
    let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromedriver is not installed: apt-get install chromium chromium-driver (scripts/test does)");
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver { child, url }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    let mut chrome = json!({"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
        "--disable-gpu", "--window-size=1400,1000", "--hide-scrollbars"]});
    for bin in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(bin).exists() {
            chrome["binary"] = json!(bin);
            break;
        }
    }
    caps.insert("goog:chromeOptions".into(), chrome);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

/// The text of the element `css` names, waiting for it. An element found just before a
/// form's redirect replaced the page is stale by the time it is read: it is found again.
async fn text(c: &Client, css: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await.unwrap();
        match found.text().await {
            Ok(text) => return text,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("reading {css}: {e}"),
        }
    }
}

async fn sign_in(c: &Client, base: &str, key: &str) {
    c.goto(&format!("{base}/console/login")).await.unwrap();
    c.find(Locator::Css("#key")).await.unwrap().send_keys(key).await.unwrap();
    c.find(Locator::Css("#login button")).await.unwrap().click().await.unwrap();
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#whoami")).await.unwrap();
}

async fn sign_out(c: &Client) {
    c.find(Locator::Css("#sign-out")).await.unwrap().click().await.unwrap();
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#login")).await.unwrap();
}

/// Saves the current page as docs/images/console-`name`.png when asked to.
async fn screenshot(c: &Client, name: &str) {
    if !tenancy::config::env_flag("UPDATE_SCREENSHOTS") {
        return;
    }
    let png = c.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/images");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("console-{name}.png")), png).unwrap();
}

/// A state machine whose only Task fails: an execution to redrive.
async fn failed_execution(s: &TestServer, tenant: &str) -> String {
    let def = json!({"StartAt": "Prepare", "States": {
        "Prepare": {"Type": "Pass", "Next": "Charge"},
        "Charge": {"Type": "Task", "Resource": "tenancy:fail",
                   "Parameters": {"Error": "Billing.Declined", "Cause": "the card was declined"}, "End": true}}});
    let res = s.call(Method::PUT, "/v1/state-machines/billing", Some(json!({"definition": def}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let res = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(json!({"state_machine": "billing", "tenant_id": tenant, "input": {"amount": 42}})),
        )
        .await;
    assert!(res.status.is_success(), "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    s.wait_execution(&id, "FAILED").await;
    id
}

/// A queue `jobs` whose dead-letter queue `jobs-dlq` holds one message (with an
/// attribute) received once too often.
async fn dead_lettered_message(s: &TestServer) {
    let res = s.call(Method::PUT, "/v1/queues/jobs-dlq", Some(json!({}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let spec = json!({"visibility_timeout_s": 0, "max_receive_count": 1, "dead_letter_queue": "jobs-dlq"});
    let res = s.call(Method::PUT, "/v1/queues/jobs", Some(spec)).await;
    assert!(res.status.is_success(), "{}", res.body);
    let msg = json!({"body": {"job": 7}, "attributes": {"kind": "nightly"}});
    let res = s.call(Method::POST, "/v1/queues/jobs/messages", Some(msg)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    for _ in 0..2 {
        let res = s.call(Method::POST, "/v1/queues/jobs/receive", Some(json!({"max": 1}))).await;
        assert!(res.status.is_success(), "{}", res.body);
    }
    let dlq = s.get("/v1/queues/jobs-dlq/messages").await.body;
    assert_eq!(dlq["messages"][0]["source_queue"], "jobs", "dead-lettered: {dlq}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser() {
    let s = TestServer::start(Backend::Sqlite).await;
    s.put_plan("starter", "pool").await;
    s.put_plan("growth", "pool").await;
    for (id, name) in [("acme", "Acme Corp"), ("globex", "Globex"), ("initech", "Initech")] {
        let res = s.call(Method::POST, "/v1/tenants", Some(json!({"id": id, "name": name, "plan": "starter"}))).await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    }
    for id in ["acme", "globex", "initech"] {
        s.wait_status(id, "active").await;
    }
    let res = s.call(Method::POST, "/v1/tenants/initech/suspend", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    let res = s.call(Method::POST, "/v1/tenants/acme/quotas/seats/consume", Some(json!({"amount": 4}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let execution = failed_execution(&s, "acme").await;
    dead_lettered_message(&s).await;
    let viewer = s.key("viewer", None).await;

    let d = driver().await;
    let c = browser(&d).await;
    let base = s.url.trim_end_matches('/').to_owned();

    // Signed out, the console sends you to sign in; a wrong key is refused.
    c.goto(&format!("{base}/console/tenants")).await.unwrap();
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#login")).await.unwrap();
    screenshot(&c, "sign-in").await;
    c.find(Locator::Css("#key")).await.unwrap().send_keys("not-a-key-of-this-server").await.unwrap();
    c.find(Locator::Css("#login button")).await.unwrap().click().await.unwrap();
    assert!(text(&c, "#login-error").await.contains("unknown"));

    // Sign-in as an admin: the overview.
    sign_in(&c, &base, ADMIN).await;
    assert!(text(&c, "#whoami").await.contains("admin"));
    assert_eq!(text(&c, "#tenants-by-status td[data-status=active]").await, "2");
    assert_eq!(text(&c, "#tenants-by-status td[data-status=suspended]").await, "1");
    assert!(text(&c, "#failed-executions").await.contains(&execution));
    assert!(text(&c, "#quota-hot-spots").await.contains("acme"), "4 of 5 seats is a hot spot");
    screenshot(&c, "overview").await;

    // The tenant list filters by status and searches by name.
    c.goto(&format!("{base}/console/tenants?status=active")).await.unwrap();
    let rows = text(&c, "#tenant-rows").await;
    assert!(rows.contains("acme") && rows.contains("globex") && !rows.contains("initech"), "{rows}");
    c.goto(&format!("{base}/console/tenants?q=glob")).await.unwrap();
    let rows = text(&c, "#tenant-rows").await;
    assert!(rows.contains("globex") && !rows.contains("acme"), "{rows}");
    c.goto(&format!("{base}/console/tenants")).await.unwrap();
    screenshot(&c, "tenants").await;

    // A tenant's detail page, reached by its link.
    c.find(Locator::Css("a[href='/console/tenants/acme']")).await.unwrap().click().await.unwrap();
    assert_eq!(text(&c, "#tenant-name").await, "Acme Corp");
    assert_eq!(text(&c, "#tenant-status").await, "active");
    assert!(text(&c, "#usage").await.contains("4 / 5"));
    assert!(text(&c, "#executions").await.contains(&execution));
    assert!(text(&c, "#audit").await.contains("tenant.create"));
    screenshot(&c, "tenant").await;
    // Suspend from the console: through the app, audited as the API would.
    c.find(Locator::Css("button[data-action=Suspend]")).await.unwrap().click().await.unwrap();
    assert_eq!(text(&c, "#notice").await, "Tenant suspended.");
    assert_eq!(text(&c, "#tenant-status").await, "suspended");
    assert_eq!(s.get("/v1/tenants/acme").await.body["status"], "suspended");
    let audited = s.get("/v1/audit?action=tenant.suspend&tenant_id=acme").await.body;
    assert_eq!(audited["items"].as_array().unwrap().len(), 1, "{audited}");
    c.find(Locator::Css("button[data-action=Resume]")).await.unwrap().click().await.unwrap();
    assert_eq!(text(&c, "#tenant-status").await, "active");

    // The failed execution: its timeline and error, then a redrive.
    c.goto(&format!("{base}/console/executions?status=FAILED")).await.unwrap();
    c.find(Locator::Css(&format!("a[href='/console/executions/{execution}']"))).await.unwrap().click().await.unwrap();
    assert_eq!(text(&c, "#execution-status").await, "FAILED");
    assert!(text(&c, "#execution-error").await.contains("Billing.Declined"));
    let timeline = text(&c, "#timeline").await;
    assert!(timeline.contains("Charge") && timeline.contains("TaskFailed"), "{timeline}");
    screenshot(&c, "execution").await;
    c.find(Locator::Css("button[data-action=Redrive]")).await.unwrap().click().await.unwrap();
    assert!(text(&c, "#notice").await.contains("redriven"));
    assert_eq!(text(&c, "#redrive-count").await, "1 times");
    assert_eq!(s.get(&format!("/v1/executions/{execution}")).await.body["redrive_count"], 1);
    let audited = s.get("/v1/audit?action=execution.redrive").await.body;
    assert_eq!(audited["items"].as_array().unwrap().len(), 1, "{audited}");
    s.wait_execution(&execution, "FAILED").await;

    // Queues: the dead-letter queue's peek shows its message without receiving it,
    // then a redrive moves it back.
    c.goto(&format!("{base}/console/queues")).await.unwrap();
    assert!(text(&c, "tr[data-queue=jobs-dlq]").await.contains("DLQ"));
    c.find(Locator::Css("a[href='/console/queues/jobs-dlq']")).await.unwrap().click().await.unwrap();
    let peek = text(&c, "#peek-rows").await;
    assert!(peek.contains("\"job\": 7") && peek.contains("jobs") && peek.contains("kind=nightly"), "{peek}");
    let peeked = s.get("/v1/queues/jobs-dlq/messages").await.body;
    assert_eq!(peeked["messages"][0]["receive_count"], 0, "the console's peek received nothing: {peeked}");
    screenshot(&c, "queue").await;
    c.find(Locator::Css("button[data-action=Redrive]")).await.unwrap().click().await.unwrap();
    assert!(text(&c, "#notice").await.contains("moved back"));
    assert!(text(&c, "#peek-rows").await.contains("No messages."));
    let peeked = s.get("/v1/queues/jobs/messages").await.body;
    assert_eq!(peeked["messages"][0]["body"], json!({"job": 7}), "back in its queue: {peeked}");
    assert_eq!(peeked["messages"][0]["attributes"]["kind"], "nightly");
    c.goto(&format!("{base}/console/audit")).await.unwrap();
    assert!(text(&c, "table.audit").await.contains("execution.redrive"));
    screenshot(&c, "audit").await;
    c.goto(&format!("{base}/console/audit/verify")).await.unwrap();
    assert!(text(&c, "#verify-result").await.contains("verifies"));
    sign_out(&c).await;
    // Signed out: the console no longer lets you in.
    c.goto(&format!("{base}/console/executions")).await.unwrap();
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#login")).await.unwrap();

    // A viewer sees the same pages without action buttons.
    sign_in(&c, &base, &viewer).await;
    assert!(text(&c, "#whoami").await.contains("viewer"));
    c.goto(&format!("{base}/console/executions/{execution}")).await.unwrap();
    assert_eq!(text(&c, "#execution-status").await, "FAILED");
    assert!(c.find_all(Locator::Css("button[data-action]")).await.unwrap().is_empty(), "a viewer sees no action");
    c.goto(&format!("{base}/console/tenants/acme")).await.unwrap();
    assert_eq!(text(&c, "#tenant-name").await, "Acme Corp");
    assert!(c.find_all(Locator::Css("#actions")).await.unwrap().is_empty(), "a viewer sees no action");
    // A viewer peeks at a queue (read-only) but gets no redrive button.
    c.goto(&format!("{base}/console/queues/jobs")).await.unwrap();
    assert!(text(&c, "#peek-rows").await.contains("\"job\": 7"));
    assert!(c.find_all(Locator::Css("button[data-action]")).await.unwrap().is_empty(), "a viewer sees no action");
    c.close().await.unwrap();

    // ... and cannot post one: a forged redrive with the viewer's own cookie and CSRF
    // token is 403 and changes nothing; without the token it is 403 too.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie = format!("tenancy_console={}", URL_SAFE_NO_PAD.encode(&viewer));
    let mut mac = Hmac::<Sha256>::new_from_slice(viewer.as_bytes()).unwrap();
    mac.update(b"tenancy-console-csrf-v1");
    let csrf = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    let url = format!("{base}/console/executions/{execution}/redrive");
    for form in [vec![("csrf", csrf.as_str())], vec![]] {
        let res = http.post(&url).header("cookie", &cookie).form(&form).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    }
    let res = http
        .post(format!("{base}/console/tenants/acme/suspend"))
        .header("cookie", &cookie)
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.get(&format!("/v1/executions/{execution}")).await.body["redrive_count"], 1);
    assert_eq!(s.get("/v1/tenants/acme").await.body["status"], "active");
    // An admin's session without the CSRF token (a cross-site form) is refused too.
    let admin_cookie = format!("tenancy_console={}", URL_SAFE_NO_PAD.encode(ADMIN));
    let res = http.post(&url).header("cookie", &admin_cookie).form(&[("csrf", "forged")]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.get(&format!("/v1/executions/{execution}")).await.body["redrive_count"], 1);
    s.stop().await;
}
