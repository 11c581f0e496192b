//! Payload templates of the JSONPath query language (`Parameters`, `ResultSelector`,
//! `ItemSelector`, `Assign`): keys ending in `.$` take their value from a path or an
//! intrinsic function.

use crate::error::{names, Failure};
use crate::intrinsics::{looks_like_call, Call, Entropy, IntrinsicError};
use crate::path::{JsonPath, PathError, Scope};
use serde_json::{Map, Value};

/// Evaluates a template against the scope.
pub fn eval_template(template: &Value, scope: &Scope<'_>, rng: &mut dyn Entropy) -> Result<Value, Failure> {
    match template {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                match (k.strip_suffix(".$"), v) {
                    (Some(key), Value::String(expr)) => {
                        out.insert(key.to_string(), eval_expr(expr, k, scope, rng)?);
                    }
                    _ => {
                        out.insert(k.clone(), eval_template(v, scope, rng)?);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => {
            Ok(Value::Array(items.iter().map(|x| eval_template(x, scope, rng)).collect::<Result<_, _>>()?))
        }
        other => Ok(other.clone()),
    }
}

/// Evaluates the value of one `.$` key: a path or an intrinsic function call.
pub fn eval_expr(expr: &str, field: &str, scope: &Scope<'_>, rng: &mut dyn Entropy) -> Result<Value, Failure> {
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
        return call.eval(scope, rng).map_err(|e| match e {
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
    path.select(scope).map_err(|e| match e {
        PathError::NotFound(_) => not_found(expr),
        other => Failure::new(names::RUNTIME, other.to_string()),
    })
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
}
