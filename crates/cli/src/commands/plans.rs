//! `tenancy plans ...`: the plan catalog.

use std::collections::BTreeMap;

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::{Client, PageParams};
use tenancy_domain::plan::{
    Plan, PlanPatch, PlanSpec, PlanWorkflows, PlanWorkflowsPatch, Quota, QuotaPeriod, QuotaSpec,
};

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum PlanCmd {
    /// Create or replace a plan: a full replacement, so features and quotas not given
    /// are removed (use `plans patch` to change only some).
    #[command(visible_alias = "create")]
    Put {
        /// The plan's id (e.g. pro).
        id: String,
        /// A name for people.
        #[arg(long)]
        name: String,
        /// pool (tenants share a database, a schema each) or silo (a database each).
        #[arg(long, default_value = "pool", value_parser = ["pool", "silo"])]
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
        /// A region the plan is offered in; repeat for several. None: every region.
        #[arg(long = "region")]
        regions: Vec<String>,
        /// The most tenants (all but the offboarded) the plan may hold. None: no cap.
        #[arg(long)]
        max_tenants: Option<u64>,
        /// Self-service signup may put tenants on the plan.
        #[arg(long)]
        self_service: bool,
    },
    /// Change only the fields given (PATCH); the others keep their values.
    #[command(visible_alias = "update")]
    Patch {
        /// The plan's id.
        id: String,
        /// A new name.
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
        /// Replace the regions the plan is offered in with these; repeat for several.
        #[arg(long = "region", conflicts_with = "all_regions")]
        regions: Vec<String>,
        /// Offer the plan in every region (remove its regions).
        #[arg(long)]
        all_regions: bool,
        /// Cap the tenants on the plan (all but the offboarded).
        #[arg(long, conflicts_with = "no_max_tenants")]
        max_tenants: Option<u64>,
        /// Remove the cap of tenants.
        #[arg(long)]
        no_max_tenants: bool,
        /// Whether self-service signup may put tenants on the plan: true or false.
        #[arg(long)]
        self_service: Option<bool>,
    },
    /// The plans, with their quotas, regions and caps.
    List,
    /// A plan: its fields and one row per quota (name, limit, period, soft).
    #[command(visible_alias = "show")]
    Get {
        /// The plan's id.
        id: String,
    },
    /// Delete a plan no tenant is on (asks first).
    Delete {
        /// The plan's id.
        id: String,
        #[command(flatten)]
        confirm: Confirm,
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

/// The columns of `plans list` as a table.
pub const PLAN_LIST_COLUMNS: &[&str] =
    &["id", "name", "isolation", "regions", "max_tenants", "self_service", "features", "quotas", "version"];
/// The columns of `plans get` (`show`) as a table: a row per field, then one per quota.
pub const PLAN_COLUMNS: &[&str] = &["kind", "name", "value", "limit", "period", "soft"];

/// A quota as `plans list` shows it: `NAME=LIMIT[/period][/soft]`, the form the flags take.
fn quota_cell(name: &str, q: &Quota) -> String {
    let mut s = format!("{name}={}", q.limit);
    if let Some(p) = q.period {
        s.push_str(match p {
            QuotaPeriod::Day => "/day",
            QuotaPeriod::Month => "/month",
        });
    }
    if q.soft {
        s.push_str("/soft");
    }
    s
}

fn regions_cell(p: &Plan) -> Value {
    if p.regions.is_empty() {
        json!("(all)")
    } else {
        json!(p.regions)
    }
}

/// A plan as a row of `plans list`.
fn plan_row(p: &Plan) -> Value {
    json!({
        "id": p.id, "name": p.name, "isolation": p.isolation, "regions": regions_cell(p),
        "max_tenants": p.max_tenants.map_or(json!("-"), |m| json!(m)), "self_service": p.self_service,
        "features": p.features, "version": p.version,
        "quotas": p.quotas.iter().map(|(k, q)| quota_cell(k, q)).collect::<Vec<_>>(),
    })
}

/// A plan as the rows of `plans get`: its fields, then its quotas.
fn plan_rows(p: &Plan) -> Value {
    let field = |name: &str, value: Value| json!({"kind": "plan", "name": name, "value": value});
    let mut items = vec![
        field("id", json!(p.id)),
        field("name", json!(p.name)),
        field("isolation", json!(p.isolation)),
        field("regions", regions_cell(p)),
        field("max_tenants", p.max_tenants.map_or(json!("-"), |m| json!(m))),
        field("self_service", json!(p.self_service)),
        field("features", json!(p.features)),
        field("version", json!(p.version)),
    ];
    for (name, q) in &p.quotas {
        items.push(json!({"kind": "quota", "name": name, "limit": q.limit,
                          "period": q.period.map_or(json!("-"), |p| json!(p)), "soft": q.soft}));
    }
    json!({"items": items})
}

/// Runs a `plans` command; tables get rows made for them unless `json_output`.
pub async fn plans(c: &Client, cmd: PlanCmd, json_output: bool) -> Result<Value, CliError> {
    Ok(match cmd {
        PlanCmd::Put {
            id,
            name,
            isolation,
            features,
            quotas,
            workflows,
            regions,
            max_tenants,
            self_service,
            rate_limit,
        } => {
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
                regions,
                max_tenants,
                self_service,
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
            regions,
            all_regions,
            max_tenants,
            no_max_tenants,
            self_service,
        } => {
            let mut patch = PlanPatch {
                name: name.map(Some),
                isolation: isolation.map(|i| parse_isolation(&i)).transpose()?.map(Some),
                self_service: self_service.map(Some),
                ..Default::default()
            };
            if let Some(r) = rate_limit {
                patch.rate_limit = Some(Some(parse_rate_limit(&r)?));
            } else if no_rate_limit {
                patch.rate_limit = Some(None);
            }
            if all_regions || !regions.is_empty() {
                patch.regions = Some(Some(regions));
            }
            if no_max_tenants {
                patch.max_tenants = Some(None);
            } else if let Some(m) = max_tenants {
                patch.max_tenants = Some(Some(m));
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
        PlanCmd::List => {
            let page = c.plan_list(&PageParams::default()).await?;
            if json_output {
                to_json(page)
            } else {
                json!({"items": page.items.iter().map(plan_row).collect::<Vec<_>>(), "next_cursor": page.next_cursor})
            }
        }
        PlanCmd::Get { id } => {
            let plan = c.plan_get(&id).await?;
            if json_output {
                to_json(plan)
            } else {
                plan_rows(&plan)
            }
        }
        PlanCmd::Delete { id, confirm: yes } => {
            confirm(yes, &format!("delete plan {id}"))?;
            c.plan_delete(&id).await?;
            json!({"id": id, "deleted": true})
        }
    })
}
