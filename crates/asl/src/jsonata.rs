//! The JSONata query language: `{% expr %}` strings inside `Arguments`, `Output`,
//! `Assign`, `Condition`, `Items` ... evaluated with `$states` and the workflow
//! variables bound.

mod eval;
mod functions;
mod parse;

use crate::error::{names, Failure};
use eval::{Env, Val};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The result of evaluating an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluated {
    Value(Value),
    /// JSONata's `undefined` (e.g. a missing field or variable).
    Undefined,
    /// A function or regular expression: not representable as JSON.
    Unsupported,
}

/// The expression inside `{% ... %}`, or `None` for a plain string.
pub fn expression(s: &str) -> Option<&str> {
    s.strip_prefix("{%")?.strip_suffix("%}").map(str::trim)
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
    seed: u64,
) -> Result<Value, Failure> {
    match template {
        Value::String(s) => match expression(s) {
            Some(expr) => match evaluate(expr, states, variables, seed) {
                Ok(Evaluated::Value(v)) => Ok(v),
                Ok(Evaluated::Undefined) => Err(Failure::new(
                    names::QUERY_EVALUATION,
                    format!("The JSONata expression '{expr}' specified for the field '{field}' returned nothing (undefined)."),
                )),
                Ok(Evaluated::Unsupported) => Err(Failure::new(
                    names::QUERY_EVALUATION,
                    format!("The JSONata expression '{expr}' specified for the field '{field}' returned an unsupported result type."),
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
                out.insert(k.clone(), eval_template(v, states, variables, &format!("{field}/{k}"), seed.wrapping_add(out.len() as u64 + 1))?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => Ok(Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| eval_template(x, states, variables, field, seed.wrapping_add(i as u64 + 1)))
                .collect::<Result<_, _>>()?,
        )),
        other => Ok(other.clone()),
    }
}

/// Checks that every `{% %}` string inside `v` parses.
pub fn check_template(v: &Value) -> Result<(), String> {
    match v {
        Value::String(s) => match expression(s) {
            Some(expr) => {
                parse::parse(expr).map(|_| ()).map_err(|e| format!("invalid JSONata expression {expr:?}: {e}"))
            }
            None => Ok(()),
        },
        Value::Object(m) => m.values().try_for_each(check_template),
        Value::Array(items) => items.iter().try_for_each(check_template),
        _ => Ok(()),
    }
}

/// Evaluates one expression with `$states` and the variables bound.
/// `seed` feeds `$random` and `$uuid`, so that evaluation is deterministic.
pub fn evaluate(expr: &str, states: &Value, variables: &Map<String, Value>, seed: u64) -> Result<Evaluated, String> {
    let ast = parse::parse(expr)?;
    let mut vars: HashMap<String, Val> = variables.iter().map(|(k, v)| (k.clone(), Val::Json(v.clone()))).collect();
    vars.insert("states".into(), Val::Json(states.clone()));
    let env = Env::root(vars, seed);
    Ok(match eval::eval(&ast, &Val::Undef, &env)? {
        Val::Json(v) => Evaluated::Value(v),
        Val::Undef => Evaluated::Undefined,
        _ => Evaluated::Unsupported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(expr: &str) -> Evaluated {
        let mut vars = Map::new();
        vars.insert("x".into(), json!(5));
        evaluate(expr, &json!({"input": {"a": [1, 2, 3], "s": "hi", "o": [{"k": 1}, {"k": 2}]}}), &vars, 7).unwrap()
    }

    #[test]
    fn evaluates_expressions() {
        assert_eq!(ev("$sum($states.input.a) + $x"), Evaluated::Value(json!(11)));
        assert_eq!(ev("$states.input.o.k"), Evaluated::Value(json!([1, 2])));
        assert_eq!(ev("$states.input.a[1]"), Evaluated::Value(json!(2)));
        assert_eq!(ev("$states.input.o[k > 1].k"), Evaluated::Value(json!(2)));
        assert_eq!(ev("$states.input.s & '!'"), Evaluated::Value(json!("hi!")));
        assert_eq!(ev("$nope"), Evaluated::Undefined);
        assert_eq!(ev("function($v){$v}"), Evaluated::Unsupported);
        assert_eq!(ev("($f := function($v){$v * 2}; $f(4))"), Evaluated::Value(json!(8)));
        assert_eq!(ev("$x > 3 ? 'big' : 'small'"), Evaluated::Value(json!("big")));
        assert_eq!(ev("$partition([1,2,3], 2)"), Evaluated::Value(json!([[1, 2], [3]])));
        assert_eq!(ev("$contains('hello$world', /^hello\\$/)"), Evaluated::Value(json!(true)));
        assert!(evaluate("$randomSeeded(1)", &json!({}), &Map::new(), 7).unwrap_err().starts_with("T1006"));
    }

    #[test]
    fn random_and_uuid_are_deterministic_per_seed() {
        assert_eq!(ev("$uuid()"), ev("$uuid()"));
        assert_eq!(ev("$random()"), ev("$random()"));
        assert_ne!(ev("[$uuid(), $uuid()][0]"), ev("[$uuid(), $uuid()][1]"));
    }

    #[test]
    fn templates_only_evaluate_delimited_strings() {
        let t = json!({"a": "{% 1 + 1 %}", "b": " {% 1 %} ", "c": ["{% $states.x %}"]});
        let v = eval_template(&t, &json!({"x": true}), &Map::new(), "Output", 0).unwrap();
        assert_eq!(v, json!({"a": 2, "b": " {% 1 %} ", "c": [true]}));
        let e = eval_template(&json!({"r": "{% $nope %}"}), &json!({}), &Map::new(), "Output", 0).unwrap_err();
        assert!(e.cause.unwrap().contains("field 'Output/r' returned nothing (undefined)"));
    }
}
