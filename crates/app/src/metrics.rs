//! The gauges of `/metrics` that reflect stored state, and the process's own.
//!
//! Counters and histograms are recorded where things happen (the engine's steps,
//! deliveries, quota decisions, drift, store writes); a gauge of stored state (tenants
//! by status and plan, running and stuck executions, queue depths, dead deliveries,
//! rollouts) is a count over the database instead. [`App::collect_metrics`] computes
//! them when `/metrics` is scraped: a few aggregate queries
//! ([`tenancy_store::Store::metrics_gauges`]), at most once per [`MIN_INTERVAL`] (a
//! scrape within it serves the last values), so a scraper every 15 s costs a handful of
//! `COUNT(*)`s and nothing is computed when nobody scrapes. Every replica computes the
//! same figures from the shared database: aggregate them with `max`, not `sum`
//! (docs/operations.md).
//!
//! A label set seen in a collection and absent from the next (a plan whose last tenant
//! left, a deleted queue) is set to 0, so a scraper never keeps a stale count.
//!
//! Process metrics (`process_*`, the names of Prometheus's client libraries) are read
//! from `/proc/self` on Linux rather than with the `metrics-process` crate: five
//! numbers from two files do not need a dependency; elsewhere they are absent.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use crate::App;

/// Scrapes closer together than this serve the last collection.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

