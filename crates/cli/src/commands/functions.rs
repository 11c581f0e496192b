//! `tenancy functions ...`: the functions (the Lambda role) that Task states invoke,
//! over the v1 API.

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::Client;
use tenancy_domain::function::FunctionSpec;

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum FunctionCmd {
    /// Create a function (its signing secret is printed this once) or replace its url
    /// and timeout (the secret stays).
    Put {
        /// 1-64 letters, digits, '-' and '_' (the NAME of arn:aws:lambda:...:function:NAME).
        name: String,
        /// Absolute http:// or https:// URL receiving the invocations.
        #[arg(long)]
        url: String,
        /// How long an invocation may take, 1-900 seconds [default: 30].
        #[arg(long)]
        timeout_s: Option<u64>,
    },
    /// List functions.
    List,
    /// A function's url and timeout (never its secret).
    Get {
        /// The function's name.
        name: String,
    },
    /// Delete a function (state machines naming it then fail their task with
    /// Lambda.ResourceNotFoundException; asks first).
    Delete {
        /// The function's name.
        name: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

pub const FUNCTION_COLUMNS: &[&str] = &["name", "url", "timeout_s", "secret", "deleted"];

pub async fn functions(c: &Client, cmd: FunctionCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        FunctionCmd::Put { name, url, timeout_s } => {
            let got = c.function_put(&name, &FunctionSpec { url, timeout_s, connection: None }).await?;
            if got.secret.is_some() {
                eprintln!("the function's signing secret is shown this once: keep it to verify its invocations");
            }
            to_json(got)
        }
        FunctionCmd::List => to_json(c.function_list().await?),
        FunctionCmd::Get { name } => to_json(c.function_get(&name).await?),
        FunctionCmd::Delete { name, confirm: yes } => {
            confirm(yes, &format!("delete function {name}"))?;
            c.function_delete(&name).await?;
            json!({"name": name, "deleted": true})
        }
    })
}
