//! `tenancy entitlements show` and `tenancy overrides set|clear`: a tenant's effective
//! entitlements and its overrides of its plan, over the v1 API.

use std::collections::BTreeMap;

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::Client;
use tenancy_domain::entitlements::OverridesSpec;
use tenancy_domain::time::Timestamp;

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum EntitlementCmd {
    /// A tenant's effective entitlements: its plan with its unexpired overrides.
    Show {
        /// The tenant's id.
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OverrideCmd {
    /// Set a tenant's overrides, replacing any it had.
    Set {
        /// The tenant's id.
        tenant: String,
        /// A feature turned on or off, NAME=on|off; repeat for several.
        #[arg(long = "feature")]
        features: Vec<String>,
        /// A quota limit, NAME=LIMIT; repeat for several.
        #[arg(long = "quota")]
        quotas: Vec<String>,
        /// A config value, KEY=JSON (a string, number, boolean or object); repeat for several.
        #[arg(long = "config")]
        config: Vec<String>,
        /// When the overrides stop applying (RFC 3339).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Show a tenant's overrides as set.
    Show {
        /// The tenant's id.
        tenant: String,
    },
    /// Clear a tenant's overrides: its plan alone applies again (asks first).
    Clear {
        /// The tenant's id.
        tenant: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

/// The columns of `entitlements show` as a table: one row per feature, quota and
/// config value.
pub const ENTITLEMENT_COLUMNS: &[&str] = &["kind", "name", "value", "soft", "period"];
pub const OVERRIDE_COLUMNS: &[&str] = &["tenant_id", "features", "quotas", "config", "expires_at", "cleared"];

fn split<'a>(flag: &str, s: &'a str, form: &str) -> Result<(&'a str, &'a str), CliError> {
    s.split_once('=').ok_or_else(|| CliError::Usage(format!("{flag} {s:?}: use {form}")))
}

/// The answer of `entitlements show`: the API's JSON, or rows for a table.
pub async fn entitlements(c: &Client, cmd: EntitlementCmd, json_output: bool) -> Result<Value, CliError> {
    let EntitlementCmd::Show { tenant } = cmd;
    let e = c.entitlements_get(&tenant).await?;
    if json_output {
        return Ok(to_json(e));
    }
    let mut items = Vec::new();
    for (name, on) in &e.features {
        items.push(json!({"kind": "feature", "name": name, "value": if *on { "on" } else { "off" }}));
    }
    for (name, q) in &e.quotas {
        items.push(json!({"kind": "quota", "name": name, "value": q.limit, "soft": q.soft, "period": q.period}));
    }
    for (key, v) in &e.config {
        items.push(json!({"kind": "config", "name": key, "value": v}));
    }
    Ok(json!({"items": items}))
}

pub async fn overrides(c: &Client, cmd: OverrideCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        OverrideCmd::Set { tenant, features, quotas, config, expires_at } => {
            let mut spec = OverridesSpec::default();
            for f in &features {
                let (name, v) = split("--feature", f, "NAME=on|off")?;
                let on = match v {
                    "on" | "true" => true,
                    "off" | "false" => false,
                    _ => return Err(CliError::Usage(format!("--feature {f:?}: use NAME=on|off"))),
                };
                spec.features.insert(name.to_owned(), on);
            }
            for q in &quotas {
                let (name, v) = split("--quota", q, "NAME=LIMIT")?;
                let limit = v.parse().map_err(|_| CliError::Usage(format!("--quota {q:?}: use NAME=LIMIT")))?;
                spec.quotas.insert(name.to_owned(), limit);
            }
            let mut values = BTreeMap::new();
            for kv in &config {
                let (key, v) = split("--config", kv, "KEY=JSON")?;
                let value = serde_json::from_str(v).map_err(|_| {
                    CliError::Usage(format!("--config {kv:?}: the value is JSON, e.g. '\"dark\"' or 5"))
                })?;
                values.insert(key.to_owned(), value);
            }
            spec.config = values;
            if let Some(t) = expires_at {
                spec.expires_at = Some(
                    Timestamp::parse_rfc3339(&t)
                        .ok_or_else(|| CliError::Usage(format!("--expires-at {t:?}: use RFC 3339")))?,
                );
            }
            to_json(c.overrides_put(&tenant, &spec).await?)
        }
        OverrideCmd::Show { tenant } => to_json(c.overrides_get(&tenant).await?),
        OverrideCmd::Clear { tenant, confirm: yes } => {
            confirm(yes, &format!("clear the overrides of tenant {tenant}"))?;
            c.overrides_clear(&tenant).await?;
            json!({"tenant_id": tenant, "cleared": true})
        }
    })
}
