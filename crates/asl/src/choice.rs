//! Choice rules: parsing and evaluation of the comparison operators.

use crate::definition::QueryLanguage;
use crate::path::{JsonPath, PathError, Scope};
use crate::timestamp;
use serde_json::Value;

/// A top-level choice: a condition and where to go when it holds.
#[derive(Debug, Clone)]
pub struct ChoiceRule {
    pub condition: Condition,
    pub next: String,
    pub output: Option<Value>,
    pub assign: Option<Value>,
}

#[derive(Debug, Clone)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Compare {
        variable: JsonPath,
        op: Op,
        operand: Operand,
    },
    /// JSONata `Condition` (a `{% %}` expression or a literal boolean).
    Jsonata(Value),
}

#[derive(Debug, Clone)]
pub enum Operand {
    Literal(Value),
    Path(JsonPath),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Numeric,
    Boolean,
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Compare(Kind, Cmp),
    StringMatches,
    IsPresent,
    IsNull,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

fn op_from_name(name: &str) -> Option<(Op, bool)> {
    let (base, is_path) = match name.strip_suffix("Path") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let op = match base {
        "StringMatches" => Op::StringMatches,
        "IsPresent" => Op::IsPresent,
        "IsNull" => Op::IsNull,
        "IsNumeric" => Op::IsNumeric,
        "IsString" => Op::IsString,
        "IsBoolean" => Op::IsBoolean,
        "IsTimestamp" => Op::IsTimestamp,
        _ => {
            let (kind, rest) = [
                ("String", Kind::String),
                ("Numeric", Kind::Numeric),
                ("Boolean", Kind::Boolean),
                ("Timestamp", Kind::Timestamp),
            ]
            .into_iter()
            .find_map(|(p, k)| base.strip_prefix(p).map(|r| (k, r)))?;
            let cmp = match rest {
                "Equals" => Cmp::Eq,
                "LessThan" => Cmp::Lt,
                "LessThanEquals" => Cmp::Le,
                "GreaterThan" => Cmp::Gt,
                "GreaterThanEquals" => Cmp::Ge,
                _ => return None,
            };
            if kind == Kind::Boolean && cmp != Cmp::Eq {
                return None;
            }
            Op::Compare(kind, cmp)
        }
    };
    if is_path
        && matches!(
            op,
            Op::StringMatches
                | Op::IsPresent
                | Op::IsNull
                | Op::IsNumeric
                | Op::IsString
                | Op::IsBoolean
                | Op::IsTimestamp
        )
    {
        return None;
    }
    Some((op, is_path))
}

impl ChoiceRule {
    /// Parses one element of `Choices` (`top` = it must carry `Next`).
    pub fn parse(v: &Value, ql: QueryLanguage, top: bool) -> Result<ChoiceRule, String> {
        let o = v.as_object().ok_or("a choice rule must be an object")?;
        let next = match o.get("Next") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err("Next must be a string".into()),
            None if top => return Err("a choice rule needs Next".into()),
            None => String::new(),
        };
        let condition = if ql == QueryLanguage::Jsonata {
            for k in o.keys() {
                if !["Condition", "Next", "Comment", "Output", "Assign"].contains(&k.as_str()) {
                    return Err(format!("unknown field {k:?} in a JSONata choice rule"));
                }
            }
            Condition::Jsonata(o.get("Condition").cloned().ok_or("a JSONata choice rule needs Condition")?)
        } else {
            Condition::parse(v)?
        };
        Ok(ChoiceRule { condition, next, output: o.get("Output").cloned(), assign: o.get("Assign").cloned() })
    }
}

impl Condition {
    /// Parses a JSONPath condition; `And` / `Or` / `Not` may nest at most
    /// [`crate::limits::MAX_CHOICE_RULE_DEPTH`] levels.
    pub fn parse(v: &Value) -> Result<Condition, String> {
        Condition::parse_at(v, 0)
    }

