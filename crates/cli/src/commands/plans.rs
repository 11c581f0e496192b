//! `tenancy plans ...`: the plan catalog.

use std::collections::BTreeMap;

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::{Client, PageParams};
use tenancy_domain::plan::{PlanPatch, PlanSpec, PlanWorkflows, PlanWorkflowsPatch, QuotaSpec};

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum PlanCmd {
    /// Create or replace a plan: a full replacement, so features and quotas not given
    /// are removed (use `plans patch` to change only some).
    Put {
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "pool")]
        isolation: String,
        /// A feature; repeat for several.
        #[arg(long = "feature")]
        features: Vec<String>,
        /// A quota as NAME=LIMIT[/day|/month][/soft]; repeat for several.
        #[arg(long = "quota")]
        quotas: Vec<String>,
        /// The plan's own lifecycle state machine as KIND=NAME (KIND: provision,
        /// change_plan or offboard; NAME a tenancy.lifecycle.* state machine); repeat for
        /// several. Admin-only.
        #[arg(long = "workflow")]
        workflows: Vec<String>,
        /// The API rate limit of each tenant on the plan, PER_SECOND/BURST (e.g. 100/200);
        /// absent: the server's.
        #[arg(long, value_name = "PER_SECOND/BURST")]
        rate_limit: Option<String>,
    },
    /// Change only the fields given (PATCH); the others keep their values.
    Patch {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// pool or silo; refused while tenants use the plan.
        #[arg(long)]
        isolation: Option<String>,
        /// Replace the features with these; repeat for several.
        #[arg(long = "feature", conflicts_with = "no_features")]
        features: Vec<String>,
        /// Remove every feature.
        #[arg(long)]
        no_features: bool,
        /// Add or replace a quota, NAME=LIMIT[/day|/month][/soft]; repeat for several.
        #[arg(long = "quota")]
        quotas: Vec<String>,
        /// Remove a quota by name; repeat for several.
        #[arg(long = "remove-quota")]
        remove_quotas: Vec<String>,
        /// Set a lifecycle state machine, KIND=NAME (see `plans put`); admin-only.
        #[arg(long = "workflow")]
        workflows: Vec<String>,
        /// Go back to the built-in state machine of KIND (provision, change_plan,
        /// offboard); repeat for several. Admin-only.
        #[arg(long = "remove-workflow")]
        remove_workflows: Vec<String>,
        /// Set the tenants' API rate limit, PER_SECOND/BURST (e.g. 100/200).
        #[arg(long, value_name = "PER_SECOND/BURST", conflicts_with = "no_rate_limit")]
        rate_limit: Option<String>,
        /// Remove the plan's rate limit (its tenants get the server's).
        #[arg(long)]
        no_rate_limit: bool,
    },
    List,
    Get {
        id: String,
    },
    Delete {
        id: String,
    },
}

/// `KIND=NAME` flags as the lifecycle state machines a plan names.
fn parse_workflows(set: &[String]) -> Result<Vec<(String, String)>, CliError> {
    let mut w = Vec::new();
    for s in set {
        let (kind, name) = s.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("--workflow {s:?}: use KIND=NAME, e.g. provision=tenancy.lifecycle.acme"))
        })?;
        w.push((kind.to_owned(), name.to_owned()));
    }
    Ok(w)
}

/// The member of a plan's `workflows` a KIND names.
fn workflow_member<'a, T>(
    kind: &str,
    provision: &'a mut T,
    change_plan: &'a mut T,
    offboard: &'a mut T,
) -> Result<&'a mut T, CliError> {
    match kind {
        "provision" => Ok(provision),
        "change_plan" => Ok(change_plan),
        "offboard" => Ok(offboard),
        _ => Err(CliError::Usage(format!("workflow kind {kind:?}: use provision, change_plan or offboard"))),
    }
}

pub async fn plans(c: &Client, cmd: PlanCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        PlanCmd::Put { id, name, isolation, features, quotas, workflows, rate_limit } => {
            let mut q = BTreeMap::new();
            for s in &quotas {
                let (name, quota) = parse_quota(s)?;
                q.insert(name, QuotaSpec::Full(quota));
            }
            let mut w = PlanWorkflows::default();
            for (kind, name) in parse_workflows(&workflows)? {
                let PlanWorkflows { provision, change_plan, offboard } = &mut w;
                *workflow_member(&kind, provision, change_plan, offboard)? = Some(name);
            }
            let spec = PlanSpec {
                name,
                isolation: parse_isolation(&isolation)?,
                features,
                quotas: q,
                workflows: w,
                config: Default::default(),
                rate_limit: rate_limit.map(|r| parse_rate_limit(&r)).transpose()?,
            };
            to_json(c.plan_put(&id, &spec).await?)
        }
        PlanCmd::Patch {
            id,
            name,
            isolation,
            features,
            no_features,
            quotas,
            remove_quotas,
            workflows,
            remove_workflows,
            rate_limit,
            no_rate_limit,
        } => {
            let mut patch = PlanPatch {
                name: name.map(Some),
                isolation: isolation.map(|i| parse_isolation(&i)).transpose()?.map(Some),
                ..Default::default()
            };
            if let Some(r) = rate_limit {
                patch.rate_limit = Some(Some(parse_rate_limit(&r)?));
            } else if no_rate_limit {
                patch.rate_limit = Some(None);
            }
            if no_features || !features.is_empty() {
                patch.features = Some(Some(features));
            }
            let mut q = BTreeMap::new();
            for s in &quotas {
                let (name, quota) = parse_quota(s)?;
                q.insert(name, Some(QuotaSpec::Full(quota)));
            }
            for name in remove_quotas {
                q.insert(name, None);
            }
            if !q.is_empty() {
                patch.quotas = Some(Some(q));
            }
            let set = parse_workflows(&workflows)?;
            if !set.is_empty() || !remove_workflows.is_empty() {
                let mut w = PlanWorkflowsPatch::default();
                let PlanWorkflowsPatch { provision, change_plan, offboard } = &mut w;
                for (kind, name) in set {
                    *workflow_member(&kind, provision, change_plan, offboard)? = Some(Some(name));
                }
                for kind in &remove_workflows {
                    *workflow_member(kind, provision, change_plan, offboard)? = Some(None);
                }
                patch.workflows = Some(Some(w));
            }
            to_json(c.plan_patch(&id, &patch).await?)
        }
        PlanCmd::List => to_json(c.plan_list(&PageParams::default()).await?),
        PlanCmd::Get { id } => to_json(c.plan_get(&id).await?),
        PlanCmd::Delete { id } => {
            c.plan_delete(&id).await?;
            json!({"id": id, "deleted": true})
        }
    })
}
