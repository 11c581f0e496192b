//! `tenancy functions ...`: the functions (the Lambda role) that Task states invoke,
//! over the v1 API.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::CliError;
use crate::client::Client;
use crate::provisioning_cli::path;

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
    List,
    Get {
        name: String,
    },
    /// Delete a function (state machines naming it then fail their task with
    /// Lambda.ResourceNotFoundException).
    Delete {
        name: String,
    },
}

pub const FUNCTION_COLUMNS: &[&str] = &["name", "url", "timeout_s", "secret", "deleted"];

pub async fn functions(c: &Client, cmd: FunctionCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        FunctionCmd::Put { name, url, timeout_s } => {
            let mut body = json!({"url": url});
            if let Some(t) = timeout_s {
                body["timeout_s"] = json!(t);
            }
            let got = c.call(Method::PUT, &format!("/v1/functions/{}", path(&name)), &[], Some(&body)).await?;
            if got.get("secret").is_some() {
                eprintln!("the function's signing secret is shown this once: keep it to verify its invocations");
            }
            got
        }
        FunctionCmd::List => c.get("/v1/functions", &[]).await?,
        FunctionCmd::Get { name } => c.get(&format!("/v1/functions/{}", path(&name)), &[]).await?,
        FunctionCmd::Delete { name } => {
            c.call(Method::DELETE, &format!("/v1/functions/{}", path(&name)), &[], None).await?;
            json!({"name": name, "deleted": true})
        }
    })
}
