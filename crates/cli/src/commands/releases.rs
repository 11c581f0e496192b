//! `tenancy releases ...`: releases and their bundles, over the v1 API.

use clap::Subcommand;
use serde_json::Value;
use tenancy_client::Client;
use tenancy_domain::release::ReleaseSpec;

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum ReleaseCmd {
    /// Create a release or replace its description and upgrade workflow; with --bundle,
    /// upload FILE (streamed) as its bundle.
    Put {
        /// 1-64 of A-Z a-z 0-9 . _ + - (e.g. 2.4.0).
        version: String,
        /// What the release is, for people.
        #[arg(long)]
        description: Option<String>,
        /// A file uploaded as the release's bundle (its SHA-256 is recorded).
        #[arg(long)]
        bundle: Option<std::path::PathBuf>,
        /// The bundle's content type [default: application/octet-stream].
        #[arg(long)]
        content_type: Option<String>,
        /// Make it the fleet's default release (new tenants start on it).
        #[arg(long)]
        default: bool,
        /// A tenancy.lifecycle.* state machine that upgrades a tenant to this release
        /// instead of the built-in one.
        #[arg(long)]
        upgrade_workflow: Option<String>,
    },
    /// List releases.
    List,
    /// A release: its description, upgrade workflow and bundle's digest and size.
    Get {
        /// The release's version.
        version: String,
    },
    /// Download a release's bundle (checked against its recorded SHA-256).
    Download {
        /// The release's version.
        version: String,
        /// Write the bundle to this file ("-": standard output).
        #[arg(long, short = 'O')]
        out: std::path::PathBuf,
    },
}

pub const RELEASE_COLUMNS: &[&str] =
    &["version", "default", "description", "upgrade_workflow", "sha256", "size", "file"];

/// A release flattened for the table: its bundle's digest and size beside it.
fn row(r: tenancy_domain::release::Release) -> Value {
    let mut v = to_json(&r);
    if let (Some(b), Some(m)) = (&r.bundle, v.as_object_mut()) {
        m.insert("sha256".into(), b.sha256.clone().into());
        m.insert("size".into(), b.size.into());
    }
    v
}

pub async fn releases(c: &Client, cmd: ReleaseCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        ReleaseCmd::Put { version, description, bundle, content_type, default, upgrade_workflow } => {
            // The bundle is read before anything changes: a missing file is a usage error.
            let file = match &bundle {
                Some(path) => Some(
                    tokio::fs::File::open(path)
                        .await
                        .map_err(|e| CliError::Usage(format!("--bundle {}: {e}", path.display())))?,
                ),
                None => None,
            };
            let mut r = c.release_put(&version, &ReleaseSpec { description, upgrade_workflow, default }).await?;
            if let Some(file) = file {
                let ct = content_type.as_deref().unwrap_or("application/octet-stream");
                r = c.release_bundle_put(&version, ct, file).await?;
                if let Some(b) = &r.bundle {
                    eprintln!("bundle uploaded: {} bytes, sha256 {}", b.size, b.sha256);
                }
            }
            row(r)
        }
        ReleaseCmd::List => Value::Array(c.release_list().await?.items.into_iter().map(row).collect()),
        ReleaseCmd::Get { version } => row(c.release_get(&version).await?),
        ReleaseCmd::Download { version, out } => {
            use std::io::Write;
            let mut bundle = c.release_bundle_get(&version).await?;
            let fail = |e: std::io::Error| CliError::Other(anyhow::anyhow!("cannot write {}: {e}", out.display()));
            let mut sink: Box<dyn Write> = if out.as_os_str() == "-" {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(std::fs::File::create(&out).map_err(fail)?)
            };
            let mut size = 0u64;
            while let Some(chunk) = bundle.chunk().await? {
                size += chunk.len() as u64;
                sink.write_all(&chunk).map_err(fail)?;
            }
            sink.flush().map_err(fail)?;
            if out.as_os_str() == "-" {
                return Ok(Value::Null);
            }
            serde_json::json!({"version": version, "file": out.display().to_string(), "size": size})
        }
    })
}
