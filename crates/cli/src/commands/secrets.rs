//! `tenancy secrets ...`: the secret store, over the v1 API. Without `--tenant` a
//! command is about the platform's secrets (`/v1/secrets`).
//!
//! `put` never takes the value as a flag (it would land in the shell's history and the
//! process list): it reads `--value-file`, or standard input, whole, less one trailing
//! newline (`echo` adds one); or it asks the server to generate one with `--generate`.
//! `get` prints the bare value in table mode (for pipes), the whole answer with
//! `--output json`. `rotate` starts a rotation; with `--wait` it polls the rotation's
//! execution until it ends and fails (exit code of an API error) when the rotation
//! failed, printing the secret's `last_rotation`.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};
use tenancy_client::{Client, PageParams};
use tenancy_domain::secret::{Generator, PostgresStrategy, RotationSpec, RotationTarget, SecretPut};

use crate::support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenerateKind {
    RandomString,
    RandomBytes,
    HmacKey,
    Ed25519,
    PostgresPassword,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    Generated,
    Hook,
    Queue,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyKind {
    SingleUser,
    AlternatingUsers,
}

#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    /// Put a new version (it becomes current; the old current becomes previous). The
    /// value comes from --value-file or standard input, or --generate.
    Put {
        /// The secret's name.
        name: String,
        /// The owning tenant; without it, a platform secret.
        #[arg(long)]
        tenant: Option<String>,
        /// Read the value from this file ("-" or nothing: standard input).
        #[arg(long)]
        value_file: Option<PathBuf>,
        /// Let the server generate the value.
        #[arg(long, value_enum, conflicts_with = "value_file")]
        generate: Option<GenerateKind>,
        /// Length of a generated random string or random bytes [default: 32].
        #[arg(long, requires = "generate")]
        length: Option<u32>,
        /// Characters of a generated random string [default: letters and digits].
        #[arg(long, requires = "generate")]
        charset: Option<String>,
        /// Rotate on this interval (e.g. 30d, 12h; at least 1h).
        #[arg(long, conflicts_with = "rotate_cron")]
        rotate_every: Option<String>,
        /// Rotate on this cron schedule, in UTC (e.g. "0 3 * * *").
        #[arg(long)]
        rotate_cron: Option<String>,
        /// Where a rotation applies and tests the new value [default: generated].
        #[arg(long, value_enum)]
        rotation_target: Option<TargetKind>,
        /// The hook of --rotation-target hook.
        #[arg(long)]
        rotation_hook: Option<String>,
        /// The queue of --rotation-target queue.
        #[arg(long)]
        rotation_queue: Option<String>,
        /// The strategy of --rotation-target postgres.
        #[arg(long, value_enum)]
        rotation_strategy: Option<StrategyKind>,
    },
    /// Start a rotation (create, set, test, finish): prints its execution id.
    Rotate {
        /// The secret's name.
        name: String,
        /// The owning tenant; without it, a platform secret.
        #[arg(long)]
        tenant: Option<String>,
        /// Wait until the rotation ends; fail when it failed.
        #[arg(long)]
        wait: bool,
    },
    /// Print a secret's value (current, or --stage / --version).
    Get {
        /// The secret's name.
        name: String,
        /// The owning tenant; without it, a platform secret.
        #[arg(long)]
        tenant: Option<String>,
        /// current, previous or pending.
        #[arg(long)]
        stage: Option<String>,
        #[arg(long)]
        version: Option<i64>,
    },
    /// List secrets' metadata (never values).
    List {
        /// The owning tenant; without it, the platform's secrets.
        #[arg(long)]
        tenant: Option<String>,
        /// Items per page, 1-1000 [default: 100].
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Schedule a deletion after a recovery window, or delete at once with --force
    /// (asks first).
    Delete {
        /// The secret's name.
        name: String,
        /// The owning tenant; without it, a platform secret.
        #[arg(long)]
        tenant: Option<String>,
        /// Days before the purge, 1-30 [default: 7].
        #[arg(long, conflicts_with = "force")]
        recovery_days: Option<u32>,
        /// Delete every version now, without a recovery window.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Cancel a scheduled deletion.
    Restore {
        /// The secret's name.
        name: String,
        /// The owning tenant; without it, a platform secret.
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub const SECRET_COLUMNS: &[&str] =
    &["name", "tenant_id", "current_version", "updated_at", "purge_at", "version", "stages", "deleted"];

/// Runs a command; `Ok(None)` when it printed its answer itself.
pub async fn secrets(c: &Client, cmd: SecretCmd, output: Output) -> Result<Option<Value>, CliError> {
    Ok(Some(match cmd {
        SecretCmd::Put {
            name,
            tenant,
            value_file,
            generate,
            length,
            charset,
            rotate_every,
            rotate_cron,
            rotation_target,
            rotation_hook,
            rotation_queue,
            rotation_strategy,
        } => {
            let target = match rotation_target {
                None => None,
                Some(TargetKind::Generated) => Some(RotationTarget::Generated {}),
                Some(TargetKind::Hook) => Some(RotationTarget::Hook {
                    hook: rotation_hook
                        .ok_or_else(|| CliError::Usage("--rotation-target hook needs --rotation-hook".into()))?,
                }),
                Some(TargetKind::Queue) => Some(RotationTarget::Queue {
                    queue: rotation_queue
                        .ok_or_else(|| CliError::Usage("--rotation-target queue needs --rotation-queue".into()))?,
                }),
                Some(TargetKind::Postgres) => Some(RotationTarget::Postgres {
                    strategy: match rotation_strategy {
                        Some(StrategyKind::AlternatingUsers) => PostgresStrategy::AlternatingUsers,
                        _ => PostgresStrategy::SingleUser,
                    },
                }),
            };
            let rotation = (rotate_every.is_some() || rotate_cron.is_some() || target.is_some())
                .then_some(RotationSpec { every: rotate_every, cron: rotate_cron, target });
            let mut body = match generate {
                None => SecretPut {
                    value: Some(read_secret_input(value_file.as_ref(), "the value")?),
                    generate: None,
                    rotation: None,
                },
                Some(kind) => {
                    let length = length.unwrap_or(32);
                    let g = match kind {
                        GenerateKind::RandomString => Generator::RandomString { length, charset },
                        GenerateKind::RandomBytes => Generator::RandomBytes { length },
                        GenerateKind::HmacKey => Generator::HmacKey {},
                        GenerateKind::Ed25519 => Generator::Ed25519 {},
                        GenerateKind::PostgresPassword => Generator::PostgresPassword {},
                    };
                    SecretPut { value: None, generate: Some(g), rotation: None }
                }
            };
            body.rotation = rotation;
            to_json(c.secret_put(tenant.as_deref(), &name, &body).await?)
        }
        SecretCmd::Get { name, tenant, stage, version } => {
            let v = c.secret_get(tenant.as_deref(), &name, stage.as_deref(), version).await?;
            if output == Output::Table {
                println!("{}", v.value);
                return Ok(None);
            }
            to_json(v)
        }
        SecretCmd::List { tenant, limit } => {
            to_json(c.secret_list(tenant.as_deref(), &PageParams { limit, cursor: None }).await?)
        }
        SecretCmd::Delete { name, tenant, recovery_days, force, confirm: yes } => {
            let whose = tenant.as_deref().map(|t| format!(" of tenant {t}")).unwrap_or_default();
            let how = if force { "now, with every version" } else { "after its recovery window" };
            confirm(yes, &format!("delete secret {name}{whose} {how}"))?;
            match c.secret_delete(tenant.as_deref(), &name, recovery_days, force).await? {
                Some(meta) => to_json(meta),
                None => json!({"name": name, "deleted": true}),
            }
        }
        SecretCmd::Restore { name, tenant } => to_json(c.secret_restore(tenant.as_deref(), &name).await?),
        SecretCmd::Rotate { name, tenant, wait } => {
            let started = c.secret_rotate(tenant.as_deref(), &name).await?;
            if !wait {
                return Ok(Some(to_json(started)));
            }
            let status = loop {
                let e = c.execution_get(&started.execution_id).await?;
                if e.status != "RUNNING" {
                    break e.status;
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            };
            let page = c.secret_list(tenant.as_deref(), &PageParams { limit: Some(1000), cursor: None }).await?;
            let last = page.items.into_iter().find(|s| s.name == name).and_then(|s| s.last_rotation);
            let out = json!({"execution_id": started.execution_id, "name": name, "tenant_id": tenant,
                             "status": status, "last_rotation": last});
            if status != "SUCCEEDED" {
                let why = last.and_then(|l| l.error).unwrap_or_else(|| format!("execution {status}"));
                return Err(CliError::Other(anyhow::anyhow!("the rotation of {name:?} failed: {why}")));
            }
            out
        }
    }))
}
