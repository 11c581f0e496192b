//! `flag-eval`: OFREP single-flag evaluation over HTTP (`POST
//! /ofrep/v1/evaluate/flags/{key}`), a service key asking about 1,000 tenants, next to
//! the hello-world handler in the same run.

use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use tenancy_client::Client;
use tenancy_domain::apikey::{NewApiKey, Role};

use crate::http_load;
use crate::tenants::{bulk_load, hello_load, put_plans, start_tenancy, LoadArgs, TOKEN};

/// Tenants the evaluations are spread over.
const TENANTS: usize = 1_000;

pub async fn flag_eval(args: LoadArgs) -> anyhow::Result<()> {
    let b = start_tenancy(args.database_url.as_deref()).await?;
    let base = b.server.url();
    let http = http_load::client(args.clients);
    put_plans(&http, &base).await?;
    // 80% active, the others suspended or failed: their flags are answered DISABLED.
    bulk_load(&b.database_url, TENANTS).await?;
    // A data-plane caller: a service key (verified once, then cached).
    let client = Client::with_http(http.clone(), &base, Some(TOKEN.to_owned()));
    let new_key = NewApiKey {
        name: "bench".into(),
        role: Role::Service,
        tenant_id: None,
        expires_at: None,
        rate_limit: None,
        labels: vec![],
        region: None,
    };
    let key = client.key_create(&new_key).await.context("key created")?.key;
    let url = format!("{base}/ofrep/v1/evaluate/flags/sso");
    // The bodies are built once: the client's JSON work is not the server's.
    let bodies: std::sync::Arc<Vec<String>> = std::sync::Arc::new(
        (0..TENANTS).map(|i| format!("{{\"context\":{{\"targetingKey\":\"t{i:07}\"}}}}")).collect(),
    );
    let check = http.post(&url).bearer_auth(&key).body(bodies[0].clone()).send().await?;
    anyhow::ensure!(check.status().is_success(), "evaluation failed: {}", check.text().await?);
    let baseline = hello_load(args.seconds, args.clients).await?;
    let r = {
        let http = http.clone();
        http_load::run_for(Duration::from_secs(args.seconds), args.clients, move |i| {
            let (http, url, key, bodies) = (http.clone(), url.clone(), key.clone(), bodies.clone());
            async move {
                // Raw reqwest in the measured loop: the status is the figure, the body unread.
                let body = bodies[(i * 7) % TENANTS].clone();
                let req = http.post(&url).bearer_auth(&key).header("content-type", "application/json").body(body);
                req.send().await.is_ok_and(|r| r.status().is_success())
            }
            .boxed()
        })
        .await
    };
    anyhow::ensure!(r.errors == 0, "{} evaluations failed", r.errors);
    let what = format!("POST /ofrep/v1/evaluate/flags/{{key}} over {TENANTS} tenants");
    http_load::report("flag-eval", &what, "", &r, &baseline, b.backend);
    b.server.stop().await;
    Ok(())
}
