//! `authz`: the cost of the policies' decision on the request path. Tenant gets by an
//! operator key with a region, first with no operator policies (built-in policies
//! only), then with the example policies of docs/policies.md in force (the region
//! scope applies to this key: every decision reads the tenant's region), in the same
//! run; the figure is the ratio of the two (the aim: within 10%).

use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use tenancy_client::Client;
use tenancy_domain::apikey::{NewApiKey, Role};
use tenancy_domain::policy::PolicySpec;

use crate::http_load::{self, LoadResult};
use crate::tenants::{bulk_load, hello_load, put_plans, start_tenancy, LoadArgs, TOKEN};

const POLICIES: [(&str, &str); 3] = [
    (
        "region-scoped",
        "forbid (principal, action, resource is Tenancy::Tenant) \
         when { principal has region && resource.region != principal.region };",
    ),
    (
        "support",
        "forbid (principal, action, resource) when { principal.labels.contains(\"support\") } \
         unless { action in Tenancy::Action::\"read\" };",
    ),
    (
        "no-offboard",
        "forbid (principal, action == Tenancy::Action::\"delete_tenant\", resource) \
         when { principal.labels.contains(\"no-offboard\") };",
    ),
];

/// The ids of the bulk-loaded tenants in `eu-west` (as `tenants::bulk_load` spreads
/// regions), and one elsewhere.
fn eu_west(n: usize) -> (Vec<usize>, usize) {
    let region = |i: usize| ((i.wrapping_mul(2_654_435_761)) >> 7) / 4 % 4;
    ((0..n).filter(|i| region(*i) == 0).collect(), (0..n).find(|i| region(*i) != 0).unwrap_or(0))
}

async fn gets(http: &reqwest::Client, base: &str, key: &str, seconds: u64, clients: usize) -> LoadResult {
    let (http, base, key) = (http.clone(), base.to_owned(), key.to_owned());
    let ids = std::sync::Arc::new(eu_west(1_000).0);
    http_load::run_for(Duration::from_secs(seconds), clients, move |i| {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        let id = ids[(i * 7) % ids.len()];
        async move {
            let url = format!("{base}/v1/tenants/t{id:07}");
            http.get(&url).bearer_auth(&key).send().await.is_ok_and(|r| r.status().is_success())
        }
        .boxed()
    })
    .await
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let b = start_tenancy(args.database_url.as_deref()).await?;
    let base = b.server.url();
    let http = http_load::client(args.clients);
    put_plans(&http, &base).await?;
    bulk_load(&b.database_url, 1_000).await?;
    let client = Client::with_http(http.clone(), &base, Some(TOKEN.to_owned()));
    let new_key = NewApiKey {
        name: "bench".into(),
        role: Role::Operator,
        tenant_id: None,
        expires_at: None,
        rate_limit: None,
        labels: vec!["no-offboard".into()],
        region: Some("eu-west".into()),
    };
    let key = client.key_create(&new_key).await.context("key created")?.key;
    let (eu, elsewhere) = eu_west(1_000);
    let probe = http.get(format!("{base}/v1/tenants/t{:07}", eu[0])).bearer_auth(&key).send().await?;
    anyhow::ensure!(probe.status().is_success(), "an eu-west tenant is not readable: {}", probe.status());
    let baseline = hello_load(args.seconds, args.clients).await?;
    let without = gets(&http, &base, &key, args.seconds, args.clients).await;
    anyhow::ensure!(without.errors == 0, "{} reads failed without policies", without.errors);
    for (name, cedar) in POLICIES {
        client.policy_put(name, &PolicySpec { cedar: cedar.into() }).await.context("policy put")?;
    }
    let hidden = http.get(format!("{base}/v1/tenants/t{elsewhere:07}")).bearer_auth(&key).send().await?;
    anyhow::ensure!(hidden.status() == 404, "the region policy is not in force: {}", hidden.status());
    let with = gets(&http, &base, &key, args.seconds, args.clients).await;
    anyhow::ensure!(with.errors == 0, "{} reads failed with policies", with.errors);
    http_load::report("authz", "GET /v1/tenants/{id} with policies", "", &with, &baseline, b.backend);
    println!(
        "authz: {:.0} req/s with policies, {:.0} req/s without ({}); ratio {:.3}; p99 {:.2} ms vs {:.2} ms",
        with.rate(),
        without.rate(),
        b.backend,
        with.rate() / without.rate().max(1.0),
        with.percentile(99.0).as_secs_f64() * 1000.0,
        without.percentile(99.0).as_secs_f64() * 1000.0,
    );
    b.server.stop().await;
    Ok(())
}
