//! What every operator command shares: the error and its exit codes, flags parsed
//! into the API's types, answers printed as tables or JSON.

use clap::ValueEnum;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tenancy_client::ClientError;
use tenancy_domain::plan::{Isolation, Quota, QuotaPeriod};
use tenancy_domain::ratelimit::RateLimit;

/// How an operator command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table of the fields that matter (the default).
    Table,
    /// The API's answer as JSON, whole.
    Json,
    /// The API's answer as YAML, whole.
    Yaml,
}

impl Output {
    /// Whether the answer is printed whole (JSON or YAML) rather than as a table.
    pub fn raw(self) -> bool {
        self != Output::Table
    }
}

/// `--yes`: the flag of every destructive command.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Confirm {
    /// Do not ask for confirmation (needed when standard input is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Asks `question` on a terminal before a destructive command; without a terminal
/// (scripts, CI) refuses unless `--yes` was given, so that nothing is destroyed by a
/// command nobody saw.
pub(crate) fn confirm(confirm: Confirm, question: &str) -> Result<(), CliError> {
    use std::io::{BufRead, IsTerminal, Write};
    if confirm.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "refusing to {question} without confirmation: standard input is not a terminal; pass --yes to confirm"
        )));
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question}? [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Usage(format!("cannot read the confirmation: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CliError::Usage(format!("not confirmed: did not {question}"))),
    }
}

/// A spinner on standard error (drawn only on a terminal) with `message`.
pub(crate) fn spinner(message: impl Into<std::borrow::Cow<'static, str>>) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Why a command failed, with the exit code it maps to.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments (exit 2).
    Usage(String),
    /// The server said no (exit 1).
    Api(ClientError),
    /// The server could not be reached (exit 3).
    Unreachable(ClientError),
    /// Anything else (exit 1).
    Other(anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
            CliError::Api(_) | CliError::Other(_) => 1,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) => f.write_str(m),
            CliError::Api(e) | CliError::Unreachable(e) => e.fmt(f),
            CliError::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Unreachable(_) => CliError::Unreachable(e),
            ClientError::Api { .. } | ClientError::Decode(_) => CliError::Api(e),
        }
    }
}

/// A typed API answer as the JSON the CLI prints (the server's own shape: the types
/// are the server's).
pub(crate) fn to_json(v: impl Serialize) -> Value {
    serde_json::to_value(v).expect("API types serialize")
}

/// A flag's value as one of an API enum's wire names (`flag` and `expected` for the
/// usage error).
pub(crate) fn parse_wire<T: DeserializeOwned>(flag: &str, s: &str, expected: &str) -> Result<T, CliError> {
    serde_json::from_value(Value::String(s.to_owned()))
        .map_err(|_| CliError::Usage(format!("{flag} {s:?}: use {expected}")))
}

pub(crate) fn parse_object(flag: &str, s: &str) -> Result<Map<String, Value>, CliError> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(CliError::Usage(format!("{flag} must be a JSON object, e.g. '{{\"tier\": \"gold\"}}'"))),
    }
}

/// Parses `NAME=LIMIT[/day|/month][/soft]`.
pub fn parse_quota(s: &str) -> Result<(String, Quota), CliError> {
    let usage = || CliError::Usage(format!("invalid quota {s:?}: use NAME=LIMIT[/day|/month][/soft]"));
    let (name, rest) = s.split_once('=').ok_or_else(usage)?;
    let mut parts = rest.split('/');
    let limit: u64 = parts.next().and_then(|l| l.parse().ok()).ok_or_else(usage)?;
    let mut q = Quota { limit, period: None, soft: false };
    for p in parts {
        match p {
            "day" => q.period = Some(QuotaPeriod::Day),
            "month" => q.period = Some(QuotaPeriod::Month),
            "soft" => q.soft = true,
            _ => return Err(usage()),
        }
    }
    Ok((name.to_owned(), q))
}

/// Parses `PER_SECOND/BURST` (`--rate-limit 100/200`); the server checks the bounds.
pub(crate) fn parse_rate_limit(s: &str) -> Result<RateLimit, CliError> {
    RateLimit::parse(s)
        .ok_or_else(|| CliError::Usage(format!("--rate-limit {s:?}: use PER_SECOND/BURST, e.g. 100/200")))
}

pub(crate) fn parse_isolation(s: &str) -> Result<Isolation, CliError> {
    Isolation::parse(s).ok_or_else(|| CliError::Usage(format!("--isolation {s:?}: use pool or silo")))
}

pub(crate) fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.iter().map(|x| cell(Some(x))).collect::<Vec<_>>().join(","),
        // A tenant's pin: its reason.
        Some(Value::Object(m)) if m.contains_key("reason") => cell(m.get("reason")),
        Some(other) => other.to_string(),
    }
}

