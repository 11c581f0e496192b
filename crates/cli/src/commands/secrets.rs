//! `tenancy secrets ...`: the secret store, over the v1 API. Without `--tenant` a
//! command is about the platform's secrets (`/v1/secrets`).
//!
//! `put` never takes the value as a flag (it would land in the shell's history and the
//! process list): it reads `--value-file`, or standard input, whole, less one trailing
//! newline (`echo` adds one); or it asks the server to generate one with `--generate`.
//! `get` prints the bare value in table mode (for pipes), the whole answer with
//! `--output json`.

use std::io::Read;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};
use tenancy_client::{Client, PageParams};
use tenancy_domain::secret::{Generator, SecretPut};

use crate::support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenerateKind {
    RandomString,
    RandomBytes,
    HmacKey,
}

#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    /// Put a new version (it becomes current; the old current becomes previous). The
    /// value comes from --value-file or standard input, or --generate.
    Put {
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
    },
    /// Print a secret's value (current, or --stage / --version).
    Get {
        name: String,
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
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Schedule a deletion after a recovery window, or delete at once with --force.
    Delete {
        name: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Days before the purge, 1-30 [default: 7].
        #[arg(long, conflicts_with = "force")]
        recovery_days: Option<u32>,
        #[arg(long)]
        force: bool,
    },
    /// Cancel a scheduled deletion.
    Restore {
        name: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub const SECRET_COLUMNS: &[&str] =
    &["name", "tenant_id", "current_version", "updated_at", "purge_at", "version", "stages", "deleted"];

/// The value of `put`: the file or standard input, less one trailing newline.
fn read_value(file: Option<&PathBuf>) -> Result<String, CliError> {
    let mut text = String::new();
    match file.filter(|f| f.as_os_str() != "-") {
        Some(f) => {
            text =
                std::fs::read_to_string(f).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", f.display())))?;
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::Usage(format!("cannot read the value from standard input: {e}")))?;
        }
    }
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// Runs a command; `Ok(None)` when it printed its answer itself.
pub async fn secrets(c: &Client, cmd: SecretCmd, output: Output) -> Result<Option<Value>, CliError> {
    Ok(Some(match cmd {
        SecretCmd::Put { name, tenant, value_file, generate, length, charset } => {
            let body = match generate {
                None => SecretPut { value: Some(read_value(value_file.as_ref())?), generate: None },
                Some(kind) => {
                    let length = length.unwrap_or(32);
                    let g = match kind {
                        GenerateKind::RandomString => Generator::RandomString { length, charset },
                        GenerateKind::RandomBytes => Generator::RandomBytes { length },
                        GenerateKind::HmacKey => Generator::HmacKey {},
                    };
                    SecretPut { value: None, generate: Some(g) }
                }
            };
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
        SecretCmd::Delete { name, tenant, recovery_days, force } => {
            match c.secret_delete(tenant.as_deref(), &name, recovery_days, force).await? {
                Some(meta) => to_json(meta),
                None => json!({"name": name, "deleted": true}),
            }
        }
        SecretCmd::Restore { name, tenant } => to_json(c.secret_restore(tenant.as_deref(), &name).await?),
    }))
}
