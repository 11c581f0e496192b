//! `tenancy signup ...`: self-service sign-up, for trying the flow (docs/self-service.md).
//! Needs no credentials.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tenancy_client::Client;
use tenancy_domain::signup::{ActivateRequest, SignupRequest};

use crate::support::*;

/// `tenancy signup --email E --org NAME [--plan P]`, or `tenancy signup activate TOKEN`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SignupArgs {
    #[command(subcommand)]
    pub cmd: Option<SignupCmd>,
    /// The address the activation message goes to.
    #[arg(long)]
    pub email: Option<String>,
    /// The organisation: the new tenant's name.
    #[arg(long)]
    pub org: Option<String>,
    /// A plan marked self_service (default: the only one).
    #[arg(long)]
    pub plan: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SignupCmd {
    /// Activate a sign-up with the token of its SignupRequested event: prints the new
    /// tenant and its tenant key, once.
    Activate {
        /// The activation token (from the SignupRequested event's message).
        #[arg(value_name = "TOKEN")]
        activation_token: String,
    },
}

pub const SIGNUP_COLUMNS: &[&str] = &["status", "message"];
pub const ACTIVATED_COLUMNS: &[&str] = &["tenant_id", "name", "plan", "status", "key_id", "key"];

pub async fn signup(
    c: &Client,
    args: SignupArgs,
    json_output: bool,
) -> Result<(Value, &'static [&'static str]), CliError> {
    Ok(match args.cmd {
        Some(SignupCmd::Activate { activation_token: token }) => {
            let a = c.signup_activate(&ActivateRequest { token }).await?;
            let value = if json_output {
                to_json(&a)
            } else {
                json!({"tenant_id": a.tenant.id, "name": a.tenant.name, "plan": a.tenant.plan,
                       "status": a.tenant.status, "key_id": a.api_key.id, "key": a.api_key.key})
            };
            (value, ACTIVATED_COLUMNS)
        }
        None => {
            let (Some(email), Some(org_name)) = (args.email, args.org) else {
                return Err(CliError::Usage(
                    "tenancy signup needs --email and --org (or: signup activate TOKEN)".into(),
                ));
            };
            (to_json(c.signup(&SignupRequest { email, org_name, plan: args.plan }).await?), SIGNUP_COLUMNS)
        }
    })
}
