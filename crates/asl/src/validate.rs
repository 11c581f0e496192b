//! Graph checks of a parsed program: transitions name existing states and every state
//! is reachable from `StartAt`. Branches and Map processors are checked recursively.

use crate::definition::{Program, StateKind};
use crate::error::DefinitionError;
use std::collections::{BTreeMap, BTreeSet};

/// Checks a whole machine: the graph of each program, and that no state name is used
/// twice anywhere in the machine (the top level, Parallel branches and Map processors
/// share one namespace in Step Functions: the history, `$$.State.Name` and redrive name
/// a state by its name alone).
pub fn validate_machine(p: &Program) -> Result<(), DefinitionError> {
    let mut seen = BTreeMap::new();
    unique_names(p, "the top level", &mut seen)?;
    validate(p)
}

fn unique_names(p: &Program, place: &str, seen: &mut BTreeMap<String, String>) -> Result<(), DefinitionError> {
    for (name, s) in &p.states {
        if let Some(first) = seen.insert(name.clone(), place.to_string()) {
            return Err(DefinitionError::new(
                Some(name),
                None,
                format!(
                    "state names must be unique in the whole state machine: {name:?} is used in {first} and in {place}"
                ),
            ));
        }
        match &s.kind {
            StateKind::Parallel { branches } => {
                for (i, b) in branches.iter().enumerate() {
                    unique_names(b, &format!("branch {i} of Parallel state {name:?}"), seen)?;
                }
            }
            StateKind::Map(m) => unique_names(&m.processor, &format!("the processor of Map state {name:?}"), seen)?,
            _ => {}
        }
    }
    Ok(())
}

