//! `queue`: messages sent in batches, then received and deleted by concurrent consumers.
//!
//! Phase 1 sends `--messages` in batches of 100 from `--senders` concurrent clients
//! (figure: messages/s sent). Phase 2 drains the queue with `--consumers` consumers, each
//! looping `receive {max: 100, wait_s: 1}` then one batch delete of what it got (figure:
//! messages/s received and deleted). Over HTTP by default (the real path, with the load
//! generator in this process sharing the cores); `--in-process` calls `App` directly,
//! which shows what the store does without HTTP and JSON around it. The baseline is
//! graphile-worker's tuned figure on this machine (25,000 jobs/s, queued then worked,
//! measured with /work/shared/bench/peers/run_jobq.sh); the last line compares the
//! receive+delete rate with it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use tenancy::serve::{start, ServeOptions};
use tenancy_app::{App, OpContext};
use tenancy_domain::api::{DeleteBatch, ReceiveRequest, SendBatch};
use tenancy_domain::queue::{QueueSpec, SendMessage};

const TOKEN: &str = "bench-admin-token";
const QUEUE: &str = "bench";
/// graphile-worker, `--tuned`, measured on this machine (jobs/s).
const BASELINE: f64 = 25_000.0;

#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// `postgres://...` server to create a fresh benchmark database on (default: SQLite).
    #[arg(long)]
    pub database_url: Option<String>,
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    #[arg(long, default_value_t = 8)]
    pub senders: usize,
    #[arg(long, default_value_t = 32)]
    pub consumers: usize,
    /// Messages per send batch and per receive.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Call the application layer directly instead of HTTP.
    #[arg(long)]
    pub in_process: bool,
}

/// Sends and consumes through HTTP (the typed client: its calls decode what the raw
/// ones parsed as JSON anyway, so it adds no work) or directly through `App`.
#[derive(Clone)]
enum Client {
    Http(tenancy_client::Client),
    App(Arc<App>),
}

impl Client {
    async fn send(&self, bodies: Vec<Value>) -> anyhow::Result<()> {
        match self {
            Client::Http(client) => {
                let entries = bodies.into_iter().map(message).collect();
                client.queue_send_batch(QUEUE, &SendBatch { entries }).await.context("send")?;
            }
            Client::App(app) => {
                let entries = bodies.into_iter().map(message).collect();
                app.message_send_batch(&OpContext::system(), QUEUE, entries).await?;
            }
        }
        Ok(())
    }

    /// Receives a batch and deletes it; returns how many.
    async fn consume(&self, max: usize) -> anyhow::Result<usize> {
        match self {
            Client::Http(client) => {
                let req = ReceiveRequest { max: Some(max as u32), wait_s: Some(1) };
                let got = client.queue_receive(QUEUE, &req).await.context("receive")?;
                if got.messages.is_empty() {
                    return Ok(0);
                }
                let receipts = got.messages.into_iter().map(|m| m.receipt).collect();
                Ok(client.queue_ack_batch(QUEUE, &DeleteBatch { receipts }).await.context("delete")?.deleted.len())
            }
            Client::App(app) => {
                let ctx = OpContext::system();
                let req = ReceiveRequest { max: Some(max as u32), wait_s: Some(1) };
                let got = app.message_receive(&ctx, QUEUE, req).await?;
                if got.is_empty() {
                    return Ok(0);
                }
                let receipts = got.into_iter().map(|m| m.receipt).collect();
                Ok(app.message_delete_batch(&ctx, QUEUE, receipts).await?.deleted.len())
            }
        }
    }
}

/// A message of the benchmark's body.
fn message(body: Value) -> SendMessage {
    SendMessage { body, delay_s: None, group_id: None, dedup_id: None, attributes: Default::default() }
}

pub async fn run(args: QueueArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let database_url = crate::event_delivery::fresh_database(args.database_url.as_deref()).await?;
    let backend = if database_url.is_some() { "postgres" } else { "sqlite" };
    let mut opts = ServeOptions::for_tests(dir.path().to_owned(), database_url, TOKEN);
    opts.rate_limits = crate::UNREACHED_RATE_LIMITS;
    opts.workflow = tenancy::config::workflow_from_env()?;
    let server = start(opts).await?;
    let spec = QueueSpec {
        visibility_timeout_s: 300,
        max_receive_count: None,
        dead_letter_queue: None,
        delay_s: None,
        retention_s: None,
    };
    server.app.queue_put(&OpContext::system(), QUEUE, spec).await.context("create the queue")?;
    let client = if args.in_process {
        Client::App(server.app.clone())
    } else {
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).tcp_nodelay(true).build()?;
        Client::Http(tenancy_client::Client::with_http(http, &server.url(), Some(TOKEN.to_owned())))
    };
    let via = if args.in_process { "in-process (App)" } else { "HTTP" };
    let n = args.messages;
    let batch = args.batch.clamp(1, 100);

    // Phase 1: send.
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.senders {
        let (client, next) = (client.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let from = next.fetch_add(batch, Ordering::Relaxed);
                if from >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let bodies =
                    (from..(from + batch).min(n)).map(|i| json!({"job": i, "payload": "x".repeat(64)})).collect();
                client.send(bodies).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let send_time = started.elapsed();
    let send_rate = n as f64 / send_time.as_secs_f64();
    println!("send: {n} messages in {:.2} s: {send_rate:.0} messages/s ({via}, {backend})", send_time.as_secs_f64());

    // Phase 2: receive and delete.
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.consumers {
        let (client, done) = (client.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < n {
                let got = client.consume(batch).await?;
                done.fetch_add(got, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    for t in tasks {
        tokio::time::timeout_at(deadline.into(), t).await.context("consumers did not finish in 600 s")???;
    }
    let drain_time = started.elapsed();
    let drain_rate = n as f64 / drain_time.as_secs_f64();
    println!(
        "receive+delete: {n} messages in {:.2} s: {drain_rate:.0} messages/s ({} consumers, batches of {batch})",
        drain_time.as_secs_f64(),
        args.consumers
    );
    let info = server.app.queue_get(&OpContext::system(), QUEUE).await?;
    anyhow::ensure!(info.depth.visible + info.depth.in_flight == 0, "the queue is not empty: {:?}", info.depth);
    let through = n as f64 / (send_time + drain_time).as_secs_f64();
    server.stop().await;
    println!(
        "queue: {drain_rate:.0} messages/s received+deleted (send {send_rate:.0}/s, end to end {through:.0}/s; {via}, \
         {backend}); baseline graphile-worker tuned {BASELINE:.0} jobs/s; ratio {:.2}",
        drain_rate / BASELINE
    );
    Ok(())
}