    fn parse_at(v: &Value, depth: usize) -> Result<Condition, String> {
        if depth > crate::limits::MAX_CHOICE_RULE_DEPTH {
            return Err(format!(
                "And, Or and Not nest deeper than {} levels in a choice rule",
                crate::limits::MAX_CHOICE_RULE_DEPTH
            ));
        }
        let o = v.as_object().ok_or("a choice rule must be an object")?;
        let mut found = None;
        for (k, x) in o {
            match k.as_str() {
                "Next" | "Comment" | "Variable" | "Assign" => continue,
                "And" | "Or" => {
                    let items =
                        x.as_array().filter(|a| !a.is_empty()).ok_or(format!("{k} must be a non-empty array"))?;
                    let inner =
                        items.iter().map(|x| Condition::parse_at(x, depth + 1)).collect::<Result<Vec<_>, _>>()?;
                    found = Some(if k == "And" { Condition::And(inner) } else { Condition::Or(inner) });
                }
                "Not" => found = Some(Condition::Not(Box::new(Condition::parse_at(x, depth + 1)?))),
                name => {
                    let (op, is_path) = op_from_name(name).ok_or(format!("unknown comparison operator {name:?}"))?;
                    let var = o
                        .get("Variable")
                        .and_then(Value::as_str)
                        .ok_or(format!("the {name} comparison needs a Variable"))?;
                    let variable = JsonPath::parse(var).map_err(|e| e.to_string())?;
                    let operand = if is_path {
                        let p = x.as_str().ok_or(format!("{name} must be a path"))?;
                        Operand::Path(JsonPath::parse(p).map_err(|e| e.to_string())?)
                    } else {
                        check_literal(name, op, x)?;
                        Operand::Literal(x.clone())
                    };
                    if found.is_some() {
                        return Err("a choice rule must have exactly one operator".into());
                    }
                    found = Some(Condition::Compare { variable, op, operand });
                }
            }
        }
        found.ok_or_else(|| "a choice rule needs a comparison operator, And, Or or Not".into())
    }

    /// Evaluates a JSONPath condition (`Jsonata` conditions are handled by the caller).
    pub fn eval(&self, scope: &Scope<'_>) -> Result<bool, String> {
        Ok(match self {
            Condition::And(items) => {
                for c in items {
                    if !c.eval(scope)? {
                        return Ok(false);
                    }
                }
                true
            }
            Condition::Or(items) => {
                for c in items {
                    if c.eval(scope)? {
                        return Ok(true);
                    }
                }
                false
            }
            Condition::Not(c) => !c.eval(scope)?,
            Condition::Compare { variable, op, operand } => {
                let value = match variable.select(scope) {
                    Ok(v) => Some(v),
                    Err(PathError::NotFound(_)) => None,
                    Err(e) => return Err(e.to_string()),
                };
                if *op == Op::IsPresent {
                    return Ok(value.is_some() == (operand_bool(operand)));
                }
                let Some(value) = value else {
                    return Err(format!(
                        "Invalid path '{variable}': The choice state's condition path references an invalid value."
                    ));
                };
                let expected = match operand {
                    Operand::Literal(v) => v.clone(),
                    Operand::Path(p) => match p.select(scope) {
                        Ok(v) => v,
                        Err(PathError::NotFound(_)) => {
                            return Err(format!(
                                "Invalid path '{p}': The choice state's condition path references an invalid value."
                            ))
                        }
                        Err(e) => return Err(e.to_string()),
                    },
                };
                compare(*op, &value, &expected)
            }
            Condition::Jsonata(_) => return Err("a JSONata condition needs the JSONata evaluator".into()),
        })
    }
}

fn operand_bool(o: &Operand) -> bool {
    matches!(o, Operand::Literal(Value::Bool(true)))
}

fn check_literal(name: &str, op: Op, v: &Value) -> Result<(), String> {
    let ok = match op {
        Op::Compare(Kind::String, _) | Op::StringMatches => v.is_string(),
        Op::Compare(Kind::Numeric, _) => v.is_number(),
        Op::Compare(Kind::Boolean, _) => v.is_boolean(),
        Op::Compare(Kind::Timestamp, _) => v.as_str().is_some_and(|s| timestamp::parse(s).is_some()),
        _ => v.is_boolean(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("the value of {name} has the wrong type: {v}"))
    }
}