pub fn validate(p: &Program) -> Result<(), DefinitionError> {
    if !p.states.contains_key(&p.start_at) {
        return Err(DefinitionError::new(None, Some("StartAt"), format!("unknown state {:?}", p.start_at)));
    }
    for (name, s) in &p.states {
        let check = |field: &str, target: &str| {
            if p.states.contains_key(target) {
                Ok(())
            } else {
                Err(DefinitionError::new(Some(name), Some(field), format!("unknown state {target:?}")))
            }
        };
        if let Some(n) = &s.next {
            check("Next", n)?;
        }
        for c in &s.catch {
            check("Catch", &c.next)?;
        }
        match &s.kind {
            StateKind::Choice { choices, default } => {
                for c in choices {
                    check("Choices", &c.next)?;
                }
                if let Some(d) = default {
                    check("Default", d)?;
                }
            }
            StateKind::Parallel { branches } => {
                for b in branches {
                    validate(b).map_err(|e| e.nested(name, "Branches"))?;
                }
            }
            StateKind::Map(m) => validate(&m.processor).map_err(|e| e.nested(name, "ItemProcessor"))?,
            _ => {}
        }
    }
    let mut seen = BTreeSet::new();
    let mut todo = vec![p.start_at.as_str()];
    while let Some(n) = todo.pop() {
        if !seen.insert(n) {
            continue;
        }
        let s = &p.states[n];
        todo.extend(s.next.as_deref());
        todo.extend(s.catch.iter().map(|c| c.next.as_str()));
        if let StateKind::Choice { choices, default } = &s.kind {
            todo.extend(choices.iter().map(|c| c.next.as_str()));
            todo.extend(default.as_deref());
        }
    }
    if let Some(unreachable) = p.states.keys().find(|k| !seen.contains(k.as_str())) {
        return Err(DefinitionError::new(Some(unreachable), None, "state is not reachable from StartAt"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::StateMachine;
    use serde_json::{json, Value};

    fn err(def: Value) -> String {
        StateMachine::parse(&def).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn missing_start_at() {
        assert_eq!(err(json!({"States": {}})), "field \"StartAt\": missing required field");
    }

    #[test]
    fn unknown_targets() {
        assert_eq!(
            err(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}})),
            "state \"A\", field \"Next\": unknown state \"B\""
        );
        assert_eq!(
            err(json!({"StartAt": "X", "States": {"A": {"Type": "Pass", "End": true}}})),
            "field \"StartAt\": unknown state \"X\""
        );
        assert_eq!(
            err(
                json!({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "A"}], "Default": "Z"}}})
            ),
            "state \"A\", field \"Default\": unknown state \"Z\""
        );
        assert!(err(json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Q"}]}}}))
            .contains("field \"Catch\": unknown state \"Q\""));
    }

    #[test]
    fn unreachable_state() {
        assert_eq!(
            err(json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "B": {"Type": "Succeed"}}})),
            "state \"B\": state is not reachable from StartAt"
        );
    }

    #[test]
    fn required_and_unknown_fields() {
        assert!(err(json!({"StartAt": "A", "States": {"A": {"Type": "Task", "End": true}}}))
            .contains("field \"Resource\": missing required field"));
        assert!(err(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Bogus": 1}}}))
            .contains("field \"Bogus\""));
        assert!(err(json!({"StartAt": "A", "States": {"A": {"Type": "Pass"}}})).contains("Next or End"));
        assert!(err(json!({"StartAt": "A", "States": {"A": {"Type": "Nope"}}})).contains("unknown state type"));
    }

    #[test]
    fn bad_paths() {
        assert!(err(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "InputPath": "a.b"}}}))
            .contains("field \"InputPath\""));
        assert!(err(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "ResultPath": "$.a[*]"}}}))
            .contains("field \"ResultPath\""));
        assert!(err(
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Parameters": {"x.$": "nope"}}}})
        )
        .contains("field \"Parameters\""));
    }

    #[test]
    fn bad_retry_and_catch() {
        let task = |retry: Value| json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "Retry": retry}}});
        assert!(err(task(json!([{"ErrorEquals": ["E"], "MaxAttempts": -1}]))).contains("MaxAttempts"));
        assert!(err(task(json!([{"ErrorEquals": ["E"], "BackoffRate": 0.5}]))).contains("BackoffRate"));
        assert!(err(task(json!([{"ErrorEquals": ["E"], "IntervalSeconds": 0}]))).contains("IntervalSeconds"));
        assert!(err(task(json!([{"ErrorEquals": []}]))).contains("ErrorEquals"));
        assert!(err(task(json!([{"ErrorEquals": ["States.ALL", "E"]}]))).contains("alone"));
        assert!(err(task(json!([{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["E"]}]))).contains("last"));
        assert!(err(task(json!([{"ErrorEquals": ["E"], "JitterStrategy": "SOME"}]))).contains("JitterStrategy"));
    }

    #[test]
    fn nested_branch_errors_name_the_outer_state() {
        let e = err(
            json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [{"StartAt": "X", "States": {"X": {"Type": "Pass", "Next": "Y"}}}]}}}),
        );
        assert_eq!(e, "state \"P\", field \"Branches\": state \"X\", field \"Next\": unknown state \"Y\"");
    }

    #[test]
    fn jsonata_expressions_are_checked() {
        assert!(err(json!({"QueryLanguage": "JSONata", "StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Output": "{% (1 %}"}}}))
            .contains("field \"Output\": invalid JSONata expression"));
        assert!(err(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Output": 1}}}))
            .contains("only supported with the JSONata query language"));
        assert!(err(json!({"QueryLanguage": "JSONata", "StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "InputPath": "$"}}}))
            .contains("not supported with the JSONata query language"));
    }

    #[test]
    fn task_timeouts() {
        let task = |extra: Value| {
            let mut t = json!({"Type": "Task", "Resource": "r", "End": true});
            for (k, v) in extra.as_object().unwrap() {
                t[k] = v.clone();
            }
            json!({"StartAt": "A", "States": {"A": t}})
        };
        assert!(err(task(json!({"TimeoutSeconds": 0}))).contains("positive integer"));
        assert!(
            err(task(json!({"TimeoutSeconds": 10, "HeartbeatSeconds": 10}))).contains("smaller than TimeoutSeconds")
        );
        assert!(err(task(json!({"TimeoutSeconds": 10, "TimeoutSecondsPath": "$.t"}))).contains("cannot be combined"));
        assert!(err(task(json!({"TimeoutSecondsPath": "$.t", "HeartbeatSeconds": 3}))).is_empty());
    }

    #[test]
    fn distributed_map_is_rejected() {
        let e = err(json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true, "ItemReader": {},
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}}));
        assert!(e.contains("distributed Map"));
        let e = err(json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}}));
        assert!(e.contains("only INLINE"));
    }

    #[test]
    fn valid_machine_parses() {
        assert_eq!(
            err(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Succeed"}}})),
            ""
        );
    }
}
