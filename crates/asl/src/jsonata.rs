//! The JSONata query language: `{% expr %}` strings inside `Arguments`, `Output`,
//! `Assign`, `Condition`, `Items` ... evaluated with `$states` and the workflow
//! variables bound.

mod eval;
mod functions;
mod parse;

use crate::error::{names, Failure};
use crate::limits::Budget;
use eval::{Env, Val};
use serde_json::{Map, Value};
use std::cell::OnceCell;
use std::collections::HashMap;
use std::rc::Rc;

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

/// The variables an expression sees (`$states` and the workflow variables), copied
/// once per template and only if it has an expression.
struct Globals<'a> {
    states: &'a Value,
    variables: &'a Map<String, Value>,
    env: OnceCell<Rc<Env>>,
    budget: &'a Rc<Budget>,
}

impl Globals<'_> {
    fn env(&self) -> &Rc<Env> {
        self.env.get_or_init(|| {
            let mut vars: HashMap<String, Val> =
                self.variables.iter().map(|(k, v)| (k.clone(), Val::Json(v.clone()))).collect();
            vars.insert("states".into(), Val::Json(self.states.clone()));
            Env::root(vars, 0)
        })
    }
}

/// Evaluates a template: every string that is a `{% %}` expression is replaced by its
/// value; `field` names the field for error messages (`Output/result`). The
/// expressions draw on `budget` (shared by all the expressions of a state).
pub fn eval_template(
    template: &Value,
    states: &Value,
    variables: &Map<String, Value>,
    field: &str,
    seed: u64,
    budget: &Rc<Budget>,
) -> Result<Value, Failure> {
    let globals = Globals { states, variables, env: OnceCell::new(), budget };
    eval_template_in(template, &globals, field, seed)
}

fn eval_template_in(template: &Value, globals: &Globals<'_>, field: &str, seed: u64) -> Result<Value, Failure> {
    match template {
        Value::String(s) => match expression(s) {
            Some(expr) => match evaluate_in(expr, globals.env(), seed, globals.budget) {
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
                out.insert(
                    k.clone(),
                    eval_template_in(v, globals, &format!("{field}/{k}"), seed.wrapping_add(out.len() as u64 + 1))?,
                );
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => Ok(Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| eval_template_in(x, globals, field, seed.wrapping_add(i as u64 + 1)))
                .collect::<Result<_, _>>()?,
        )),
        other => Ok(other.clone()),
    }
}

