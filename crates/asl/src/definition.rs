//! The typed model of a state machine definition and its parsing from JSON.
//! Graph-level checks (reachability, unknown targets) live in `validate`.

use crate::choice::ChoiceRule;
use crate::error::DefinitionError;
use crate::intrinsics::{looks_like_call, Call};
use crate::path::JsonPath;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum QueryLanguage {
    JsonPath,
    Jsonata,
}

/// A set of states with a start: the machine itself, a Parallel branch or a Map processor.
#[derive(Debug, Clone)]
pub struct Program {
    pub start_at: String,
    pub states: BTreeMap<String, State>,
}

/// A path field that may be absent (default `$`) or `null` (discard / empty object).
#[derive(Debug, Clone, PartialEq)]
pub enum PathField {
    Default,
    Null,
    Path(JsonPath),
}

#[derive(Debug, Clone)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: f64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<f64>,
    pub jitter_full: bool,
}

#[derive(Debug, Clone)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    pub result_path: PathField,
    pub output: Option<Value>,
    pub assign: Option<Value>,
}

/// A number given literally, through a JSONPath, or (JSONata) as an expression.
#[derive(Debug, Clone)]
pub enum Dynamic {
    Value(Value),
    Path(JsonPath),
    /// An intrinsic function in a `...Path` field (allowed for ErrorPath/CausePath).
    Intrinsic(String),
}

#[derive(Debug, Clone)]
pub enum WaitFor {
    Seconds(Dynamic),
    Timestamp(Dynamic),
    SecondsPath(JsonPath),
    TimestampPath(JsonPath),
}

#[derive(Debug, Clone)]
pub enum StateKind {
    Pass { result: Option<Value> },
    Task { resource: String, timeout_seconds: Option<Dynamic>, heartbeat_seconds: Option<Dynamic> },
    Choice { choices: Vec<ChoiceRule>, default: Option<String> },
    Wait(WaitFor),
    Succeed,
    Fail { error: Option<Dynamic>, cause: Option<Dynamic> },
    Parallel { branches: Vec<Program> },
    Map(Box<MapSpec>),
}

#[derive(Debug, Clone)]
pub struct MapSpec {
    pub processor: Program,
    pub items_path: PathField,
    pub items: Option<Value>,
    pub item_selector: Option<Value>,
    pub max_concurrency: Option<Dynamic>,
    pub tolerated_failure_count: Option<Dynamic>,
    pub tolerated_failure_percentage: Option<Dynamic>,
}

#[derive(Debug, Clone)]
pub struct State {
    pub name: String,
    pub kind: StateKind,
    pub query_language: QueryLanguage,
    pub next: Option<String>,
    pub end: bool,
    pub input_path: PathField,
    pub output_path: PathField,
    pub result_path: PathField,
    pub parameters: Option<Value>,
    pub result_selector: Option<Value>,
    pub arguments: Option<Value>,
    pub output: Option<Value>,
    pub assign: Option<Value>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

impl State {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            StateKind::Pass { .. } => "Pass",
            StateKind::Task { .. } => "Task",
            StateKind::Choice { .. } => "Choice",
            StateKind::Wait(_) => "Wait",
            StateKind::Succeed => "Succeed",
            StateKind::Fail { .. } => "Fail",
            StateKind::Parallel { .. } => "Parallel",
            StateKind::Map(_) => "Map",
        }
    }
}

const COMMON: &[&str] = &["Type", "Comment", "QueryLanguage"];
const FLOW: &[&str] = &["Next", "End"];
const IO: &[&str] = &["InputPath", "OutputPath", "Output", "Assign"];
const RESULT: &[&str] = &["ResultPath", "Parameters", "ResultSelector", "Arguments", "Retry", "Catch"];

fn allowed(kind: &str) -> Option<Vec<&'static str>> {
    let mut v: Vec<&'static str> = COMMON.to_vec();
    match kind {
        "Pass" => v.extend(FLOW.iter().chain(IO).chain(&["ResultPath", "Parameters", "Result"])),
        "Task" => v.extend(FLOW.iter().chain(IO).chain(RESULT).chain(&[
            "Resource",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Credentials",
        ])),
        "Choice" => v.extend(IO.iter().chain(&["Choices", "Default"])),
        "Wait" => v.extend(FLOW.iter().chain(IO).chain(&["Seconds", "Timestamp", "SecondsPath", "TimestampPath"])),
        "Succeed" => v.extend(IO),
        "Fail" => v.extend(["Error", "Cause", "ErrorPath", "CausePath"]),
        "Parallel" => v.extend(FLOW.iter().chain(IO).chain(RESULT).chain(&["Branches"])),
        "Map" => v.extend(FLOW.iter().chain(IO).chain(RESULT).chain(&[
            "ItemsPath",
            "Items",
            "ItemSelector",
            "ItemProcessor",
            "Iterator",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "Label",
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
        ])),
        _ => return None,
    }
    Some(v)
}

