//! Fuzzing on the stable toolchain (proptest): the EventBridge pattern compiler
//! (`Pattern::parse`, `Pattern::parse_str`, `Pattern::parse_lenient`) and matcher.
//! Seeds are the patterns and events of `tests/pattern.rs`, mutated as text (character
//! edits, repeated spans for deep nesting) and as JSON (arbitrary values grafted in);
//! events are the seeds' events and arbitrary values. The property: nothing panics,
//! overflows the stack or hangs. `TENANCY_FUZZ_CASES=N` runs N cases per target
//! (`scripts/fuzz`).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use tenancy_events::Pattern;
use tenancy_fuzzkit::{apply, check, pointers, JSON_ALPHABET};

fn json_value() -> impl Strategy<Value = Value> {
    tenancy_fuzzkit::json_value(
        "[a-c0-9*$.\\- ]{0,8}",
        "[a-c]{1,2}|prefix|suffix|numeric|anything-but|exists|equals-ignore-case|wildcard|cidr|\\$or",
    )
}

fn edit() -> impl Strategy<Value = tenancy_fuzzkit::Edit> {
    tenancy_fuzzkit::edit(JSON_ALPHABET)
}

const HANG: Duration = Duration::from_secs(20);

/// The JSON objects written as `json!({...})` in `tests/pattern.rs`: patterns and
/// events both (a pattern is an object, so either seeds the other).
fn seeds() -> &'static Vec<String> {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let text = include_str!("pattern.rs");
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find("json!(") {
            rest = &rest[i + "json!(".len()..];
            // The balanced `{...}` or `[...]` that follows.
            let mut depth = 0i32;
            let mut end = None;
            let mut in_str = false;
            let mut esc = false;
            for (j, ch) in rest.char_indices() {
                match ch {
                    _ if esc => esc = false,
                    '\\' if in_str => esc = true,
                    '"' => in_str = !in_str,
                    '{' | '[' if !in_str => depth += 1,
                    '}' | ']' if !in_str => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j + 1);
                            break;
                        }
                    }
                    ')' if !in_str && depth == 0 => break,
                    _ => {}
                }
            }
            if let Some(end) = end {
                if let Ok(v) = serde_json::from_str::<Value>(&rest[..end]) {
                    out.push(v.to_string());
                }
            }
        }
        out.sort();
        out.dedup();
        assert!(out.len() > 50, "seeds from tests/pattern.rs: {}", out.len());
        out
    })
}

fn seed_value(i: &prop::sample::Index) -> Value {
    serde_json::from_str(i.get::<String>(seeds())).expect("seeds are JSON")
}

/// A seed object with one member replaced by an arbitrary value, at any depth.
fn grafted() -> impl Strategy<Value = Value> {
    (any::<prop::sample::Index>(), any::<prop::sample::Index>(), json_value()).prop_map(|(i, at, v)| {
        let mut seed = seed_value(&i);
        let mut ptrs = Vec::new();
        pointers(&seed, String::new(), &mut ptrs);
        if !ptrs.is_empty() {
            *seed.pointer_mut(at.get::<String>(&ptrs).as_str()).expect("pointer") = v;
        }
        seed
    })
}

fn event() -> impl Strategy<Value = Value> {
    prop_oneof![any::<prop::sample::Index>().prop_map(|i| seed_value(&i)), grafted(), json_value()]
}

fn pattern_case(text: Option<&str>, value: &Value, events: &[Value]) -> Result<(), TestCaseError> {
    let t = Instant::now();
    let mut compiled = Vec::new();
    if let Some(text) = text {
        compiled.extend(Pattern::parse_str(text).ok());
    }
    compiled.extend(Pattern::parse(value).ok());
    compiled.extend(Pattern::parse_lenient(value).ok());
    for p in &compiled {
        for e in events {
            let _ = p.matches(e);
        }
    }
    if t.elapsed() > HANG {
        return Err(TestCaseError::fail(format!("took {:?}", t.elapsed())));
    }
    Ok(())
}

#[test]
fn pattern_text_compile_match() {
    let strategy =
        (any::<prop::sample::Index>(), prop::collection::vec(edit(), 0..6), prop::collection::vec(event(), 1..4));
    check(300, strategy, |(i, edits, events)| {
        let text = apply(i.get::<String>(seeds()), &edits);
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        pattern_case(Some(&text), &value, &events)
    });
}

#[test]
fn pattern_value_compile_match() {
    check(300, (prop_oneof![grafted(), json_value()], prop::collection::vec(event(), 1..4)), |(p, events)| {
        pattern_case(None, &p, &events)
    });
}

/// Inputs the fuzzer found that once panicked or overflowed: each stays a test.
mod regressions {
    use super::*;

    #[test]
    fn every_seed_compiles_or_is_refused_and_matches_every_seed() {
        let events: Vec<Value> = seeds().iter().map(|s| serde_json::from_str(s).unwrap()).collect();
        for s in seeds() {
            pattern_case(Some(s), &serde_json::from_str(s).unwrap(), &events).unwrap();
        }
    }
}
