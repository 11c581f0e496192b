//! Payload templates of the JSONPath query language (`Parameters`, `ResultSelector`,
//! `ItemSelector`, `Assign`): keys ending in `.$` take their value from a path or an
//! intrinsic function.

use crate::error::{names, Failure};
use crate::intrinsics::{looks_like_call, Call, Entropy, IntrinsicError};
use crate::limits::Budget;
use crate::path::{JsonPath, PathError, Scope};
use serde_json::{Map, Value};

/// Evaluates a template against the scope. What its paths and intrinsic functions
/// copy counts against one budget of [`crate::limits::MAX_EVAL_WORK`]: a template
/// that repeats `"x.$": "$"` a thousand times over a large input is refused
/// (`States.DataLimitExceeded`) instead of taking gigabytes.
pub fn eval_template(template: &Value, scope: &Scope<'_>, rng: &mut dyn Entropy) -> Result<Value, Failure> {
    eval_template_in(template, scope, rng, &Budget::new())
}

fn eval_template_in(
    template: &Value,
    scope: &Scope<'_>,
    rng: &mut dyn Entropy,
    budget: &Budget,
) -> Result<Value, Failure> {
    match template {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                match (k.strip_suffix(".$"), v) {
                    (Some(key), Value::String(expr)) => {
                        out.insert(key.to_string(), eval_expr_in(expr, k, scope, rng, budget)?);
                    }
                    _ => {
                        out.insert(k.clone(), eval_template_in(v, scope, rng, budget)?);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => {
            Ok(Value::Array(items.iter().map(|x| eval_template_in(x, scope, rng, budget)).collect::<Result<_, _>>()?))
        }
        other => Ok(other.clone()),
    }
}

/// Evaluates the value of one `.$` key: a path or an intrinsic function call.
pub fn eval_expr(expr: &str, field: &str, scope: &Scope<'_>, rng: &mut dyn Entropy) -> Result<Value, Failure> {
    eval_expr_in(expr, field, scope, rng, &Budget::new())
}

fn eval_expr_in(
    expr: &str,
    field: &str,
    scope: &Scope<'_>,
    rng: &mut dyn Entropy,
    budget: &Budget,
) -> Result<Value, Failure> {
    let too_large = |e: String| Failure::new(names::DATA_LIMIT, format!("The field '{field}' is too large: {e}"));
    let not_found = |p: &str| {
        Failure::new(
            names::RUNTIME,
            format!(
                "The JSONPath '{p}' specified for the field '{field}' could not be found in the input '{}'",
                scope.input
            ),
        )
    };
    if looks_like_call(expr) {
        let call = Call::parse(expr).map_err(|e| Failure::new(names::INTRINSIC, e.to_string()))?;
        return call.eval_with(scope, rng, budget).map_err(|e| match e {
            IntrinsicError::Path(PathError::NotFound(_)) => Failure::new(
                names::RUNTIME,
                format!(
                    "The function {} references a path that could not be found in the input '{}'",
                    call.name, scope.input
                ),
            ),
            other => Failure::new(names::INTRINSIC, other.to_string()),
        });
    }
    let path = JsonPath::parse(expr).map_err(|e| Failure::new(names::RUNTIME, e.to_string()))?;
    let v = path.select(scope).map_err(|e| match e {
        PathError::NotFound(_) => not_found(expr),
        PathError::Limit(m) => too_large(m),
        other => Failure::new(names::RUNTIME, other.to_string()),
    })?;
    budget.charge_value(&v).map_err(too_large)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Zero;
    impl Entropy for Zero {
        fn next_u64(&mut self) -> u64 {
            0
        }
    }

    #[test]
    fn evaluates_nested_templates() {
        let input = json!({"a": 1, "b": [1, 2]});
        let ctx = json!({"State": {"Name": "S"}});
        let vars = Map::new();
        let scope = Scope { input: &input, context: &ctx, variables: &vars };
        let t = json!({"x.$": "$.a", "y": {"z.$": "$$.State.Name"}, "l": [{"n.$": "States.ArrayLength($.b)"}], "lit": "$.a"});
        assert_eq!(
            eval_template(&t, &scope, &mut Zero),
            Ok(json!({"x": 1, "y": {"z": "S"}, "l": [{"n": 2}], "lit": "$.a"}))
        );
        let err = eval_template(&json!({"x.$": "$.nope"}), &scope, &mut Zero).unwrap_err();
        assert_eq!(err.error.as_deref(), Some("States.Runtime"));
        assert!(err.cause.unwrap().contains("'$.nope' specified for the field 'x.$'"));
    }

    #[test]
    fn copies_of_the_input_are_bounded() {
        let items: Vec<u32> = (0..20_000).collect();
        let input = json!({"a": items});
        let vars = Map::new();
        let scope = Scope { input: &input, context: &Value::Null, variables: &vars };
        let mut t = Map::new();
        for i in 0..300 {
            t.insert(format!("k{i}.$"), json!("$.a"));
        }
        let err = eval_template(&Value::Object(t), &scope, &mut Zero).unwrap_err();
        assert_eq!(err.error.as_deref(), Some("States.DataLimitExceeded"));
        assert!(err.cause.unwrap().contains("U1002"));
        let few = json!({"x.$": "$.a", "n.$": "States.ArrayLength($.a)"});
        assert!(eval_template(&few, &scope, &mut Zero).is_ok());
    }
}
