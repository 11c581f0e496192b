//! The JSONata query language: `{% expr %}` strings inside `Arguments`, `Output`,
//! `Assign`, `Condition`, `Items` ... evaluated with `$states` and the workflow
//! variables bound.

use crate::error::{names, Failure};
use serde_json::{Map, Value};

/// The expression inside `{% ... %}`, or `None` for a plain string.
pub fn expression(s: &str) -> Option<&str> {
    let t = s.trim();
    t.strip_prefix("{%")?.strip_suffix("%}").map(str::trim)
}

/// The text of an expression string without its delimiters.
pub fn strip_delims(s: &str) -> String {
    expression(s).unwrap_or(s).to_string()
}

/// JSON type names as AWS reports them.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Evaluates a template: every string that is a `{% %}` expression is replaced by its
/// value; `field` names the field for error messages (`Output/result`).
pub fn eval_template(
    template: &Value,
    states: &Value,
    variables: &Map<String, Value>,
    field: &str,
) -> Result<Value, Failure> {
    match template {
        Value::String(s) => match expression(s) {
            Some(expr) => match evaluate(expr, states, variables) {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(Failure::new(
                    names::QUERY_EVALUATION,
                    format!("The JSONata expression '{expr}' specified for the field '{field}' returned nothing (undefined)."),
                )),
                Err(e) => Err(Failure::new(
                    names::QUERY_EVALUATION,
                    format!("The JSONata expression '{expr}' specified for the field '{field}' threw an error during evaluation. {e}"),
                )),
            },
            None => Ok(template.clone()),
        },
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(k.clone(), eval_template(v, states, variables, &format!("{field}/{k}"))?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => Ok(Value::Array(
            items
                .iter()
                .map(|x| eval_template(x, states, variables, field))
                .collect::<Result<_, _>>()?,
        )),
        other => Ok(other.clone()),
    }
}

/// Evaluates one expression; `Ok(None)` is JSONata's `undefined`.
pub fn evaluate(
    expr: &str,
    states: &Value,
    variables: &Map<String, Value>,
) -> Result<Option<Value>, String> {
    let _ = (expr, states, variables);
    Err("JSONata evaluation is not supported".into())
}
