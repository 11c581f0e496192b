//! A closed-loop HTTP load generator: `clients` tasks, each sending its next request
//! as soon as the previous one answered, over pooled keep-alive connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

/// What a load run measured.
pub struct LoadResult {
    pub requests: usize,
    /// Requests in flight.
    pub clients: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
}

pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut v = samples.to_vec();
    v.sort();
    let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[idx.min(v.len() - 1)]
}

pub fn client(clients: usize) -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(clients).tcp_nodelay(true).build().expect("http client")
}

/// Runs `total` requests (numbered 0..total) with `clients` in flight; `send(i)` makes
/// request `i` and returns whether it succeeded.
pub async fn run<F>(total: usize, clients: usize, send: F) -> LoadResult
where
    F: Fn(usize) -> BoxFuture<'static, bool> + Send + Sync + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let send = Arc::new(send);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (next, send) = (next.clone(), send.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let t = Instant::now();
                    if !send(i).await {
                        errors += 1;
                    }
                    lat.push(t.elapsed());
                }
                (lat, errors)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        latencies.extend(l);
        errors += e;
    }
    LoadResult { requests: total, clients, errors, elapsed: start.elapsed(), latencies }
}

/// Runs requests for `duration` with `clients` in flight.
pub async fn run_for<F>(duration: Duration, clients: usize, send: F) -> LoadResult
where
    F: Fn(usize) -> BoxFuture<'static, bool> + Send + Sync + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let send = Arc::new(send);
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (next, send) = (next.clone(), send.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    if !send(i).await {
                        errors += 1;
                    }
                    lat.push(t.elapsed());
                }
                (lat, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        latencies.extend(l);
        errors += e;
    }
    LoadResult { requests: latencies.len(), clients, errors, elapsed: start.elapsed(), latencies }
}

/// Prints a load scenario's two lines against the hello-world run of the same
/// invocation: the detail (`what` was measured, with `note` appended) and the summary
/// `<scenario>: <rate> req/s, p99 ... (<backend>, <clients> clients); baseline ...;
/// ratio ...`, the line docs/BENCHMARKS.md quotes.
pub fn report(scenario: &str, what: &str, note: &str, r: &LoadResult, baseline: &LoadResult, backend: &str) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: {} requests, p50 {:.2} ms, p99 {:.2} ms; hello-world p50 {:.2} ms, p99 {:.2} ms{note}",
        r.requests,
        ms(r.percentile(50.0)),
        ms(r.percentile(99.0)),
        ms(baseline.percentile(50.0)),
        ms(baseline.percentile(99.0))
    );
    println!(
        "{scenario}: {:.0} req/s, p99 {:.2} ms ({backend}, {} clients); baseline hello-world {:.0} req/s, p99 {:.2} ms; \
         ratio {:.3}",
        r.rate(),
        ms(r.percentile(99.0)),
        r.clients,
        baseline.rate(),
        ms(baseline.percentile(99.0)),
        r.rate() / baseline.rate()
    );
}