/// Prints a value: JSON or YAML as is, or a table of `columns` for a list (`items`) or object.
pub fn print_value(v: &Value, columns: &[&str], output: Output) {
    match output {
        Output::Json => return println!("{}", serde_json::to_string_pretty(v).expect("JSON prints")),
        Output::Yaml => return print!("{}", serde_norway::to_string(v).expect("YAML prints")),
        Output::Table => {}
    }
    let rows: Vec<&Value> = match v.get("items").and_then(Value::as_array) {
        Some(items) => items.iter().collect(),
        None => vec![v],
    };
    let used: Vec<&str> = columns.iter().copied().filter(|c| rows.iter().any(|r| r.get(*c).is_some())).collect();
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(used.iter().map(|c| c.to_uppercase()));
    for r in &rows {
        table.add_row(used.iter().map(|c| cell(r.get(*c))));
    }
    println!("{table}");
    if let Some(next) = v.get("next_cursor").and_then(Value::as_str) {
        eprintln!("more: --cursor {next}");
    }
}

/// The columns of a single record shown as a table of its fields.
pub const FIELD_COLUMNS: &[&str] = &["field", "value"];

/// A record as rows of `field`/`value`, for the fields of `names` it has (JSON values
/// compact on one line), so that long ones (an error's cause) are not cut off a wide
/// row.
pub(crate) fn fields(v: &Value, names: &[&str]) -> Value {
    let items: Vec<Value> = names
        .iter()
        .filter_map(|n| match v.get(*n) {
            None | Some(Value::Null) => None,
            Some(x @ (Value::Object(_) | Value::Array(_))) => Some(json!({"field": n, "value": x.to_string()})),
            Some(x) => Some(json!({"field": n, "value": cell(Some(x))})),
        })
        .collect();
    json!({"items": items})
}

/// How long `--wait` waits before giving up (the work goes on in the server).
pub(crate) const WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Waits, with a spinner showing the current state, until the execution ends; fails
/// (exit 1) with its error and cause unless it succeeded. `what` names the work
/// ("the provisioning of tenant acme").
pub(crate) async fn wait_execution(
    c: &tenancy_client::Client,
    execution: &str,
    what: &str,
) -> Result<tenancy_domain::api::ExecutionView, CliError> {
    wait_for(c, execution, what, spinner(format!("waiting for {what} (execution {execution})"))).await
}

/// [`wait_execution`] without a spinner (under another progress bar).
pub(crate) async fn wait_execution_quietly(
    c: &tenancy_client::Client,
    execution: &str,
    what: &str,
) -> Result<tenancy_domain::api::ExecutionView, CliError> {
    wait_for(c, execution, what, indicatif::ProgressBar::hidden()).await
}

async fn wait_for(
    c: &tenancy_client::Client,
    execution: &str,
    what: &str,
    bar: indicatif::ProgressBar,
) -> Result<tenancy_domain::api::ExecutionView, CliError> {
    let deadline = std::time::Instant::now() + WAIT_LIMIT;
    let result = loop {
        let e = match c.execution_get(execution).await {
            Ok(e) => e,
            Err(e) => break Err(e.into()),
        };
        if e.status != "RUNNING" {
            break Ok(e);
        }
        if std::time::Instant::now() > deadline {
            break Err(CliError::Other(anyhow::anyhow!(
                "{what} is still running after {}s (execution {execution}); \
                 `tenancy executions show {execution} --watch` follows it",
                WAIT_LIMIT.as_secs()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    bar.finish_and_clear();
    let e = result?;
    if e.status != "SUCCEEDED" {
        return Err(CliError::Other(anyhow::anyhow!(
            "{what} ended {}: {}{} (execution {execution}; `tenancy executions history {execution}` shows the steps)",
            e.status,
            e.error.as_deref().unwrap_or("no error"),
            e.cause.as_deref().map(|c| format!(": {c}")).unwrap_or_default(),
        )));
    }
    Ok(e)
}

/// A secret given to a command (a secret's value, a connection's credential): the file,
/// or standard input when there is none or it is `-`, less one trailing newline (`echo`
/// and editors add one). `what` names it in the error.
pub(crate) fn read_secret_input(file: Option<&std::path::PathBuf>, what: &str) -> Result<String, CliError> {
    use std::io::Read;
    let mut text = String::new();
    match file.filter(|f| f.as_os_str() != "-") {
        Some(f) => {
            text =
                std::fs::read_to_string(f).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", f.display())))?;
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::Usage(format!("cannot read {what} from standard input: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse() {
        assert_eq!(parse_quota("seats=10").unwrap(), ("seats".into(), Quota { limit: 10, period: None, soft: false }));
        assert_eq!(
            parse_quota("calls=5/month/soft").unwrap(),
            ("calls".into(), Quota { limit: 5, period: Some(QuotaPeriod::Month), soft: true })
        );
        assert!(parse_quota("seats").is_err());
        assert!(parse_quota("seats=x").is_err());
        assert!(parse_quota("seats=1/week").is_err());
    }
}