pub(crate) struct Ctx<'a> {
    pub state: &'a str,
}

impl Ctx<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> DefinitionError {
        DefinitionError::new(Some(self.state), Some(field), message)
    }
}

/// Parses a `{StartAt, States}` object into a program.
pub fn parse_program(def: &Value, inherited: QueryLanguage) -> Result<Program, DefinitionError> {
    let obj = def.as_object().ok_or_else(|| DefinitionError::new(None, None, "a definition must be a JSON object"))?;
    let start_at = match obj.get("StartAt") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(DefinitionError::new(None, Some("StartAt"), "must be a string")),
        None => return Err(DefinitionError::new(None, Some("StartAt"), "missing required field")),
    };
    let states_obj = match obj.get("States") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err(DefinitionError::new(None, Some("States"), "must be an object")),
        None => return Err(DefinitionError::new(None, Some("States"), "missing required field")),
    };
    // The execution's timeout (enforced by the engine): a positive integer.
    if let Some(t) = obj.get("TimeoutSeconds") {
        if t.as_u64().is_none_or(|s| s == 0) {
            return Err(DefinitionError::new(None, Some("TimeoutSeconds"), "must be a positive integer"));
        }
    }
    let ql = match obj.get("QueryLanguage") {
        None => inherited,
        Some(v) => parse_ql(v)
            .ok_or_else(|| DefinitionError::new(None, Some("QueryLanguage"), "must be \"JSONPath\" or \"JSONata\""))?,
    };
    let mut states = BTreeMap::new();
    for (name, raw) in states_obj {
        if name.is_empty() || name.chars().count() > 80 {
            return Err(DefinitionError::new(Some(name), None, "a state name must have 1 to 80 characters"));
        }
        states.insert(name.clone(), parse_state(name, raw, ql)?);
    }
    Ok(Program { start_at, states })
}

fn parse_ql(v: &Value) -> Option<QueryLanguage> {
    match v.as_str()? {
        "JSONPath" => Some(QueryLanguage::JsonPath),
        "JSONata" => Some(QueryLanguage::Jsonata),
        _ => None,
    }
}

fn path_field(c: &Ctx<'_>, obj: &Map<String, Value>, field: &str) -> Result<PathField, DefinitionError> {
    match obj.get(field) {
        None => Ok(PathField::Default),
        Some(Value::Null) => Ok(PathField::Null),
        Some(Value::String(s)) => JsonPath::parse(s).map(PathField::Path).map_err(|e| c.err(field, e.to_string())),
        Some(_) => Err(c.err(field, "must be a string or null")),
    }
}

fn opt_path(c: &Ctx<'_>, obj: &Map<String, Value>, field: &str) -> Result<Option<JsonPath>, DefinitionError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => JsonPath::parse(s).map(Some).map_err(|e| c.err(field, e.to_string())),
        Some(_) => Err(c.err(field, "must be a string")),
    }
}

fn opt_string(c: &Ctx<'_>, obj: &Map<String, Value>, field: &str) -> Result<Option<String>, DefinitionError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(c.err(field, "must be a string")),
    }
}

/// Checks every `.$` key of a payload template: its value must be a valid path or
/// intrinsic function call, and no object may have both `x` and `x.$` (Step Functions
/// refuses the pair; which one would win is not defined).
pub(crate) fn check_template(c: &Ctx<'_>, field: &str, v: &Value) -> Result<(), DefinitionError> {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if let Some(plain) = k.strip_suffix(".$").filter(|p| m.contains_key(*p)) {
                    return Err(c.err(
                        field,
                        format!("the template has both {plain:?} and {k:?}: a field is either a value or a path"),
                    ));
                }
                if k.ends_with(".$") {
                    let Value::String(s) = x else {
                        return Err(c.err(field, format!("the value of {k:?} must be a string")));
                    };
                    if looks_like_call(s) {
                        Call::parse(s).map_err(|e| c.err(field, e.to_string()))?;
                    } else {
                        JsonPath::parse(s).map_err(|e| c.err(field, e.to_string()))?;
                    }
                } else {
                    check_template(c, field, x)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|x| check_template(c, field, x)),
        _ => Ok(()),
    }
}

