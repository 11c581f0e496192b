//! `secret-read`: `GET /v1/tenants/{id}/secrets/{name}` (the current version) over HTTP
//! by 64 clients with a service key, beside the hello-world baseline in the same run.
//! Every read unwraps the version's data key, opens the value (AES-256-GCM twice) and
//! commits its `secret.read` audit entry. Target (issue 15): at least 40% of the
//! baseline's rate.

use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use tenancy_client::Client;
use tenancy_domain::apikey::{NewApiKey, Role};
use tenancy_domain::secret::SecretPut;

use crate::http_load;
use crate::tenants::{bulk_load, hello_load, put_plans, start_tenancy, LoadArgs, TOKEN};

/// Tenants with a secret each; reads go round them.
const TENANTS: usize = 100;

pub async fn secret_read(args: LoadArgs) -> anyhow::Result<()> {
    let b = start_tenancy(args.database_url.as_deref()).await?;
    let base = b.server.url();
    let http = http_load::client(args.clients);
    put_plans(&http, &base).await?;
    bulk_load(&b.database_url, TENANTS).await?;
    let client = Client::with_http(http.clone(), &base, Some(TOKEN.to_owned()));
    for i in 0..TENANTS {
        let body = SecretPut {
            value: Some(format!("bench-password-{i:07}-{}", "x".repeat(24))),
            generate: None,
            rotation: None,
        };
        client.secret_put(Some(&format!("t{i:07}")), "db-password", &body).await.context("secret put")?;
    }
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
    let baseline = hello_load(args.seconds, args.clients).await?;
    let r = {
        let (http, base) = (http.clone(), base.clone());
        http_load::run_for(Duration::from_secs(args.seconds), args.clients, move |i| {
            let (http, base, key) = (http.clone(), base.clone(), key.clone());
            async move {
                // Raw reqwest in the measured loop: the status is the figure, the body unread.
                let url = format!("{base}/v1/tenants/t{:07}/secrets/db-password", (i * 7) % TENANTS);
                http.get(&url).bearer_auth(&key).send().await.is_ok_and(|r| r.status().is_success())
            }
            .boxed()
        })
        .await
    };
    anyhow::ensure!(r.errors == 0, "{} reads failed", r.errors);
    http_load::report("secret-read", "GET /v1/tenants/{id}/secrets/{name}", "", &r, &baseline, b.backend);
    b.server.stop().await;
    Ok(())
}
