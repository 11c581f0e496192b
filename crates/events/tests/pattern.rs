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
fn arrays_of_objects_one_element_must_meet_all_conditions() {
    let p = json!({"detail": {"items": {"sku": ["b"]}}});
    assert!(matches(p.clone(), json!({"detail": {"items": [{"sku": "a"}, {"sku": "b"}]}})));
    assert!(!matches(p, json!({"detail": {"items": [{"sku": "a"}]}})));
    // event-ruler's README example: no one employee is Anna Jones.
    let employees = json!({"employees": [
        [{"firstName": "John", "lastName": "Doe"}, {"firstName": "Anna", "lastName": "Smith"}],
        [{"firstName": "Peter", "lastName": "Jones"}]
    ]});
    assert!(matches(json!({"employees": {"firstName": ["Anna"]}}), employees.clone()));
    assert!(!matches(json!({"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}}), employees.clone()));
    assert!(matches(json!({"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}}), employees));
    // Conditions on sibling fields are met by different elements: no match.
    let p = json!({"items": {"sku": ["a"], "qty": [2]}});
    assert!(!matches(p.clone(), json!({"items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]})));
    assert!(matches(p, json!({"items": [{"sku": "b", "qty": 1}, {"sku": "a", "qty": 2}]})));
}

#[test]
fn array_consistency_holds_at_every_depth() {
    // Per order, one line must be the sku with that quantity; the orders may differ.
    let p = json!({"orders": {"id": [2], "lines": {"sku": ["a"], "qty": [1]}}});
    let event = |lines2: Value| {
        json!({"orders": [
            {"id": 1, "lines": [{"sku": "a", "qty": 1}]},
            {"id": 2, "lines": lines2}
        ]})
    };
    assert!(!matches(p.clone(), event(json!([{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]))));
    assert!(matches(p.clone(), event(json!([{"sku": "b", "qty": 2}, {"sku": "a", "qty": 1}]))));
    // A single object under an array element is that element's own.
    let p = json!({"items": {"tag": ["x"], "meta": {"owner": ["acme"]}}});
    assert!(!matches(
        p.clone(),
        json!({"items": [{"tag": "x", "meta": {"owner": "other"}}, {"tag": "y", "meta": {"owner": "acme"}}]})
    ));
    assert!(matches(p, json!({"items": [{"tag": "y"}, {"tag": "x", "meta": {"owner": "acme"}}]})));
    // Arrays of scalars inside an element still match any of their values.
    let p = json!({"items": {"tags": ["x"], "sku": ["a"]}});
    assert!(matches(p, json!({"items": [{"sku": "a", "tags": ["w", "x"]}]})));
}

#[test]
fn array_consistency_with_or_and_exists() {
    // `$or` inside the element's pattern: the element must meet a whole branch.
    let p = json!({"items": {"sku": ["a"], "$or": [{"qty": [1]}, {"gift": [true]}]}});
    assert!(!matches(p.clone(), json!({"items": [{"sku": "a", "qty": 2}, {"sku": "b", "gift": true}]})));
    assert!(matches(p, json!({"items": [{"sku": "b", "qty": 1}, {"sku": "a", "gift": true}]})));
    // A `$or` branch naming the same array as a field beside it: the same element.
    let p = json!({"items": {"sku": ["a"]}, "$or": [{"items": {"qty": [1]}}, {"urgent": [true]}]});
    assert!(!matches(p.clone(), json!({"items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]})));
    assert!(matches(p.clone(), json!({"items": [{"sku": "a", "qty": 1}]})));
    assert!(matches(p, json!({"items": [{"sku": "a", "qty": 2}], "urgent": true})));
    // `exists: false` is per element too, and holds when there is no element at all.
    let p = json!({"items": {"sku": ["a"], "returned": [{"exists": false}]}});
    assert!(!matches(p.clone(), json!({"items": [{"sku": "a", "returned": true}, {"sku": "b"}]})));
    assert!(matches(p, json!({"items": [{"sku": "b"}, {"sku": "a"}]})));
    let p = json!({"items": {"returned": [{"exists": false}]}});
    assert!(matches(p.clone(), json!({})));
    assert!(matches(p.clone(), json!({"items": []})));
    assert!(matches(p, json!({"items": [{"returned": true}, {"sku": "a"}]})));
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
    // As event-ruler: no empty prefix or suffix (it would exclude every string).
    assert_eq!(
        rejects(json!({"f": [{"anything-but": {"prefix": ""}}]})),
        "f: \"anything-but\" prefix must not be empty"
    );
    assert_eq!(
        rejects(json!({"f": [{"anything-but": {"suffix": ""}}]})),
        "f: \"anything-but\" suffix must not be empty"
    );
    assert_eq!(
        rejects(json!({"f": [{"anything-but": {"prefix": ["a", ""]}}]})),
        "f: \"anything-but\" prefix must not be empty"
    );
    // As event-ruler: no nested anything-but, no null or boolean operand.
    assert_eq!(
        rejects(json!({"f": [{"anything-but": {"anything-but": "x"}}]})),
        "f: unknown operator \"anything-but/anything-but\""
    );
    for operand in [json!(true), json!(null), json!([true]), json!([null])] {
        assert!(rejects(json!({"f": [{"anything-but": operand}]})).starts_with("f: \"anything-but\" expects"));
    }
}

#[test]
fn rejects_operator_names_as_fields_inside_or() {
    assert_eq!(
        rejects(json!({"$or": [{"numeric": [">", 1]}, {"b": [1]}]})),
        "$or[0].numeric: \"numeric\" is an operator name and cannot be a field name inside \"$or\""
    );
    assert_eq!(
        rejects(json!({"$or": [{"a": [1]}, {"d": {"prefix": ["x"]}}]})),
        "$or[1].d.prefix: \"prefix\" is an operator name and cannot be a field name inside \"$or\""
    );
    // Outside `$or` such names are ordinary fields.
    assert!(matches(json!({"prefix": ["x"]}), json!({"prefix": "x"})));
}

#[test]
fn rejects_too_many_or_combinations() {
    // Four nested levels of 6 branches: 6^4 = 1296 alternatives.
    let mut p = json!({"z": [0]});
    for level in 0..4 {
        let branches: Vec<Value> =
            (0..6).map(|i| json!({format!("k{level}_{i}"): [i], "$or": [p.clone(), {"y": [1]}]})).collect();
        p = json!({"$or": branches});
    }
    let msg = rejects(p);
    assert!(msg.starts_with("<root>: the \"$or\" branches combine into"), "{msg}");
    assert!(msg.ends_with("more than the limit of 1000"), "{msg}");
    // Six branches of six branches is fine.
    let inner: Vec<Value> = (0..6).map(|i| json!({"b": [i]})).collect();
    let outer: Vec<Value> = (0..6).map(|i| json!({"a": [i], "$or": inner})).collect();
    assert!(Pattern::parse(&json!({"$or": outer})).is_ok());
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
        "n: \"numeric\" range is empty: lower bound 5 is not below upper bound 1 (use [\"=\", x] for one value)"
    );
    // As event-ruler: the bottom must be below the top, even with both bounds inclusive.
    assert!(rejects(json!({"n": [{"numeric": [">=", 5, "<=", 5]}]})).contains("range is empty"));
    assert!(rejects(json!({"n": [{"numeric": [">", 5, "<=", 5]}]})).contains("range is empty"));
    // As event-ruler: the lower bound comes first.
    let order = "n: \"numeric\" range must give its lower bound (\">\" or \">=\") first, then its upper bound (\"<\" or \"<=\")";
    assert_eq!(rejects(json!({"n": [{"numeric": ["<", 1, ">", 5]}]})), order);
    assert_eq!(rejects(json!({"n": [{"numeric": ["<=", 5, ">=", 1]}]})), order);
}

#[test]
fn rejects_numbers_a_float_cannot_hold() {
    let msg =
        |n: &str| format!("<root>: number {n} cannot be represented: it underflows to 0 or overflows a 64-bit float");
    for n in ["1E-325", "-2.5e-400", "1E400", "-1e309"] {
        let text = format!(r#"{{"n": [{{"numeric": [">", {n}]}}]}}"#);
        assert_eq!(Pattern::parse_str(&text).unwrap_err().to_string(), msg(n), "{text}");
        let text = format!(r#"{{"n": [{n}]}}"#);
        assert_eq!(Pattern::parse_str(&text).unwrap_err().to_string(), msg(n), "{text}");
    }
    // Zero, small and large representable numbers, and numbers inside strings, are fine.
    for ok in [
        r#"{"n": [0, 0.0, -0e5, 0E-400, 1e-300, 1.5e308]}"#,
        r#"{"s": ["1E-325", "a\"1e400"], "n": [{"numeric": [">", 1e-5, "<", 1e300]}]}"#,
    ] {
        assert!(Pattern::parse_str(ok).is_ok(), "{ok}");
    }
    assert_eq!(tenancy_events::pattern::unrepresentable_number(br#"{"a": "\\", "b": 1e-999}"#), Some("1e-999".into()));
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

#[test]
fn lenient_parse_keeps_patterns_stored_before_the_event_ruler_checks() {
    for (pattern, event, expected) in [
        (json!({"n": [{"numeric": ["<", 5, ">", 1]}]}), json!({"n": 3}), true),
        (json!({"n": [{"numeric": [">=", 5, "<=", 5]}]}), json!({"n": 5}), true),
        (json!({"f": [{"anything-but": null}]}), json!({"f": "x"}), true),
        (json!({"f": [{"anything-but": {"prefix": ""}}]}), json!({"f": "x"}), false),
        (json!({"$or": [{"prefix": ["x"]}, {"b": [1]}]}), json!({"prefix": "x"}), true),
    ] {
        assert!(Pattern::parse(&pattern).is_err(), "{pattern}");
        let lenient = Pattern::parse_lenient(&pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        assert_eq!(lenient.matches(&event), expected, "{pattern} {event}");
    }
    // Still refused leniently: what was refused before, and too many alternatives.
    assert!(Pattern::parse_lenient(&json!({"n": [{"numeric": [">", 5, "<", 1]}]})).is_err());
    assert!(Pattern::parse_lenient(&json!({"source": "x"})).is_err());
    let ok = Pattern::parse_lenient(&json!({"n": [{"numeric": ["<", 5, ">", 1]}]})).unwrap();
    assert!(ok.matches(&json!({"n": 3})) && !ok.matches(&json!({"n": 6})));
}
