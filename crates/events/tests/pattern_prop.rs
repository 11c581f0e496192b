//! The matcher against a tiny reference evaluator over generated flat events and
//! patterns (exact, prefix, anything-but, numeric, exists; event values scalars or
//! arrays of scalars), and the same patterns under a key holding an array of such
//! events (array consistency: one element must match).

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tenancy_events::Pattern;

const KEYS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Exact(Value),
    Prefix(String),
    AnythingBut(Value),
    Between(i64, i64),
    Exists(bool),
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..4).prop_map(|n| json!(n)),
        (-3i64..4).prop_map(|n| json!(n as f64 + 0.5)),
        "[xy]{0,3}".prop_map(Value::String),
    ]
}

fn event_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => scalar(),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
    ]
}

fn event() -> impl Strategy<Value = Value> {
    prop::collection::vec(prop::option::of(event_value()), 3).prop_map(|vals| {
        let mut m = Map::new();
        for (k, v) in KEYS.iter().zip(vals) {
            if let Some(v) = v {
                m.insert((*k).to_owned(), v);
            }
        }
        Value::Object(m)
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        scalar().prop_map(Op::Exact),
        "[xy]{0,2}".prop_map(Op::Prefix),
        prop_oneof![(-3i64..4).prop_map(|n| json!(n)), "[xy]{0,3}".prop_map(Value::String)].prop_map(Op::AnythingBut),
        (-3i64..4, 1i64..4).prop_map(|(lo, w)| Op::Between(lo, lo + w)),
        any::<bool>().prop_map(Op::Exists),
    ]
}

fn pattern() -> impl Strategy<Value = Vec<(usize, Vec<Op>)>> {
    prop::collection::vec((0usize..3, prop::collection::vec(op(), 1..3)), 1..3)
}

fn to_json(fields: &[(usize, Vec<Op>)]) -> Value {
    let mut m = Map::new();
    for (k, ops) in fields {
        let list: Vec<Value> = ops
            .iter()
            .map(|o| match o {
                Op::Exact(v) => v.clone(),
                Op::Prefix(p) => json!({"prefix": p}),
                Op::AnythingBut(v) => json!({"anything-but": v}),
                Op::Between(lo, hi) => json!({"numeric": [">=", lo, "<=", hi]}),
                Op::Exists(b) => json!({"exists": b}),
            })
            .collect();
        // A repeated key keeps the last list, as JSON object insertion does.
        m.insert(KEYS[*k].to_owned(), Value::Array(list));
    }
    Value::Object(m)
}

/// The reference: spelled out case by case, no sharing with the implementation.
fn reference(fields: &Value, event: &Value) -> bool {
    fields.as_object().unwrap().iter().all(|(key, list)| {
        let values: Vec<&Value> = match event.get(key) {
            None => vec![],
            Some(Value::Array(items)) => items.iter().collect(),
            Some(v) => vec![v],
        };
        list.as_array().unwrap().iter().any(|p| {
            if let Some(b) = p.get("exists").and_then(Value::as_bool) {
                return b != values.is_empty();
            }
            values.iter().any(|v| match p {
                Value::Object(op) if op.contains_key("prefix") => {
                    let pre = op["prefix"].as_str().unwrap();
                    v.as_str().is_some_and(|s| s.starts_with(pre))
                }
                Value::Object(op) if op.contains_key("anything-but") => !same(&op["anything-but"], v),
                Value::Object(op) if op.contains_key("numeric") => {
                    let r = op["numeric"].as_array().unwrap();
                    let (lo, hi) = (r[1].as_f64().unwrap(), r[3].as_f64().unwrap());
                    v.as_f64().is_some_and(|x| lo <= x && x <= hi)
                }
                exact => same(exact, v),
            })
        })
    })
}

fn obj(k: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(k.to_owned(), v);
    Value::Object(m)
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn matcher_agrees_with_reference(fields in pattern(), event in event()) {
        let pattern_json = to_json(&fields);
        let pattern = Pattern::parse(&pattern_json).expect("generated patterns are valid");
        prop_assert_eq!(
            pattern.matches(&event),
            reference(&pattern_json, &event),
            "pattern {} event {}", pattern_json, event
        );
    }

    /// Array consistency: under a key holding an array of objects, the pattern matches
    /// iff one element alone matches it (or, with no element, an empty object does).
    #[test]
    fn array_of_objects_matches_iff_one_element_does(
        fields in pattern(),
        elements in prop::collection::vec(event(), 0..4),
    ) {
        let inner = to_json(&fields);
        let pattern = Pattern::parse(&obj("items", inner.clone())).expect("generated patterns are valid");
        let expected = if elements.is_empty() {
            reference(&inner, &json!({}))
        } else {
            elements.iter().any(|e| reference(&inner, e))
        };
        let event = obj("items", Value::Array(elements));
        prop_assert_eq!(pattern.matches(&event), expected, "pattern {} event {}", inner, event);
    }

    #[test]
    fn exact_value_always_matches_itself(v in scalar(), key in 0usize..3) {
        let k = KEYS[key];
        let pattern = Pattern::parse(&obj(k, json!([v.clone()]))).unwrap();
        let single = obj(k, v.clone());
        let in_array = obj(k, json!(["other", v]));
        prop_assert!(pattern.matches(&single));
        prop_assert!(pattern.matches(&in_array));
    }

    #[test]
    fn parse_never_panics(s in "[\\[\\]{}\":,a-z0-9*\\\\ ]{0,40}") {
        let _ = Pattern::parse_str(&s);
    }
}
