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
    List,
    Get {
        version: String,
    },
}

pub const RELEASE_COLUMNS: &[&str] = &["version", "default", "description", "upgrade_workflow", "sha256", "size"];

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
    })
}