fn dynamic(
    c: &Ctx<'_>,
    obj: &Map<String, Value>,
    field: &str,
    ql: QueryLanguage,
) -> Result<Option<Dynamic>, DefinitionError> {
    let path_name = format!("{field}Path");
    match (obj.get(field), obj.get(&path_name)) {
        (Some(_), Some(_)) => Err(c.err(field, format!("cannot be combined with {path_name}"))),
        (Some(v), None) => {
            if ql == QueryLanguage::JsonPath && !v.is_number() && !v.is_string() {
                return Err(c.err(field, "must be a number"));
            }
            Ok(Some(Dynamic::Value(v.clone())))
        }
        (None, Some(Value::String(s))) if looks_like_call(s) => {
            Call::parse(s).map_err(|e| c.err(&path_name, e.to_string()))?;
            Ok(Some(Dynamic::Intrinsic(s.clone())))
        }
        (None, Some(_)) => Ok(opt_path(c, obj, &path_name)?.map(Dynamic::Path)),
        (None, None) => Ok(None),
    }
}

/// `ToleratedFailureCount` is a non-negative integer and `ToleratedFailurePercentage` a
/// number from 0 to 100 (when given literally; from a path or an expression they are
/// checked when the Map state runs).
fn check_tolerated(c: &Ctx<'_>, obj: &Map<String, Value>) -> Result<(), DefinitionError> {
    if let Some(v) = obj.get("ToleratedFailureCount").filter(|v| v.is_number()) {
        if !v.as_f64().is_some_and(|n| n >= 0.0 && n.fract() == 0.0) {
            return Err(c.err("ToleratedFailureCount", format!("must be a non-negative integer, got {v}")));
        }
    }
    if let Some(v) = obj.get("ToleratedFailurePercentage").filter(|v| v.is_number()) {
        if !v.as_f64().is_some_and(|n| (0.0..=100.0).contains(&n)) {
            return Err(c.err("ToleratedFailurePercentage", format!("must be a number from 0 to 100, got {v}")));
        }
    }
    Ok(())
}

fn string_list(c: &Ctx<'_>, v: Option<&Value>, field: &str) -> Result<Vec<String>, DefinitionError> {
    let items =
        v.and_then(Value::as_array).ok_or_else(|| c.err(field, "ErrorEquals must be a non-empty array of strings"))?;
    let out: Option<Vec<String>> = items.iter().map(|x| x.as_str().map(str::to_string)).collect();
    match out {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(c.err(field, "ErrorEquals must be a non-empty array of strings")),
    }
}

fn check_error_lists(c: &Ctx<'_>, field: &str, lists: &[&Vec<String>]) -> Result<(), DefinitionError> {
    for (i, list) in lists.iter().enumerate() {
        if list.iter().any(|e| e == "States.ALL") {
            if list.len() != 1 {
                return Err(c.err(field, "States.ALL must appear alone in ErrorEquals"));
            }
            if i + 1 != lists.len() {
                return Err(c.err(field, "a retrier or catcher with States.ALL must be the last one"));
            }
        }
    }
    Ok(())
}