type Labels = Vec<(&'static str, String)>;

/// The state of the collections (held by the [`App`]).
#[derive(Default)]
pub struct Collector {
    inner: tokio::sync::Mutex<Last>,
}

#[derive(Default)]
struct Last {
    at: Option<Instant>,
    /// Every (gauge, labels) set by the last collection.
    keys: BTreeSet<(&'static str, Labels)>,
}

/// The gauges of one collection.
#[derive(Default)]
struct Gauges {
    keys: BTreeSet<(&'static str, Labels)>,
}

impl Gauges {
    fn set(&mut self, name: &'static str, labels: Labels, value: f64) {
        metrics::gauge!(name, &labels).set(value);
        self.keys.insert((name, labels));
    }

    /// Zeroes what the previous collection set and this one did not.
    fn finish(self, last: &mut Last) {
        for (name, labels) in last.keys.difference(&self.keys) {
            metrics::gauge!(*name, labels).set(0.0);
        }
        last.keys = self.keys;
    }
}

fn l(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

impl App {
    /// Sets the stored-state and process gauges, unless they were set less than
    /// [`MIN_INTERVAL`] ago. Called by `GET /metrics` before it renders.
    pub async fn collect_metrics(&self) -> Result<()> {
        let mut last = self.metrics.inner.lock().await;
        if last.at.is_some_and(|at| at.elapsed() < MIN_INTERVAL) {
            return Ok(());
        }
        let started = Instant::now();
        let now = Timestamp::now();
        let stuck_before = now.plus_millis(-(self.stuck_after.as_millis() as i64));
        let stored = self.store.metrics_gauges(now, stuck_before).await;
        metrics::histogram!("tenancy_store_query_duration_seconds", "op" => "metrics_gauges")
            .record(started.elapsed().as_secs_f64());
        let stored = stored?;
        let mut g = Gauges::default();
        for (status, plan, n) in &stored.tenants {
            g.set("tenancy_tenants", l(&[("status", status), ("plan", plan)]), *n as f64);
        }
        for (machine, n) in &stored.running_executions {
            g.set("tenancy_executions_running", l(&[("state_machine", machine)]), *n as f64);
        }
        for (machine, n) in &stored.stuck_executions {
            g.set("tenancy_executions_stuck", l(&[("state_machine", machine)]), *n as f64);
        }
        for q in &stored.queues {
            let queue = [("queue", q.queue.as_str())];
            g.set("tenancy_queue_messages", l(&[("queue", &q.queue), ("state", "waiting")]), q.waiting as f64);
            g.set("tenancy_queue_messages", l(&[("queue", &q.queue), ("state", "in_flight")]), q.in_flight as f64);
            let age = q.oldest_sent_at.map_or(0.0, |t| (now.millis() - t.millis()).max(0) as f64 / 1000.0);
            g.set("tenancy_queue_oldest_message_age_seconds", l(&queue), age);
            if q.dead_letter {
                g.set("tenancy_dlq_messages", l(&queue), (q.waiting + q.in_flight) as f64);
            }
        }
        for status in ["pending", "dead"] {
            let n = stored.deliveries.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            g.set("tenancy_webhook_deliveries", l(&[("status", status)]), n as f64);
        }
        for (status, n) in &stored.rollouts {
            g.set("tenancy_rollouts", l(&[("status", status)]), *n as f64);
        }
        let active = |s: &str| matches!(s, "running" | "paused" | "halted");
        if stored.rollouts.iter().any(|(s, n)| active(s) && *n > 0) {
            for r in self.store.rollouts().rollout_list().await? {
                if !active(&r.status) {
                    continue;
                }
                let mut c = tenancy_domain::rollout::WaveCounts::default();
                for w in &r.waves {
                    c.pending += w.counts.pending;
                    c.upgrading += w.counts.upgrading;
                    c.succeeded += w.counts.succeeded;
                    c.failed += w.counts.failed;
                    c.skipped += w.counts.skipped;
                    c.rolled_back += w.counts.rolled_back;
                }
                // A bulk plan change has a plan and no release; a release rollout the reverse.
                let (release, plan) = (r.release.as_deref().unwrap_or(""), r.plan.as_deref().unwrap_or(""));
                for (state, n) in [
                    ("pending", c.pending),
                    ("upgrading", c.upgrading),
                    ("succeeded", c.succeeded),
                    ("failed", c.failed),
                    ("skipped", c.skipped),
                    ("rolled_back", c.rolled_back),
                ] {
                    let labels = l(&[("rollout", &r.id), ("release", release), ("plan", plan), ("state", state)]);
                    g.set("tenancy_rollout_tenants", labels, n as f64);
                }
                g.set(
                    "tenancy_rollout_wave",
                    l(&[("rollout", &r.id), ("release", release), ("plan", plan)]),
                    r.current_wave as f64,
                );
            }
        }
        if let Some(run) = self.store.drift().reconciliation_last().await? {
            let unrepaired = run.report["drift"]
                .as_array()
                .map_or(0, |d| d.iter().filter(|d| d["repaired"] != serde_json::Value::Bool(true)).count());
            g.set("tenancy_drift_unrepaired", Vec::new(), unrepaired as f64);
            g.set(
                "tenancy_reconciliation_last_pass_timestamp_seconds",
                Vec::new(),
                run.finished_at.millis() as f64 / 1000.0,
            );
        }
        process(&mut g);
        g.finish(&mut last);
        last.at = Some(Instant::now());
        Ok(())
    }
}

/// `process_*` from `/proc/self` (Linux). CPU times there are in USER_HZ, which the
/// kernel fixes at 100 for user space on every architecture it supports.
fn process(g: &mut Gauges) {
    const USER_HZ: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is f[n - 3].
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        g.set("process_cpu_seconds_total", Vec::new(), (utime + stime) / USER_HZ);
    }
    if let Some(threads) = field(20) {
        g.set("process_threads", Vec::new(), threads);
    }
    if let Some(vsize) = field(23) {
        g.set("process_virtual_memory_bytes", Vec::new(), vsize);
    }
    if let Some(pages) = field(24) {
        // The page size of every Linux architecture this is built for but a few (arm64
        // with 16/64 KiB pages): VmRSS in /proc/self/status is exact, prefer it.
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map_or(pages * 4096.0, |kb| kb * 1024.0);
        g.set("process_resident_memory_bytes", Vec::new(), rss);
    }
    if let (Some(start_ticks), Some(boot)) = (field(22), boot_time()) {
        g.set("process_start_time_seconds", Vec::new(), boot + start_ticks / USER_HZ);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        g.set("process_open_fds", Vec::new(), fds.count() as f64);
    }
    if let Some(max) = std::fs::read_to_string("/proc/self/limits").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse::<f64>().ok()))
    }) {
        g.set("process_max_fds", Vec::new(), max);
    }
}

/// The system's boot time (`btime` of /proc/stat), in seconds since the epoch.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_read_on_linux() {
        let mut g = Gauges::default();
        process(&mut g);
        if cfg!(target_os = "linux") {
            let names: BTreeSet<&str> = g.keys.iter().map(|(n, _)| *n).collect();
            for name in [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_open_fds",
                "process_start_time_seconds",
                "process_threads",
            ] {
                assert!(names.contains(name), "{name} missing: {names:?}");
            }
        }
    }
}
