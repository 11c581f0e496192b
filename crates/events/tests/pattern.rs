//! One test per operator (matching and not matching) and the rejected patterns.

use serde_json::{json, Value};
use tenancy_events::Pattern;

fn matches(pattern: Value, event: Value) -> bool {
    Pattern::parse(&pattern).unwrap_or_else(|e| panic!("pattern {pattern} rejected: {e}")).matches(&event)
}

fn rejects(pattern: Value) -> String {
    match Pattern::parse(&pattern) {
        Ok(_) => panic!("pattern {pattern} accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn exact_string_number_null_boolean() {
    assert!(matches(json!({"source": ["tenancy"]}), json!({"source": "tenancy"})));
    assert!(!matches(json!({"source": ["tenancy"]}), json!({"source": "Tenancy"})));
    assert!(matches(json!({"n": [5]}), json!({"n": 5})));
    assert!(!matches(json!({"n": [5]}), json!({"n": 6})));
    assert!(!matches(json!({"n": [5]}), json!({"n": "5"})));
    assert!(matches(json!({"v": [null]}), json!({"v": null})));
    assert!(!matches(json!({"v": [null]}), json!({})));
    assert!(matches(json!({"b": [true]}), json!({"b": true})));
    assert!(!matches(json!({"b": [true]}), json!({"b": false})));
    assert!(!matches(json!({"b": [true]}), json!({"b": "true"})));
}

#[test]
fn numbers_compare_numerically() {
    assert!(matches(json!({"n": [5]}), json!({"n": 5.0})));
    assert!(matches(json!({"n": [5.0]}), json!({"n": 5})));
    assert!(matches(json!({"n": [300]}), json!({"n": 3e2})));
    assert!(!matches(json!({"n": [5]}), json!({"n": 5.000_001})));
}

#[test]
fn array_in_pattern_is_or() {
    let p = json!({"type": ["tenant.created", "tenant.deleted"]});
    assert!(matches(p.clone(), json!({"type": "tenant.deleted"})));
    assert!(!matches(p, json!({"type": "tenant.updated"})));
}

#[test]
fn fields_are_and() {
    let p = json!({"source": ["tenancy"], "type": ["tenant.created"]});
    assert!(matches(p.clone(), json!({"source": "tenancy", "type": "tenant.created"})));
    assert!(!matches(p, json!({"source": "tenancy", "type": "tenant.deleted"})));
}

#[test]
fn array_in_event_matches_if_any_element_matches() {
    let p = json!({"tags": ["urgent"]});
    assert!(matches(p.clone(), json!({"tags": ["low", "urgent"]})));
    assert!(!matches(p.clone(), json!({"tags": ["low", "normal"]})));
    assert!(!matches(p, json!({"tags": []})));
    assert!(matches(json!({"tags": ["x"]}), json!({"tags": [["x"]]})));
}

#[test]
fn nested_objects() {
    let p = json!({"detail": {"tenant": {"plan": ["pro"]}}});
    assert!(matches(p.clone(), json!({"detail": {"tenant": {"plan": "pro", "id": "acme"}}})));
    assert!(!matches(p.clone(), json!({"detail": {"tenant": {"plan": "free"}}})));
    assert!(!matches(p.clone(), json!({"detail": {"tenant": "pro"}})));
    assert!(!matches(p, json!({"detail": "x"})));
}

#[test]
fn arrays_of_objects_are_flattened_like_eventbridge() {
    let p = json!({"detail": {"items": {"sku": ["b"]}}});
    assert!(matches(p.clone(), json!({"detail": {"items": [{"sku": "a"}, {"sku": "b"}]}})));
    assert!(!matches(p, json!({"detail": {"items": [{"sku": "a"}]}})));
    // Conditions on sibling fields may be met by different elements, as in EventBridge.
    let p = json!({"items": {"sku": ["a"], "qty": [2]}});
    assert!(matches(p, json!({"items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]})));
}

#[test]
fn prefix() {
    let p = json!({"type": [{"prefix": "tenant."}]});
    assert!(matches(p.clone(), json!({"type": "tenant.created"})));
    assert!(!matches(p.clone(), json!({"type": "Tenant.created"})));
    assert!(!matches(p.clone(), json!({"type": 5})));
    assert!(!matches(p, json!({})));
}

#[test]
fn prefix_equals_ignore_case() {
    let p = json!({"type": [{"prefix": {"equals-ignore-case": "TENANT."}}]});
    assert!(matches(p.clone(), json!({"type": "tenant.created"})));
    assert!(matches(p.clone(), json!({"type": "Tenant.Created"})));
    assert!(!matches(p, json!({"type": "secret.read"})));
}

#[test]
fn suffix() {
    let p = json!({"file": [{"suffix": ".png"}]});
    assert!(matches(p.clone(), json!({"file": "logo.png"})));
    assert!(!matches(p.clone(), json!({"file": "logo.PNG"})));
    assert!(!matches(p, json!({"file": "logo.jpg"})));
}

#[test]
fn suffix_equals_ignore_case() {
    let p = json!({"file": [{"suffix": {"equals-ignore-case": ".PNG"}}]});
    assert!(matches(p.clone(), json!({"file": "logo.png"})));
    assert!(matches(p.clone(), json!({"file": "logo.Png"})));
    assert!(!matches(p, json!({"file": "logo.jpg"})));
}

#[test]
fn equals_ignore_case() {
    let p = json!({"name": [{"equals-ignore-case": "AcMe"}]});
    assert!(matches(p.clone(), json!({"name": "acme"})));
    assert!(matches(p.clone(), json!({"name": "ACME"})));
    assert!(!matches(p.clone(), json!({"name": "acme corp"})));
    assert!(!matches(p, json!({"name": 1})));
}

#[test]
fn anything_but_value() {
    let p = json!({"state": [{"anything-but": "deleted"}]});
    assert!(matches(p.clone(), json!({"state": "active"})));
    assert!(matches(p.clone(), json!({"state": 3})));
    assert!(!matches(p.clone(), json!({"state": "deleted"})));
    assert!(!matches(p, json!({})), "anything-but never matches an absent field");
    let p = json!({"code": [{"anything-but": 200}]});
    assert!(matches(p.clone(), json!({"code": 500})));
    assert!(!matches(p, json!({"code": 200.0})));
}

#[test]
fn anything_but_list() {
    let p = json!({"state": [{"anything-but": ["deleted", "suspended"]}]});
    assert!(matches(p.clone(), json!({"state": "active"})));
    assert!(!matches(p.clone(), json!({"state": "suspended"})));
    assert!(matches(p, json!({"state": ["deleted", "active"]})));
    let p = json!({"code": [{"anything-but": [200, 204]}]});
    assert!(matches(p.clone(), json!({"code": 201})));
    assert!(!matches(p, json!({"code": 204})));
}

#[test]
fn anything_but_prefix() {
    let p = json!({"type": [{"anything-but": {"prefix": "internal."}}]});
    assert!(matches(p.clone(), json!({"type": "tenant.created"})));
    assert!(!matches(p, json!({"type": "internal.tick"})));
}

#[test]
fn anything_but_suffix() {
    let p = json!({"file": [{"anything-but": {"suffix": ".tmp"}}]});
    assert!(matches(p.clone(), json!({"file": "a.txt"})));
    assert!(!matches(p, json!({"file": "a.tmp"})));
}

#[test]
fn anything_but_equals_ignore_case() {
    let p = json!({"env": [{"anything-but": {"equals-ignore-case": ["PROD", "Staging"]}}]});
    assert!(matches(p.clone(), json!({"env": "dev"})));
    assert!(!matches(p.clone(), json!({"env": "prod"})));
    assert!(!matches(p, json!({"env": "STAGING"})));
}

#[test]
fn anything_but_wildcard() {
    let p = json!({"target": [{"anything-but": {"wildcard": "tenant/*/secret"}}]});
    assert!(matches(p.clone(), json!({"target": "tenant/acme/user"})));
    assert!(!matches(p, json!({"target": "tenant/acme/secret"})));
}

#[test]
fn numeric_ranges() {
    let p = json!({"n": [{"numeric": [">", 0, "<=", 5]}]});
    assert!(matches(p.clone(), json!({"n": 5})));
    assert!(matches(p.clone(), json!({"n": 0.5})));
    assert!(!matches(p.clone(), json!({"n": 0})));
    assert!(!matches(p.clone(), json!({"n": 5.01})));
    assert!(!matches(p, json!({"n": "3"})));
    let p = json!({"n": [{"numeric": ["<", 10]}]});
    assert!(matches(p.clone(), json!({"n": -1e9})));
    assert!(!matches(p, json!({"n": 10})));
    let p = json!({"n": [{"numeric": [">=", 10]}]});
    assert!(matches(p.clone(), json!({"n": 10})));
    assert!(!matches(p, json!({"n": 9.99})));
}

#[test]
fn numeric_equals() {
    let p = json!({"n": [{"numeric": ["=", 3]}]});
    assert!(matches(p.clone(), json!({"n": 3.0})));
    assert!(!matches(p, json!({"n": 3.1})));
}

#[test]
fn exists_true() {
    let p = json!({"detail": {"error": [{"exists": true}]}});
    assert!(matches(p.clone(), json!({"detail": {"error": "boom"}})));
    assert!(matches(p.clone(), json!({"detail": {"error": null}})));
    assert!(!matches(p.clone(), json!({"detail": {}})));
    assert!(!matches(p.clone(), json!({"detail": {"error": []}})));
    assert!(!matches(p, json!({"detail": {"error": {"code": 1}}})), "objects are not leaves");
}

#[test]
fn exists_false() {
    let p = json!({"detail": {"error": [{"exists": false}]}});
    assert!(matches(p.clone(), json!({"detail": {}})));
    assert!(matches(p.clone(), json!({})));
    assert!(!matches(p, json!({"detail": {"error": "boom"}})));
}

#[test]
fn wildcard() {
    let p = json!({"target": [{"wildcard": "tenant/*/secret/*"}]});
    assert!(matches(p.clone(), json!({"target": "tenant/acme/secret/db"})));
    assert!(matches(p.clone(), json!({"target": "tenant//secret/"})));
    assert!(!matches(p.clone(), json!({"target": "tenant/acme/user/db"})));
    assert!(!matches(p, json!({"target": "x/tenant/acme/secret/db"})));
    let p = json!({"f": [{"wildcard": "*.png"}]});
    assert!(matches(p.clone(), json!({"f": ".png"})));
    assert!(!matches(p, json!({"f": "a.png.bak"})));
    let p = json!({"f": [{"wildcard": "a*a"}]});
    assert!(matches(p.clone(), json!({"f": "aa"})));
    assert!(matches(p.clone(), json!({"f": "abcaba"})));
    assert!(!matches(p, json!({"f": "a"})));
    let p = json!({"f": [{"wildcard": "exact"}]});
    assert!(matches(p.clone(), json!({"f": "exact"})));
    assert!(!matches(p, json!({"f": "exactly"})));
}

#[test]
fn wildcard_escapes() {
    let p = json!({"f": [{"wildcard": "a\\*b*"}]});
    assert!(matches(p.clone(), json!({"f": "a*bc"})));
    assert!(!matches(p, json!({"f": "axbc"})));
    let p = json!({"f": [{"wildcard": "a\\\\b"}]});
    assert!(matches(p, json!({"f": "a\\b"})));
}

#[test]
fn or_of_patterns() {
    let p = json!({
        "source": ["tenancy"],
        "$or": [
            {"detail": {"plan": ["pro"]}},
            {"detail": {"seats": [{"numeric": [">", 100]}]}}
        ]
    });
    assert!(matches(p.clone(), json!({"source": "tenancy", "detail": {"plan": "pro"}})));
    assert!(matches(p.clone(), json!({"source": "tenancy", "detail": {"plan": "free", "seats": 500}})));
    assert!(!matches(p.clone(), json!({"source": "tenancy", "detail": {"plan": "free", "seats": 5}})));
    assert!(!matches(p, json!({"source": "other", "detail": {"plan": "pro"}})));
}

#[test]
fn nested_or() {
    let p = json!({"detail": {"$or": [{"a": [1]}, {"b": [2]}]}});
    assert!(matches(p.clone(), json!({"detail": {"b": 2}})));
    assert!(!matches(p, json!({"detail": {"a": 2}})));
}

#[test]
fn parse_str_accepts_text() {
    let p = Pattern::parse_str(r#"{"source": ["tenancy"]}"#).expect("valid");
    assert!(p.matches(&json!({"source": "tenancy"})));
    assert!(Pattern::parse_str("not json").is_err());
}

// ---- rejected patterns ----

#[test]
fn rejects_non_objects_and_empty_objects() {
    assert_eq!(rejects(json!(["a"])), "<root>: pattern must be a JSON object");
    assert_eq!(rejects(json!({})), "<root>: empty object is not allowed");
    assert_eq!(rejects(json!({"detail": {}})), "detail: empty object is not allowed");
}

#[test]
fn rejects_values_not_in_arrays() {
    assert_eq!(rejects(json!({"source": "tenancy"})), "source: match values must be in an array");
    assert_eq!(rejects(json!({"detail": {"n": 5}})), "detail.n: match values must be in an array");
}

#[test]
fn rejects_empty_and_nested_arrays() {
    assert_eq!(rejects(json!({"source": []})), "source: empty array is not allowed");
    assert_eq!(rejects(json!({"a": [["x"]]})), "a: nested arrays are not allowed in a match list");
}

#[test]
fn rejects_unknown_operators_and_arity() {
    assert_eq!(rejects(json!({"a": [{"regex": "x"}]})), "a: unknown operator \"regex\"");
    assert_eq!(
        rejects(json!({"a": [{"prefix": "x", "suffix": "y"}]})),
        "a: operator object must have exactly one key, found 2"
    );
    assert_eq!(rejects(json!({"a": [{}]})), "a: operator object must have exactly one key, found 0");
}

#[test]
fn rejects_bad_operands() {
    assert_eq!(
        rejects(json!({"detail": {"plan": [{"prefix": 5}]}})),
        "detail.plan: \"prefix\" expects a string or {\"equals-ignore-case\": string}"
    );
    assert_eq!(
        rejects(json!({"f": [{"suffix": {"equals-ignore-case": 1}}]})),
        "f: \"suffix\" expects a string or {\"equals-ignore-case\": string}"
    );
    assert_eq!(rejects(json!({"f": [{"exists": "yes"}]})), "f: \"exists\" expects true or false");
    assert_eq!(rejects(json!({"f": [{"equals-ignore-case": ["a"]}]})), "f: \"equals-ignore-case\" expects a string");
    assert_eq!(rejects(json!({"f": [{"wildcard": 1}]})), "f: \"wildcard\" expects a string");
}

#[test]
fn rejects_bad_anything_but() {
    assert_eq!(rejects(json!({"f": [{"anything-but": []}]})), "f: empty array is not allowed");
    assert!(rejects(json!({"f": [{"anything-but": ["a", 1]}]})).starts_with("f: \"anything-but\" expects"));
    assert!(rejects(json!({"f": [{"anything-but": [{"prefix": "a"}]}]})).starts_with("f: \"anything-but\" expects"));
    assert_eq!(
        rejects(json!({"f": [{"anything-but": {"numeric": [">", 1]}}]})),
        "f: unknown operator \"anything-but/numeric\""
    );
    assert_eq!(
        rejects(json!({"f": [{"anything-but": {"prefix": 1}}]})),
        "f: \"anything-but\" expects its operator to take a string or a non-empty array of strings"
    );
}

#[test]
fn rejects_bad_numeric() {
    let shape = "n: \"numeric\" expects an operator followed by a number, once or twice";
    assert_eq!(rejects(json!({"n": [{"numeric": []}]})), shape);
    assert_eq!(rejects(json!({"n": [{"numeric": [">"]}]})), shape);
    assert_eq!(rejects(json!({"n": [{"numeric": [">", "5"]}]})), shape);
    assert_eq!(rejects(json!({"n": [{"numeric": 5}]})), shape);
    assert_eq!(rejects(json!({"n": [{"numeric": [">", 1, "<", 2, "<", 3]}]})), shape);
    assert_eq!(rejects(json!({"n": [{"numeric": ["!=", 1]}]})), "n: \"numeric\" has unknown comparison \"!=\"");
    let pair = "n: \"numeric\" range needs one lower bound (\">\" or \">=\") and one upper bound (\"<\" or \"<=\")";
    assert_eq!(rejects(json!({"n": [{"numeric": [">", 1, ">", 2]}]})), pair);
    assert_eq!(rejects(json!({"n": [{"numeric": ["=", 1, "<", 2]}]})), pair);
    assert_eq!(
        rejects(json!({"n": [{"numeric": [">", 5, "<", 1]}]})),
        "n: \"numeric\" range is empty: lower bound 5 is above upper bound 1"
    );
}

#[test]
fn rejects_bad_wildcards() {
    assert_eq!(rejects(json!({"f": [{"wildcard": "a**b"}]})), "f: wildcard has consecutive '*' characters");
    assert_eq!(
        rejects(json!({"f": [{"wildcard": "a\\b"}]})),
        "f: wildcard has an invalid escape: only \\* and \\\\ are allowed"
    );
    assert_eq!(
        rejects(json!({"f": [{"anything-but": {"wildcard": "**"}}]})),
        "f: wildcard has consecutive '*' characters"
    );
}

#[test]
fn rejects_bad_or() {
    let msg = "\"$or\" expects an array of at least two pattern objects";
    assert_eq!(rejects(json!({"$or": {"a": [1]}})), format!("$or: {msg}"));
    assert_eq!(rejects(json!({"$or": [{"a": [1]}]})), format!("$or: {msg}"));
    assert_eq!(rejects(json!({"detail": {"$or": [{"a": [1]}, 5]}})), "detail.$or[1]: pattern must be a JSON object");
    assert_eq!(rejects(json!({"$or": [{"a": [1]}, {"b": "x"}]})), "$or[1].b: match values must be in an array");
}