fn apply_cmp(c: Cmp, ord: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match c {
        Cmp::Eq => ord == Equal,
        Cmp::Lt => ord == Less,
        Cmp::Le => ord != Greater,
        Cmp::Gt => ord == Greater,
        Cmp::Ge => ord != Less,
    }
}

/// Applies an operator to the variable's value and the operand.
pub fn compare(op: Op, value: &Value, expected: &Value) -> bool {
    let want = expected.as_bool().unwrap_or(false);
    match op {
        Op::IsPresent => want,
        Op::IsNull => value.is_null() == want,
        Op::IsNumeric => value.is_number() == want,
        Op::IsString => value.is_string() == want,
        Op::IsBoolean => value.is_boolean() == want,
        Op::IsTimestamp => value.as_str().is_some_and(|s| timestamp::parse(s).is_some()) == want,
        Op::StringMatches => match (value.as_str(), expected.as_str()) {
            (Some(s), Some(p)) => string_matches(s, p),
            _ => false,
        },
        Op::Compare(Kind::String, c) => match (value.as_str(), expected.as_str()) {
            (Some(a), Some(b)) => apply_cmp(c, a.cmp(b)),
            _ => false,
        },
        Op::Compare(Kind::Numeric, c) => match (value.as_f64(), expected.as_f64()) {
            (Some(a), Some(b)) if value.is_number() && expected.is_number() => {
                a.partial_cmp(&b).is_some_and(|o| apply_cmp(c, o))
            }
            _ => false,
        },
        Op::Compare(Kind::Boolean, _) => match (value.as_bool(), expected.as_bool()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
        Op::Compare(Kind::Timestamp, c) => {
            match (value.as_str().and_then(timestamp::parse), expected.as_str().and_then(timestamp::parse)) {
                (Some(a), Some(b)) => apply_cmp(c, a.cmp(&b)),
                _ => false,
            }
        }
    }
}

/// `StringMatches`: `*` matches any run of characters; `\*` and `\\` are literals.
/// The literal runs between stars are found left to right (the leftmost match is
/// always a right choice), so matching takes linear time whatever the pattern: a
/// backtracking matcher takes the product of both lengths.
pub fn string_matches(s: &str, pattern: &str) -> bool {
    let mut runs: Vec<String> = vec![String::new()];
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => runs.push(String::new()),
            c => {
                let lit = if c == '\\' { chars.next().unwrap_or('\\') } else { c };
                if let Some(run) = runs.last_mut() {
                    run.push(lit);
                }
            }
        }
    }
    let (Some((first, rest)), Some(last)) = (runs.split_first(), runs.last()) else {
        return s.is_empty();
    };
    if rest.is_empty() {
        return s == first;
    }
    if !s.starts_with(first.as_str()) || !s.ends_with(last.as_str()) || s.len() < first.len() + last.len() {
        return false;
    }
    let end = s.len() - last.len();
    let mut pos = first.len();
    for run in &rest[..rest.len() - 1] {
        match s[pos..end].find(run.as_str()) {
            Some(i) => pos += i + run.len(),
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Map};

    fn eval(rule: Value, input: Value) -> Result<bool, String> {
        let vars = Map::new();
        let scope = Scope { input: &input, context: &Value::Null, variables: &vars };
        Condition::parse(&rule)?.eval(&scope)
    }

    #[test]
    fn operators() {
        assert_eq!(eval(json!({"Variable": "$.a", "NumericGreaterThan": 1}), json!({"a": 2})), Ok(true));
        assert_eq!(eval(json!({"Variable": "$.a", "NumericEqualsPath": "$.b"}), json!({"a": 2, "b": 2.0})), Ok(true));
        assert_eq!(eval(json!({"Variable": "$.a", "StringLessThan": "b"}), json!({"a": "a"})), Ok(true));
        assert_eq!(eval(json!({"Variable": "$.a", "IsPresent": false}), json!({})), Ok(true));
        assert_eq!(eval(json!({"Variable": "$.a", "IsNull": true}), json!({"a": null})), Ok(true));
        assert_eq!(
            eval(
                json!({"Variable": "$.a", "TimestampLessThan": "2020-01-01T00:00:00Z"}),
                json!({"a": "2019-01-01T00:00:00Z"})
            ),
            Ok(true)
        );
        assert_eq!(eval(json!({"Not": {"Variable": "$.a", "BooleanEquals": true}}), json!({"a": false})), Ok(true));
        assert_eq!(
            eval(
                json!({"And": [{"Variable": "$.a", "IsString": true}, {"Variable": "$.a", "StringMatches": "x*z"}]}),
                json!({"a": "xyz"})
            ),
            Ok(true)
        );
        assert!(eval(json!({"Variable": "$.a", "NumericEquals": 1}), json!({})).is_err());
        assert!(Condition::parse(&json!({"Variable": "$.a", "NumericEquals": "x"})).is_err());
        assert!(Condition::parse(&json!({"Variable": "$.a", "Foo": 1})).is_err());
    }

    #[test]
    fn deep_rules_are_refused_not_overflowing() {
        let leaf = json!({"Variable": "$.a", "IsPresent": true});
        let nest = |n: usize, op: &str| {
            let mut r = leaf.clone();
            for _ in 0..n {
                let inner = if op == "Not" { r } else { Value::Array(vec![r]) };
                r = Value::Object(Map::from_iter([(op.to_string(), inner)]));
            }
            r
        };
        let limit = crate::limits::MAX_CHOICE_RULE_DEPTH;
        assert_eq!(eval(nest(limit, "And"), json!({"a": 1})), Ok(true));
        for op in ["And", "Or", "Not"] {
            let rule = nest(20_000, op);
            let e = Condition::parse(&rule).unwrap_err();
            assert!(e.contains("nest deeper than"), "{e}");
            // Dropping a value this deep recurses too: take it apart by hand.
            let mut v = rule;
            loop {
                v = match v {
                    Value::Object(mut m) => m.remove(op).unwrap_or(Value::Null),
                    Value::Array(mut a) => a.pop().unwrap_or(Value::Null),
                    _ => break,
                };
            }
        }
    }

    #[test]
    fn string_matching() {
        assert!(string_matches("log-2020.txt", "log-*.txt"));
        assert!(string_matches("a*b", "a\\*b"));
        assert!(!string_matches("axb", "a\\*b"));
        assert!(string_matches("", "*"));
        assert!(!string_matches("abc", "a*d"));
        assert!(!string_matches("aba", "ab*ba"));
        assert!(string_matches("abba", "ab*ba"));
        assert!(string_matches("a\\b", "a\\\\b"));
        assert!(string_matches("xaybz", "*a*b*"));
        assert!(!string_matches("xbyaz", "*a*b"));
        assert!(string_matches("", ""));
        assert!(!string_matches("a", ""));
    }

    #[test]
    fn string_matching_is_linear() {
        // A backtracking matcher compares about 200,000 x 2,000 characters here.
        let text = "a".repeat(200_000);
        let pattern = format!("*{}b*", "a".repeat(2_000));
        assert!(!string_matches(&text, &pattern));
        let pattern = format!("{}*", "*a".repeat(2_000));
        assert!(string_matches(&text, &pattern));
    }

    proptest! {
        #[test]
        fn matches_like_a_regular_expression(text in "[ab*]{0,12}", pattern in "[ab*]{0,8}") {
            let re: String = pattern.chars().map(|c| if c == '*' { ".*".to_string() } else { c.to_string() }).collect();
            let re = regex::Regex::new(&format!("^(?s){re}$")).unwrap();
            prop_assert_eq!(string_matches(&text, &pattern), re.is_match(&text));
        }

        #[test]
        fn star_matches_any_infix(prefix in "[a-z]{0,5}", mid in "[a-z*]{0,5}", suffix in "[a-z]{0,5}") {
            let text = format!("{prefix}{mid}{suffix}");
            let pattern = format!("{prefix}*{suffix}");
            prop_assert!(string_matches(&text, &pattern));
            let escaped: String = text.chars().flat_map(|c| if c == '*' { vec!['\\', '*'] } else { vec![c] }).collect();
            prop_assert!(string_matches(&text, &escaped));
        }
    }
}