fn parse_retry(c: &Ctx<'_>, v: &Value) -> Result<Vec<Retrier>, DefinitionError> {
    let items = v.as_array().ok_or_else(|| c.err("Retry", "must be an array"))?;
    let mut out = Vec::new();
    for item in items {
        let o = item.as_object().ok_or_else(|| c.err("Retry", "each retrier must be an object"))?;
        for k in o.keys() {
            if ![
                "ErrorEquals",
                "IntervalSeconds",
                "MaxAttempts",
                "BackoffRate",
                "MaxDelaySeconds",
                "JitterStrategy",
                "Comment",
            ]
            .contains(&k.as_str())
            {
                return Err(c.err("Retry", format!("unknown field {k:?} in retrier")));
            }
        }
        let num = |k: &str, default: f64| -> Result<f64, DefinitionError> {
            match o.get(k) {
                None => Ok(default),
                Some(v) => v.as_f64().ok_or_else(|| c.err("Retry", format!("{k} must be a number"))),
            }
        };
        let interval = num("IntervalSeconds", 1.0)?;
        let max_attempts = num("MaxAttempts", 3.0)?;
        let backoff = num("BackoffRate", 2.0)?;
        if interval < 1.0 || interval.fract() != 0.0 {
            return Err(c.err("Retry", "IntervalSeconds must be a positive integer"));
        }
        if max_attempts < 0.0 || max_attempts.fract() != 0.0 {
            return Err(c.err("Retry", "MaxAttempts must be a non-negative integer"));
        }
        if backoff < 1.0 {
            return Err(c.err("Retry", "BackoffRate must be at least 1.0"));
        }
        let max_delay = match o.get("MaxDelaySeconds") {
            None => None,
            Some(v) => match v.as_f64() {
                Some(x) if x >= 1.0 && x.fract() == 0.0 => Some(x),
                _ => return Err(c.err("Retry", "MaxDelaySeconds must be a positive integer")),
            },
        };
        let jitter_full = match o.get("JitterStrategy").map(|v| v.as_str()) {
            None | Some(Some("NONE")) => false,
            Some(Some("FULL")) => true,
            _ => return Err(c.err("Retry", "JitterStrategy must be \"FULL\" or \"NONE\"")),
        };
        out.push(Retrier {
            error_equals: string_list(c, o.get("ErrorEquals"), "Retry")?,
            interval_seconds: interval,
            max_attempts: max_attempts as u32,
            backoff_rate: backoff,
            max_delay_seconds: max_delay,
            jitter_full,
        });
    }
    check_error_lists(c, "Retry", &out.iter().map(|r| &r.error_equals).collect::<Vec<_>>())?;
    Ok(out)
}

fn parse_catch(c: &Ctx<'_>, v: &Value) -> Result<Vec<Catcher>, DefinitionError> {
    let items = v.as_array().ok_or_else(|| c.err("Catch", "must be an array"))?;
    let mut out = Vec::new();
    for item in items {
        let o = item.as_object().ok_or_else(|| c.err("Catch", "each catcher must be an object"))?;
        for k in o.keys() {
            if !["ErrorEquals", "Next", "ResultPath", "Output", "Assign", "Comment"].contains(&k.as_str()) {
                return Err(c.err("Catch", format!("unknown field {k:?} in catcher")));
            }
        }
        let next = opt_string(c, o, "Next")?.ok_or_else(|| c.err("Catch", "a catcher needs Next"))?;
        out.push(Catcher {
            error_equals: string_list(c, o.get("ErrorEquals"), "Catch")?,
            next,
            result_path: path_field(c, o, "ResultPath")?,
            output: o.get("Output").cloned(),
            assign: o.get("Assign").cloned(),
        });
    }
    check_error_lists(c, "Catch", &out.iter().map(|r| &r.error_equals).collect::<Vec<_>>())?;
    Ok(out)
}

