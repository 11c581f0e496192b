//! `tenancy rollouts ...`: rollouts of a release across tenants, over the v1 API.

use std::time::Duration;

use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tenancy_client::{Client, Rollout, RolloutRequest, RolloutSelector, RolloutStrategy};
use tenancy_domain::rollout::MaintenanceWindow;

use crate::support::*;

// Parsed once per process: the size of the `start` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum RolloutCmd {
    /// Start a rollout of a release (`--release`), or a bulk plan change
    /// (`--to-plan`), over the tenants selected (every tenant without a selector), in
    /// waves.
    Start {
        /// The release to move the tenants to.
        #[arg(long, required_unless_present = "to_plan", conflicts_with = "to_plan")]
        release: Option<String>,
        /// The plan to move the tenants to (a bulk plan change; `--plan` selects the
        /// tenants on a plan).
        #[arg(long)]
        to_plan: Option<String>,
        /// Only tenants on this plan (repeatable: any of them).
        #[arg(long = "plan")]
        plans: Vec<String>,
        /// Only tenants in this region (repeatable).
        #[arg(long = "region")]
        regions: Vec<String>,
        /// Only tenants with this status (repeatable).
        #[arg(long = "status")]
        statuses: Vec<String>,
        /// Exactly these tenants (repeatable).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Tenants in the first wave.
        #[arg(long)]
        canary: Option<u64>,
        /// Wave sizes, comma separated: counts or percentages (10%,50%); the rest
        /// make a last wave.
        #[arg(long, value_delimiter = ',')]
        waves: Vec<String>,
        /// Upgrades running at once within a wave.
        #[arg(long)]
        max_concurrency: Option<u64>,
        /// The share of a wave's tenants that may fail (0-100) before the rollout halts.
        #[arg(long)]
        tolerated_failure_percent: Option<f64>,
        /// Time between waves: 30s, 5m, 1h or seconds.
        #[arg(long)]
        bake: Option<String>,
        /// Leave a halting wave's succeeded tenants on the new release.
        #[arg(long)]
        no_rollback: bool,
        /// Show each wave's progress until the rollout completes, halts or is aborted
        /// (exit 1 unless it completed), as `rollouts watch` does.
        #[arg(long)]
        wait: bool,
        /// The maintenance window of tenants without their own: `DAYS@HH:MM+MINUTES`
        /// in UTC, e.g. `sat,sun@22:00+180` or `@02:00+60` (every day).
        #[arg(long)]
        window: Option<String>,
    },
    /// A rollout: its waves and their counts.
    Get {
        /// The rollout's id.
        id: String,
    },
    /// List rollouts.
    List,
    /// No new upgrades start; running ones finish.
    Pause {
        /// The rollout's id.
        id: String,
        /// Wait (a spinner on a terminal) until the upgrades running when it paused
        /// have finished.
        #[arg(long)]
        wait: bool,
    },
    /// Go on after a pause or a halt.
    Resume {
        /// The rollout's id.
        id: String,
        /// Show each wave's progress until the rollout completes, halts or is aborted
        /// (exit 1 unless it completed), as `rollouts watch` does.
        #[arg(long)]
        wait: bool,
    },
    /// End the rollout; no new upgrades (asks first).
    Abort {
        /// The rollout's id.
        id: String,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Show each wave's progress until the rollout completes, halts or is aborted
    /// (exit 1 unless it completed).
    Watch {
        /// The rollout's id.
        id: String,
    },
}

pub const ROLLOUT_COLUMNS: &[&str] = &[
    "id",
    "release",
    "plan",
    "status",
    "wave",
    "pending",
    "upgrading",
    "succeeded",
    "failed",
    "rolled_back",
    "skipped",
];

fn parse_bake(s: &str) -> Result<u64, CliError> {
    let bad = || CliError::Usage(format!("--bake {s:?}: expected e.g. 30s, 5m, 1h or a number of seconds"));
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().map(|n| n * mult).map_err(|_| bad())
}

/// `--window DAYS@HH:MM+MINUTES` (days comma separated, none: every day).
fn parse_window(s: &str) -> Result<MaintenanceWindow, CliError> {
    let bad = || CliError::Usage(format!("--window {s:?}: expected DAYS@HH:MM+MINUTES, e.g. sat,sun@22:00+180"));
    let (days, rest) = s.split_once('@').ok_or_else(bad)?;
    let (start, minutes) = rest.split_once('+').ok_or_else(bad)?;
    let days = days.split(',').map(str::trim).filter(|d| !d.is_empty()).map(str::to_lowercase).collect();
    let duration_m = minutes.trim().parse().map_err(|_| bad())?;
    Ok(MaintenanceWindow { days, start: start.trim().to_owned(), duration_m })
}

/// A rollout flattened for the table: the totals over its waves beside it.
fn row(r: &Rollout) -> Value {
    let mut v = to_json(r);
    let sum = |f: fn(&tenancy_domain::rollout::WaveCounts) -> u64| r.waves.iter().map(|w| f(&w.counts)).sum::<u64>();
    if let Some(m) = v.as_object_mut() {
        let wave = r.waves.get(r.current_wave).map(|w| w.name.clone()).unwrap_or_default();
        m.insert("wave".into(), json!(format!("{} ({}/{})", wave, r.current_wave + 1, r.waves.len())));
        m.insert("pending".into(), json!(sum(|c| c.pending)));
        m.insert("upgrading".into(), json!(sum(|c| c.upgrading)));
        m.insert("succeeded".into(), json!(sum(|c| c.succeeded)));
        m.insert("failed".into(), json!(sum(|c| c.failed)));
        m.insert("rolled_back".into(), json!(sum(|c| c.rolled_back)));
        m.insert("skipped".into(), json!(r.skipped.len()));
    }
    v
}

