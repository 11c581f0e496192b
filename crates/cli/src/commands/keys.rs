//! `tenancy keys ...`: API keys.

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::{Client, PageParams};
use tenancy_domain::apikey::{NewApiKey, Role, RotateKey};
use tenancy_domain::time::Timestamp;

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create an API key; the key is printed once.
    Create {
        /// A name for people (e.g. the service using it).
        #[arg(long)]
        name: String,
        /// What the key may do.
        #[arg(long, value_parser = ["admin", "operator", "viewer", "service", "tenant"])]
        role: String,
        /// The tenant of a tenant key (role tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// RFC 3339 expiry time.
        #[arg(long)]
        expires_at: Option<String>,
        /// The key's own API rate limit as PER_SECOND/BURST (e.g. 10/20), instead of its
        /// role's default.
        #[arg(long, value_name = "PER_SECOND/BURST")]
        rate_limit: Option<String>,
        /// A label policies can match (`principal.labels`); repeat for more.
        #[arg(long)]
        label: Vec<String>,
        /// The region policies can scope the key to (`principal.region`).
        #[arg(long)]
        region: Option<String>,
    },
    /// List API keys (never their secrets).
    List,
    /// Revoke an API key: it is refused at once (asks first).
    #[command(visible_alias = "revoke")]
    Delete {
        /// The key's id (key_...).
        id: String,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Issue a new secret for a key (printed once); the old one keeps working for the
    /// grace (default 1h, at most 7d).
    Rotate {
        /// The key's id (key_...).
        id: String,
        /// How long the old secret keeps working: seconds, or a number with s, m, h or d
        /// (e.g. 90s, 30m, 1h, 2d); 0: not at all.
        #[arg(long)]
        grace: Option<String>,
    },
}

pub const KEY_COLUMNS: &[&str] = &[
    "id",
    "name",
    "role",
    "tenant_id",
    "expires_at",
    "rate_limit",
    "last_used_at",
    "previous_secret_expires_at",
    "key",
];

/// A duration as seconds: `90`, `90s`, `30m`, `1h`, `2d`.
fn parse_grace(s: &str) -> Result<u64, CliError> {
    let usage = || CliError::Usage(format!("--grace {s:?}: use seconds, or a number with s, m, h or d (e.g. 1h)"));
    let t = s.trim();
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let n: u64 = num.parse().map_err(|_| usage())?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(usage()),
    };
    n.checked_mul(mult).ok_or_else(usage)
}

pub async fn keys(c: &Client, cmd: KeyCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        KeyCmd::Create { name, role, tenant, expires_at, rate_limit, label, region } => {
            let role = Role::parse(&role).ok_or_else(|| {
                CliError::Usage(format!("--role {role:?}: use admin, operator, viewer, service or tenant"))
            })?;
            let expires_at = expires_at
                .map(|e| {
                    Timestamp::parse_rfc3339(&e)
                        .ok_or_else(|| CliError::Usage(format!("--expires-at {e:?}: use an RFC 3339 time")))
                })
                .transpose()?;
            let rate_limit = rate_limit.map(|r| parse_rate_limit(&r)).transpose()?;
            to_json(
                c.key_create(&NewApiKey {
                    name,
                    role,
                    tenant_id: tenant,
                    expires_at,
                    rate_limit,
                    labels: label,
                    region,
                })
                .await?,
            )
        }
        KeyCmd::List => to_json(c.key_list(&PageParams::default()).await?),
        KeyCmd::Delete { id, confirm: yes } => {
            confirm(yes, &format!("revoke API key {id}"))?;
            c.key_delete(&id).await?;
            json!({"id": id, "deleted": true})
        }
        KeyCmd::Rotate { id, grace } => {
            let grace_s = grace.map(|g| parse_grace(&g)).transpose()?;
            to_json(c.key_rotate(&id, &RotateKey { grace_s }).await?)
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn graces_parse() {
        for (s, n) in [("90", 90), ("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172_800), ("0", 0)] {
            assert_eq!(super::parse_grace(s).unwrap(), n, "{s}");
        }
        for bad in ["", "h", "1w", "-1", "1.5h"] {
            assert!(super::parse_grace(bad).is_err(), "{bad}");
        }
    }
}