fn parse_state(name: &str, raw: &Value, inherited: QueryLanguage) -> Result<State, DefinitionError> {
    let c = Ctx { state: name };
    let obj = raw.as_object().ok_or_else(|| DefinitionError::new(Some(name), None, "a state must be a JSON object"))?;
    let kind_name = match obj.get("Type") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(c.err("Type", "must be a string")),
        None => return Err(c.err("Type", "missing required field")),
    };
    let allowed = allowed(kind_name).ok_or_else(|| c.err("Type", format!("unknown state type {kind_name:?}")))?;
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(c.err(k, format!("field is not allowed in a {kind_name} state")));
        }
    }
    let ql = match obj.get("QueryLanguage") {
        None => inherited,
        Some(v) => parse_ql(v).ok_or_else(|| c.err("QueryLanguage", "must be \"JSONPath\" or \"JSONata\""))?,
    };
    if inherited == QueryLanguage::Jsonata && ql == QueryLanguage::JsonPath {
        return Err(c.err("QueryLanguage", "a state cannot use JSONPath when the machine uses JSONata"));
    }
    if ql == QueryLanguage::Jsonata {
        for f in [
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "ItemsPath",
            "SecondsPath",
            "TimestampPath",
            "ErrorPath",
            "CausePath",
            "MaxConcurrencyPath",
        ] {
            if obj.contains_key(f) {
                return Err(c.err(f, "field is not supported with the JSONata query language"));
            }
        }
    } else {
        for f in ["Arguments", "Output", "Items"] {
            if obj.contains_key(f) {
                return Err(c.err(f, "field is only supported with the JSONata query language"));
            }
        }
    }
    for f in ["ItemReader", "ResultWriter", "ItemBatcher"] {
        if obj.contains_key(f) {
            return Err(c.err(f, "distributed Map features are not supported"));
        }
    }
    if ql == QueryLanguage::Jsonata {
        for (k, v) in obj {
            if !["ItemProcessor", "Iterator", "Branches"].contains(&k.as_str()) {
                crate::jsonata::check_template(v).map_err(|m| c.err(k, m))?;
            }
        }
    }
    let next = opt_string(&c, obj, "Next")?;
    let end = match obj.get("End") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(c.err("End", "must be a boolean")),
    };
    let terminal = matches!(kind_name, "Choice" | "Succeed" | "Fail");
    if !terminal {
        match (&next, end) {
            (Some(_), true) => return Err(c.err("Next", "cannot be combined with End")),
            (None, false) => return Err(c.err("Next", "a state needs either Next or End: true")),
            _ => {}
        }
    }
    for f in ["Parameters", "ResultSelector", "ItemSelector"] {
        if let Some(v) = obj.get(f) {
            if ql == QueryLanguage::JsonPath {
                check_template(&c, f, v)?;
            }
        }
    }
    if obj.contains_key("Assign") && ql == QueryLanguage::JsonPath {
        check_template(&c, "Assign", &obj["Assign"])?;
    }
    let kind = match kind_name {
        "Pass" => StateKind::Pass { result: obj.get("Result").cloned() },
        "Task" => {
            let literal = |f: &str| -> Result<Option<u64>, DefinitionError> {
                match obj.get(f) {
                    Some(Value::String(s)) if crate::jsonata::expression(s).is_some() => Ok(None),
                    Some(v) => match v.as_u64() {
                        Some(n) if n > 0 => Ok(Some(n)),
                        _ => Err(c.err(f, "must be a positive integer")),
                    },
                    None => Ok(None),
                }
            };
            if let (Some(t), Some(h)) = (literal("TimeoutSeconds")?, literal("HeartbeatSeconds")?) {
                if h >= t {
                    return Err(c.err("HeartbeatSeconds", "must be smaller than TimeoutSeconds"));
                }
            }
            StateKind::Task {
                resource: opt_string(&c, obj, "Resource")?
                    .ok_or_else(|| c.err("Resource", "missing required field"))?,
                timeout_seconds: dynamic(&c, obj, "TimeoutSeconds", ql)?,
                heartbeat_seconds: dynamic(&c, obj, "HeartbeatSeconds", ql)?,
            }
        }
        "Choice" => {
            let items = obj
                .get("Choices")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| c.err("Choices", "must be a non-empty array"))?;
            let mut choices = Vec::new();
            for item in items {
                choices.push(ChoiceRule::parse(item, ql, true).map_err(|m| c.err("Choices", m))?);
            }
            StateKind::Choice { choices, default: opt_string(&c, obj, "Default")? }
        }
        "Wait" => {
            let present: Vec<&str> = ["Seconds", "Timestamp", "SecondsPath", "TimestampPath"]
                .into_iter()
                .filter(|f| obj.contains_key(*f))
                .collect();
            if present.len() != 1 {
                return Err(c.err(
                    "Seconds",
                    "a Wait state needs exactly one of Seconds, Timestamp, SecondsPath, TimestampPath",
                ));
            }
            StateKind::Wait(match present[0] {
                "Seconds" => {
                    let v = &obj["Seconds"];
                    if ql == QueryLanguage::JsonPath && !v.as_f64().is_some_and(|s| s >= 0.0 && s.fract() == 0.0) {
                        return Err(c.err("Seconds", "must be a non-negative integer"));
                    }
                    WaitFor::Seconds(Dynamic::Value(v.clone()))
                }
                "Timestamp" => {
                    let v = &obj["Timestamp"];
                    let valid = v.as_str().and_then(crate::timestamp::parse).is_some();
                    if ql == QueryLanguage::JsonPath && !valid {
                        return Err(c.err("Timestamp", "must be an ISO-8601 timestamp"));
                    }
                    WaitFor::Timestamp(Dynamic::Value(v.clone()))
                }
                "SecondsPath" => WaitFor::SecondsPath(opt_path(&c, obj, "SecondsPath")?.unwrap_or_else(root)),
                _ => WaitFor::TimestampPath(opt_path(&c, obj, "TimestampPath")?.unwrap_or_else(root)),
            })
        }
        "Succeed" => StateKind::Succeed,
        "Fail" => StateKind::Fail {
            error: dynamic(&c, obj, "Error", QueryLanguage::Jsonata)?,
            cause: dynamic(&c, obj, "Cause", QueryLanguage::Jsonata)?,
        },
        "Parallel" => {
            let items = obj
                .get("Branches")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| c.err("Branches", "must be a non-empty array"))?;
            let mut branches = Vec::new();
            for b in items {
                branches.push(parse_program(b, ql).map_err(|e| e.nested(name, "Branches"))?);
            }
            StateKind::Parallel { branches }
        }
        "Map" => {
            let (field, proc) = match (obj.get("ItemProcessor"), obj.get("Iterator")) {
                (Some(p), None) => ("ItemProcessor", p),
                (None, Some(p)) => ("Iterator", p),
                (Some(_), Some(_)) => return Err(c.err("ItemProcessor", "cannot be combined with Iterator")),
                (None, None) => return Err(c.err("ItemProcessor", "missing required field")),
            };
            if let Some(mode) = proc.pointer("/ProcessorConfig/Mode").and_then(Value::as_str) {
                if mode != "INLINE" {
                    return Err(c.err(field, format!("processor mode {mode:?} is not supported (only INLINE)")));
                }
            }
            if obj.contains_key("Parameters") && obj.contains_key("ItemSelector") {
                return Err(c.err("ItemSelector", "cannot be combined with Parameters"));
            }
            check_tolerated(&c, obj)?;
            let mut proc_def = proc.clone();
            if let Some(o) = proc_def.as_object_mut() {
                o.remove("ProcessorConfig");
            }
            StateKind::Map(Box::new(MapSpec {
                processor: parse_program(&proc_def, ql).map_err(|e| e.nested(name, field))?,
                items_path: path_field(&c, obj, "ItemsPath")?,
                items: obj.get("Items").cloned(),
                item_selector: obj.get("ItemSelector").or_else(|| obj.get("Parameters")).cloned(),
                max_concurrency: dynamic(&c, obj, "MaxConcurrency", ql)?,
                tolerated_failure_count: dynamic(&c, obj, "ToleratedFailureCount", ql)?,
                tolerated_failure_percentage: dynamic(&c, obj, "ToleratedFailurePercentage", ql)?,
            }))
        }
        _ => unreachable!("checked by allowed()"),
    };
    let is_map = matches!(kind, StateKind::Map(_));
    let catch = match obj.get("Catch") {
        Some(v) => parse_catch(&c, v)?,
        None => vec![],
    };
    if ql == QueryLanguage::JsonPath {
        for assign in catch.iter().filter_map(|k| k.assign.as_ref()) {
            check_template(&c, "Catch", assign)?;
        }
        if let StateKind::Choice { choices, .. } = &kind {
            for assign in choices.iter().filter_map(|r| r.assign.as_ref()) {
                check_template(&c, "Choices", assign)?;
            }
        }
    }
    Ok(State {
        name: name.to_string(),
        query_language: ql,
        next,
        end,
        input_path: path_field(&c, obj, "InputPath")?,
        output_path: path_field(&c, obj, "OutputPath")?,
        result_path: {
            let rp = path_field(&c, obj, "ResultPath")?;
            if let PathField::Path(p) = &rp {
                if !p.is_reference() {
                    return Err(c.err("ResultPath", format!("{p} is not a valid reference path")));
                }
            }
            rp
        },
        parameters: if is_map { None } else { obj.get("Parameters").cloned() },
        result_selector: obj.get("ResultSelector").cloned(),
        arguments: obj.get("Arguments").cloned(),
        output: obj.get("Output").cloned(),
        assign: obj.get("Assign").cloned(),
        retry: match obj.get("Retry") {
            Some(v) => parse_retry(&c, v)?,
            None => vec![],
        },
        catch,
        kind,
    })
}

fn root() -> JsonPath {
    JsonPath::parse("$").unwrap_or_else(|_| unreachable!("\"$\" is a valid path"))
}

pub(crate) fn inherited_language(def: &Value) -> Result<QueryLanguage, DefinitionError> {
    match def.get("QueryLanguage") {
        None => Ok(QueryLanguage::JsonPath),
        Some(v) => parse_ql(v)
            .ok_or_else(|| DefinitionError::new(None, Some("QueryLanguage"), "must be \"JSONPath\" or \"JSONata\"")),
    }
}
