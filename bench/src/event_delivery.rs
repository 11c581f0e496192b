//! `event-delivery`: events fanned out to webhook subscriptions on a local receiver.
//!
//! Two runs on one fresh database: a burst (every event committed as fast as the
//! store takes them, 100 per transaction; figure: deliveries/s from the first commit
//! to the last delivery received) and a paced run (one event per transaction at a
//! steady rate well below capacity; figure: commit-to-delivery latency p50/p99). The
//! baseline is the receiver itself: plain POSTs of the same bodies with the same
//! concurrency, the ceiling of any delivery rate on this machine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::FutureExt;
use serde_json::json;
use sqlx::Connection;
use tenancy::serve::{start, ServeOptions};
use tenancy_client::Client;
use tenancy_domain::event::Event;
use tenancy_domain::subscription::{NewSubscription, Target};
use tenancy_store::Effects;

use crate::http_load;

const TOKEN: &str = "bench-admin-token";

#[derive(Debug, Clone, Args)]
pub struct EventDeliveryArgs {
    /// `postgres://...` server to create a fresh benchmark database on (default: SQLite).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Events committed in the burst.
    #[arg(long, default_value_t = 10_000)]
    pub events: usize,
    /// Webhook subscriptions, each matching every event.
    #[arg(long, default_value_t = 10)]
    pub subscriptions: usize,
    /// `max_concurrency` of each subscription.
    #[arg(long, default_value_t = 32)]
    pub concurrency: u32,
    /// Events per second in the paced latency run.
    #[arg(long, default_value_t = 200)]
    pub paced_rate: u64,
    /// Seconds of the paced latency run.
    #[arg(long, default_value_t = 5)]
    pub paced_seconds: u64,
}

/// Event id -> when its commit returned; (event id, received at) per delivery.
#[derive(Default)]
struct Log {
    committed: HashMap<String, Instant>,
    received: Vec<(String, Instant)>,
}