pub async fn rollouts(c: &Client, cmd: RolloutCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        RolloutCmd::Start {
            release,
            to_plan,
            window,
            plans,
            regions,
            statuses,
            tenants,
            canary,
            waves,
            max_concurrency,
            tolerated_failure_percent,
            bake,
            no_rollback,
            wait,
        } => {
            let bake_s = bake.as_deref().map(parse_bake).transpose()?;
            let waves = waves
                .iter()
                .filter(|w| !w.trim().is_empty())
                .map(|w| match w.trim().parse::<u64>() {
                    Ok(n) => json!(n),
                    Err(_) => json!(w.trim()),
                })
                .collect();
            let maintenance_window = window.as_deref().map(parse_window).transpose()?;
            let req = RolloutRequest {
                release,
                plan: to_plan,
                selector: RolloutSelector { plans, regions, statuses, tenant_ids: tenants },
                strategy: RolloutStrategy {
                    canary,
                    waves,
                    max_concurrency,
                    tolerated_failure_percent,
                    bake_s,
                    rollback_failed_wave: no_rollback.then_some(false),
                    maintenance_window,
                },
            };
            let started = c.rollout_start(&req).await?;
            for s in &started.skipped {
                eprintln!("skipped {}: {}", s.tenant_id, s.reason);
            }
            if wait {
                return watch(c, &started.id).await;
            }
            row(&c.rollout_get(&started.id).await?)
        }
        RolloutCmd::Get { id } => row(&c.rollout_get(&id).await?),
        RolloutCmd::List => Value::Array(c.rollout_list().await?.items.iter().map(row).collect()),
        RolloutCmd::Pause { id, wait } => {
            let r = c.rollout_operate(&id, "pause").await?;
            if wait {
                row(&quiesce(c, &id).await?)
            } else {
                row(&r)
            }
        }
        RolloutCmd::Resume { id, wait } => {
            let r = c.rollout_operate(&id, "resume").await?;
            if wait {
                watch(c, &id).await?
            } else {
                row(&r)
            }
        }
        RolloutCmd::Abort { id, confirm: yes } => {
            confirm(yes, &format!("abort rollout {id}"))?;
            row(&c.rollout_operate(&id, "abort").await?)
        }
        RolloutCmd::Watch { id } => watch(c, &id).await?,
    })
}

/// Whether no upgrade or rollback of the rollout is under way.
fn settled(r: &Rollout) -> bool {
    r.waves.iter().flat_map(|w| &w.tenants).all(|t| {
        !matches!(
            t.state.as_str(),
            "starting" | "upgrading" | "rollback_pending" | "rollback_starting" | "rolling_back"
        )
    })
}

/// After a pause: waits (a spinner) until the upgrades it let finish have finished.
async fn quiesce(c: &Client, id: &str) -> Result<Rollout, CliError> {
    let bar = spinner(format!("waiting for the running upgrades of rollout {id} to finish"));
    let deadline = std::time::Instant::now() + WAIT_LIMIT;
    loop {
        let r = c.rollout_get(id).await?;
        if settled(&r) {
            bar.finish_and_clear();
            return Ok(r);
        }
        if std::time::Instant::now() > deadline {
            bar.finish_and_clear();
            return Err(CliError::Other(anyhow::anyhow!(
                "rollout {id} still has upgrades running after {}s; `tenancy rollouts get {id}` shows them",
                WAIT_LIMIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One bar per wave (done = succeeded + failed + skipped + rolled back, of its
/// tenants), refreshed every second until the rollout is no longer running or paused.
async fn watch(c: &Client, id: &str) -> Result<Value, CliError> {
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut bars: Vec<ProgressBar> = Vec::new();
    loop {
        let r = c.rollout_get(id).await?;
        while bars.len() < r.waves.len() {
            let w = &r.waves[bars.len()];
            let bar = multi.add(ProgressBar::new(w.tenants.len() as u64));
            bar.set_style(style.clone());
            bar.set_prefix(w.name.clone());
            bars.push(bar);
        }
        for (w, bar) in r.waves.iter().zip(&bars) {
            let k = &w.counts;
            bar.set_position(k.succeeded + k.failed + k.skipped + k.rolled_back);
            bar.set_message(format!(
                "{} | upgrading {} succeeded {} failed {} rolled back {}",
                w.status, k.upgrading, k.succeeded, k.failed, k.rolled_back
            ));
        }
        let ended = matches!(r.status.as_str(), "completed" | "aborted") || (r.status == "halted" && settled(&r));
        if ended {
            for bar in &bars {
                bar.finish();
            }
            if r.status != "completed" {
                for f in &r.failed {
                    eprintln!(
                        "failed {} ({}): {} {}",
                        f.tenant_id,
                        f.wave,
                        f.step.as_deref().unwrap_or("-"),
                        f.reason.as_deref().unwrap_or("")
                    );
                }
                return Err(CliError::Other(anyhow::anyhow!(
                    "rollout {id} is {}{}",
                    r.status,
                    r.halted_reason.as_deref().map(|h| format!(": {h}")).unwrap_or_default()
                )));
            }
            return Ok(row(&r));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