/// Checks that every `{% %}` string inside `v` parses and calls only functions the
/// interpreter implements.
pub fn check_template(v: &Value) -> Result<(), String> {
    match v {
        Value::String(s) => match expression(s) {
            Some(expr) => parse::parse(expr)
                .and_then(|ast| functions::check_calls(&ast))
                .map_err(|e| format!("invalid JSONata expression {expr:?}: {e}")),
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
    let budget = Rc::default();
    let globals = Globals { states, variables, env: OnceCell::new(), budget: &budget };
    evaluate_in(expr, globals.env(), seed, &budget)
}

fn evaluate_in(expr: &str, globals: &Rc<Env>, seed: u64, budget: &Rc<Budget>) -> Result<Evaluated, String> {
    let ast = parse::parse(expr)?;
    let env = Env::evaluation(globals, seed, budget.clone());
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

    fn ev_err(expr: &str) -> String {
        evaluate(expr, &json!({"input": {}}), &Map::new(), 7).unwrap_err()
    }

    #[test]
    fn recursion_is_bounded_not_overflowing() {
        let f = "($f := function($n){ $n = 0 ? 0 : $f($n - 1) }; $f(%N%))";
        assert_eq!(ev(&f.replace("%N%", "100")), Evaluated::Value(json!(0)));
        let e = ev_err(&f.replace("%N%", "1000000"));
        assert!(e.starts_with("U1001: Stack overflow error"), "{e}");
        // Mutual recursion and recursion through a higher-order function too.
        let e = ev_err("($g := function($n){ $h($n) }; $h := function($n){ $g($n + 1) }; $g(0))");
        assert!(e.starts_with("U1001"), "{e}");
        let e = ev_err("($f := function($n){ $map([$n], function($x){ $f($x + 1) }) }; $f(0))");
        assert!(e.starts_with("U1001"), "{e}");
    }

    #[test]
    fn deepest_evaluation_fits_in_one_mebibyte_of_stack() {
        // The engine runs the interpreter on threads of 2 MiB (or more): the deepest
        // evaluation, in its most stack-hungry shapes, must leave room for the callers.
        let shapes = [
            "($f := function($n){ $map([$n], function($x){ $f($x + 1) }) }; $f(0))",
            "($f := function($n){ $n = 0 ? 0 : [1,2][$f($n - 1) = 0] }; $f(100000))",
            "($f := function($n){ $n = 0 ? 0 : ($n - 1 ~> $f) }; $f(100000))",
            "($f := function($n){ $n = 0 ? 0 : $f($n - 1).a }; $f(100000))",
        ];
        for expr in shapes {
            let e = std::thread::Builder::new()
                .stack_size(1 << 20)
                .spawn(move || ev_err(expr))
                .expect("spawn a thread")
                .join()
                .expect("the evaluation returns");
            assert!(e.starts_with("U1001"), "{expr}: {e}");
        }
    }

    #[test]
    fn work_and_sizes_are_bounded() {
        // A million inner evaluations: out of work, quickly.
        let e = ev_err("$map($range(1, 1000, 1), function($i){ $map($range(1, 1000, 1), function($j){ $i * $j }) })");
        assert!(e.starts_with("U1002"), "{e}");
        // A string doubled 40 times would be a terabyte.
        let e = ev_err("($d := function($s, $n){ $n = 0 ? $s : $d($s & $s, $n - 1) }; $d('x', 40))");
        assert!(e.starts_with("U1004"), "{e}");
        let e = ev_err("$replace($join($map($range(1, 1000, 1), function($i){ 'abcdefgh' })), /./, 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')");
        assert!(e.starts_with("U1004"), "{e}");
        // An array doubled 20 times: too many items.
        let e = ev_err("($d := function($a, $n){ $n = 0 ? $a : $d($append($a, $a), $n - 1) }; $d([1], 20))");
        assert!(e.starts_with("U1003") || e.starts_with("U1002"), "{e}");
        assert!(ev_err("$split($join($map($range(1, 1000, 1), function($i){ 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' })), '')")
            .starts_with("U1003"));
    }

    #[test]
    fn replace_expands_groups_like_jsonata() {
        assert_eq!(ev("$replace('John Smith', /(\\w+)\\s(\\w+)/, '$2, $1')"), Evaluated::Value(json!("Smith, John")));
        assert_eq!(ev("$replace('abc', /b/, '[$0$$]')"), Evaluated::Value(json!("a[b$]c")));
        assert_eq!(ev("$replace('abc', /(b)/, '$12')"), Evaluated::Value(json!("ab2c")));
        assert_eq!(ev("$replace('aaa', 'a', 'bb')"), Evaluated::Value(json!("bbbbbb")));
    }

    #[test]
    fn reading_input_fields_does_not_copy_the_whole_input() {
        // 2,000 reads of one field of a 20,000-item input stay within the work limit.
        let items: Vec<u32> = (0..20_000).collect();
        let states = json!({"input": {"big": items, "x": 1}});
        let expr = "$sum($map($range(1, 1000, 1), function($i){ $states.input.x + $states.input.x }))";
        assert_eq!(evaluate(expr, &states, &Map::new(), 0), Ok(Evaluated::Value(json!(2000))));
    }

    const TOKENS: &[&str] = &[
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        ";",
        ":",
        "?",
        ".",
        "+",
        "-",
        "*",
        "/",
        "%",
        "&",
        "=",
        "!=",
        "<",
        ">=",
        " and ",
        " or ",
        " in ",
        ":=",
        "~>",
        "??",
        "?:",
        "1",
        "-2",
        "0.5",
        "1e308",
        "'a'",
        "\"b c\"",
        "true",
        "null",
        "a",
        "$",
        "$x",
        "$f",
        "$states.input",
        "$states.input.a",
        "/a+/",
        "function($x){",
        "$map(",
        "$filter(",
        "$substring(",
        "$substringAfter(",
        "$split(",
        "$join(",
        "$replace(",
        "$partition(",
        "$range(",
        "$round(",
        "$power(",
        "$zip(",
        "$string(",
        "$number(",
        "$sum(",
        "$sort(",
        "$distinct(",
        "$append(",
        "$keys(",
        "$lookup(",
        "$base64decode(",
        "$uuid()",
        "$random()",
        "$parse(",
        "$hash(",
        "$merge(",
        "$count(",
    ];

    proptest::proptest! {
        /// Random token soups: an error or a value, never a panic or an overflow.
        #[test]
        fn evaluation_never_panics(toks in proptest::collection::vec(0..TOKENS.len(), 0..40)) {
            let expr: String = toks.iter().map(|&i| TOKENS[i]).collect();
            let _ = evaluate(&expr, &json!({"input": {"a": [1, "x", {"b": null}], "s": "hi"}}), &Map::new(), 3);
        }
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
        let v = eval_template(&t, &json!({"x": true}), &Map::new(), "Output", 0, &Rc::default()).unwrap();
        assert_eq!(v, json!({"a": 2, "b": " {% 1 %} ", "c": [true]}));
        let e = eval_template(&json!({"r": "{% $nope %}"}), &json!({}), &Map::new(), "Output", 0, &Rc::default())
            .unwrap_err();
        assert!(e.cause.unwrap().contains("field 'Output/r' returned nothing (undefined)"));
    }
}