async fn receiver(log: Arc<Mutex<Log>>) -> anyhow::Result<String> {
    let app =
        axum::Router::new()
            .route(
                "/{n}",
                axum::routing::post(
                    |axum::extract::State(log): axum::extract::State<Arc<Mutex<Log>>>,
                     headers: axum::http::HeaderMap| async move {
                        let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                        log.lock().expect("log").received.push((id, Instant::now()));
                        axum::http::StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state(log);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

pub(crate) async fn fresh_database(server_url: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(url) = server_url else { return Ok(None) };
    let name = format!("tenancy_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(url).await.context("connect to PostgreSQL")?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
    Ok(Some(format!("{base}/{name}")))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn event(i: usize) -> Event {
    Event::new("BenchEvent", Some("bench"), vec![], json!({"i": i, "padding": "x".repeat(200)}))
}

/// Waits until the receiver got `n` deliveries in all (at least once: duplicates count).
async fn wait_received(log: &Mutex<Log>, n: usize, timeout: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(last) = {
            let l = log.lock().expect("log");
            (l.received.len() >= n).then(|| l.received.iter().map(|r| r.1).max().unwrap_or_else(Instant::now))
        } {
            return Ok(last);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out: {} of {n} deliveries",
            log.lock().expect("log").received.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn run(args: EventDeliveryArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let database_url = fresh_database(args.database_url.as_deref()).await?;
    let backend = if database_url.is_some() { "postgres" } else { "sqlite" };
    let mut opts = ServeOptions::for_tests(dir.path().to_owned(), database_url, TOKEN);
    opts.rate_limits = crate::UNREACHED_RATE_LIMITS;
    opts.node_id = Some("bench".into());
    opts.workflow = tenancy::config::workflow_from_env()?;
    let server = start(opts).await?;
    let store = server.app.store().clone();
    let log = Arc::new(Mutex::new(Log::default()));
    let hook = receiver(log.clone()).await?;

    // Baseline: the receiver alone, the same number of POSTs as the burst delivers.
    let total = args.events * args.subscriptions;
    let clients = args.subscriptions * args.concurrency as usize;
    let body = serde_json::to_vec(&event(0))?;
    let http = http_load::client(clients);
    let base = {
        let (http, hook) = (http.clone(), format!("{hook}/baseline"));
        http_load::run(total, clients, move |_| {
            let (http, hook, body) = (http.clone(), hook.clone(), body.clone());
            async move {
                http.post(&hook)
                    .header("webhook-id", "baseline")
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
            .boxed()
        })
        .await
    };
    log.lock().expect("log").received.clear();

    let client = Client::with_http(http.clone(), &server.url(), Some(TOKEN.to_owned()));
    for n in 0..args.subscriptions {
        let sub = NewSubscription {
            name: format!("bench-{n}"),
            // The pattern is free-form EventBridge JSON.
            pattern: json!({"detail-type": ["BenchEvent"]}),
            target: Target::Webhook {
                url: format!("{hook}/{n}"),
                max_concurrency: Some(args.concurrency),
                timeout_ms: None,
                max_attempts: None,
                connection: None,
            },
        };
        client.subscription_create(&sub).await.context("create subscription")?;
    }

    // Burst: 100 events per transaction, 8 transactions in flight.
    let started = Instant::now();
    let batches: Vec<Vec<Event>> =
        (0..args.events).map(event).collect::<Vec<_>>().chunks(100).map(|c| c.to_vec()).collect();
    let mut pending = futures::stream::iter(batches.into_iter().map(|batch| {
        let (store, log) = (store.clone(), log.clone());
        async move {
            let mut fx = Effects::none();
            fx.events = batch;
            store.commit_effects(&fx).await?;
            let now = Instant::now();
            let mut l = log.lock().expect("log");
            for e in &fx.events {
                l.committed.insert(e.id.clone(), now);
            }
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(8);
    use futures::StreamExt;
    while let Some(r) = pending.next().await {
        r?;
    }
    let committed = started.elapsed();
    let last = wait_received(&log, total, Duration::from_secs(600)).await?;
    let elapsed = last - started;
    let rate = total as f64 / elapsed.as_secs_f64();
    let burst_latency: Vec<Duration> = {
        let l = log.lock().expect("log");
        l.received.iter().filter_map(|(id, at)| l.committed.get(id).map(|c| at.saturating_duration_since(*c))).collect()
    };

    // Paced: one event per transaction at a steady rate.
    log.lock().expect("log").received.clear();
    let paced = (args.paced_rate * args.paced_seconds) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.paced_rate as f64));
    for i in 0..paced {
        tick.tick().await;
        let (store, log) = (store.clone(), log.clone());
        tokio::spawn(async move {
            let e = event(i);
            let id = e.id.clone();
            if store.commit_effects(&Effects::none().with_event(e)).await.is_ok() {
                log.lock().expect("log").committed.insert(id, Instant::now());
            }
        });
    }
    wait_received(&log, paced * args.subscriptions, Duration::from_secs(120)).await?;
    let latency: Vec<Duration> = {
        let l = log.lock().expect("log");
        l.received.iter().filter_map(|(id, at)| l.committed.get(id).map(|c| at.saturating_duration_since(*c))).collect()
    };
    server.stop().await;

    println!(
        "backend: {backend}, {} events x {} subscriptions, max_concurrency {}",
        args.events, args.subscriptions, args.concurrency
    );
    println!(
        "burst: {total} deliveries in {:.2} s (events committed in {:.2} s)",
        elapsed.as_secs_f64(),
        committed.as_secs_f64()
    );
    println!(
        "burst commit-to-delivery: p50 {:.1} ms, p99 {:.1} ms (queueing included)",
        ms(http_load::percentile(&burst_latency, 50.0)),
        ms(http_load::percentile(&burst_latency, 99.0))
    );
    println!(
        "paced {} events/s x {} s: commit-to-delivery p50 {:.1} ms, p99 {:.1} ms",
        args.paced_rate,
        args.paced_seconds,
        ms(http_load::percentile(&latency, 50.0)),
        ms(http_load::percentile(&latency, 99.0))
    );
    println!(
        "baseline (plain POSTs to the receiver, {clients} clients): {:.0} requests/s; ratio {:.2}",
        base.rate(),
        rate / base.rate()
    );
    println!("event-delivery: {rate:.0} deliveries/s");
    Ok(())
}
